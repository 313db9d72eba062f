//! The container credential probe (`probe="container"`): the credential provider the SDKs use
//! in an EKS pod with a Pod Identity association (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, the agent
//! on 169.254.170.23 or `[fd00:ec2::23]`, and a token in `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`)
//! and in an ECS task (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on 169.254.170.2), done as
//! botocore's `ContainerProvider` does it.
//!
//! Owns `ContainerConfig` (flags `--container.*`, and the SDK variables that switch it on), the
//! allowed-hosts rule, the run (token read, GET, retries) and its report. It records into the
//! credential families shared with the IMDS probe ([`super::credential_families`]), so that
//! latency, failures by phase and reason, expiry and rotation read the same for both. The
//! request itself is the IMDS probe's exchange ([`super::imds::http::ImdsHttp`]): no proxy, no
//! redirect, a fresh connection, the document parsed as it streams in.
//!
//! botocore's behaviour (1.44, `credentials.ContainerProvider`, `utils.ContainerMetadataFetcher`),
//! which the defaults follow: the relative URI wins over the full one; the token file wins over
//! the token variable, is read at every fetch (it rotates) and sent as it is in `Authorization`
//! (a line break in it is refused, not trimmed); a 2 s timeout per attempt, 3 attempts, 1 s
//! between them, on any non-200 answer, a body that is not JSON, a timeout or a connection
//! failure; a JSON body without the fields fails at once. Plain `http://` only to loopback,
//! 169.254.170.2, 169.254.170.23, `fd00:ec2::23` and `localhost`; `https://` to any host. Other
//! SDKs differ (JavaScript v3's `fromContainerMetadata`: 1 s, no retry; Rust's `aws-config`:
//! its own timeouts and retry policy): the exporter measures botocore's, the strictest wait that
//! still retries.
//!
//! Secrets: the authorization token is read into a wiping buffer, sent, and dropped; it is never
//! logged, exported or shown (`TokenSource`'s `Debug` is redacted). The document's secrets are
//! skipped unread, as for IMDS.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::credential_families::CredentialFamilies;
use super::credentials::{CredentialsDoc, KeyIdHasher, Rotation, RotationTracker};
use super::imds::http::{DocumentAnswer, ImdsHttp, RequestError};
use super::imds::redacted_endpoint;
use super::{Failure, Prober, Schedule};
use crate::config::ConfigError;
use crate::labels::{Phase, Probe, Reason};
use crate::metrics::{Metrics, Recorded};

/// Where the authorization token comes from. `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Read at every run (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, `--container.token-file`).
    File(PathBuf),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`: fixed for the life of the process.
    Value(Zeroizing<String>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
            TokenSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl TokenSource {
    /// How the landing page shows it.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => p.display().to_string(),
            TokenSource::Value(_) => format!("(${})", ContainerConfig::TOKEN_VARIABLE),
        }
    }
}

/// The container probe's settings (flags `--container.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The full URL the credentials are fetched from.
    pub endpoint: String,
    /// `None`: no `Authorization` header (ECS's relative URI needs none).
    pub token: Option<TokenSource>,
    pub interval: Duration,
    /// Deadline of each attempt.
    pub timeout: Duration,
    /// Attempts per run, [`Self::RETRY_PAUSE`] apart.
    pub attempts: u32,
}

impl ContainerConfig {
    pub const FULL_URI_VARIABLE: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    pub const RELATIVE_URI_VARIABLE: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
    pub const TOKEN_FILE_VARIABLE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    pub const TOKEN_VARIABLE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    /// ECS's endpoint, to which the relative URI is appended (botocore's `IP_ADDRESS`).
    pub const ECS_HOST: &str = "http://169.254.170.2";
    /// The EKS Pod Identity agent's URL, used when only `--container.token-file` is given.
    pub const POD_IDENTITY_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";
    /// Hosts allowed over plain HTTP besides loopback addresses (botocore's `_ALLOWED_HOSTS`).
    pub const ALLOWED_HOSTS: [&str; 4] = [
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::23",
        "localhost",
    ];
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    /// botocore's `TIMEOUT_SECONDS`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// botocore's `RETRY_ATTEMPTS`.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
    /// botocore's `SLEEP_TIME` between attempts.
    pub const RETRY_PAUSE: Duration = Duration::from_secs(1);
    pub const MAX_ATTEMPTS: u32 = 10;

