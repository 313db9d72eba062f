//! The web identity probe (`probe="web_identity"`): IRSA, where a pod's SDK exchanges the
//! projected service-account token in `AWS_WEB_IDENTITY_TOKEN_FILE` for the role in
//! `AWS_ROLE_ARN` with STS's `AssumeRoleWithWebIdentity`.
//!
//! Every run reads the token file (the kubelet rewrites it before it expires), decodes the JWT
//! payload's `exp` claim (base64url JSON; the signature is not checked: only STS can, and the
//! exporter does not need to trust the token, only to know when it ends), and exports it. A file
//! that cannot be read, or is not a JWT with an `exp`, or has expired, fails the run. Opt-in
//! (`--web-identity.exchange`; it needs egress to STS), the run also makes the exchange itself,
//! unsigned, as the SDKs do, timed and classified into the `imds_sts_*` families with
//! `source="web_identity"`.
//!
//! Secrets: the token is read into a wiping buffer, decoded, sent (with the exchange) and
//! dropped; it is never logged or exported. The credentials STS returns are not read: only the
//! assumed role's ARN and the error code are taken from the answer, which is wiped.
//!
//! Off unless `AWS_WEB_IDENTITY_TOKEN_FILE` (or `--web-identity.token-file`) is set: then it has
//! no series.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use zeroize::Zeroizing;

use super::sts::StsConfig;
use super::sts::metrics::StsFamilies;
use super::sts::request::{self, SendError, StsHttp, Verdict};
use super::{Failure, Prober, Schedule};
use crate::config::ConfigError;
use crate::labels::{Probe, Reason, Source};
use crate::metrics::{
    Families, Metrics, OptionalGauge, Recorded, background_help as help, unix_seconds,
};

/// The web identity probe's settings (flags `--web-identity.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityConfig {
    pub token_file: PathBuf,
    /// `AWS_ROLE_ARN`: without it the SDKs skip web identity altogether.
    pub role_arn: Option<String>,
    /// `AWS_ROLE_SESSION_NAME`, for the exchange.
    pub session_name: String,
    pub interval: Duration,
    /// Make the exchange at STS (`--web-identity.exchange`), with this STS configuration.
    pub exchange: Option<StsConfig>,
}

impl WebIdentityConfig {
    pub const TOKEN_FILE_VARIABLE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
    pub const ROLE_ARN_VARIABLE: &str = "AWS_ROLE_ARN";
    pub const SESSION_NAME_VARIABLE: &str = "AWS_ROLE_SESSION_NAME";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_SESSION_NAME: &str = "imds-exporter";

    /// The configuration from the flags and the SDK variables, or `None` when no token file is
    /// named: then the probe is off.
    pub fn resolve(
        token_file_flag: Option<PathBuf>,
        role_arn_flag: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<WebIdentityConfig> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let token_file =
            token_file_flag.or_else(|| env(Self::TOKEN_FILE_VARIABLE).map(PathBuf::from))?;
        Some(WebIdentityConfig {
            token_file,
            role_arn: role_arn_flag.or_else(|| env(Self::ROLE_ARN_VARIABLE)),
            session_name: env(Self::SESSION_NAME_VARIABLE)
                .unwrap_or_else(|| Self::DEFAULT_SESSION_NAME.into()),
            interval: Self::DEFAULT_INTERVAL,
            exchange: None,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("web-identity.interval", self.interval)?;
        if self.exchange.is_some() && self.role_arn.is_none() {
            return Err(ConfigError::new(
                "web-identity.exchange",
                format!(
                    "needs a role: set {} or --web-identity.role-arn",
                    Self::ROLE_ARN_VARIABLE
                ),
            ));
        }
        if let Some(sts) = &self.exchange {
            sts.validate()?;
            if sts.region.is_none() && sts.endpoint.is_none() {
                return Err(ConfigError::new(
                    "web-identity.exchange",
                    "needs --sts.region (or AWS_REGION) or --sts.endpoint",
                ));
            }
        }
        Ok(())
    }

    pub fn schedule(&self) -> Schedule {
        let exchange = self.exchange.as_ref().map_or(Duration::ZERO, |s| s.timeout);
        Schedule {
            interval: self.interval,
            deadline: (exchange + Duration::from_secs(5)).max(self.interval),
        }
    }
}

/// Why the token is not usable. Never holds the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {error}")]
    Unreadable { path: String, error: String },
    #[error("the token is not a JWT with a numeric exp claim ({0})")]
    NotJwt(&'static str),
}

/// The `exp` claim of a JWT (seconds since the epoch), without checking its signature.
pub fn jwt_expiry(token: &str) -> Result<DateTime<Utc>, TokenError> {
    let mut parts = token.trim().split('.');
    let (_header, payload) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(_)) => (h, p),
        _ => return Err(TokenError::NotJwt("not three dot-separated parts")),
    };
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| TokenError::NotJwt("the payload is not base64url"))?,
    );
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let claims: Claims = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::NotJwt("the payload is not JSON"))?;
    let exp = claims
        .exp
        .and_then(|n| n.as_f64())
        .ok_or(TokenError::NotJwt("no exp claim"))?;
    DateTime::from_timestamp(exp as i64, 0).ok_or(TokenError::NotJwt("exp out of range"))
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct WebIdentityRun {
    pub token_error: Option<TokenError>,
    pub expires: Option<DateTime<Utc>>,
    pub now: Option<DateTime<Utc>>,
    /// The exchange: how long it took and what STS said.
    pub exchange: Option<(Duration, Result<Verdict, SendError>, Option<f64>)>,
    pub role_match: Option<bool>,
    pub timed_out: bool,
}

