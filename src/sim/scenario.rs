//! The simulator's catalogue of failure modes, and how a switch's parameters are read.
//!
//! Owns the names (a contract: scripts, docs and the e2e test use them) and their parameters.
//! What each scenario does to a request is in [`super::imds`].

use std::collections::HashMap;
use std::time::Duration;

use super::limits::{MAX_CREDENTIAL_TIME, MAX_DELAY, at_most};
use crate::config::parse_duration;

/// Every scenario name, in the order the docs list them.
pub const NAMES: [&str; 20] = [
    "healthy",
    "outage",
    "refused",
    "throttle",
    "throttle-partial",
    "slow",
    "jitter",
    "server-error",
    "hop-limit",
    "hop-limit-v2-only",
    "imdsv2-only",
    "no-role",
    "code-error",
    "expired",
    "expiring",
    "stale",
    "rotate-late",
    "malformed",
    "truncated",
    "huge",
];

/// What a scenario takes from the simulator's configuration when a switch gives no parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioDefaults {
    /// `slow` without `?delay=` (`--slow-delay`).
    pub slow_delay: Duration,
    /// The credentials' lifetime (`--lifetime`): `rotate-late`'s lead must be shorter.
    pub lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Credentials rotate every `--rotate-every` and live `--lifetime`.
    Healthy,
    /// Requests are accepted and never answered: clients time out.
    Outage,
    /// Requests are reset as soon as they arrive.
    Refused,
    /// Every request gets HTTP 429.
    Throttle,
    /// A fraction `ratio` of requests gets HTTP 429.
    ThrottlePartial { ratio: f64 },
    /// Every answer is delayed by `delay`.
    Slow { delay: Duration },
    /// Answers are delayed by a log-normal amount with the given median and 99th percentile.
    Jitter { p50: Duration, p99: Duration },
    /// HTTP 500 and 503, alternately.
    ServerError,
    /// A pod behind hop limit 1 with IMDSv1 allowed: the token PUT gets no answer, token-less
    /// GETs work.
    HopLimit,
    /// The same with `HttpTokens=required`: token-less GETs get 401 as well.
    HopLimitV2Only,
    /// Tokens work; token-less GETs get 401.
    ImdsV2Only,
    /// No instance profile: 404 on the role list.
    NoRole,
    /// HTTP 200 with `"Code": "AssumeRoleUnauthorizedAccess"`.
    CodeError,
    /// Credentials whose Expiration is in the past.
    Expired,
    /// Expiration `in_` after the switch, and no rotation.
    Expiring { in_: Duration },
    /// Rotation stops: the same credentials until they expire.
    Stale,
    /// New credentials appear only `lead` before the old ones expire.
    RotateLate { lead: Duration },
    /// The credentials body is not JSON.
    Malformed,
    /// The credentials body is cut: a short body (`mode=body`) or a transfer cut short
    /// (`mode=transfer`).
    Truncated { mode: TruncateMode },
    /// A multi-megabyte credentials body.
    Huge,
}

/// How `truncated` cuts the credentials document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncateMode {
    /// A complete, well-framed HTTP response whose body is the first third of the document
    /// (`Content-Length` says so): the body itself is short.
    Body,
    /// `Content-Length` announces the whole document, about a third of it is sent, then the
    /// connection is closed: a transfer cut mid-way.
    Transfer,
}

impl TruncateMode {
    /// Every mode, the default first.
    pub const NAMES: [&str; 2] = ["body", "transfer"];