    /// The probe's configuration from its flags and the SDK variables (`env` reads one), or
    /// `None` when neither names an endpoint nor a token file: then the probe is off and has no
    /// series. A flag wins over a variable; among the variables, botocore's order.
    pub fn resolve(
        endpoint_flag: Option<String>,
        token_file_flag: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<ContainerConfig> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let endpoint = endpoint_flag
            .or_else(|| {
                env(Self::RELATIVE_URI_VARIABLE)
                    .map(|relative| format!("{}{relative}", Self::ECS_HOST))
            })
            .or_else(|| env(Self::FULL_URI_VARIABLE));
        let token = token_file_flag
            .map(TokenSource::File)
            .or_else(|| env(Self::TOKEN_FILE_VARIABLE).map(|p| TokenSource::File(p.into())))
            .or_else(|| env(Self::TOKEN_VARIABLE).map(|t| TokenSource::Value(Zeroizing::new(t))));
        let endpoint = match (endpoint, &token) {
            (Some(e), _) => e,
            (None, Some(TokenSource::File(_))) => Self::POD_IDENTITY_ENDPOINT.to_string(),
            (None, _) => return None,
        };
        Some(ContainerConfig {
            endpoint,
            token,
            ..ContainerConfig::default()
        })
    }

    /// Checks what the types cannot; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("container.interval", self.interval)?;
        crate::config::timeout("container.timeout", self.timeout)?;
        if self.attempts == 0 || self.attempts > Self::MAX_ATTEMPTS {
            return Err(ConfigError::new(
                "container.attempts",
                format!(
                    "must be from 1 to {}, got {}",
                    Self::MAX_ATTEMPTS,
                    self.attempts
                ),
            ));
        }
        allowed_url(&self.endpoint).map(|_| ())
    }

    /// Every attempt with its timeout and the pauses between them, and a second to spare.
    pub fn schedule(&self) -> Schedule {
        let attempts = self.attempts.max(1);
        Schedule {
            interval: self.interval,
            deadline: (self.timeout * attempts
                + Self::RETRY_PAUSE * (attempts - 1)
                + Duration::from_secs(1))
            .max(self.interval),
        }
    }
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::POD_IDENTITY_ENDPOINT.into(),
            token: None,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            attempts: Self::DEFAULT_ATTEMPTS,
        }
    }
}

/// The endpoint, if the SDKs would use it: `https://` to any host; `http://` only to a loopback
/// address or one of [`ContainerConfig::ALLOWED_HOSTS`]. botocore refuses any other with
/// "Unsupported host": every client in the pod would fail, so the exporter refuses to start.
pub fn allowed_url(endpoint: &str) -> Result<reqwest::Url, ConfigError> {
    let shown = redacted_endpoint(endpoint);
    let bad = |why: String| ConfigError::new("container.endpoint", why);
    let url =
        reqwest::Url::parse(endpoint.trim()).map_err(|_| bad(format!("{shown:?} is not a URL")))?;
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let allowed = match url.scheme() {
        "https" => !host.is_empty(),
        "http" => {
            bare.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
                || ContainerConfig::ALLOWED_HOSTS.contains(&bare)
        }
        _ => false,
    };
    if !allowed || url.fragment().is_some() {
        return Err(bad(format!(
            "{shown:?}: the SDKs fetch container credentials over http:// only from a loopback \
             address or {}, and from any host over https://",
            ContainerConfig::ALLOWED_HOSTS.join(", ")
        )));
    }
    Ok(url)
}

