//! The IMDS probe: one run does what an SDK does when it creates a client.
//!
//! Owns the IMDS side: its configuration ([`ImdsConfig`]), the token PUT, the role and
//! credentials GETs, the hourly metadata GETs and the IMDSv1 posture check, each with its own
//! deadline and timed with a monotonic clock ([`ImdsProber`], an [`ImdsRun`] report), and the
//! series they are recorded in ([`metrics`]). The HTTP exchange itself is in [`http`], shared
//! with `check`; documents are parsed in [`super::credentials`].
//!
//! Layout: this file (config, the run, the scheduled probe), `http` (the one exchange with
//! IMDS and how it fails), `report` (what a run saw), `metrics` (the IMDS families).

pub mod http;
pub mod metrics;
pub mod report;
pub mod sdk;

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use zeroize::Zeroizing;

pub use self::http::{MAX_BODY_BYTES, RequestError};
pub use self::report::{ImdsRun, PhaseResult};

use self::http::{Answer, DocumentAnswer, ImdsHttp};
use self::metrics::ImdsFamilies;
use self::sdk::{DocShape, Exchange, RoleShape, Seen, TokenShape};
use super::credentials::{self, CredentialsDoc, KeyIdHasher, RotationTracker};
use super::{Failure, Prober, Schedule};
use crate::config::{ConfigError, positive};
use crate::labels::{Phase, Probe, Reason};
use crate::metrics::{Metrics, Recorded};

/// How often the slow-moving metadata (`iam/info`, the identity document) is fetched again.
pub const METADATA_REFRESH: Duration = Duration::from_secs(3600);

const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const ROLE_LIST_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const INFO_PATH: &str = "/latest/meta-data/iam/info";
const IDENTITY_PATH: &str = "/latest/dynamic/instance-identity/document";

/// The IMDS probe's settings (flags `--imds.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsConfig {
    /// Base URL, e.g. `http://169.254.169.254`, without a trailing slash.
    pub endpoint: String,
    /// Time between probe runs (before jitter).
    pub interval: Duration,
    /// Deadline of each request (connect + send + full body).
    pub timeout: Duration,
    /// Requested token lifetime: whole seconds, 1 s to 6 h.
    pub token_ttl: Duration,
}

impl ImdsConfig {
    /// IMDS on EC2, for real nodes only. Tests and demos always pass loopback.
    pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
    /// The SDKs' variable for another endpoint, honoured as they honour it.
    pub const ENDPOINT_VARIABLE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    /// The SDKs' default, so the exporter feels what they feel.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The longest token IMDS issues (6 h); also the default.
    pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(21600);

    /// The endpoint in force: the flag, then the SDKs' variable (`sdk_variable`, its value if
    /// set), then EC2's.
    pub fn endpoint_from(flag: Option<String>, sdk_variable: Option<String>) -> String {
        flag.or_else(|| sdk_variable.filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.to_string())
    }

    /// Checks what the types cannot; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("imds.interval", self.interval)?;
        positive("imds.timeout", self.timeout)?;
        if self.token_ttl.subsec_nanos() != 0
            || self.token_ttl.is_zero()
            || self.token_ttl > Self::MAX_TOKEN_TTL
        {
            return Err(ConfigError::new(
                "imds.token-ttl",
                format!(
                    "must be whole seconds from 1s to 21600s (6h), got {}",
                    crate::config::human(self.token_ttl)
                ),
            ));
        }
        Endpoint::parse(&self.endpoint)?;
        Ok(())
    }

    /// When the probe runs. A run makes at most six requests of `timeout` each; the deadline
    /// leaves room for all of them and is never shorter than the interval.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            deadline: (self.timeout * 7).max(self.interval),
        }
    }
}

impl Default for ImdsConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::DEFAULT_ENDPOINT.into(),
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            token_ttl: Self::MAX_TOKEN_TTL,
        }
    }
}

/// A checked endpoint: `http://host[:port]`, no path, no query.
struct Endpoint(reqwest::Url);

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Self, ConfigError> {
        let trimmed = endpoint.trim_end_matches('/');
        let bad = || {
            ConfigError::new(
                "imds.endpoint",
                format!(
                    "{:?} must be an http:// URL such as {}",
                    redacted_endpoint(endpoint),
                    ImdsConfig::DEFAULT_ENDPOINT
                ),
            )
        };
        let url = reqwest::Url::parse(trimmed).map_err(|_| bad())?;
        if url.scheme() != "http"
            || url.host().is_none()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(bad());
        }
        Ok(Self(url))
    }
}

/// The IMDSv2 session token. Redacted in `Debug`, wiped on drop.
pub struct SessionToken(Zeroizing<String>);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
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

