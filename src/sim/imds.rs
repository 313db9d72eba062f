//! The fake IMDS: the paths the SDKs and the exporter use, served as EC2 serves them, and what
//! each scenario does to a request.
//!
//! Fidelity points (EC2 User Guide, instance-metadata-v2-how-it-works): the token PUT needs a TTL
//! header from 1 to 21600 (400 otherwise), is refused with `X-Forwarded-For` (403), and echoes the
//! TTL; a GET with an unknown or expired token gets 401; a token-less GET works only while
//! IMDSv1 is allowed.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::scenario::{Scenario, TruncateMode};
use super::state::SimState;

/// Lets a handler reset the connection it is answering on (the `refused` scenario); the accept
/// loop in `server` arms it.
#[derive(Clone)]
pub struct ConnControl {
    pub(super) reset: Arc<tokio::sync::Notify>,
}

impl ConnControl {
    pub fn reset(&self) {
        self.reset.notify_one();
    }
}

const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const CREDS_PREFIX: &str = "/latest/meta-data/iam/security-credentials/";
/// How long an `outage` request is held before the simulator gives up on it.
const OUTAGE_HOLD: Duration = Duration::from_secs(600);

const INSTANCE_ID: &str = "i-0123456789abcdef0";
const ACCOUNT_ID: &str = "123456789012";
const REGION: &str = "us-east-1";
const AZ: &str = "us-east-1a";
const IMAGE_ID: &str = "ami-0123456789abcdef0";
const INSTANCE_TYPE: &str = "m7g.large";

/// The path groups that `/_sim/state` counts requests by.
fn group(path: &str) -> &'static str {
    match path {
        TOKEN_PATH => "token",
        CREDS_PREFIX => "role",
        "/latest/meta-data/iam/info" => "info",
        "/latest/dynamic/instance-identity/document" => "identity",
        p if p.starts_with(CREDS_PREFIX) => "credentials",
        _ => "other",
    }
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [("content-type", "text/plain"), ("server", "EC2ws")],
        body.into(),
    )
        .into_response()
}

fn status_only(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("");
    text(status, format!("{} - {reason}\n", status.as_u16()))
}

/// Every request outside `/_sim/`.
pub async fn handle(
    State(state): State<Arc<SimState>>,
    Extension(conn): Extension<ConnControl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let scenario = state.scenario();
    let group = group(&path);
    let is_token_put = path == TOKEN_PATH && method == Method::PUT;

    let hold = match &scenario {
        Scenario::Outage => true,
        Scenario::HopLimit | Scenario::HopLimitV2Only => is_token_put,
        _ => false,
    };
    if hold {
        // Accepted and never answered: the client's timeout is what ends it. (With hop limit
        // 1 the real answer is sent and dropped on the way; to the client it is the same.)
        state.count(group, "none");
        tokio::time::sleep(OUTAGE_HOLD).await;
        return status_only(StatusCode::GATEWAY_TIMEOUT);
    }
    if scenario == Scenario::Refused {
        state.count(group, "reset");
        conn.reset();
        // Never answer: the connection task resets the socket instead.
        return std::future::pending::<Response>().await;
    }
    if let Some(delay) = scenario.delay() {
        // A client whose timeout is shorter than the delay hangs up, and hyper drops this
        // future mid-sleep: count it then as never answered, as `outage` does.
        let mut unanswered = CountIfDropped {
            state: &state,
            group,
            armed: true,
        };
        precise_sleep(delay).await;
        unanswered.armed = false;
    }
    let response = answer(&state, &scenario, &method, &path, &headers);
    state.count(group, response.status().as_str());
    response
}

/// Sleeps for `delay` to within tens of microseconds. tokio's timer ticks in milliseconds and
/// rounds up, which would add up to a millisecond to every injected delay, and a thread woken by
/// the kernel's timer can be late by a few hundred microseconds on a virtual machine; the
/// benchmark holds the exporter's reported latency against the injected one (BENCHMARKS.md). So
/// tokio sleeps until 2 ms before the deadline, a blocking thread sleeps until 0.3 ms before it
/// and spins the rest. Dropped mid-sleep (the client hung up), it returns at once; the blocking
/// thread finishes its last stretch of at most 2 ms.
pub async fn precise_sleep(delay: std::time::Duration) {
    use std::time::{Duration, Instant};
    const COARSE_MARGIN: Duration = Duration::from_millis(2);
    const SPIN: Duration = Duration::from_micros(300);
    let Some(deadline) = Instant::now().checked_add(delay) else {
        // Past the end of time (the control API bounds delays, so only a direct caller gets
        // here): no precision to keep.
        tokio::time::sleep(delay).await;
        return;
    };
    if delay > COARSE_MARGIN {
        tokio::time::sleep(delay - COARSE_MARGIN).await;
    }
    if Instant::now() >= deadline {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining > SPIN {
            std::thread::sleep(remaining - SPIN);
        }
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
    })
    .await;
}

