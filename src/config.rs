//! What every configuration type shares: how a bad value is reported, and the duration syntax.
//!
//! Each module owns its configuration (`ImdsConfig` beside the IMDS probe, `NtpConfig` beside the
//! NTP probe, `NodeViewsConfig`, `WebConfig`, `SimConfig`, `CheckConfig`): a plain struct with
//! `Default`, its defaults as named constants, and a `validate()` that returns a [`ConfigError`]
//! naming the setting. The command line (`cli`) only maps flags into them. This module owns no
//! setting itself, and knows nothing of flags beyond the name a [`ConfigError`] carries.

use std::time::Duration;

/// A setting whose value cannot be used. Displays as `--<setting> <problem>`: settings are named
/// as their flags are, so the message says what to change whether it came from a flag, its
/// environment twin or a test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{setting} {problem}")]
pub struct ConfigError {
    /// The flag's name without the leading dashes, e.g. `imds.interval`.
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }
}

/// `Ok` for a duration above zero; every interval, timeout and period must be one.
pub fn positive(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(setting, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// Parses `30s`, `100ms`, `1h30m` (humantime's syntax, as the Go exporters' durations read).
/// A leading `-` is refused by name: the flags take values that start with a hyphen, so that
/// `--imds.interval -5s` reaches this parser instead of reading as an unknown flag `-5`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim().starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 100ms, 30s, 5m or 1h)"))
}

/// A duration as people write it (`30s`, `6h`, `1h 30m`), for messages and the landing page.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_the_setting_as_its_flag() {
        let err = positive("imds.interval", Duration::ZERO).unwrap_err();
        assert_eq!(err.to_string(), "--imds.interval must be greater than 0");
        assert!(positive("imds.interval", Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(
            parse_duration(" 100ms ").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
        assert_eq!(
            parse_duration(" -5s").unwrap_err(),
            "durations cannot be negative"
        );
        assert_eq!(human(Duration::from_secs(21600)), "6h");
    }
}
