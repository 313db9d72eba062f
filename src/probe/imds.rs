//! The IMDS probe: one run does what an SDK does when it creates a client.
//!
//! Owns the HTTP side: the token PUT, the role and credentials GETs, the hourly metadata GETs and
//! the IMDSv1 posture check, each with its own deadline, timed with a monotonic clock. Returns an
//! [`ImdsRun`] report; it does not touch metrics (the exporter records the report) and does not
//! parse documents itself (see [`super::credentials`]).
//!
//! Deliberate differences from a general HTTP client, all of them what a careful SDK does:
//! no proxy (IMDS is link-local; `HTTP_PROXY` would send it to the proxy), no redirects (a
//! redirect from 169.254.169.254 is an attack or a misconfigured interceptor), a body cap, and a
//! fresh connection per request (no pooling), so that every run measures connection set-up as a
//! new SDK client would and a stuck connection cannot carry over between runs.
//!
//! Because of those differences the requests are made with hyper's connection API directly: one
//! TCP connection, one HTTP/1.1 exchange, driven in the probe's own task and closed when the body
//! is read. A general client (pool, proxy and redirect machinery, URL parsing per request, a
//! spawned connection task, a graceful shutdown per connection) cost about a third of the CPU of
//! a run for features the probe turns off (see BENCHMARKS.md).

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::credentials::{
    self, CredentialsDoc, Identity, InstanceProfile, KeyIdHasher, Rotation, RotationTracker,
};
use super::{Phase, Reason};

/// Bodies larger than this are refused: the largest real IMDS document is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How often the slow-moving metadata (`iam/info`, the identity document) is fetched again.
pub const METADATA_REFRESH: Duration = Duration::from_secs(3600);

const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const ROLE_LIST_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const INFO_PATH: &str = "/latest/meta-data/iam/info";
const IDENTITY_PATH: &str = "/latest/dynamic/instance-identity/document";

#[derive(Debug, Clone)]
pub struct ImdsConfig {
    /// Base URL, e.g. `http://169.254.169.254`, without a trailing slash.
    pub endpoint: String,
    /// Deadline of each request (connect + send + full body).
    pub timeout: Duration,
    /// Requested token lifetime in seconds (1..=21600).
    pub token_ttl_seconds: u32,
}

/// Why one request failed. Carries context for the log line; never body text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Parse(#[from] credentials::ParseError),
}

impl RequestError {
    pub fn reason(&self) -> Reason {
        match self {
            RequestError::Timeout(_) => Reason::Timeout,
            RequestError::Connect(_) => Reason::Connect,
            RequestError::Status(s) => Reason::from_status(*s),
            RequestError::BodyTooLarge | RequestError::Invalid(_) => Reason::InvalidResponse,
            RequestError::Parse(e) => e.reason(),
        }
    }
}

/// The IMDSv2 session token. Redacted in `Debug`, wiped on drop.
pub struct SessionToken(Zeroizing<String>);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A response whose body is wiped when it is dropped.
struct Answer {
    status: u16,
    body: Zeroizing<Vec<u8>>,
}

/// The outcome of one request of a run.
#[derive(Debug)]
pub struct PhaseResult {
    pub phase: Phase,
    pub duration: Duration,
    pub error: Option<RequestError>,
}

/// Everything one run saw, for the exporter to record.
#[derive(Debug, Default)]
pub struct ImdsRun {
    pub started_at: Option<DateTime<Utc>>,
    pub duration: Duration,
    /// Every request made, in order.
    pub phases: Vec<PhaseResult>,
    /// The credential chain's outcome: `Ok` with role and document, or the first failure.
    pub outcome: Option<Result<(String, CredentialsDoc), Reason>>,
    pub rotation: Option<Rotation>,
    pub profile: Option<InstanceProfile>,
    pub identity: Option<Identity>,
    /// `Some(true)` if a token-less GET was answered, `Some(false)` if refused, `None` if unknown.
    pub v1_enabled: Option<bool>,
}

impl ImdsRun {
    pub fn success(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }

    pub fn failure_reason(&self) -> Option<Reason> {
        match self.outcome {
            Some(Err(r)) => Some(r),
            _ => None,
        }
    }
}

/// The endpoint as it may be shown (logs, the landing page, errors): user information, if a
/// URL carries any, is replaced by `***` (IMDS takes none, but a password must never be printed).
pub fn redacted_endpoint(endpoint: &str) -> String {
    // Everything up to the last `@` goes, wherever it is: a password may itself hold a `/`
    // (`http://user:pa/ss@host` does not even parse), and over-redacting a path is harmless.
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let rest = match rest.rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{rest}")
}