/// Why the authorization token could not be used. Never holds the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {error}")]
    Unreadable { path: String, error: String },
    #[error("the token is not a legal header value (a line break or a control character in it)")]
    NotAHeader,
}

/// The token as it is sent: read now (the file rotates), checked as botocore checks it.
pub fn read_token(source: &TokenSource) -> Result<Zeroizing<String>, TokenError> {
    let token = match source {
        TokenSource::Value(v) => v.clone(),
        TokenSource::File(path) => {
            let bytes = Zeroizing::new(crate::config::read_file(path).map_err(|e| {
                TokenError::Unreadable {
                    path: path.display().to_string(),
                    error: e.to_string(),
                }
            })?);
            Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|e| {
                // The bytes go with the error: wipe them.
                let mut v = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut v);
                TokenError::NotAHeader
            })?)
        }
    };
    // botocore refuses CR and LF ("not a legal header value"); other control characters would
    // not make a header either.
    if token.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(TokenError::NotAHeader);
    }
    Ok(token)
}

/// One attempt's outcome.
#[derive(Debug)]
pub struct Attempt {
    pub duration: Duration,
    pub error: Option<RequestError>,
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct ContainerRun {
    pub started_at: Option<DateTime<Utc>>,
    pub duration: Duration,
    /// The token could not be used: no request was made.
    pub token_error: Option<TokenError>,
    pub attempts: Vec<Attempt>,
    /// The document, or the reason of the last attempt.
    pub outcome: Option<Result<CredentialsDoc, Reason>>,
    pub rotation: Option<Rotation>,
    /// The document served had already expired. botocore refuses it ("the refreshed
    /// credentials are still expired"): unlike IMDS's, the container provider does not extend
    /// expired credentials, so the run fails.
    pub expired: bool,
}

impl ContainerRun {
    pub fn failure_reason(&self) -> Option<Reason> {
        if self.token_error.is_some() {
            return Some(Reason::TokenFile);
        }
        match self.outcome {
            Some(Err(r)) => Some(r),
            None => Some(Reason::Timeout),
            Some(Ok(_)) if self.expired => Some(Reason::Expired),
            Some(Ok(_)) => None,
        }
    }
}

/// The container prober: the client and the rotation state. `check` runs it once.
pub struct ContainerProber {
    config: ContainerConfig,
    http: ImdsHttp,
    hasher: KeyIdHasher,
    rotation: RotationTracker,
}

impl ContainerProber {
    pub fn new(config: ContainerConfig) -> Result<Self, ConfigError> {
        let url = allowed_url(&config.endpoint)?;
        let http = ImdsHttp::new(url, config.timeout).map_err(|e| {
            ConfigError::new(
                "container.endpoint",
                format!("cannot set up the client: {e}"),
            )
        })?;
        Ok(Self {
            config,
            http,
            hasher: KeyIdHasher::default(),
            rotation: RotationTracker::default(),
        })
    }

    pub fn config(&self) -> &ContainerConfig {
        &self.config
    }

