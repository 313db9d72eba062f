//! The STS probe (`probe="sts"`, opt-in with `--sts.enabled`): are the credentials this node
//! serves accepted by AWS? A credential that was fetched is not yet one that works:
//! `ExpiredToken`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed` and `InvalidClientTokenId`
//! only show when a signed request reaches AWS. Every `--sts.interval` (5 minutes by default:
//! STS is a regional AWS API, not a link-local service) it fetches each source's credentials and
//! sends a `GetCallerIdentity` signed with them by AWS's own `aws-sigv4`.
//!
//! Sources: IMDS (the instance profile) always, and the container endpoint when its probe is
//! configured. The STS probe does not take secrets from the IMDS or container probes, which keep
//! none: it makes its own fetch, through the same exchange ([`crate::probe::imds::http`]), reads
//! the key, secret and session token into wiping buffers ([`request::SigningSecrets`], redacted
//! `Debug`), signs one request with them, and drops them. Nothing of them is logged or exported.
//!
//! Endpoint: `--sts.endpoint`, else the regional one of `--sts.region` (then `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, then the region of the instance identity document), never the global
//! `sts.amazonaws.com` unless it is given. What it records is in [`metrics`]: the answer's class
//! (`code`), the latency, whether the ARN is the role IMDS named, and the clock skew in the
//! answer's `Date` header (`imds_sts_clock_skew_seconds`, whole seconds).
//!
//! Layout: this file (`StsConfig`, the run, the scheduled probe), `request` (the client,
//! signing, the answer's parse), `metrics` (the `imds_sts_*` families).

pub mod metrics;
pub mod request;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;

use self::metrics::StsFamilies;
use self::request::{SendError, SigningSecrets, StsHttp, Verdict};
use super::container::{ContainerConfig, allowed_url, read_token};
use super::credentials::{parse_identity, parse_role_list};
use super::imds::config::ImdsConfig;
use super::imds::http::{ImdsHttp, RequestError};
use super::imds::protocol::{
    IDENTITY_PATH, ROLE_LIST_PATH, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER, token_text,
};
use super::{Failure, Prober, Schedule};
use crate::config::ConfigError;
use crate::labels::{Probe, Reason, Source};
use crate::metrics::{Metrics, Recorded};

/// Where STS is and how often to ask it (flags `--sts.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsConfig {
    /// `None`: the regional endpoint of the region.
    pub endpoint: Option<String>,
    /// `None`: the region of the instance identity document.
    pub region: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl StsConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The SDKs' region variables, in their order.
    pub const REGION_VARIABLES: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

    /// The region: the flag, then the SDKs' variables.
    pub fn region_from(
        flag: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        flag.or_else(|| {
            Self::REGION_VARIABLES
                .iter()
                .find_map(|v| env(v).filter(|r| !r.trim().is_empty()))
        })
        .map(|r| r.trim().to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("sts.interval", self.interval)?;
        crate::config::timeout("sts.timeout", self.timeout)?;
        if let Some(region) = &self.region {
            valid_region(region).map_err(|e| ConfigError::new("sts.region", e))?;
        }
        if let Some(endpoint) = &self.endpoint {
            let url = reqwest::Url::parse(endpoint).ok();
            if !url.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.query().is_none()
            }) {
                return Err(ConfigError::new(
                    "sts.endpoint",
                    format!(
                        "{:?} must be an http:// or https:// URL such as https://sts.eu-west-1.amazonaws.com",
                        crate::probe::imds::redacted_endpoint(endpoint)
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            // Per source: a few credential requests and one STS request.
            deadline: (self.timeout * 6).max(self.interval.min(Duration::from_secs(60))),
        }
    }

    /// The URL requests go to, for `region`.
    pub fn url(&self, region: &str) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => regional_endpoint(region),
        }
    }
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// A region name as AWS spells them (`eu-west-1`, `cn-north-1`, `us-gov-west-1`).
pub fn valid_region(region: &str) -> Result<(), String> {
    if !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
    {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name such as eu-west-1"
        ))
    }
}

/// STS's regional endpoint (the SDKs' default since 2022); China's regions have their own
/// domain. The global `sts.amazonaws.com` is never chosen here.
pub fn regional_endpoint(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://sts.{region}.amazonaws.com.cn/")
    } else {
        format!("https://sts.{region}.amazonaws.com/")
    }
}