    pub fn name(self) -> &'static str {
        match self {
            TruncateMode::Body => "body",
            TruncateMode::Transfer => "transfer",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "body" => Some(TruncateMode::Body),
            "transfer" => Some(TruncateMode::Transfer),
            _ => None,
        }
    }
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Outage => "outage",
            Scenario::Refused => "refused",
            Scenario::Throttle => "throttle",
            Scenario::ThrottlePartial { .. } => "throttle-partial",
            Scenario::Slow { .. } => "slow",
            Scenario::Jitter { .. } => "jitter",
            Scenario::ServerError => "server-error",
            Scenario::HopLimit => "hop-limit",
            Scenario::HopLimitV2Only => "hop-limit-v2-only",
            Scenario::ImdsV2Only => "imdsv2-only",
            Scenario::NoRole => "no-role",
            Scenario::CodeError => "code-error",
            Scenario::Expired => "expired",
            Scenario::Expiring { .. } => "expiring",
            Scenario::Stale => "stale",
            Scenario::RotateLate { .. } => "rotate-late",
            Scenario::Malformed => "malformed",
            Scenario::Truncated { .. } => "truncated",
            Scenario::Huge => "huge",
        }
    }

    /// The parameters in force, for `GET /_sim/scenario` and the state document.
    pub fn params(&self) -> serde_json::Value {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Scenario::ThrottlePartial { ratio } => serde_json::json!({ "ratio": ratio }),
            Scenario::Slow { delay } => serde_json::json!({ "delay": d(delay) }),
            Scenario::Jitter { p50, p99 } => serde_json::json!({ "p50": d(p50), "p99": d(p99) }),
            Scenario::Expiring { in_ } => serde_json::json!({ "in": d(in_) }),
            Scenario::RotateLate { lead } => serde_json::json!({ "lead": d(lead) }),
            Scenario::Truncated { mode } => serde_json::json!({ "mode": mode.name() }),
            _ => serde_json::json!({}),
        }
    }

    /// Parses `name` with its query parameters. Unknown names and parameters are errors that
    /// list what is accepted.
    pub fn parse(
        name: &str,
        params: &HashMap<String, String>,
        defaults: &ScenarioDefaults,
    ) -> Result<Scenario, String> {
        // A script step may carry its parameters inline: "slow?delay=500ms".
        if let Some((base, query)) = name.split_once('?') {
            let mut all = params.clone();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                all.insert(k.to_string(), v.to_string());
            }
            return Scenario::parse(base, &all, defaults);
        }
        let allowed: &[&str] = match name {
            "throttle-partial" => &["ratio"],
            "slow" => &["delay"],
            "jitter" => &["p50", "p99"],
            "expiring" => &["in"],
            "rotate-late" => &["lead"],
            "truncated" => &["mode"],
            _ => &[],
        };
        if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(if allowed.is_empty() {
                format!("scenario {name:?} takes no parameters, got {unknown:?}")
            } else {
                format!("scenario {name:?} takes {allowed:?}, got {unknown:?}")
            });
        }
        // A value given here is bounded (limits.rs); a default comes from a flag checked at
        // start-up.
        let duration = |key: &str, default: Duration, max: Duration| -> Result<Duration, String> {
            match params.get(key) {
                Some(v) => parse_duration(v)
                    .and_then(|d| at_most(d, max))
                    .map_err(|e| format!("{key}={v:?}: {e}")),
                None => Ok(default),
            }
        };
        Ok(match name {
            "healthy" => Scenario::Healthy,
            "outage" => Scenario::Outage,
            "refused" => Scenario::Refused,
            "throttle" => Scenario::Throttle,
            "throttle-partial" => {
                let ratio = match params.get("ratio") {
                    Some(v) => v
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| format!("ratio={v:?}: expected a number from 0 to 1"))?,
                    None => 0.3,
                };
                Scenario::ThrottlePartial { ratio }
            }
            "slow" => Scenario::Slow {
                delay: duration("delay", defaults.slow_delay, MAX_DELAY)?,
            },
            "jitter" => {
                let p50 = duration("p50", Duration::from_millis(200), MAX_DELAY)?;
                let p99 = duration("p99", Duration::from_millis(1500), MAX_DELAY)?;
                if p99 < p50 || p50.is_zero() {
                    return Err("jitter needs 0 < p50 <= p99".into());
                }
                Scenario::Jitter { p50, p99 }
            }
            "server-error" => Scenario::ServerError,
            "hop-limit" => Scenario::HopLimit,
            "hop-limit-v2-only" => Scenario::HopLimitV2Only,
            "imdsv2-only" => Scenario::ImdsV2Only,
            "no-role" => Scenario::NoRole,
            "code-error" => Scenario::CodeError,
            "expired" => Scenario::Expired,
            "expiring" => Scenario::Expiring {
                in_: duration("in", Duration::from_secs(4 * 60), MAX_CREDENTIAL_TIME)?,
            },
            "stale" => Scenario::Stale,
            "rotate-late" => {
                let lead = duration("lead", Duration::from_secs(2 * 60), MAX_CREDENTIAL_TIME)?;
                if lead >= defaults.lifetime {
                    // Each late set must outlive the lead, or none would ever be the last.
                    return Err(format!(
                        "lead={}: must be shorter than --lifetime ({})",
                        humantime::format_duration(lead),
                        humantime::format_duration(defaults.lifetime)
                    ));
                }
                Scenario::RotateLate { lead }
            }
            "malformed" => Scenario::Malformed,
            "truncated" => Scenario::Truncated {
                mode: match params.get("mode") {
                    Some(v) => TruncateMode::parse(v).ok_or_else(|| {
                        format!(
                            "mode={v:?}: expected one of {}",
                            TruncateMode::NAMES.join(", ")
                        )
                    })?,
                    None => TruncateMode::Body,
                },
            },
            "huge" => Scenario::Huge,
            other => {
                return Err(format!(
                    "unknown scenario {other:?}; known: {}",
                    NAMES.join(", ")
                ));
            }
        })
    }

    /// A delay drawn for one request, for the scenarios that delay answers.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Scenario::Slow { delay } => Some(*delay),
            Scenario::Jitter { p50, p99 } => {
                // Log-normal: median p50, and p99 at 2.326 standard deviations.
                let sigma = (p99.as_secs_f64() / p50.as_secs_f64()).ln() / 2.326;
                let z = standard_normal();
                Some(Duration::from_secs_f64(
                    (p50.as_secs_f64() * (sigma * z).exp()).min(MAX_DELAY.as_secs_f64()),
                ))
            }
            _ => None,
        }
    }
}