    /// The token (read now), and the document it gets, as [`fetch`](Self::fetch) but without
    /// recording: the STS probe's own fetch uses this client's sibling in `probe::sts`.
    pub async fn run(&mut self) -> ContainerRun {
        let start = Instant::now();
        let mut run = ContainerRun {
            started_at: Some(Utc::now()),
            ..ContainerRun::default()
        };
        let token = match self.config.token.as_ref().map(read_token).transpose() {
            Ok(t) => t,
            Err(e) => {
                run.token_error = Some(e);
                run.duration = start.elapsed();
                return run;
            }
        };
        let mut headers = vec![("accept", "application/json")];
        if let Some(t) = &token {
            headers.push(("authorization", t.as_str()));
        }
        for attempt in 1..=self.config.attempts {
            if attempt > 1 {
                tokio::time::sleep(ContainerConfig::RETRY_PAUSE).await;
            }
            let t0 = Instant::now();
            let (result, _) = self.http.send_document("", &headers, &self.hasher).await;
            let (doc, retry) = classify(result);
            run.attempts.push(Attempt {
                duration: t0.elapsed(),
                error: doc.as_ref().err().map(copy_error),
            });
            match doc {
                Ok(doc) => {
                    let now = Utc::now();
                    run.rotation = self.rotation.observe(&doc, now);
                    run.expired = doc.expiration <= now;
                    run.outcome = Some(Ok(doc));
                    break;
                }
                Err(e) => {
                    run.outcome = Some(Err(e.reason()));
                    if !retry {
                        break;
                    }
                }
            }
        }
        run.duration = start.elapsed();
        run
    }
}

/// The document, or the error and whether botocore tries again after it (any failure but a JSON
/// document that lacks the fields).
fn classify(
    result: Result<DocumentAnswer, RequestError>,
) -> (Result<CredentialsDoc, RequestError>, bool) {
    match result {
        Ok(DocumentAnswer {
            status: 200,
            inspection: Some(Ok(inspection)),
        }) => match inspection.document {
            Ok(doc) => (Ok(doc), false),
            Err(e) => (Err(e.into()), false),
        },
        // Not a JSON object (or unreadable): botocore's "Unable to parse JSON", retried.
        Ok(DocumentAnswer {
            status: 200,
            inspection: Some(Err(e)),
        }) => (Err(e.into()), true),
        Ok(DocumentAnswer { status, .. }) => (Err(RequestError::Status(status)), true),
        Err(e) => (Err(e), true),
    }
}

/// A copy of an error for the report (the original becomes the outcome's reason).
fn copy_error(e: &RequestError) -> RequestError {
    match e {
        RequestError::Timeout(d) => RequestError::Timeout(*d),
        RequestError::Connect(s) => RequestError::Connect(s.clone()),
        RequestError::Status(s) => RequestError::Status(*s),
        RequestError::BodyTooLarge(n) => RequestError::BodyTooLarge(*n),
        RequestError::Invalid(s) => RequestError::Invalid(s.clone()),
        RequestError::Parse(p) => RequestError::Parse(p.clone()),
    }
}

/// The container probe as the exporter schedules it.
pub struct ContainerProbe {
    prober: ContainerProber,
    families: Recorded<CredentialFamilies>,
}

impl ContainerProbe {
    /// The prober, with its `probe="container"` series created in `metrics`.
    pub fn new(config: ContainerConfig, metrics: &Metrics) -> Result<Self, ConfigError> {
        let prober = ContainerProber::new(config)?;
        let families = metrics.shared::<CredentialFamilies>();
        families.update().add(Probe::Container);
        Ok(Self { prober, families })
    }
}

impl Prober for ContainerProbe {
    const PROBE: Option<Probe> = Some(Probe::Container);
    const FAILING: &'static str = "container credential probe failing: SDK clients in this pod that use the container endpoint (EKS Pod Identity, ECS) may get no credentials";
    const RECOVERED: &'static str = "container credential probe succeeding again";
    type Report = ContainerRun;

    fn run(&mut self) -> impl std::future::Future<Output = ContainerRun> + Send {
        self.prober.run()
    }

    fn cut_off(&mut self, deadline: Duration) -> ContainerRun {
        ContainerRun {
            duration: deadline,
            outcome: Some(Err(Reason::Timeout)),
            ..ContainerRun::default()
        }
    }