/// The IMDS prober: an HTTP client plus the state that spans runs. `check` runs it once; the
/// exporter schedules it as an [`ImdsProbe`].
pub struct ImdsProber {
    config: ImdsConfig,
    http: ImdsHttp,
    hasher: KeyIdHasher,
    rotation: RotationTracker,
    /// When `iam/info` and the identity document are fetched next.
    info: Refresh,
    identity: Refresh,
    role: Option<String>,
    /// The role the last run's role list named, kept even when its credentials then failed.
    listed_role: Option<String>,
}

impl ImdsProber {
    /// A prober for `config`'s endpoint; an endpoint that is not a plain `http://host[:port]`
    /// URL is refused (shown redacted).
    pub fn new(mut config: ImdsConfig) -> Result<Self, ConfigError> {
        let Endpoint(url) = Endpoint::parse(&config.endpoint)?;
        config.endpoint = config.endpoint.trim_end_matches('/').to_string();
        let http = ImdsHttp::new(url, config.timeout).map_err(|e| {
            ConfigError::new("imds.endpoint", format!("cannot set up the client: {e}"))
        })?;
        Ok(Self {
            config,
            http,
            hasher: KeyIdHasher::default(),
            rotation: RotationTracker::default(),
            info: Refresh::default(),
            identity: Refresh::default(),
            role: None,
            listed_role: None,
        })
    }

    /// The client this prober uses, for requests of `check` beyond a run.
    pub fn http(&self) -> &ImdsHttp {
        &self.http
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
    ///
    /// The exporter's own chain is the IMDSv2 one every SDK tries first: token, role list,
    /// credentials. A few more requests are made only when an SDK verdict needs them: one
    /// repeat of a request answered 5xx or 401 (Rust and Go retry those), and the token-less
    /// credentials document when the token was not one every SDK can use and IMDSv1 named a
    /// role (botocore, JavaScript and Go fall back to IMDSv1).
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
        let (v1, v1_role) = self.check_v1(&mut run).await;
        run.v1_enabled = v1;
        let token_for_all = run.evidence.token_for_every_sdk();
        if let (false, Some(role)) = (token_for_all, v1_role) {
            let path = format!("{ROLE_LIST_PATH}{role}");
            let (_, seen) = self.document(&mut run, Phase::ImdsV1, &path, &[]).await;
            run.evidence.v1_credentials = Some(seen);
        }
        run.duration = start.elapsed();
        run
    }