/// Box-Muller with fastrand.
fn standard_normal() -> f64 {
    let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
    let u2 = fastrand::f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The scenarios the container endpoint takes, in the order the docs list them.
pub const CONTAINER_APPLICABLE: [&str; 17] = [
    "healthy",
    "outage",
    "refused",
    "throttle",
    "throttle-partial",
    "slow",
    "jitter",
    "server-error",
    "expired",
    "expiring",
    "stale",
    "rotate-late",
    "malformed",
    "truncated",
    "huge",
    "no-role",
    "token-rejected",
];

/// The container endpoint's scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerScenario {
    /// One of IMDS's scenarios that applies here.
    Shared(Scenario),
    /// Every token refused (401).
    TokenRejected,
}

impl ContainerScenario {
    pub fn name(&self) -> &'static str {
        match self {
            ContainerScenario::Shared(s) => s.name(),
            ContainerScenario::TokenRejected => "token-rejected",
        }
    }

    pub fn params(&self) -> serde_json::Value {
        match self {
            ContainerScenario::Shared(s) => s.params(),
            ContainerScenario::TokenRejected => serde_json::json!({}),
        }
    }

    /// The scenario whose effect on the credential schedule this one has.
    pub fn schedule(&self) -> Scenario {
        match self {
            ContainerScenario::Shared(s) => s.clone(),
            ContainerScenario::TokenRejected => Scenario::Healthy,
        }
    }

    /// Parses an applicable name with its parameters; other names are errors listing them.
    pub fn parse(
        name: &str,
        params: &HashMap<String, String>,
        defaults: &ScenarioDefaults,
    ) -> Result<Self, String> {
        let base = name.split_once('?').map_or(name, |(b, _)| b);
        if !CONTAINER_APPLICABLE.contains(&base) {
            return Err(format!(
                "scenario {base:?} does not apply to the container endpoint; it takes: {}",
                CONTAINER_APPLICABLE.join(", ")
            ));
        }
        if base == "token-rejected" {
            if !params.is_empty() {
                return Err("scenario \"token-rejected\" takes no parameters".into());
            }
            return Ok(ContainerScenario::TokenRejected);
        }
        Scenario::parse(name, params, defaults).map(ContainerScenario::Shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ScenarioDefaults {
        crate::sim::config::SimConfig::default().scenario_defaults()
    }

    fn parse(name: &str, params: &[(&str, &str)]) -> Result<Scenario, String> {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Scenario::parse(name, &params, &options())
    }

    #[test]
    fn every_listed_name_parses_and_round_trips() {
        for name in NAMES {
            assert_eq!(parse(name, &[]).unwrap().name(), name);
        }
    }

    #[test]
    fn parameters_are_read_and_checked() {
        assert_eq!(
            parse("throttle-partial", &[("ratio", "0.5")]).unwrap(),
            Scenario::ThrottlePartial { ratio: 0.5 }
        );
        assert_eq!(
            parse("slow", &[("delay", "50ms")]).unwrap(),
            Scenario::Slow {
                delay: Duration::from_millis(50)
            }
        );
        assert_eq!(
            parse("slow", &[]).unwrap(),
            Scenario::Slow {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            parse("rotate-late?lead=1s", &[]).unwrap(),
            Scenario::RotateLate {
                lead: Duration::from_secs(1)
            }
        );
        assert!(parse("throttle-partial", &[("ratio", "2")]).is_err());
        assert!(
            parse("slow", &[("delay", "soon")])
                .unwrap_err()
                .contains("delay")
        );
        assert!(
            parse("outage", &[("delay", "1s")])
                .unwrap_err()
                .contains("no parameters")
        );
        assert!(parse("jitter", &[("p50", "2s"), ("p99", "1s")]).is_err());
        let err = parse("meltdown", &[]).unwrap_err();
        assert!(
            err.contains("unknown scenario") && err.contains("hop-limit"),
            "{err}"
        );
    }

    #[test]
    fn durations_are_bounded_and_the_error_names_the_parameter() {
        for (name, key, value) in [
            ("expiring", "in", "500000years"),
            ("expiring", "in", "1year 1s"),
            ("rotate-late", "lead", "500000years"),
            ("slow", "delay", "500000years"),
            ("slow", "delay", "10m 1ms"),
            ("jitter", "p50", "500000years"),
            ("jitter", "p99", "11m"),
        ] {
            let err = parse(name, &[(key, value)]).unwrap_err();
            assert!(
                err.starts_with(&format!("{key}=")) && err.contains("must be at most"),
                "{name}?{key}={value}: {err}"
            );
        }
        // The largest accepted values.
        assert!(parse("expiring", &[("in", "1year")]).is_ok());
        assert!(parse("slow", &[("delay", "10m")]).is_ok());
        assert!(parse("jitter", &[("p50", "10m"), ("p99", "10m")]).is_ok());
        for ratio in ["NaN", "inf", "-0.1", "1e400"] {
            let err = parse("throttle-partial", &[("ratio", ratio)]).unwrap_err();
            assert!(err.starts_with("ratio="), "{ratio}: {err}");
        }
    }

    #[test]
    fn rotate_late_needs_a_lead_shorter_than_the_lifetime() {
        // The default --lifetime is 6h. With a lead as long, no late set would outlive it.
        assert!(parse("rotate-late", &[("lead", "5h 59m 59s")]).is_ok());
        for lead in ["6h", "7h"] {
            let err = parse("rotate-late", &[("lead", lead)]).unwrap_err();
            assert!(
                err.starts_with("lead=") && err.contains("--lifetime"),
                "{err}"
            );
        }
        // Nor the default 2m lead under a shorter lifetime.
        let short = ScenarioDefaults {
            lifetime: Duration::from_secs(60),
            ..options()
        };
        let err = Scenario::parse("rotate-late", &HashMap::new(), &short).unwrap_err();
        assert!(err.contains("--lifetime (1m)"), "{err}");
    }

    #[test]
    fn truncated_cuts_the_body_by_default_and_takes_a_transfer_mode() {
        let body = Scenario::Truncated {
            mode: TruncateMode::Body,
        };
        assert_eq!(parse("truncated", &[]).unwrap(), body);
        assert_eq!(parse("truncated", &[("mode", "body")]).unwrap(), body);
        assert_eq!(body.params(), serde_json::json!({ "mode": "body" }));
        let transfer = parse("truncated?mode=transfer", &[]).unwrap();
        assert_eq!(
            transfer,
            Scenario::Truncated {
                mode: TruncateMode::Transfer
            }
        );
        assert_eq!(transfer.params(), serde_json::json!({ "mode": "transfer" }));
        for bad in ["chunked", "", "Transfer"] {
            let err = parse("truncated", &[("mode", bad)]).unwrap_err();
            assert!(
                err.starts_with("mode=") && err.ends_with("expected one of body, transfer"),
                "{bad:?}: {err}"
            );
        }
        let err = parse("truncated", &[("cut", "transfer")]).unwrap_err();
        assert!(err.contains("[\"mode\"]"), "{err}");
    }

    #[test]
    fn jitter_draws_stay_within_the_longest_delay() {
        let s = parse("jitter", &[("p50", "1ns"), ("p99", "10m")]).unwrap();
        for _ in 0..2000 {
            assert!(s.delay().unwrap() <= MAX_DELAY);
        }
    }

    #[test]
    fn jitter_delays_have_the_requested_median() {
        let s = parse("jitter", &[("p50", "100ms"), ("p99", "400ms")]).unwrap();
        let mut v: Vec<f64> = (0..4000)
            .map(|_| s.delay().unwrap().as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[2000];
        let p99 = v[3960];
        assert!((0.08..0.12).contains(&p50), "p50 {p50}");
        assert!((0.28..0.56).contains(&p99), "p99 {p99}");
    }
}

#[cfg(test)]
mod container_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_applicable_scenarios_are_taken() {
        let d = crate::sim::config::SimConfig::default().scenario_defaults();
        let none = HashMap::new();
        for name in CONTAINER_APPLICABLE {
            assert!(ContainerScenario::parse(name, &none, &d).is_ok(), "{name}");
        }
        for name in ["hop-limit", "imdsv2-only", "code-error", "nope"] {
            let err = ContainerScenario::parse(name, &none, &d).unwrap_err();
            assert!(err.contains("token-rejected"), "{err}");
        }
        assert_eq!(
            ContainerScenario::parse("slow?delay=5ms", &none, &d).unwrap(),
            ContainerScenario::Shared(Scenario::Slow {
                delay: Duration::from_millis(5)
            })
        );
    }
}
