//! The IMDS probe: one run does what an SDK does when it creates a client.
//!
//! Owns the IMDS side: the token PUT, the role and credentials GETs, the hourly metadata GETs and
//! the IMDSv1 posture check, each with its own deadline and timed with a monotonic clock
//! ([`ImdsProber`], an [`ImdsRun`] report), what each SDK family would make of them ([`sdk`]), the
//! outage watch between runs ([`watch`]), and the series they are recorded in ([`metrics`]). The
//! HTTP exchange itself is in [`http`], shared with `check`; documents are parsed in
//! [`super::credentials`].
//!
//! Layout: this file (the run, the scheduled probe), `config` (`ImdsConfig`, the endpoint's
//! check), `protocol` (paths, headers, the token), `http` (the one exchange with IMDS and how it
//! fails), `report` (what a run saw), `sdk` (the SDK families' replay), `watch` (the outage
//! watch), `metrics` (the IMDS families).

pub mod config;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod sdk;
pub mod watch;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use zeroize::Zeroizing;

pub use self::config::{ImdsConfig, redacted_endpoint};
pub use self::http::{MAX_BODY_BYTES, RequestError};
pub use self::protocol::SessionToken;
pub use self::report::{ImdsRun, PhaseResult};

use self::config::Endpoint;
use self::http::{Answer, DocumentAnswer, ImdsHttp};
use self::metrics::ImdsFamilies;
use self::protocol::{
    IDENTITY_PATH, INFO_PATH, ROLE_LIST_PATH, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER,
    token_text,
};
use self::sdk::{DocShape, Exchange, RoleShape, Seen, TokenShape};
use self::watch::{OutageWatch, WatchTarget};
use super::credentials::{self, CredentialsDoc, KeyIdHasher, RotationTracker};
use super::{Failure, Prober};
use crate::config::ConfigError;
use crate::labels::{Phase, Probe, Reason, Sdk};
use crate::metrics::{Metrics, Recorded};

/// How often the slow-moving metadata (`iam/info`, the identity document) is fetched again.
pub const METADATA_REFRESH: Duration = Duration::from_secs(3600);

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
    /// Where the token and role of a successful run go, for the outage watch.
    watch: Option<WatchTarget>,
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
            watch: None,
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
    /// repeat of a request answered 5xx or 401 (Rust and Go retry those), the token-less
    /// credentials document when the token was not one every SDK can use and IMDSv1 named a
    /// role (botocore, JavaScript and Go fall back to IMDSv1), and, when the token answer was a
    /// 200 with an empty body, the role list asked with that empty token (every SDK sends it).
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
        let last_token = run.evidence.token_retry.or(run.evidence.token);
        if last_token.is_some_and(|t| t.shape.empty) {
            self.empty_token_evidence(&mut run).await;
        }
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
        if let Some(watch) = &self.watch {
            watch.set(token, &role);
        }
        run.rotation = self.rotation.observe(&doc, Utc::now());
        if self.role.as_deref() != Some(role.as_str()) {
            // A new role: the instance profile may have changed too.
            self.info = Refresh::default();
            self.role = Some(role.clone());
        }
        Ok((role, doc))
    }

    /// What the SDKs get with the empty token they were given: the role list asked with it (and
    /// repeated after a 5xx or 401), and the document, should IMDS name a role. Evidence only:
    /// the run has failed at the token, and nothing here changes its outcome.
    async fn empty_token_evidence(&self, run: &mut ImdsRun) {
        let headers = [(TOKEN_HEADER, "")];
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
        let Some(role) = attempt
            .result
            .ok()
            .and_then(|a| credentials::parse_role_list(&a.body).ok())
        else {
            return;
        };
        let path = format!("{ROLE_LIST_PATH}{role}");
        let (_, seen) = self
            .document(run, Phase::Credentials, &path, &headers)
            .await;
        let retry = retried_status(&seen.exchange);
        run.evidence.credentials = Some(seen);
        if retry {
            let (_, seen) = self
                .document(run, Phase::Credentials, &path, &headers)
                .await;
            run.evidence.credentials_retry = Some(seen);
        }
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
                    empty: a.body.is_empty(),
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
    /// The last verdicts, to log a family's change once.
    verdicts: Option<[(Sdk, sdk::Verdict); 4]>,
}

impl ImdsProbe {
    /// The prober for `config`, with its series registered in `metrics`.
    pub fn new(config: ImdsConfig, metrics: &Metrics) -> Result<Self, ConfigError> {
        let families = metrics.register(ImdsFamilies::new(&config.sdks, metrics));
        Ok(Self {
            prober: ImdsProber::new(config)?,
            families,
            verdicts: None,
        })
    }

    /// The outage watch for this probe's endpoint: it checks with the token and role of this
    /// probe's last successful run.
    pub fn outage_watch(&mut self, metrics: &Metrics) -> Result<OutageWatch, ConfigError> {
        let target = WatchTarget::default();
        self.prober.watch = Some(target.clone());
        OutageWatch::new(&self.prober.config, target, metrics)
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
        let verdicts = sdk::verdicts(&run.evidence);
        for (i, (family, v)) in verdicts.iter().enumerate() {
            let before = self.verdicts.map(|old| old[i].1.available);
            if before != Some(v.available) && self.prober.config.sdks.contains(family) {
                tracing::info!(
                    sdk = family.as_str(),
                    available = v.available,
                    wait_seconds = v.wait_seconds,
                    "a new client of this SDK family would now {}",
                    if v.available {
                        "get credentials"
                    } else {
                        "get no credentials"
                    }
                );
            }
        }
        self.verdicts = Some(verdicts);
        {
            let families = self.families.update();
            families.record(run);
            families.record_verdicts(&verdicts);
        }
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