    async fn fetch_token(&self, run: &mut ImdsRun) -> Result<SessionToken, Reason> {
        let ttl = self.config.token_ttl.as_secs().to_string();
        let headers = [(TOKEN_TTL_HEADER, ttl.as_str())];
        let mut attempt = self
            .timed(run, Phase::Token, Method::PUT, TOKEN_PATH, &headers)
            .await;
        run.evidence.token = Some(attempt.token_seen());
        if attempt.retried_by_sdks() {
            attempt = self
                .timed(run, Phase::Token, Method::PUT, TOKEN_PATH, &headers)
                .await;
            run.evidence.token_retry = Some(attempt.token_seen());
        }
        let answer = attempt.result?;
        // Lenient like botocore: a response without the TTL header is accepted.
        match token_text(&answer.body) {
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
        let headers = [(TOKEN_HEADER, token.0.as_str())];
        let mut attempt = self
            .timed(run, Phase::Role, Method::GET, ROLE_LIST_PATH, &headers)
            .await;
        run.evidence.role = Some(attempt.role_seen());
        if attempt.retried_by_sdks() {
            attempt = self
                .timed(run, Phase::Role, Method::GET, ROLE_LIST_PATH, &headers)
                .await;
            run.evidence.role_retry = Some(attempt.role_seen());
        }
        let answer = attempt.result?;
        let role = credentials::parse_role_list(&answer.body)
            .map_err(|e| record_error(run, Phase::Role, e.into()))?;
        self.listed_role = Some(role.clone());
        let path = format!("{ROLE_LIST_PATH}{role}");
        let (mut doc, seen) = self
            .document(run, Phase::Credentials, &path, &headers)
            .await;
        let retry = retried_status(&seen.exchange);
        run.evidence.credentials = Some(seen);
        if retry {
            let (again, seen) = self
                .document(run, Phase::Credentials, &path, &headers)
                .await;
            run.evidence.credentials_retry = Some(seen);
            doc = again;
        }
        let doc = doc?;
        run.rotation = self.rotation.observe(&doc, Utc::now());
        if self.role.as_deref() != Some(role.as_str()) {
            // A new role: the instance profile may have changed too.
            self.info = Refresh::default();
            self.role = Some(role.clone());
        }
        Ok((role, doc))
    }

    /// The credentials document, parsed as it streams in; the phase records any failure.
    async fn document(
        &self,
        run: &mut ImdsRun,
        phase: Phase,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Result<CredentialsDoc, Reason>, Seen<DocShape>) {
        let start = Instant::now();
        let (result, exchange) = self.http.send_document(path, headers, &self.hasher).await;
        let duration = start.elapsed();
        let (doc, shape) = match result {
            Ok(DocumentAnswer {
                status: 200,
                inspection: Some(Ok(inspection)),
            }) => (
                inspection.document.map_err(RequestError::from),
                inspection.shape,
            ),
            Ok(DocumentAnswer {
                status: 200,
                inspection: Some(Err(e)),
            }) => (Err(e.into()), DocShape::default()),
            Ok(DocumentAnswer { status, .. }) => {
                (Err(RequestError::Status(status)), DocShape::default())
            }
            Err(e) => (Err(e), DocShape::default()),
        };
        let (doc, error) = match doc {
            Ok(doc) => (Ok(doc), None),
            Err(e) => (Err(e.reason()), Some(e)),
        };
        run.phases.push(PhaseResult {
            phase,
            duration,
            error,
        });
        (doc, Seen { exchange, shape })
    }

    /// `iam/info` and the identity document: at start, then hourly. A definitive answer that is
    /// not the document (a 404, a 5xx, an unusable body) is not asked again at every run: the
    /// next try waits, five minutes at first and doubling up to the hour; only a request that
    /// got no answer at all is tried again at the next run.
    async fn refresh_metadata(&mut self, token: &SessionToken, run: &mut ImdsRun) {
        let headers = [(TOKEN_HEADER, token.0.as_str())];
        // No role attached means no iam/info either (404); that is the credentials' alarm.
        if self.role.is_some() && self.info.is_due() {
            let attempt = self
                .timed(run, Phase::Info, Method::GET, INFO_PATH, &headers)
                .await;
            let answered = attempt.answered();
            match attempt.result.map(|a| credentials::parse_info(&a.body)) {
                Ok(Ok(profile)) => {
                    run.profile = Some(profile);
                    self.info.fetched();
                }
                Ok(Err(e)) => {
                    record_error(run, Phase::Info, e.into());
                    self.info.refused();
                }
                Err(_) if answered => self.info.refused(),
                Err(_) => {}
            }
        }
        if self.identity.is_due() {
            let attempt = self
                .timed(run, Phase::Identity, Method::GET, IDENTITY_PATH, &headers)
                .await;
            let answered = attempt.answered();
            match attempt.result.map(|a| credentials::parse_identity(&a.body)) {
                Ok(Ok(id)) => {
                    run.identity = Some(id);
                    self.identity.fetched();
                }
                Ok(Err(e)) => {
                    record_error(run, Phase::Identity, e.into());
                    self.identity.refused();
                }
                Err(_) if answered => self.identity.refused(),
                Err(_) => {}
            }
        }
    }

    /// Does IMDSv1 answer a token-less GET? 401 (tokens required) and 403 (IMDS disabled) mean
    /// no; any other answer, 404 included, means yes. Transport failures leave it unknown. Also
    /// returns the role the token-less list names, for the SDKs that fall back to it.
    async fn check_v1(&self, run: &mut ImdsRun) -> (Option<bool>, Option<String>) {
        let start = Instant::now();
        let (result, exchange) = self.http.send(Method::GET, ROLE_LIST_PATH, &[]).await;
        let duration = start.elapsed();
        let role = match &result {
            Ok(a) if a.status == 200 => credentials::parse_role_list(&a.body).ok(),
            _ => None,
        };
        run.evidence.v1_role = Some(Seen {
            exchange,
            shape: match &result {
                Ok(a) if a.status == 200 => credentials::role_shape(&a.body),
                _ => RoleShape::default(),
            },
        });
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
        (verdict, role)
    }

    /// Makes one request and records its phase result; the answer only on HTTP 200.
    async fn timed(
        &self,
        run: &mut ImdsRun,
        phase: Phase,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Attempt {
        let start = Instant::now();
        let (result, exchange) = self.http.send(method, path, headers).await;
        let duration = start.elapsed();
        let (result, error) = match result {
            Ok(a) if a.status == 200 => (Ok(a), None),
            Ok(a) => {
                let e = RequestError::Status(a.status);
                (Err(e.reason()), Some(e))
            }
            Err(e) => (Err(e.reason()), Some(e)),
        };
        run.phases.push(PhaseResult {
            phase,
            duration,
            error,
        });
        Attempt { result, exchange }
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

/// One request of a run: the answer (on HTTP 200) or why not, and how the exchange went.
struct Attempt {
    result: Result<Answer, Reason>,
    exchange: Exchange,
}

impl Attempt {
    /// A status the Rust and Go SDKs retry: 5xx and 401.
    fn retried_by_sdks(&self) -> bool {
        retried_status(&self.exchange)
    }

    /// IMDS answered with a status (as opposed to a timeout or a failed connection).
    fn answered(&self) -> bool {
        matches!(self.exchange, Exchange::Answered { .. })
    }

    fn token_seen(&self) -> Seen<TokenShape> {
        Seen {
            exchange: self.exchange,
            shape: match &self.result {
                Ok(a) => TokenShape {
                    usable: token_text(&a.body).is_some(),
                    ttl_header: a.ttl_header,
                },
                Err(_) => TokenShape::default(),
            },
        }
    }

    fn role_seen(&self) -> Seen<RoleShape> {
        Seen {
            exchange: self.exchange,
            shape: match &self.result {
                Ok(a) => credentials::role_shape(&a.body),
                Err(_) => RoleShape::default(),
            },
        }
    }
}

fn retried_status(x: &Exchange) -> bool {
    matches!(x, Exchange::Answered { status, .. } if *status >= 500 || *status == 401)
}

/// The token in an answer's body: trimmed, non-empty, printable ASCII (valid as a header).
fn token_text(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

/// When a slow-moving document is fetched next.
#[derive(Debug, Default)]
struct Refresh {
    next: Option<Instant>,
    /// The wait after the next refusal.
    backoff: Option<Duration>,
}

impl Refresh {
    /// After a refusal, the first wait; it doubles up to [`METADATA_REFRESH`].
    const FIRST_BACKOFF: Duration = Duration::from_secs(300);

    fn is_due(&self) -> bool {
        self.next.is_none_or(|at| Instant::now() >= at)
    }

    fn fetched(&mut self) {
        self.next = Some(Instant::now() + METADATA_REFRESH);
        self.backoff = None;
    }

    /// IMDS answered, but not with the document.
    fn refused(&mut self) {
        let wait = self.backoff.unwrap_or(Self::FIRST_BACKOFF);
        self.next = Some(Instant::now() + wait);
        self.backoff = Some((wait * 2).min(METADATA_REFRESH));
    }
}

/// The IMDS probe as the exporter schedules it: the prober and the series it records in.
pub struct ImdsProbe {
    prober: ImdsProber,
    families: Recorded<ImdsFamilies>,
}

impl ImdsProbe {
    /// The prober for `config`, with its series registered in `metrics`.
    pub fn new(config: ImdsConfig, metrics: &Metrics) -> Result<Self, ConfigError> {
        Ok(Self {
            prober: ImdsProber::new(config)?,
            families: metrics.register(ImdsFamilies::new()),
        })
    }
}

impl Prober for ImdsProbe {
    const PROBE: Option<Probe> = Some(Probe::Imds);
    const FAILING: &'static str =
        "IMDS probe failing: applications creating AWS clients now may get no credentials";
    const RECOVERED: &'static str = "IMDS probe succeeding again";
    type Report = ImdsRun;

    fn run(&mut self) -> impl std::future::Future<Output = ImdsRun> + Send {
        self.prober.run()
    }

    fn cut_off(&mut self, deadline: Duration) -> ImdsRun {
        ImdsRun {
            duration: deadline,
            outcome: Some(Err(Reason::Timeout)),
            ..ImdsRun::default()
        }
    }

    fn record(&mut self, run: &ImdsRun, _now: DateTime<Utc>) -> Option<Failure> {
        for p in &run.phases {
            match &p.error {
                Some(e) => tracing::debug!(
                    phase = p.phase.as_str(),
                    reason = e.reason().as_str(),
                    duration = ?p.duration,
                    error = %e,
                    "IMDS request failed"
                ),
                None => {
                    tracing::trace!(phase = p.phase.as_str(), duration = ?p.duration, "IMDS request ok")
                }
            }
        }
        if let Some(r) = &run.rotation {
            tracing::info!(lead_seconds = r.lead_seconds, "credentials rotated");
        }
        self.families.update().record(run);
        let reason = run.failure_reason()?;
        // The phase whose error decided the run, for the log line.
        let detail = run
            .phases
            .iter()
            .find_map(|p| {
                let e = p.error.as_ref().filter(|e| e.reason() == reason)?;
                Some(format!("{}: {e}", p.phase.as_str()))
            })
            .unwrap_or_else(|| "the run did not finish within its deadline".into());
        Some(Failure { reason, detail })
    }
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
                ..ImdsConfig::default()
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
            ..ImdsConfig::default()
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
            (RequestError::BodyTooLarge(65536), "invalid_response"),
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