/// Counts a request as "none" (never answered) if its handler is dropped while armed.
pub(super) struct CountIfDropped<'a> {
    pub(super) state: &'a SimState,
    pub(super) group: &'static str,
    pub(super) armed: bool,
}

impl Drop for CountIfDropped<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.count(self.group, "none");
        }
    }
}

fn answer(
    state: &SimState,
    scenario: &Scenario,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    match scenario {
        Scenario::Throttle => return status_only(StatusCode::TOO_MANY_REQUESTS),
        Scenario::ThrottlePartial { ratio } if fastrand::f64() < *ratio => {
            return status_only(StatusCode::TOO_MANY_REQUESTS);
        }
        Scenario::ServerError => {
            return status_only(
                StatusCode::from_u16(state.next_server_error()).expect("valid status"),
            );
        }
        _ => {}
    }

    if path == TOKEN_PATH {
        return token(state, method, headers);
    }
    if method != Method::GET && method != Method::HEAD {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    // Token check: a token that is present must be valid; without one, IMDSv1 must be allowed.
    match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) if state.token_valid(t) => {}
        Some(_) => return status_only(StatusCode::UNAUTHORIZED),
        None => {
            if matches!(scenario, Scenario::ImdsV2Only | Scenario::HopLimitV2Only) {
                return status_only(StatusCode::UNAUTHORIZED);
            }
        }
    }
    metadata(state, scenario, path)
}

fn token(state: &SimState, method: &Method, headers: &HeaderMap) -> Response {
    if method != Method::PUT {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    if headers.contains_key("x-forwarded-for") {
        return status_only(StatusCode::FORBIDDEN);
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=21600).contains(t));
    let Some(ttl) = ttl else {
        return status_only(StatusCode::BAD_REQUEST);
    };
    let token = state.issue_token(Duration::from_secs(ttl));
    (
        StatusCode::OK,
        [
            ("content-type", "text/plain".to_string()),
            ("server", "EC2ws".to_string()),
            (TTL_HEADER, ttl.to_string()),
        ],
        token,
    )
        .into_response()
}

