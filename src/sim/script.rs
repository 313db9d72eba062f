//! Timelines: "healthy, two minutes of outage, healthy" as data.
//!
//! A script is a YAML or JSON list of steps, `{at: 30s, scenario: outage}`, where `at` counts
//! from the moment the script starts (a duration, or a number of seconds: `at: 30`, `at: 1.5`)
//! and a scenario may carry parameters inline (`slow?delay=500ms`) or in `params`. Every step is
//! checked before the first one plays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::limits::{MAX_SCRIPT_AT, at_most};
use super::scenario::{Scenario, ScenarioDefaults};
use super::state::SimState;
use crate::config::parse_duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub scenario: Scenario,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: At,
    scenario: String,
    #[serde(default)]
    params: HashMap<String, serde_json::Value>,
}

/// A step's `at` as written: a duration (`30s`, `1m30s`) or a number of seconds (`30`, `1.5`).
enum At {
    Text(String),
    Seconds(f64),
}

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = At;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 30s or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<At, E> {
                Ok(At::Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<At, E> {
                Ok(At::Seconds(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<At, E> {
                Ok(At::Seconds(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<At, E> {
                Ok(At::Seconds(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl At {
    /// The offset from the script's start, at most [`MAX_SCRIPT_AT`].
    fn duration(&self) -> Result<Duration, String> {
        let d = match self {
            At::Text(s) => parse_duration(s)?,
            At::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                // Too large for a Duration is past the bound too.
                Duration::try_from_secs_f64(*s).unwrap_or(Duration::MAX)
            }
            At::Seconds(s) => return Err(format!("expected 0 seconds or more, got {s}")),
        };
        at_most(d, MAX_SCRIPT_AT)
    }
}

pub fn parse(text: &str, defaults: &ScenarioDefaults) -> Result<Vec<Step>, String> {
    // JSON is YAML too, but serde_json's messages are better for JSON.
    let raw: Vec<RawStep> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON script: {e}"))?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML script: {e}"))?
    };
    if raw.is_empty() {
        return Err("the script has no steps".into());
    }
    let mut steps = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at =
            r.at.duration()
                .map_err(|e| format!("step {}: at: {e}", i + 1))?;
        let params = r
            .params
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        let scenario = Scenario::parse(&r.scenario, &params, defaults)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        steps.push(Step { at, scenario });
    }
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

/// Plays the steps in the background, replacing any script already playing.
pub fn play(state: Arc<SimState>, steps: Vec<Step>) {
    let start = tokio::time::Instant::now();
    let s = state.clone();
    let handle = tokio::spawn(async move {
        for step in steps {
            // `at` is at most a year (checked by `parse`), so the sum fits.
            let Some(when) = start.checked_add(step.at) else {
                break;
            };
            tokio::time::sleep_until(when).await;
            if let Err(e) = s.set_scenario(step.scenario) {
                tracing::warn!(error = %e, "script step skipped");
            }
        }
        tracing::info!("script finished");
    });
    state.replace_script(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ScenarioDefaults {
        crate::sim::config::SimConfig::default().scenario_defaults()
    }

    #[test]
    fn yaml_and_json_scripts_parse_in_time_order() {
        let yaml = "- {at: 2m, scenario: healthy}\n- at: 0s\n  scenario: outage\n- {at: 30s, scenario: slow, params: {delay: 500ms}}\n";
        let steps = parse(yaml, &options()).unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].scenario, Scenario::Outage);
        assert_eq!(
            steps[1].scenario,
            Scenario::Slow {
                delay: Duration::from_millis(500)
            }
        );
        assert_eq!(steps[2].at, Duration::from_secs(120));
        let json = r#"[{"at":"1s","scenario":"throttle-partial?ratio=0.5"}]"#;
        assert_eq!(
            parse(json, &options()).unwrap()[0].scenario,
            Scenario::ThrottlePartial { ratio: 0.5 }
        );
    }

    #[test]
    fn a_bare_number_at_is_seconds() {
        let yaml = "- {at: 30, scenario: outage}\n- {at: 1.5, scenario: throttle}\n- {at: 0, scenario: healthy}\n";
        let steps = parse(yaml, &options()).unwrap();
        let at: Vec<Duration> = steps.iter().map(|s| s.at).collect();
        assert_eq!(
            at,
            [
                Duration::ZERO,
                Duration::from_millis(1500),
                Duration::from_secs(30)
            ]
        );
        let json = r#"[{"at": 2, "scenario": "healthy"}, {"at": 0.25, "scenario": "outage"}, {"at": "1m", "scenario": "stale"}]"#;
        let at: Vec<Duration> = parse(json, &options())
            .unwrap()
            .iter()
            .map(|s| s.at)
            .collect();
        assert_eq!(
            at,
            [
                Duration::from_millis(250),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
    }

    #[test]
    fn at_is_bounded_and_never_negative() {
        let one_year = "- {at: 31557600, scenario: outage}\n";
        assert_eq!(
            parse(one_year, &options()).unwrap()[0].at,
            super::super::limits::MAX_SCRIPT_AT
        );
        for bad in [
            "- {at: 500000years, scenario: outage}\n",
            "- {at: 31557601, scenario: outage}\n",
            "- {at: 1e300, scenario: outage}\n",
            "- {at: -5, scenario: outage}\n",
            "- {at: -0.5, scenario: outage}\n",
            "- {at: .nan, scenario: outage}\n",
            "- {at: .inf, scenario: outage}\n",
            r#"[{"at": 1e300, "scenario": "outage"}]"#,
            r#"[{"at": 18446744073709551615, "scenario": "outage"}]"#,
            r#"[{"at": -1, "scenario": "outage"}]"#,
        ] {
            let err = parse(bad, &options()).unwrap_err();
            assert!(err.starts_with("step 1: at: "), "{bad}: {err}");
        }
        for bad in [
            "- {at: true, scenario: outage}\n",
            "- {at: [1], scenario: outage}\n",
        ] {
            let err = parse(bad, &options()).unwrap_err();
            assert!(err.contains("number of seconds"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_steps_are_reported_with_their_number() {
        let err = parse(
            "- {at: 1s, scenario: healthy}\n- {at: 2s, scenario: nope}\n",
            &options(),
        )
        .unwrap_err();
        assert!(err.starts_with("step 2"), "{err}");
        let err = parse("- {at: soon, scenario: healthy}\n", &options()).unwrap_err();
        assert!(err.contains("step 1: at"), "{err}");
        assert!(parse("[]", &options()).is_err());
        assert!(parse("- {at: 1s, scenario: healthy, colour: red}\n", &options()).is_err());
    }
}
