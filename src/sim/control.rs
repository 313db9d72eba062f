//! The control API under `/_sim/`: switch scenarios, play scripts, set the NTP clock offset and
//! drift, and read the simulator's state. JSON in and out; errors are 400 with a message that says
//! what is accepted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::limits::{MAX_CLOCK_DRIFT_PPM, MAX_CLOCK_OFFSET};
use super::scenario::Scenario;
use super::state::SimState;

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn current(state: &SimState) -> serde_json::Value {
    let s = state.scenario();
    json!({ "scenario": s.name(), "params": s.params() })
}

/// `GET /_sim/scenario`
pub async fn get_scenario(State(state): State<Arc<SimState>>) -> Response {
    Json(current(&state)).into_response()
}

/// `POST /_sim/scenario/<name>?param=value`
pub async fn set_scenario(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match Scenario::parse(&name, &params, &state.config.scenario_defaults())
        .and_then(|s| state.set_scenario(s))
    {
        Ok(()) => Json(current(&state)).into_response(),
        Err(e) => bad_request(e),
    }
}

/// `GET /_sim/state`
pub async fn state(State(state): State<Arc<SimState>>) -> Response {
    Json(state.state_json()).into_response()
}

/// `POST /_sim/script` with a YAML or JSON list of steps; replaces any script playing.
pub async fn script(State(state): State<Arc<SimState>>, body: String) -> Response {
    match super::script::parse(&body, &state.config.scenario_defaults()) {
        Ok(steps) => {
            let n = steps.len();
            super::script::play(state.clone(), steps);
            Json(json!({ "steps": n })).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `POST /_sim/clock-offset/<seconds>`
pub async fn clock_offset(
    State(state): State<Arc<SimState>>,
    Path(seconds): Path<String>,
) -> Response {
    match seconds.parse::<f64>() {
        Ok(s) if s.is_finite() && s.abs() <= MAX_CLOCK_OFFSET => {
            state.set_clock_offset(s);
            Json(json!({ "clock_offset_seconds": s })).into_response()
        }
        _ => bad_request(format!(
            "clock offset {seconds:?} is not a number of seconds from -{MAX_CLOCK_OFFSET:e} to {MAX_CLOCK_OFFSET:e} (e.g. 2.5 or -0.25)"
        )),
    }
}

/// `POST /_sim/clock-drift/<ppm>`
pub async fn clock_drift(State(state): State<Arc<SimState>>, Path(ppm): Path<String>) -> Response {
    match ppm.parse::<f64>().map(super::limits::clock_drift) {
        Ok(Ok(p)) => {
            state.set_clock_drift(p);
            Json(json!({ "clock_drift_ppm": p })).into_response()
        }
        _ => bad_request(format!(
            "clock drift {ppm:?} is not a number of ppm from -{MAX_CLOCK_DRIFT_PPM} to {MAX_CLOCK_DRIFT_PPM} (e.g. 500 or -20)"
        )),
    }
}

fn current_container(state: &SimState) -> serde_json::Value {
    let s = state.container_scenario();
    json!({ "scenario": s.name(), "params": s.params() })
}

/// `GET /_sim/container/scenario`
pub async fn get_container_scenario(State(state): State<Arc<SimState>>) -> Response {
    Json(current_container(&state)).into_response()
}

/// `POST /_sim/container/scenario/<name>?param=value`: the container endpoint's own scenario.
pub async fn set_container_scenario(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match super::scenario::ContainerScenario::parse(
        &name,
        &params,
        &state.config.scenario_defaults(),
    )
    .and_then(|s| state.set_container_scenario(s))
    {
        Ok(()) => Json(current_container(&state)).into_response(),
        Err(e) => bad_request(e),
    }
}

/// `POST /_sim/sts/code/<Code>`: the STS stand-in answers this AWS error code (`auto`: it
/// judges the session token, answering `ExpiredToken` for expired credentials).
pub async fn set_sts_code(
    State(state): State<Arc<SimState>>,
    Path(code): Path<String>,
) -> Response {
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return bad_request(format!(
            "code {code:?}: expected an AWS error code such as ExpiredToken, or auto"
        ));
    }
    let code = (code != "auto").then_some(code);
    state.set_sts_code(code.clone());
    Json(json!({ "sts_code": code })).into_response()
}

/// `POST /_sim/credentials` with `{"AccessKeyId": ..., "SecretAccessKey": ..., "Token": ...}`:
/// IMDS serves these instead of the generated keys (an empty body or `{}` undoes it).
pub async fn set_credentials(State(state): State<Arc<SimState>>, body: String) -> Response {
    if body.trim().is_empty() || body.trim() == "{}" {
        state.set_credentials_override(None);
        return Json(json!({ "overridden": false })).into_response();
    }
    match serde_json::from_str::<super::state::CredentialsOverride>(&body) {
        Ok(keys) => {
            state.set_credentials_override(Some(keys));
            Json(json!({ "overridden": true })).into_response()
        }
        Err(e) => bad_request(format!(
            "expected {{\"AccessKeyId\", \"SecretAccessKey\", \"Token\"}}: {e}"
        )),
    }
}