/// Errors that stop start-up: a bad endpoint (shown redacted).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--imds.endpoint {0:?} must be an http:// URL such as http://169.254.169.254")]
    Endpoint(String),
}

/// The IMDS prober: an HTTP client plus the state that spans runs.
pub struct ImdsProber {
    config: ImdsConfig,
    target: Target,
    hasher: KeyIdHasher,
    rotation: RotationTracker,
    metadata_fetched_at: Option<Instant>,
    role: Option<String>,
    /// The role the last run's role list named, kept even when its credentials then failed.
    listed_role: Option<String>,
}

impl ImdsProber {
    pub fn new(mut config: ImdsConfig) -> Result<Self, ConfigError> {
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|_| ConfigError::Endpoint(redacted_endpoint(&config.endpoint)))?;
        if url.scheme() != "http" || url.host().is_none() || url.path() != "/" {
            return Err(ConfigError::Endpoint(redacted_endpoint(&config.endpoint)));
        }
        config.endpoint = endpoint;
        let target = Target::from_url(&url)
            .ok_or_else(|| ConfigError::Endpoint(redacted_endpoint(&config.endpoint)))?;
        Ok(Self {
            config,
            target,
            hasher: KeyIdHasher::default(),
            rotation: RotationTracker::default(),
            metadata_fetched_at: None,
            role: None,
            listed_role: None,
        })
    }

    pub fn config(&self) -> &ImdsConfig {
        &self.config
    }

    /// The role name the last [`run`](Self::run) read from the role list, whether or not its
    /// credentials then succeeded; `None` when the list was not read.
    pub fn listed_role(&self) -> Option<&str> {
        self.listed_role.as_deref()
    }

    /// One probe run. Never fails as a whole: every failure is in the report.
    pub async fn run(&mut self) -> ImdsRun {
        let start = Instant::now();
        let mut run = ImdsRun {
            started_at: Some(Utc::now()),
            ..ImdsRun::default()
        };
        self.listed_role = None;
        let token = self.fetch_token(&mut run).await;
        run.outcome = Some(match &token {
            Ok(token) => self.credential_chain(token, &mut run).await,
            Err(reason) => Err(*reason),
        });
        if let Ok(token) = &token {
            self.refresh_metadata(token, &mut run).await;
        }
        run.v1_enabled = self.check_v1(&mut run).await;
        run.duration = start.elapsed();
        run
    }

    async fn fetch_token(&self, run: &mut ImdsRun) -> Result<SessionToken, Reason> {
        let ttl = self.config.token_ttl_seconds.to_string();
        let answer = self
            .timed(
                run,
                Phase::Token,
                Method::PUT,
                TOKEN_PATH,
                &[(TOKEN_TTL_HEADER, &ttl)],
            )
            .await?;
        // Lenient like botocore: a response without the TTL header is accepted.
        // Trimmed in place: the only copy of the token outside the zeroized body is the one kept.
        let token = std::str::from_utf8(&answer.body)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
        match token {
            Some(t) => Ok(SessionToken(Zeroizing::new(t.to_string()))),
            None => Err(record_error(
                run,
                Phase::Token,
                RequestError::Invalid("token is empty or not printable ASCII".into()),
            )),
        }
    }

    async fn credential_chain(
        &mut self,
        token: &SessionToken,
        run: &mut ImdsRun,
    ) -> Result<(String, CredentialsDoc), Reason> {
        let t = token.0.as_str();
        let answer = self
            .timed(
                run,
                Phase::Role,
                Method::GET,
                ROLE_LIST_PATH,
                &[(TOKEN_HEADER, t)],
            )
            .await?;
        let role = credentials::parse_role_list(&answer.body)
            .map_err(|e| record_error(run, Phase::Role, e.into()))?;
        self.listed_role = Some(role.clone());
        let path = format!("{ROLE_LIST_PATH}{role}");
        let answer = self
            .timed(
                run,
                Phase::Credentials,
                Method::GET,
                &path,
                &[(TOKEN_HEADER, t)],
            )
            .await?;
        let doc = credentials::parse_credentials(&answer.body, &self.hasher)
            .map_err(|e| record_error(run, Phase::Credentials, e.into()))?;
        drop(answer); // wipes the raw document, secrets included
        run.rotation = self.rotation.observe(&doc, Utc::now());
        if self.role.as_deref() != Some(role.as_str()) {
            // A new role: the instance profile may have changed too.
            self.metadata_fetched_at = None;
            self.role = Some(role.clone());
        }
        Ok((role, doc))
    }

    /// `iam/info` and the identity document: at start, hourly, and again after a failure.
    async fn refresh_metadata(&mut self, token: &SessionToken, run: &mut ImdsRun) {
        if self
            .metadata_fetched_at
            .is_some_and(|at| at.elapsed() < METADATA_REFRESH)
        {
            return;
        }
        let t = token.0.as_str();
        let mut ok = true;
        // No role attached means no iam/info either (404); that is the credentials' alarm.
        if self.role.is_some() {
            if let Ok(answer) = self
                .timed(
                    run,
                    Phase::Info,
                    Method::GET,
                    INFO_PATH,
                    &[(TOKEN_HEADER, t)],
                )
                .await
            {
                match credentials::parse_info(&answer.body) {
                    Ok(p) => run.profile = Some(p),
                    Err(e) => {
                        record_error(run, Phase::Info, e.into());
                        ok = false;
                    }
                }
            } else {
                ok = false;
            }
        }
        match self
            .timed(
                run,
                Phase::Identity,
                Method::GET,
                IDENTITY_PATH,
                &[(TOKEN_HEADER, t)],
            )
            .await
        {
            Ok(answer) => match credentials::parse_identity(&answer.body) {
                Ok(id) => run.identity = Some(id),
                Err(e) => {
                    record_error(run, Phase::Identity, e.into());
                    ok = false;
                }
            },
            Err(_) => ok = false,
        }
        if ok {
            self.metadata_fetched_at = Some(Instant::now());
        }
    }

    /// Does IMDSv1 answer a token-less GET? 401 (tokens required) and 403 (IMDS disabled) mean
    /// no; any other answer, 404 included, means yes. Transport failures leave it unknown.
    async fn check_v1(&self, run: &mut ImdsRun) -> Option<bool> {
        let start = Instant::now();
        let result = self.request(Method::GET, ROLE_LIST_PATH, &[]).await;
        let duration = start.elapsed();
        let (verdict, error) = match result {
            Ok(a) if a.status == 401 || a.status == 403 => (Some(false), None),
            Ok(a) if a.status == 200 || a.status == 404 => (Some(true), None),
            Ok(a) => (None, Some(RequestError::Status(a.status))),
            Err(e) => (None, Some(e)),
        };
        run.phases.push(PhaseResult {
            phase: Phase::ImdsV1,
            duration,
            error,
        });
        verdict
    }

    /// Makes one request, records its phase result, and returns the answer only on HTTP 200.
    async fn timed(
        &self,
        run: &mut ImdsRun,
        phase: Phase,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, Reason> {
        let start = Instant::now();
        let result = match self.request(method, path, headers).await {
            Ok(a) if a.status == 200 => Ok(a),
            Ok(a) => Err(RequestError::Status(a.status)),
            Err(e) => Err(e),
        };
        let duration = start.elapsed();
        match result {
            Ok(answer) => {
                run.phases.push(PhaseResult {
                    phase,
                    duration,
                    error: None,
                });
                Ok(answer)
            }
            Err(e) => {
                let reason = e.reason();
                run.phases.push(PhaseResult {
                    phase,
                    duration,
                    error: Some(e),
                });
                Err(reason)
            }
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, RequestError> {
        let deadline = self.config.timeout;
        // One deadline from connect to the end of the body, as an SDK's read timeout.
        match tokio::time::timeout(deadline, self.exchange(method, path, headers)).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout(deadline)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, RequestError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.target.authority)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(ACCEPT, "*/*");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| RequestError::Invalid(format!("cannot build the request: {e}")))?;
        let stream = self.target.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport_error(&e))?;
        let exchange = async move {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| transport_error(&e))?;
            let status = resp.status().as_u16();
            let declared = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(RequestError::BodyTooLarge);
            }
            let mut incoming = resp.into_body();
            // Sized once, so that growing it never frees an unwiped copy of a credentials
            // document: the declared length when there is one, else the cap. (hyper's own read
            // buffer and the chunks it hands over are not ours to wipe.)
            let capacity = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
            let mut body = Zeroizing::new(Vec::with_capacity(capacity));
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| transport_error(&e))?;
                if let Ok(chunk) = frame.into_data() {
                    if body.len() + chunk.len() > capacity {
                        // Longer than declared (or than the cap): not a body we accept.
                        return Err(RequestError::BodyTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(Answer { status, body })
        };
        // The connection is driven here rather than in a spawned task; dropping it when the
        // exchange ends closes the socket.
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            biased;
            answer = &mut exchange => answer,
            ended = &mut conn => match ended {
                // Closed cleanly: whatever the exchange still needs is buffered.
                Ok(()) => exchange.await,
                Err(e) => Err(transport_error(&e)),
            },
        }
    }
}

