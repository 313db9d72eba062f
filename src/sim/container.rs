//! The fake container credential endpoint: what the EKS Pod Identity agent serves on
//! `169.254.170.23/v1/credentials` (and ECS on `169.254.170.2/v2/credentials/<id>`), on the
//! simulator's own listener, with a scenario of its own, so that the agent can fail while IMDS
//! is healthy, as it does on a real node.
//!
//! Served as the SDKs read it: `GET /v1/credentials` (or `/v2/credentials/<id>`) with the
//! `Authorization` header equal to `--container-token` (empty: no check, ECS's relative URI)
//! answers the Pod Identity document (`AccessKeyId`, `SecretAccessKey`, `Token`, `AccountId`,
//! `Expiration`); a missing or different token gets 401 with a JSON message. The real agent's
//! status for a bad token could not be read from its source here; every SDK treats any non-200
//! alike (botocore: retried, then no credentials), so the status only changes the `reason`.
//!
//! Scenarios ([`super::scenario::CONTAINER_APPLICABLE`]): IMDS's that mean something for an HTTP credential endpoint, plus
//! `token-rejected` (every token refused with 401: an expired or revoked service-account token,
//! an association removed).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::credentials::Generation;
use super::imds::{ConnControl, CountIfDropped, CutTransfer, precise_sleep};
use super::scenario::{ContainerScenario, Scenario, TruncateMode};
use super::state::SimState;

/// How long an `outage` request is held.
const OUTAGE_HOLD: Duration = Duration::from_secs(600);
/// The account the simulated role lives in (as the IMDS side's).
const ACCOUNT_ID: &str = "123456789012";

/// The document as the Pod Identity agent renders it (ECS adds `RoleArn`; no `Code`).
pub fn document(generation: &Generation) -> String {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        "{{\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\",\"Token\":\"{}\",\"AccountId\":\"{ACCOUNT_ID}\",\"Expiration\":\"{}\"}}",
        generation.access_key_id(),
        generation.secret_access_key(),
        generation.session_token(),
        ts(generation.expires)
    )
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        format!("{{\"message\":\"{message}\"}}"),
    )
        .into_response()
}

/// `GET /v2/credentials/<id>` (ECS's path): the same as `/v1/credentials`.
pub async fn handle_ecs(
    state: State<Arc<SimState>>,
    conn: Extension<ConnControl>,
    _id: Path<String>,
    headers: HeaderMap,
) -> Response {
    handle(state, conn, headers).await
}

/// `GET /v1/credentials`.
pub async fn handle(
    State(state): State<Arc<SimState>>,
    Extension(conn): Extension<ConnControl>,
    headers: HeaderMap,
) -> Response {
    const GROUP: &str = "container";
    let scenario = state.container_scenario();
    let shared = match &scenario {
        ContainerScenario::Shared(s) => Some(s.clone()),
        ContainerScenario::TokenRejected => None,
    };
    match &shared {
        Some(Scenario::Outage) => {
            state.count(GROUP, "none");
            tokio::time::sleep(OUTAGE_HOLD).await;
            return json_error(StatusCode::GATEWAY_TIMEOUT, "held");
        }
        Some(Scenario::Refused) => {
            state.count(GROUP, "reset");
            conn.reset();
            return std::future::pending::<Response>().await;
        }
        Some(s) => {
            if let Some(delay) = s.delay() {
                // A client that gives up first is counted as never answered, as for IMDS.
                let mut unanswered = CountIfDropped {
                    state: &state,
                    group: GROUP,
                    armed: true,
                };
                precise_sleep(delay).await;
                unanswered.armed = false;
            }
        }
        None => {}
    }
    let response = answer(&state, shared.as_ref(), &headers);
    state.count(GROUP, response.status().as_str());
    response
}

fn answer(state: &SimState, scenario: Option<&Scenario>, headers: &HeaderMap) -> Response {
    match scenario {
        Some(Scenario::Throttle) => {
            return json_error(StatusCode::TOO_MANY_REQUESTS, "Rate exceeded");
        }
        Some(Scenario::ThrottlePartial { ratio }) if fastrand::f64() < *ratio => {
            return json_error(StatusCode::TOO_MANY_REQUESTS, "Rate exceeded");
        }
        Some(Scenario::ServerError) => {
            let status = StatusCode::from_u16(state.next_server_error()).expect("valid status");
            return json_error(status, "Internal error");
        }
        _ => {}
    }
    let expected = state.config.container_token.as_str();
    let given = headers.get("authorization").map(|v| v.as_bytes());
    if scenario.is_none() || (!expected.is_empty() && given != Some(expected.as_bytes())) {
        return json_error(StatusCode::UNAUTHORIZED, "Service account token is invalid");
    }
    let scenario = scenario.expect("checked above");
    if *scenario == Scenario::NoRole {
        // No Pod Identity association for the service account.
        return json_error(StatusCode::NOT_FOUND, "No association found");
    }
    let doc = document(&state.current_container_credentials(Utc::now()));
    let body = match scenario {
        Scenario::Malformed => "<html><body>Service Unavailable</body></html>\n".to_string(),
        Scenario::Truncated {
            mode: TruncateMode::Body,
        } => doc[..doc.len() / 3].to_string(),
        Scenario::Truncated {
            mode: TruncateMode::Transfer,
        } => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                Body::new(CutTransfer::new(doc)),
            )
                .into_response();
        }
        Scenario::Huge => {
            let padding = "x".repeat(4 * 1024 * 1024);
            format!("{{\"Padding\":\"{padding}\",{}", &doc[1..])
        }
        _ => doc,
    };
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}