    fn record(&mut self, run: &ContainerRun, _now: DateTime<Utc>) -> Option<Failure> {
        let families = self.families.update();
        if let Some(e) = &run.token_error {
            families.record_request(
                Probe::Container,
                Phase::AuthToken,
                Duration::ZERO,
                Some(Reason::TokenFile),
            );
            tracing::debug!(error = %e, "container authorization token unusable");
        }
        for (i, a) in run.attempts.iter().enumerate() {
            let reason = a.error.as_ref().map(|e| e.reason());
            families.record_request(Probe::Container, Phase::Credentials, a.duration, reason);
            match &a.error {
                Some(e) => {
                    tracing::debug!(attempt = i + 1, reason = e.reason().as_str(), duration = ?a.duration, error = %e, "container credentials request failed")
                }
                None => {
                    tracing::trace!(attempt = i + 1, duration = ?a.duration, "container credentials request ok")
                }
            }
        }
        if let Some(Ok(doc)) = &run.outcome {
            families.record_document(Probe::Container, doc);
        }
        if let Some(r) = &run.rotation {
            families.record_rotation(Probe::Container, r);
            tracing::info!(
                lead_seconds = r.lead_seconds,
                "container credentials rotated"
            );
        }
        let reason = run.failure_reason()?;
        let detail = match (&run.token_error, run.attempts.last()) {
            (Some(e), _) => format!("auth_token: {e}"),
            (None, Some(Attempt { error: Some(e), .. })) => {
                format!("credentials: {e} (after {} attempts)", run.attempts.len())
            }
            _ if reason == Reason::Expired => {
                "credentials: the document served has already expired".into()
            }
            _ => "the run did not finish within its deadline".into(),
        };
        Some(Failure { reason, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn off_without_variables_or_flags() {
        assert_eq!(ContainerConfig::resolve(None, None, env(&[])), None);
        // The token alone names no endpoint (the SDKs need a URI too).
        assert_eq!(
            ContainerConfig::resolve(
                None,
                None,
                env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "x")])
            ),
            None
        );
    }

    #[test]
    fn the_variables_are_read_in_botocores_order() {
        let c = ContainerConfig::resolve(
            None,
            None,
            env(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/abc",
                ),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/x"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://169.254.170.2/v2/credentials/abc");
        assert_eq!(c.token, Some(TokenSource::File("/var/run/token".into())));
        let c = ContainerConfig::resolve(
            None,
            None,
            env(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "secret-token"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://169.254.170.23/v1/credentials");
        assert!(!format!("{c:?}").contains("secret-token"), "{c:?}");
        // A flag wins; a token file alone means the Pod Identity agent.
        let c = ContainerConfig::resolve(
            Some("http://127.0.0.1:8/c".into()),
            None,
            env(&[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            )]),
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:8/c");
        let c = ContainerConfig::resolve(None, Some("/t".into()), env(&[])).unwrap();
        assert_eq!(c.endpoint, ContainerConfig::POD_IDENTITY_ENDPOINT);
    }

    #[test]
    fn only_the_hosts_the_sdks_allow_are_accepted() {
        for ok in [
            "http://169.254.170.2/v2/credentials/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://localhost:8080/creds",
            "http://127.0.0.1:1338/_container/credentials",
            "http://127.9.9.9/x",
            "http://[::1]:80/x",
            "https://creds.example.com/x",
        ] {
            assert!(allowed_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://169.254.169.254/latest",
            "http://10.0.0.1/creds",
            "http://example.com/creds",
            "ftp://127.0.0.1/x",
            "not a url",
            "http://user:s3cret@10.0.0.1/x",
        ] {
            let err = allowed_url(bad).unwrap_err().to_string();
            assert!(err.contains("--container.endpoint"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn tokens_are_checked_as_botocore_checks_them() {
        let dir = std::env::temp_dir().join(format!("container-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "eyJhbGciOi.token-value").unwrap();
        assert_eq!(
            read_token(&TokenSource::File(good)).unwrap().as_str(),
            "eyJhbGciOi.token-value"
        );
        let newline = dir.join("newline");
        std::fs::write(&newline, "token-value\n").unwrap();
        assert_eq!(
            read_token(&TokenSource::File(newline)),
            Err(TokenError::NotAHeader)
        );
        let missing = read_token(&TokenSource::File(dir.join("missing"))).unwrap_err();
        assert!(
            matches!(missing, TokenError::Unreadable { .. }),
            "{missing}"
        );
        let value = TokenSource::Value(Zeroizing::new("abc".into()));
        assert_eq!(format!("{value:?}"), "Value(<redacted>)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