impl WebIdentityRun {
    pub fn failure(&self) -> Option<Reason> {
        if self.timed_out {
            return Some(Reason::Timeout);
        }
        match &self.token_error {
            Some(TokenError::Unreadable { .. }) => return Some(Reason::TokenFile),
            Some(TokenError::NotJwt(_)) => return Some(Reason::InvalidResponse),
            None => {}
        }
        if let (Some(exp), Some(now)) = (self.expires, self.now)
            && exp <= now
        {
            return Some(Reason::Expired);
        }
        match &self.exchange {
            Some((_, Ok(v), _)) => v.failure(),
            Some((_, Err(e), _)) => Some(e.reason()),
            None => None,
        }
    }
}

/// The web identity prober.
pub struct WebIdentityProber {
    config: WebIdentityConfig,
    sts: Option<(StsHttp, String, String)>,
}

impl WebIdentityProber {
    pub fn new(config: WebIdentityConfig) -> Result<Self, ConfigError> {
        let sts = match &config.exchange {
            Some(s) => {
                let region = s.region.clone().unwrap_or_else(|| "us-east-1".into());
                let http = StsHttp::new(s.timeout).map_err(|e| {
                    ConfigError::new("sts.endpoint", format!("cannot set up the client: {e}"))
                })?;
                Some((http, s.url(&region), region))
            }
            None => None,
        };
        Ok(Self { config, sts })
    }

    pub fn config(&self) -> &WebIdentityConfig {
        &self.config
    }

    pub async fn run(&mut self) -> WebIdentityRun {
        let mut run = WebIdentityRun {
            now: Some(Utc::now()),
            ..WebIdentityRun::default()
        };
        let token = match crate::config::read_file(&self.config.token_file) {
            Ok(bytes) => {
                Zeroizing::new(String::from_utf8_lossy(&Zeroizing::new(bytes)).into_owned())
            }
            Err(e) => {
                run.token_error = Some(TokenError::Unreadable {
                    path: self.config.token_file.display().to_string(),
                    error: e.to_string(),
                });
                return run;
            }
        };
        match jwt_expiry(&token) {
            Ok(exp) => run.expires = Some(exp),
            Err(e) => {
                run.token_error = Some(e);
                return run;
            }
        }
        if let (Some((http, url, _)), Some(role_arn)) = (&self.sts, &self.config.role_arn) {
            let start = Instant::now();
            let answer = http
                .assume_role_with_web_identity(
                    url,
                    role_arn,
                    &self.config.session_name,
                    token.trim(),
                )
                .await;
            drop(token);
            let mut skew = None;
            let verdict = answer.map(|a| {
                skew = a
                    .date
                    .as_deref()
                    .and_then(|d| request::clock_skew(d, a.sent, a.received));
                request::verdict(a.status, &a.body)
            });
            if let Ok(Verdict::Accepted { arn }) = &verdict {
                run.role_match = Some(request::role_of_arn(arn) == request::role_of_arn(role_arn));
            }
            run.exchange = Some((start.elapsed(), verdict, skew));
        }
        run
    }
}

/// The web identity probe's own series.
pub struct WebIdentityFamilies {
    expiration: OptionalGauge,
    role_arn: OptionalGauge,
}

impl WebIdentityFamilies {
    pub fn new() -> Self {
        Self {
            expiration: OptionalGauge::new(
                "imds_web_identity_token_expiration_timestamp_seconds",
                &help(
                    "The exp claim of the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE), as Unix time in seconds, read at every run; absent until a token has been read. The kubelet rewrites the file well before it expires.",
                ),
            ),
            role_arn: OptionalGauge::new(
                "imds_web_identity_role_arn_present",
                &help(
                    "1 if the role to assume is set (AWS_ROLE_ARN): without it the SDKs skip web identity and fall through to the next provider (IMDS).",
                ),
            ),
        }
    }
}

impl WebIdentityFamilies {
    pub fn record_expiration(&self, exp: DateTime<Utc>) {
        self.expiration.set(unix_seconds(exp));
    }

    pub fn record_role_arn_present(&self, present: bool) {
        self.role_arn.set(f64::from(u8::from(present)));
    }
}

