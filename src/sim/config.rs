//! The simulator's settings, shared by `simulate` and `demo`: when credentials rotate and how
//! long they live, the scenario at start-up, the NTP answerer's clock. Defaults are the
//! `simulate` flags' defaults; `validate` checks every value before anything is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::limits::{self, MAX_CREDENTIAL_TIME, MAX_DELAY, at_most};
use super::scenario::{Scenario, ScenarioDefaults};
use crate::config::{ConfigError, human, positive};

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Also answer SNTP on this UDP address.
    pub ntp_listen: Option<SocketAddr>,
    /// How often new credentials are issued in the healthy scenario.
    pub rotate_every: Duration,
    /// Lifetime of each set of credentials.
    pub lifetime: Duration,
    /// Seconds added to the clock the NTP answerer reports.
    pub clock_offset: f64,
    /// Parts per million by which the answerer's offset grows from start-up.
    pub clock_drift: f64,
    /// Delay of `slow` when the switch gives no `?delay=`.
    pub slow_delay: Duration,
    /// The scenario at start-up, with its parameters inline (`slow?delay=500ms`).
    pub scenario: String,
    /// A timeline to play at start-up.
    pub script: Option<PathBuf>,
    /// Name of the IAM role the fake instance profile carries.
    pub role: String,
    /// The `Authorization` value the container endpoint expects; empty: no check.
    pub container_token: String,
}

impl SimConfig {
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:1338";
    /// EC2 reissues credentials about hourly with about 6 h of life (observed); so does the
    /// simulator by default.
    pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(3600);
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);
    pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(2);
    pub const DEFAULT_SCENARIO: &str = "healthy";
    pub const DEFAULT_ROLE: &str = "imds-exporter-demo-role";
    /// A stand-in for a Pod Identity service-account token (a JWT on a real node).
    pub const DEFAULT_CONTAINER_TOKEN: &str = "simulated-pod-identity-token";

    /// What scenario switches take from this configuration.
    pub fn scenario_defaults(&self) -> ScenarioDefaults {
        ScenarioDefaults {
            slow_delay: self.slow_delay,
            lifetime: self.lifetime,
        }
    }

    /// Checks every value; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("rotate-every", self.rotate_every)?;
        for (setting, value, max) in [
            ("rotate-every", self.rotate_every, MAX_CREDENTIAL_TIME),
            ("lifetime", self.lifetime, MAX_CREDENTIAL_TIME),
            ("slow-delay", self.slow_delay, MAX_DELAY),
        ] {
            at_most(value, max).map_err(|e| ConfigError::new(setting, e))?;
        }
        if self.lifetime <= self.rotate_every {
            return Err(ConfigError::new(
                "lifetime",
                format!(
                    "({}) must be longer than --rotate-every ({}): new credentials must appear before the old ones expire",
                    human(self.lifetime),
                    human(self.rotate_every)
                ),
            ));
        }
        if !self.clock_offset.is_finite() || self.clock_offset.abs() > limits::MAX_CLOCK_OFFSET {
            return Err(ConfigError::new(
                "clock-offset",
                "must be a number of seconds",
            ));
        }
        limits::clock_drift(self.clock_drift).map_err(|e| ConfigError::new("clock-drift", e))?;
        if self
            .container_token
            .bytes()
            .any(|b| !(b == b' ' || b.is_ascii_graphic()))
        {
            return Err(ConfigError::new(
                "container-token",
                "must be printable ASCII (it is compared with a header)",
            ));
        }
        Scenario::parse(
            &self.scenario,
            &Default::default(),
            &self.scenario_defaults(),
        )
        .map_err(|e| ConfigError::new("scenario", e))?;
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            ntp_listen: None,
            rotate_every: Self::DEFAULT_ROTATE_EVERY,
            lifetime: Self::DEFAULT_LIFETIME,
            clock_offset: 0.0,
            clock_drift: 0.0,
            slow_delay: Self::DEFAULT_SLOW_DELAY,
            scenario: Self::DEFAULT_SCENARIO.into(),
            script: None,
            role: Self::DEFAULT_ROLE.into(),
            container_token: Self::DEFAULT_CONTAINER_TOKEN.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_duration_setting_is_bounded_and_named() {
        let base = SimConfig::default;
        for (config, flag) in [
            (
                SimConfig {
                    rotate_every: MAX_CREDENTIAL_TIME * 2,
                    ..base()
                },
                "--rotate-every",
            ),
            (
                SimConfig {
                    lifetime: MAX_CREDENTIAL_TIME * 500_000,
                    ..base()
                },
                "--lifetime",
            ),
            (
                SimConfig {
                    slow_delay: Duration::from_secs(660),
                    ..base()
                },
                "--slow-delay",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
            assert!(err.contains("must be at most"), "{err}");
        }
        let long = SimConfig {
            rotate_every: Duration::from_secs(86_400),
            lifetime: MAX_CREDENTIAL_TIME,
            ..base()
        };
        assert!(long.validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let base = SimConfig::default;
        let cases = [
            (
                SimConfig {
                    rotate_every: Duration::ZERO,
                    ..base()
                },
                "--rotate-every must be greater than 0",
            ),
            (
                SimConfig {
                    lifetime: Duration::from_secs(60),
                    ..base()
                },
                "--lifetime (1m) must be longer than --rotate-every (1h)",
            ),
            (
                SimConfig {
                    clock_offset: f64::NAN,
                    ..base()
                },
                "--clock-offset",
            ),
            (
                SimConfig {
                    clock_drift: 1e9,
                    ..base()
                },
                "--clock-drift",
            ),
            (
                SimConfig {
                    scenario: "nope".into(),
                    ..base()
                },
                "--scenario unknown scenario",
            ),
        ];
        for (config, want) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
