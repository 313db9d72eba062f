//! The IMDS probe's configuration (flags `--imds.*`) and the check of its endpoint.

use std::time::Duration;

use crate::config::ConfigError;
use crate::labels::Sdk;
use crate::probe::Schedule;

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
    /// The SDK families whose verdicts are exported (those whose clients run on the node).
    pub sdks: Vec<Sdk>,
    /// Time between the outage watch's checks (one credentials GET with the last token) between
    /// full runs; zero turns the watch off.
    pub outage_check_interval: Duration,
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
    /// Short enough that every outage of 2 s or more holds a check (the longest gap between
    /// checks, with jitter, is 1.575 s), cheap enough for the link-local budget: one fresh
    /// connection of about 10 packets per check (IMDS closes every connection), about 7 packets
    /// a second, 0.7 % of the 1,024 the instance may send to link-local services.
    pub const DEFAULT_OUTAGE_CHECK_INTERVAL: Duration = Duration::from_millis(1500);

    /// The endpoint in force: the flag, then the SDKs' variable (`sdk_variable`, its value if
    /// set), then EC2's.
    pub fn endpoint_from(flag: Option<String>, sdk_variable: Option<String>) -> String {
        flag.or_else(|| sdk_variable.filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.to_string())
    }

    /// Checks what the types cannot; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("imds.interval", self.interval)?;
        crate::config::timeout("imds.timeout", self.timeout)?;
        // 0s turns the outage watch off; any other value is an interval like the others.
        if !self.outage_check_interval.is_zero() {
            crate::config::interval("imds.outage-check-interval", self.outage_check_interval)?;
        }
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
        if self.sdks.is_empty() {
            return Err(ConfigError::new(
                "imds.sdk",
                format!("names no SDK family; known: {}", sdk_names()),
            ));
        }
        Ok(())
    }

    /// When the probe runs. A run makes at most nine requests (a repeat of three, the
    /// token-less document) of `timeout` each; the deadline leaves room for all of them and is
    /// never shorter than the interval.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            deadline: (self.timeout * 10).max(self.interval),
        }
    }

    /// When the outage watch runs; `None` when it is off.
    pub fn outage_schedule(&self) -> Option<Schedule> {
        (!self.outage_check_interval.is_zero()).then(|| Schedule {
            interval: self.outage_check_interval,
            // A check is a credentials GET, after a token PUT when the token was refused.
            deadline: (self.timeout * 3).max(self.outage_check_interval),
        })
    }

    /// The families named in `names` (label values), or the names that are not families.
    pub fn parse_sdks(names: &[String]) -> Result<Vec<Sdk>, ConfigError> {
        let mut sdks = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let sdk = Sdk::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
                ConfigError::new(
                    "imds.sdk",
                    format!("{name:?} is not an SDK family; known: {}", sdk_names()),
                )
            })?;
            if !sdks.contains(&sdk) {
                sdks.push(sdk);
            }
        }
        sdks.sort();
        Ok(sdks)
    }
}

fn sdk_names() -> String {
    Sdk::ALL.map(Sdk::as_str).join(", ")
}

impl Default for ImdsConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::DEFAULT_ENDPOINT.into(),
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            token_ttl: Self::MAX_TOKEN_TTL,
            sdks: Sdk::ALL.to_vec(),
            outage_check_interval: Self::DEFAULT_OUTAGE_CHECK_INTERVAL,
        }
    }
}

/// A checked endpoint: `http://host[:port]`, no path, no query.
pub(super) struct Endpoint(pub(super) reqwest::Url);

impl Endpoint {
    pub(super) fn parse(endpoint: &str) -> Result<Self, ConfigError> {
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