/// A credential source, as the STS probe fetches from it.
enum Fetcher {
    Imds {
        http: ImdsHttp,
        token_ttl: String,
    },
    Container {
        http: ImdsHttp,
        config: ContainerConfig,
    },
}

/// What one source's check saw.
#[derive(Debug)]
pub struct SourceCheck {
    pub source: Source,
    /// The credentials could not be had (the reason and what happened); STS was not asked.
    pub fetch_error: Option<(Reason, String)>,
    pub duration: Duration,
    pub answer: Option<Result<Verdict, SendError>>,
    pub skew: Option<f64>,
    pub role_match: Option<bool>,
}

impl SourceCheck {
    pub fn failure(&self) -> Option<Reason> {
        if let Some((r, _)) = &self.fetch_error {
            return Some(*r);
        }
        match &self.answer {
            Some(Ok(v)) => v.failure(),
            Some(Err(e)) => Some(e.reason()),
            None => Some(Reason::Timeout),
        }
    }
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct StsRun {
    pub checks: Vec<SourceCheck>,
    pub timed_out: bool,
}

/// The STS prober: the clients of each source and of STS.
pub struct StsProber {
    config: StsConfig,
    sts: StsHttp,
    sources: Vec<(Source, Fetcher)>,
    /// The region, once known (from the configuration or the identity document).
    region: Option<String>,
}

impl StsProber {
    pub fn new(
        config: StsConfig,
        imds: &ImdsConfig,
        container: Option<&ContainerConfig>,
    ) -> Result<Self, ConfigError> {
        let client = |setting: &'static str| {
            move |e: reqwest::Error| {
                ConfigError::new(setting, format!("cannot set up the client: {e}"))
            }
        };
        let imds_url = reqwest::Url::parse(imds.endpoint.trim_end_matches('/'))
            .map_err(|_| ConfigError::new("imds.endpoint", "is not a URL"))?;
        let mut sources = vec![(
            Source::Imds,
            Fetcher::Imds {
                http: ImdsHttp::new(imds_url, imds.timeout).map_err(client("imds.endpoint"))?,
                token_ttl: imds.token_ttl.as_secs().to_string(),
            },
        )];
        if let Some(c) = container {
            let url = allowed_url(&c.endpoint)?;
            sources.push((
                Source::Container,
                Fetcher::Container {
                    http: ImdsHttp::new(url, c.timeout).map_err(client("container.endpoint"))?,
                    config: c.clone(),
                },
            ));
        }
        Ok(Self {
            sts: StsHttp::new(config.timeout).map_err(client("sts.endpoint"))?,
            region: config.region.clone(),
            config,
            sources,
        })
    }

    pub fn sources(&self) -> Vec<Source> {
        self.sources.iter().map(|(s, _)| *s).collect()
    }

    /// The region in force, if known yet.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub async fn run(&mut self) -> StsRun {
        let mut run = StsRun::default();
        for i in 0..self.sources.len() {
            let check = self.check(i).await;
            run.checks.push(check);
        }
        run
    }

    async fn check(&mut self, i: usize) -> SourceCheck {
        let source = self.sources[i].0;
        let mut check = SourceCheck {
            source,
            fetch_error: None,
            duration: Duration::ZERO,
            answer: None,
            skew: None,
            role_match: None,
        };
        let fetched = match &self.sources[i].1 {
            Fetcher::Imds { http, token_ttl } => {
                fetch_imds(http, token_ttl, self.region.is_none()).await
            }
            Fetcher::Container { http, config } => fetch_container(http, config).await,
        };
        let (secrets, role, region) = match fetched {
            Ok(f) => f,
            Err(e) => {
                check.fetch_error = Some(e);
                return check;
            }
        };
        if self.region.is_none() {
            self.region = region;
        }
        let Some(region) = self.region.clone() else {
            check.fetch_error = Some((
                Reason::InvalidResponse,
                "no region: give --sts.region (or AWS_REGION); the identity document named none"
                    .into(),
            ));
            return check;
        };
        let url = self.config.url(&region);
        let start = Instant::now();
        let answer = self.sts.caller_identity(&url, &region, &secrets).await;
        drop(secrets);
        check.duration = start.elapsed();
        check.answer = Some(answer.map(|a| {
            check.skew = a
                .date
                .as_deref()
                .and_then(|d| request::clock_skew(d, a.sent, a.received));
            let verdict = request::verdict(a.status, &a.body);
            if let (Verdict::Accepted { arn }, Some(role)) = (&verdict, &role) {
                check.role_match =
                    Some(request::role_of_arn(arn).as_deref() == Some(role.as_str()));
            }
            verdict
        }));
        check
    }
}

