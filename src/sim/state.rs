//! The simulator's shared state: the scenario in force, the credential schedule, issued tokens,
//! request counts and the NTP answerer's clock. Handlers reach it through an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::config::SimConfig;
use super::credentials::CredentialSchedule;
use super::scenario::ContainerScenario;
use super::scenario::Scenario;

/// Everything the simulator's handlers share.
pub struct SimState {
    pub config: SimConfig,
    inner: Mutex<Inner>,
}

struct Inner {
    scenario: Scenario,
    switched_at: Instant,
    credentials: CredentialSchedule,
    tokens: HashMap<String, Instant>,
    /// Requests by path group and status ("none" for requests never answered).
    counts: BTreeMap<String, BTreeMap<String, u64>>,
    clock_offset: f64,
    /// Parts per million the answerer's offset grows by, counted from `drift_since`.
    clock_drift_ppm: f64,
    drift_since: Instant,
    script: Option<tokio::task::JoinHandle<()>>,
    server_error_toggle: bool,
    /// The container endpoint's scenario and credentials (their own, like a separate agent).
    container_scenario: ContainerScenario,
    container_credentials: CredentialSchedule,
    /// The STS stand-in's forced error code; `None`: it judges the session token's expiry.
    sts_code: Option<String>,
    /// Keys a real STS peer issued, served by IMDS instead of the generated ones.
    credentials_override: Option<CredentialsOverride>,
}

/// `POST /_sim/credentials`: a key, secret and session token to serve in place of the
/// generated ones (so that a real STS peer, such as moto, can verify a signature made with them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CredentialsOverride {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
    #[serde(rename = "Token")]
    pub token: String,
}

impl Inner {
    fn ntp_offset(&self) -> f64 {
        self.clock_offset + self.clock_drift_ppm * 1e-6 * self.drift_since.elapsed().as_secs_f64()
    }
}