const USER_AGENT_VALUE: &str = concat!("imds_exporter/", env!("CARGO_PKG_VERSION"));

/// Where the requests go: the endpoint's `Host` header value and how to reach it.
#[derive(Debug, Clone)]
struct Target {
    /// `host[:port]` as written in the endpoint (brackets kept for IPv6).
    authority: String,
    host: TargetHost,
    port: u16,
}

#[derive(Debug, Clone)]
enum TargetHost {
    Ip(std::net::IpAddr),
    /// Resolved at every connection, as an SDK does.
    Name(String),
}

impl Target {
    fn from_url(url: &reqwest::Url) -> Option<Self> {
        let host_str = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let bare = host_str.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => TargetHost::Ip(ip),
            Err(_) => TargetHost::Name(bare.to_string()),
        };
        Some(Self {
            authority,
            host,
            port,
        })
    }

    async fn connect(&self) -> Result<TcpStream, RequestError> {
        let stream = match &self.host {
            TargetHost::Ip(ip) => TcpStream::connect((*ip, self.port)).await,
            TargetHost::Name(name) => TcpStream::connect((name.as_str(), self.port)).await,
        }
        .map_err(|e| RequestError::Connect(e.to_string()))?;
        // Requests are written in one piece; do not let Nagle hold the last segment.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Classifies a failed exchange. The innermost cause says what happened ("connection refused",
/// "connection reset"); hyper errors never carry bodies, and our URLs carry no secrets. An answer
/// that is not HTTP at all (garbage from an interceptor) is a bad response, not a bad connection.
fn transport_error(e: &hyper::Error) -> RequestError {
    let not_http = e.is_parse() || e.is_parse_status() || e.is_parse_too_large();
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if not_http {
        RequestError::Invalid(format!("not an HTTP response: {cause}"))
    } else {
        RequestError::Connect(cause.to_string())
    }
}

/// Records a failure found after the request itself succeeded (a bad body) on the phase's
/// result, replacing its `None`, and returns the reason.
fn record_error(run: &mut ImdsRun, phase: Phase, error: RequestError) -> Reason {
    let reason = error.reason();
    if let Some(last) = run.phases.iter_mut().rev().find(|p| p.phase == phase) {
        last.error = Some(error);
    }
    reason
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_are_shown_without_user_information() {
        for (given, shown) in [
            ("http://169.254.169.254", "http://169.254.169.254"),
            (
                "http://user:s3cret@127.0.0.1:1338",
                "http://***@127.0.0.1:1338",
            ),
            ("http://a@b@127.0.0.1:80", "http://***@127.0.0.1:80"),
            ("http://user:pa/ss@127.0.0.1", "http://***@127.0.0.1"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(super::redacted_endpoint(given), shown);
        }
        for endpoint in [
            "https://user:s3cret@127.0.0.1",
            "http://user:s3/cret@127.0.0.1",
        ] {
            let err = ImdsProber::new(ImdsConfig {
                endpoint: endpoint.into(),
                timeout: Duration::from_secs(1),
                token_ttl_seconds: 60,
            })
            .err()
            .expect("refused");
            assert!(!err.to_string().contains("cret"), "{err}");
        }
    }

    use super::*;

    fn config(endpoint: &str) -> ImdsConfig {
        ImdsConfig {
            endpoint: endpoint.to_string(),
            timeout: Duration::from_secs(1),
            token_ttl_seconds: 21600,
        }
    }

    #[test]
    fn endpoints_must_be_plain_http_base_urls() {
        for ok in [
            "http://169.254.169.254",
            "http://[fd00:ec2::254]",
            "http://127.0.0.1:8080/",
        ] {
            assert!(ImdsProber::new(config(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://x/latest",
            "ftp://x",
            "",
        ] {
            let err = ImdsProber::new(config(bad)).err().expect(bad);
            assert!(err.to_string().contains("--imds.endpoint"), "{err}");
        }
    }

    #[test]
    fn the_session_token_is_redacted_in_debug() {
        let t = SessionToken(Zeroizing::new("AQAEAsecret".to_string()));
        assert_eq!(format!("{t:?}"), "SessionToken(<redacted>)");
    }

    #[test]
    fn request_errors_map_to_reasons() {
        let cases = [
            (RequestError::Timeout(Duration::from_secs(1)), "timeout"),
            (
                RequestError::Connect("connection refused".into()),
                "connect",
            ),
            (RequestError::Status(429), "throttled"),
            (RequestError::Status(302), "http_other"),
            (RequestError::BodyTooLarge, "invalid_response"),
            (
                RequestError::Parse(credentials::ParseError::CodeNotSuccess { code: "X".into() }),
                "code_not_success",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason().as_str(), want, "{e}");
        }
    }
}