type Fetched = (SigningSecrets, Option<String>, Option<String>);

fn request_failure(e: &RequestError, what: &str) -> (Reason, String) {
    (e.reason(), format!("{what}: {e}"))
}

/// One GET or PUT through the IMDS exchange; only HTTP 200 is an answer.
async fn get(
    http: &ImdsHttp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, (Reason, String)> {
    match http.send(method, path, headers).await.0 {
        Ok(a) if a.status == 200 => Ok(a.body),
        Ok(a) => Err(request_failure(&RequestError::Status(a.status), what)),
        Err(e) => Err(request_failure(&e, what)),
    }
}

/// The instance profile's credentials (IMDSv2, as the IMDS probe asks), the role name, and the
/// region of the identity document when `want_region`.
async fn fetch_imds(
    http: &ImdsHttp,
    ttl: &str,
    want_region: bool,
) -> Result<Fetched, (Reason, String)> {
    let body = get(
        http,
        Method::PUT,
        TOKEN_PATH,
        &[(TOKEN_TTL_HEADER, ttl)],
        "IMDS token",
    )
    .await?;
    let token = zeroize::Zeroizing::new(
        token_text(&body)
            .ok_or((
                Reason::InvalidResponse,
                "IMDS token: not a token".to_string(),
            ))?
            .to_string(),
    );
    let headers = [(TOKEN_HEADER, token.as_str())];
    let list = get(
        http,
        Method::GET,
        ROLE_LIST_PATH,
        &headers,
        "IMDS role list",
    )
    .await?;
    let role = parse_role_list(&list).map_err(|e| (e.reason(), format!("IMDS role list: {e}")))?;
    let path = format!("{ROLE_LIST_PATH}{role}");
    let doc = get(http, Method::GET, &path, &headers, "IMDS credentials").await?;
    let (secrets, _) = request::parse_secrets(&doc).ok_or((
        Reason::InvalidResponse,
        "IMDS credentials: not a document with AccessKeyId and SecretAccessKey".to_string(),
    ))?;
    let region = if want_region {
        let id = get(
            http,
            Method::GET,
            IDENTITY_PATH,
            &headers,
            "IMDS identity document",
        )
        .await?;
        parse_identity(&id)
            .ok()
            .map(|i| i.region)
            .filter(|r| valid_region(r).is_ok())
    } else {
        None
    };
    Ok((secrets, Some(role), region))
}

/// The container endpoint's credentials (one attempt, the token read now) and the role of its
/// `RoleArn`, if the document names one.
async fn fetch_container(
    http: &ImdsHttp,
    config: &ContainerConfig,
) -> Result<Fetched, (Reason, String)> {
    let token = config
        .token
        .as_ref()
        .map(read_token)
        .transpose()
        .map_err(|e| (Reason::TokenFile, format!("container token: {e}")))?;
    let mut headers = vec![("accept", "application/json")];
    if let Some(t) = &token {
        headers.push(("authorization", t.as_str()));
    }
    let doc = get(http, Method::GET, "", &headers, "container credentials").await?;
    let (secrets, role) = request::parse_secrets(&doc).ok_or((
        Reason::InvalidResponse,
        "container credentials: not a document with AccessKeyId and SecretAccessKey".to_string(),
    ))?;
    Ok((secrets, role, None))
}

/// The STS probe as the exporter schedules it.
pub struct StsProbe {
    prober: StsProber,
    families: Recorded<StsFamilies>,
}

impl StsProbe {
    pub fn new(
        config: StsConfig,
        imds: &ImdsConfig,
        container: Option<&ContainerConfig>,
        metrics: &Metrics,
    ) -> Result<Self, ConfigError> {
        let prober = StsProber::new(config, imds, container)?;
        let families = metrics.shared::<StsFamilies>();
        for s in prober.sources() {
            families.update().add(s);
        }
        Ok(Self { prober, families })
    }
}

impl Prober for StsProbe {
    const PROBE: Option<Probe> = Some(Probe::Sts);
    const FAILING: &'static str = "STS check failing: AWS does not accept the credentials this node serves, or cannot be asked";
    const RECOVERED: &'static str = "STS accepts the credentials again";
    type Report = StsRun;

    fn run(&mut self) -> impl std::future::Future<Output = StsRun> + Send {
        self.prober.run()
    }

    fn cut_off(&mut self, _deadline: Duration) -> StsRun {
        StsRun {
            checks: Vec::new(),
            timed_out: true,
        }
    }

    fn record(&mut self, run: &StsRun, _now: DateTime<Utc>) -> Option<Failure> {
        let families = self.families.update();
        let mut failure: Option<Failure> = None;
        for c in &run.checks {
            let source = c.source.as_str();
            if let Some((reason, detail)) = &c.fetch_error {
                tracing::debug!(source, reason = reason.as_str(), error = %detail, "STS check: no credentials to sign with");
            }
            if let Some(answer) = &c.answer {
                let code = answer.as_ref().ok().and_then(Verdict::code);
                families.record(c.source, c.duration.as_secs_f64(), code);
                match answer {
                    Ok(Verdict::Refused {
                        aws_code, status, ..
                    }) => {
                        tracing::debug!(source, aws_code = %aws_code, status, duration = ?c.duration, "STS refused the request")
                    }
                    Ok(Verdict::Unusable { status }) => {
                        tracing::debug!(source, status, "STS answer without an error code or ARN")
                    }
                    Ok(Verdict::Accepted { .. }) => {
                        tracing::trace!(source, duration = ?c.duration, "STS accepted the credentials")
                    }
                    Err(e) => {
                        tracing::debug!(source, reason = e.reason().as_str(), error = %e, "STS request failed")
                    }
                }
            }
            if let Some(skew) = c.skew {
                families.record_skew(skew);
            }
            if let Some(m) = c.role_match {
                families.record_role_match(c.source, m);
            }
            if failure.is_none()
                && let Some(reason) = c.failure()
            {
                let detail = match (&c.fetch_error, &c.answer) {
                    (Some((_, d)), _) => format!("{source}: {d}"),
                    (None, Some(Ok(Verdict::Refused { aws_code, .. }))) => {
                        format!("{source}: STS answered {aws_code}")
                    }
                    (None, Some(Ok(Verdict::Unusable { status }))) => {
                        format!("{source}: STS answered HTTP {status} without an error code")
                    }
                    (None, Some(Err(e))) => format!("{source}: {e}"),
                    _ => format!("{source}: no answer"),
                };
                failure = Some(Failure { reason, detail });
            }
        }
        if run.timed_out {
            return Some(Failure {
                reason: Reason::Timeout,
                detail: "the run did not finish within its deadline".into(),
            });
        }
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_regional_unless_given() {
        let c = StsConfig::default();
        assert_eq!(c.url("eu-west-1"), "https://sts.eu-west-1.amazonaws.com/");
        assert_eq!(
            c.url("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        let c = StsConfig {
            endpoint: Some("http://127.0.0.1:5000/".into()),
            ..StsConfig::default()
        };
        assert_eq!(c.url("eu-west-1"), "http://127.0.0.1:5000/");
    }

    #[test]
    fn the_region_comes_from_the_flag_then_the_sdk_variables() {
        let env = |name: &str| match name {
            "AWS_REGION" => Some("eu-central-1".to_string()),
            "AWS_DEFAULT_REGION" => Some("us-west-2".to_string()),
            _ => None,
        };
        assert_eq!(
            StsConfig::region_from(Some("ap-south-1".into()), env).as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(
            StsConfig::region_from(None, env).as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(StsConfig::region_from(None, |_| None), None);
    }

    #[test]
    fn bad_settings_are_named() {
        for (config, flag) in [
            (
                StsConfig {
                    region: Some("EU WEST".into()),
                    ..StsConfig::default()
                },
                "--sts.region",
            ),
            (
                StsConfig {
                    endpoint: Some("sts.amazonaws.com".into()),
                    ..StsConfig::default()
                },
                "--sts.endpoint",
            ),
            (
                StsConfig {
                    interval: Duration::ZERO,
                    ..StsConfig::default()
                },
                "--sts.interval",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
        }
    }
}
