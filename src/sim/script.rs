//! Timelines: "healthy, two minutes of outage, healthy" as data.
//!
//! A script is a YAML or JSON list of steps, `{at: 30s, scenario: outage}`, where `at` counts
//! from the moment the script starts and a scenario may carry parameters inline
//! (`slow?delay=500ms`) or in `params`. Every step is checked before the first one plays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::SimState;
use super::scenario::Scenario;
use crate::cli::{SimOptions, parse_duration};

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub scenario: Scenario,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    scenario: String,
    #[serde(default)]
    params: HashMap<String, serde_json::Value>,
}

pub fn parse(text: &str, options: &SimOptions) -> Result<Vec<Step>, String> {
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
        let at = parse_duration(&r.at).map_err(|e| format!("step {}: at: {e}", i + 1))?;
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
        let scenario = Scenario::parse(&r.scenario, &params, options)
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
            tokio::time::sleep_until(start + step.at).await;
            s.set_scenario(step.scenario);
        }
        tracing::info!("script finished");
    });
    state.replace_script(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SimOptions {
        SimOptions::from_flags(&[])
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