impl SimState {
    pub fn new(config: SimConfig) -> Result<Arc<Self>, String> {
        config.validate().map_err(|e| e.to_string())?;
        let scenario = Scenario::parse(
            &config.scenario,
            &HashMap::new(),
            &config.scenario_defaults(),
        )?;
        let mut credentials = CredentialSchedule::new(config.rotate_every, config.lifetime)?;
        credentials
            .switch(&scenario, Utc::now())
            .map_err(|e| format!("--scenario: {e}"))?;
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                scenario,
                switched_at: Instant::now(),
                credentials,
                tokens: HashMap::new(),
                counts: BTreeMap::new(),
                clock_offset: config.clock_offset,
                clock_drift_ppm: config.clock_drift,
                drift_since: Instant::now(),
                script: None,
                server_error_toggle: false,
                container_scenario: ContainerScenario::Shared(Scenario::Healthy),
                container_credentials: CredentialSchedule::new(
                    config.rotate_every,
                    config.lifetime,
                )?,
                sts_code: None,
                credentials_override: None,
            }),
            config,
        }))
    }

    /// The shared state. Nothing panics while holding it, but if something ever did, the
    /// simulator would go on answering with the state as that panic left it rather than fail
    /// every later request on the poisoned lock.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The credentials served now under `scenario`.
    pub(super) fn current_credentials(
        &self,
        scenario: &Scenario,
        now: chrono::DateTime<Utc>,
    ) -> super::credentials::Generation {
        self.lock().credentials.current(scenario, now)
    }

    pub fn scenario(&self) -> Scenario {
        self.lock().scenario.clone()
    }

    /// Switches to `scenario`; on an error (its times out of range) nothing changes.
    pub fn set_scenario(&self, scenario: Scenario) -> Result<(), String> {
        let mut inner = self.lock();
        inner.credentials.switch(&scenario, Utc::now())?;
        tracing::info!(scenario = scenario.name(), params = %scenario.params(), "scenario switched");
        inner.scenario = scenario;
        inner.switched_at = Instant::now();
        Ok(())
    }

    pub fn container_scenario(&self) -> ContainerScenario {
        self.lock().container_scenario.clone()
    }

    /// Switches the container endpoint to `scenario`; on an error nothing changes.
    pub fn set_container_scenario(&self, scenario: ContainerScenario) -> Result<(), String> {
        let mut inner = self.lock();
        inner
            .container_credentials
            .switch(&scenario.schedule(), Utc::now())?;
        tracing::info!(scenario = scenario.name(), params = %scenario.params(), "container scenario switched");
        inner.container_scenario = scenario;
        Ok(())
    }

    /// The container credentials served now.
    pub(super) fn current_container_credentials(
        &self,
        now: chrono::DateTime<Utc>,
    ) -> super::credentials::Generation {
        let mut inner = self.lock();
        let scenario = inner.container_scenario.schedule();
        inner.container_credentials.current(&scenario, now)
    }

    /// The IMDS and container credentials served now, for the STS stand-in to judge.
    pub(super) fn served_credentials(&self) -> [super::credentials::Generation; 2] {
        let now = Utc::now();
        let mut inner = self.lock();
        let imds = inner.scenario.clone();
        let container = inner.container_scenario.schedule();
        [
            inner.credentials.current(&imds, now),
            inner.container_credentials.current(&container, now),
        ]
    }

    pub fn credentials_override(&self) -> Option<CredentialsOverride> {
        self.lock().credentials_override.clone()
    }

    pub fn set_credentials_override(&self, keys: Option<CredentialsOverride>) {
        tracing::info!(overridden = keys.is_some(), "IMDS credentials override set");
        self.lock().credentials_override = keys;
    }

    pub fn sts_code(&self) -> Option<String> {
        self.lock().sts_code.clone()
    }

    pub fn set_sts_code(&self, code: Option<String>) {
        tracing::info!(
            code = code.as_deref().unwrap_or("auto"),
            "STS stand-in code set"
        );
        self.lock().sts_code = code;
    }

    pub fn clock_offset(&self) -> f64 {
        self.lock().clock_offset
    }

    pub fn set_clock_offset(&self, seconds: f64) {
        tracing::info!(seconds, "NTP clock offset set");
        self.lock().clock_offset = seconds;
    }

    pub fn clock_drift_ppm(&self) -> f64 {
        self.lock().clock_drift_ppm
    }

    /// Makes the answerer's offset grow by `ppm` millionths of the time elapsed from now, on top
    /// of the clock offset (which can still be set on its own). Setting it again restarts the
    /// count, from the clock offset, at the new rate; 0 stops it.
    pub fn set_clock_drift(&self, ppm: f64) {
        tracing::info!(ppm, "NTP clock drift set");
        let mut inner = self.lock();
        inner.clock_drift_ppm = ppm;
        inner.drift_since = Instant::now();
    }

    /// The offset the SNTP answerer applies now: the clock offset plus the drift accumulated
    /// since the drift was set.
    pub fn ntp_offset(&self) -> f64 {
        self.lock().ntp_offset()
    }

    pub(super) fn count(&self, group: &str, status: &str) {
        let mut inner = self.lock();
        *inner
            .counts
            .entry(group.to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub(super) fn next_server_error(&self) -> u16 {
        let mut inner = self.lock();
        inner.server_error_toggle = !inner.server_error_toggle;
        if inner.server_error_toggle { 500 } else { 503 }
    }

    /// Issues a token valid for `ttl`.
    pub(super) fn issue_token(&self, ttl: Duration) -> String {
        let token: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(56)
            .collect();
        let mut inner = self.lock();
        let now = Instant::now();
        if inner.tokens.len() > 10_000 {
            inner.tokens.retain(|_, exp| *exp > now);
            if inner.tokens.len() > 10_000 {
                // Under a benchmark's thousands of runs per second, forget the tokens closest to
                // expiry: a client that kept one gets 401 and asks for a new one, as after expiry.
                let mut expiries: Vec<Instant> = inner.tokens.values().copied().collect();
                expiries.sort_unstable();
                let cutoff = expiries[expiries.len() / 2];
                inner.tokens.retain(|_, exp| *exp > cutoff);
            }
        }
        inner.tokens.insert(token.clone(), now + ttl);
        token
    }

    pub(super) fn token_valid(&self, token: &str) -> bool {
        let inner = self.lock();
        inner
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }

    pub(super) fn replace_script(&self, handle: tokio::task::JoinHandle<()>) {
        let mut inner = self.lock();
        if let Some(old) = inner.script.replace(handle) {
            old.abort();
        }
    }

    /// `GET /_sim/state`.
    pub fn state_json(&self) -> serde_json::Value {
        let mut inner = self.lock();
        let now = Utc::now();
        let scenario = inner.scenario.clone();
        let creds = inner.credentials.current(&scenario, now);
        let container_scenario = inner.container_scenario.clone();
        let container = inner
            .container_credentials
            .current(&container_scenario.schedule(), now);
        serde_json::json!({
            "scenario": scenario.name(),
            "params": scenario.params(),
            "since_seconds": inner.switched_at.elapsed().as_secs_f64(),
            "clock_offset_seconds": inner.clock_offset,
            "clock_drift_ppm": inner.clock_drift_ppm,
            "ntp_offset_seconds": inner.ntp_offset(),
            "script_running": inner.script.as_ref().is_some_and(|h| !h.is_finished()),
            "credentials": {
                "generation": creds.generation,
                "access_key_id": creds.access_key_id(),
                "issued": creds.issued.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "expiration": creds.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
            "container": {
                "scenario": container_scenario.name(),
                "params": container_scenario.params(),
                "credentials": {
                    "generation": container.generation,
                    "access_key_id": container.access_key_id(),
                    "expiration": container.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            },
            "sts_code": inner.sts_code.clone(),
            "requests": inner.counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_does_not_take_the_simulator_down() {
        let state = SimState::new(SimConfig::default()).unwrap();
        let s = state.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = s.inner.lock().unwrap();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(state.inner.is_poisoned());
        assert_eq!(state.scenario(), Scenario::Healthy);
        state.set_scenario(Scenario::Stale).unwrap();
        assert_eq!(state.state_json()["scenario"], "stale");
        assert!(!state.issue_token(Duration::from_secs(60)).is_empty());
    }
}