impl Default for WebIdentityFamilies {
    fn default() -> Self {
        Self::new()
    }
}

impl Families for WebIdentityFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.expiration.clone()),
            Box::new(self.role_arn.clone()),
        ]
    }
}

/// The web identity probe as the exporter schedules it.
pub struct WebIdentityProbe {
    prober: WebIdentityProber,
    families: Recorded<WebIdentityFamilies>,
    sts: Option<Recorded<StsFamilies>>,
}

impl WebIdentityProbe {
    pub fn new(config: WebIdentityConfig, metrics: &Metrics) -> Result<Self, ConfigError> {
        let families = metrics.register(WebIdentityFamilies::new());
        families
            .update()
            .record_role_arn_present(config.role_arn.is_some());
        let sts = config.exchange.is_some().then(|| {
            let sts = metrics.shared::<StsFamilies>();
            sts.update().add(Source::WebIdentity);
            sts
        });
        Ok(Self {
            prober: WebIdentityProber::new(config)?,
            families,
            sts,
        })
    }
}

impl Prober for WebIdentityProbe {
    const PROBE: Option<Probe> = Some(Probe::WebIdentity);
    const FAILING: &'static str = "web identity probe failing: SDK clients in this pod that use IRSA (AWS_WEB_IDENTITY_TOKEN_FILE) may get no credentials";
    const RECOVERED: &'static str = "web identity probe succeeding again";
    type Report = WebIdentityRun;

    fn run(&mut self) -> impl std::future::Future<Output = WebIdentityRun> + Send {
        self.prober.run()
    }

    fn cut_off(&mut self, _deadline: Duration) -> WebIdentityRun {
        WebIdentityRun {
            timed_out: true,
            ..WebIdentityRun::default()
        }
    }

    fn record(&mut self, run: &WebIdentityRun, _now: DateTime<Utc>) -> Option<Failure> {
        if let Some(exp) = run.expires {
            self.families.update().record_expiration(exp);
        }
        if let (Some(sts), Some((took, answer, skew))) = (&self.sts, &run.exchange) {
            let sts = sts.update();
            sts.record(
                Source::WebIdentity,
                took.as_secs_f64(),
                answer.as_ref().ok().and_then(Verdict::code),
            );
            if let Some(s) = skew {
                sts.record_skew(*s);
            }
            if let Some(m) = run.role_match {
                sts.record_role_match(Source::WebIdentity, m);
            }
        }
        let reason = run.failure()?;
        let detail = match (&run.token_error, &run.exchange) {
            (Some(e), _) => e.to_string(),
            (None, Some((_, Ok(Verdict::Refused { aws_code, .. }), _))) => {
                format!("AssumeRoleWithWebIdentity: STS answered {aws_code}")
            }
            (None, Some((_, Err(e), _))) => format!("AssumeRoleWithWebIdentity: {e}"),
            _ if reason == Reason::Expired => "the token's exp claim is in the past".into(),
            _ => reason.as_str().to_string(),
        };
        Some(Failure { reason, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.signature", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn the_exp_claim_is_read_without_checking_the_signature() {
        let exp = jwt_expiry(&jwt(
            r#"{"aud":["sts.amazonaws.com"],"exp":1800000000,"sub":"system:serviceaccount:ns:sa"}"#,
        ))
        .unwrap();
        assert_eq!(exp.timestamp(), 1_800_000_000);
        assert_eq!(
            jwt_expiry(&format!("{}\n", jwt(r#"{"exp":1.8e9}"#)))
                .unwrap()
                .timestamp(),
            1_800_000_000
        );
        for bad in [
            "",
            "a.b",
            "not-a-jwt",
            &jwt(r#"{"sub":"x"}"#),
            &jwt("[]"),
            "a.!!!.c",
        ] {
            assert!(
                matches!(jwt_expiry(bad), Err(TokenError::NotJwt(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn off_without_a_token_file() {
        assert_eq!(WebIdentityConfig::resolve(None, None, |_| None), None);
        let c = WebIdentityConfig::resolve(None, None, |n| match n {
            "AWS_WEB_IDENTITY_TOKEN_FILE" => {
                Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into())
            }
            "AWS_ROLE_ARN" => Some("arn:aws:iam::123456789012:role/app".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/app")
        );
        assert_eq!(c.session_name, "imds-exporter");
    }

    #[test]
    fn expiry_and_unreadable_files_are_failures() {
        let now = Utc::now();
        let run = WebIdentityRun {
            expires: Some(now - chrono::Duration::seconds(1)),
            now: Some(now),
            ..WebIdentityRun::default()
        };
        assert_eq!(run.failure(), Some(Reason::Expired));
        let run = WebIdentityRun {
            token_error: Some(TokenError::Unreadable {
                path: "/x".into(),
                error: "No such file".into(),
            }),
            ..WebIdentityRun::default()
        };
        assert_eq!(run.failure(), Some(Reason::TokenFile));
    }
}