fn metadata(state: &SimState, scenario: &Scenario, path: &str) -> Response {
    let role = state.config.role.as_str();
    let no_role = *scenario == Scenario::NoRole;
    let ok = |body: String| text(StatusCode::OK, body);
    match path {
        "/latest/meta-data" | "/latest/meta-data/" => ok([
            "ami-id",
            "hostname",
            "iam/",
            "instance-id",
            "instance-type",
            "local-ipv4",
            "placement/",
        ]
        .join("\n")),
        "/latest/meta-data/ami-id" => ok(IMAGE_ID.into()),
        "/latest/meta-data/instance-id" => ok(INSTANCE_ID.into()),
        "/latest/meta-data/instance-type" => ok(INSTANCE_TYPE.into()),
        "/latest/meta-data/local-ipv4" => ok("127.0.0.1".into()),
        "/latest/meta-data/hostname" => ok("ip-127-0-0-1.ec2.internal".into()),
        "/latest/meta-data/placement/region" => ok(REGION.into()),
        "/latest/meta-data/placement/availability-zone" => ok(AZ.into()),
        "/latest/meta-data/iam" | "/latest/meta-data/iam/" if !no_role => {
            ok("info\nsecurity-credentials/".into())
        }
        "/latest/meta-data/iam/info" if !no_role => ok(format!(
            "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"InstanceProfileArn\" : \"arn:aws:iam::{ACCOUNT_ID}:instance-profile/{role}\",\n  \"InstanceProfileId\" : \"AIPASIMULATED0000000\"\n}}",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        "/latest/dynamic/instance-identity/document" => ok(format!(
            "{{\n  \"accountId\" : \"{ACCOUNT_ID}\",\n  \"architecture\" : \"arm64\",\n  \"availabilityZone\" : \"{AZ}\",\n  \"imageId\" : \"{IMAGE_ID}\",\n  \"instanceId\" : \"{INSTANCE_ID}\",\n  \"instanceType\" : \"{INSTANCE_TYPE}\",\n  \"pendingTime\" : \"2026-11-22T00:00:00Z\",\n  \"privateIp\" : \"127.0.0.1\",\n  \"region\" : \"{REGION}\",\n  \"version\" : \"2017-09-30\"\n}}"
        )),
        CREDS_PREFIX if !no_role => ok(role.to_string()),
        p if !no_role && p.strip_prefix(CREDS_PREFIX) == Some(role) => credentials(state, scenario),
        _ => status_only(StatusCode::NOT_FOUND),
    }
}

fn credentials(state: &SimState, scenario: &Scenario) -> Response {
    let now = Utc::now();
    let generation = state.current_credentials(scenario, now);
    let mut doc = generation.document();
    if let Some(keys) = state.credentials_override() {
        doc = doc
            .replace(&generation.access_key_id(), &keys.access_key_id)
            .replace(&generation.secret_access_key(), &keys.secret_access_key)
            .replace(&generation.session_token(), &keys.token);
    }
    let body = match scenario {
        Scenario::CodeError => format!(
            "{{\n  \"Code\" : \"AssumeRoleUnauthorizedAccess\",\n  \"Message\" : \"EC2 cannot assume the role {}. Please see documentation at https://docs.aws.amazon.com/IAM/latest/UserGuide/RolesTroubleshooting.html#troubleshoot_iam-ec2_errors-info-doc.\",\n  \"LastUpdated\" : \"{}\"\n}}",
            state.config.role,
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Scenario::Malformed => "<html><body>Service Unavailable</body></html>\n".to_string(),
        Scenario::Truncated {
            mode: TruncateMode::Body,
        } => doc[..doc.len() / 3].to_string(),
        Scenario::Truncated {
            mode: TruncateMode::Transfer,
        } => return text(StatusCode::OK, Body::new(CutTransfer::new(doc))),
        Scenario::Huge => {
            // Valid JSON, 4 MiB: only a size limit stops a client from buffering all of it.
            let padding = "x".repeat(4 * 1024 * 1024);
            format!("{{\"Padding\":\"{padding}\",{}", &doc[1..])
        }
        _ => doc,
    };
    text(StatusCode::OK, body)
}

/// How long [`CutTransfer`] waits after its first part before the connection is closed.
const CUT_PAUSE: Duration = Duration::from_millis(20);

/// A body that announces `document`'s full length, sends its first third, then fails: hyper
/// then closes the connection (a FIN) without sending the rest, so the client sees the
/// `Content-Length` it was promised and a connection closed before it was met. The pause lets
/// hyper flush the first part to the socket (it does when the body is not ready) before the
/// error ends the connection.
pub(super) struct CutTransfer {
    declared: u64,
    first: Option<bytes::Bytes>,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl CutTransfer {
    pub(super) fn new(document: String) -> Self {
        let declared = document.len() as u64;
        let mut first = document.into_bytes();
        first.truncate(first.len() / 3);
        Self {
            declared,
            first: Some(first.into()),
            pause: Box::pin(tokio::time::sleep(CUT_PAUSE)),
        }
    }
}

impl hyper::body::Body for CutTransfer {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            // The pause counts from the first part, however late hyper asks for it.
            let end = tokio::time::Instant::now() + CUT_PAUSE;
            self.pause.as_mut().reset(end);
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(first))));
        }
        std::task::ready!(self.pause.as_mut().poll(cx));
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "truncated?mode=transfer: the transfer is cut here",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // What hyper writes as Content-Length: the whole document.
        hyper::body::SizeHint::with_exact(self.declared)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use crate::sim::config::SimConfig;

    fn options() -> SimConfig {
        SimConfig {
            scenario: "slow?delay=300ms".into(),
            ..SimConfig::default()
        }
    }

    #[tokio::test]
    async fn a_delayed_request_the_client_abandons_is_counted_as_never_answered() {
        let sim = super::super::start("127.0.0.1:0".parse().unwrap(), options())
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
        stream
            .write_all(
                b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream); // the client's timeout, shorter than the delay
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let requests = sim.state.state_json()["requests"].clone();
            if requests["role"]["none"] == 1 {
                assert!(requests["role"].get("200").is_none(), "{requests}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not counted: {requests}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sim.shutdown().await;
    }
}
