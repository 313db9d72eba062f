//! A stand-in for STS (`POST /_sts`), for what a real STS peer on loopback cannot show: moto's
//! server (the tests' real peer) does not check that a session token has expired, so it never
//! answers `ExpiredToken`. This one judges the credentials the simulator itself serves, as AWS
//! would judge them, and nothing more:
//!
//! - `GetCallerIdentity` signed with the IMDS side's current session token: the assumed-role ARN
//!   of `--role` (the container side's: of `<role>-pod`), or `ExpiredToken` (HTTP 400) once that
//!   generation has expired (the `expired` scenario); any other token: `InvalidClientTokenId`
//!   (403). The signature itself is not checked (neither does moto by default).
//! - `AssumeRoleWithWebIdentity`: the role named in `RoleArn`, assumed; `ExpiredTokenException`
//!   (HTTP 400) when the token's `exp` claim has passed, `InvalidIdentityToken` when it is not a
//!   JWT (the signature is not checked).
//! - `POST /_sim/sts/code/<Code>` forces an error code for every request (`auto` undoes it).
//!
//! The `Date` header carries the simulator's clock offset (`/_sim/clock-offset`), as the NTP
//! answerer does, so that the skew STS reports can be staged.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::state::SimState;

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const ACCOUNT_ID: &str = "123456789012";
const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn respond(state: &SimState, status: StatusCode, body: String) -> Response {
    let offset = chrono::Duration::milliseconds((state.ntp_offset() * 1000.0) as i64);
    let date = (Utc::now() + offset)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    (
        status,
        [
            ("content-type", "text/xml".to_string()),
            ("date", date),
            (
                "x-amzn-requestid",
                "00000000-0000-0000-0000-000000000000".to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

/// An STS error answer, as STS renders one.
fn error(state: &SimState, code: &str) -> Response {
    let (status, message) = match code {
        "ExpiredToken" => (
            StatusCode::BAD_REQUEST,
            "The security token included in the request is expired",
        ),
        "ExpiredTokenException" => (StatusCode::BAD_REQUEST, "Token expired"),
        "InvalidIdentityToken" => (
            StatusCode::BAD_REQUEST,
            "The web identity token is not a valid JWT",
        ),
        "Throttling" => (StatusCode::BAD_REQUEST, "Rate exceeded"),
        "InvalidClientTokenId" => (
            StatusCode::FORBIDDEN,
            "The security token included in the request is invalid.",
        ),
        "SignatureDoesNotMatch" => (
            StatusCode::FORBIDDEN,
            "The request signature we calculated does not match the signature you provided.",
        ),
        _ => (StatusCode::FORBIDDEN, "Refused by the simulator."),
    };
    respond(
        state,
        status,
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>\n</ErrorResponse>\n"
        ),
    )
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `POST /_sts`.
pub async fn handle(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    state.count("sts", "request");
    if let Some(code) = state.sts_code() {
        return error(&state, &code);
    }
    match form_value(&body, "Action") {
        Some("GetCallerIdentity") => caller_identity(&state, &headers),
        Some("AssumeRoleWithWebIdentity") => {
            let token = percent_decode(form_value(&body, "WebIdentityToken").unwrap_or(""));
            match jwt_expired(&token) {
                Some(true) => return error(&state, "ExpiredTokenException"),
                None => return error(&state, "InvalidIdentityToken"),
                Some(false) => {}
            }
            let arn = form_value(&body, "RoleArn")
                .map(|a| a.replace("%3A", ":").replace("%2F", "/"))
                .unwrap_or_default();
            let role = arn.rsplit('/').next().unwrap_or("role").to_string();
            let expires = (Utc::now() + chrono::Duration::hours(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            respond(
                &state,
                StatusCode::OK,
                format!(
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"{XMLNS}\">\n  <AssumeRoleWithWebIdentityResult>\n    <Credentials>\n      <AccessKeyId>ASIASIMWEBIDENTITY01</AccessKeyId>\n      <SecretAccessKey>simWEBIDENTITYsecret</SecretAccessKey>\n      <SessionToken>simWEBIDENTITYtoken</SessionToken>\n      <Expiration>{expires}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/web-identity</Arn>\n      <AssumedRoleId>AROASIMULATED:web-identity</AssumedRoleId>\n    </AssumedRoleUser>\n  </AssumeRoleWithWebIdentityResult>\n</AssumeRoleWithWebIdentityResponse>\n"
                ),
            )
        }
        _ => error(&state, "InvalidAction"),
    }
}

/// `%XX` escapes and `+` of a form value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a JWT's `exp` has passed; `None` when it is not a JWT with one.
fn jwt_expired(token: &str) -> Option<bool> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    Some(exp <= Utc::now().timestamp() as f64)
}

fn caller_identity(state: &SimState, headers: &HeaderMap) -> Response {
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let [imds, container] = state.served_credentials();
    let role = &state.config.role;
    let (generation, arn) = if token == imds.session_token() {
        (
            imds,
            format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/{INSTANCE_ID}"),
        )
    } else if token == container.session_token() {
        (
            container,
            format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}-pod/eks-simulated"),
        )
    } else {
        return error(state, "InvalidClientTokenId");
    };
    if generation.expires <= Utc::now() {
        return error(state, "ExpiredToken");
    }
    respond(
        state,
        StatusCode::OK,
        format!(
            "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n    <UserId>AROASIMULATED:{INSTANCE_ID}</UserId>\n    <Account>{ACCOUNT_ID}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>00000000-0000-0000-0000-000000000000</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
        ),
    )
}
