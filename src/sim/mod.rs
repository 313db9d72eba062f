//! `imds_exporter simulate`: a fake IMDS (and SNTP server) that can be told to fail.
//!
//! Layout:
//! - `scenario`: the catalogue of failure modes and their parameters;
//! - `credentials`: the rotation schedule and the documents it serves;
//! - `imds`: the IMDS paths, token handling and what each scenario does to a request;
//! - `control`: the control API under `/_sim/` on the same listener;
//! - `script`: timelines of scenario switches;
//! - `limits`: the bounds on durations and offsets from flags and requests;
//! - `ntp`: the SNTP answerer with a settable clock offset and drift;
//! - `server`: the accept loop, which can reset a connection (the `refused` scenario).

pub mod control;
pub mod credentials;
pub mod imds;
pub mod limits;
pub mod ntp;
pub mod scenario;
pub mod script;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use crate::cli::SimOptions;
use credentials::CredentialSchedule;
use scenario::Scenario;

/// Everything the simulator's handlers share.
pub struct SimState {
    pub options: SimOptions,
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
}

impl Inner {
    fn ntp_offset(&self) -> f64 {
        self.clock_offset + self.clock_drift_ppm * 1e-6 * self.drift_since.elapsed().as_secs_f64()
    }
}

impl SimState {
    pub fn new(options: SimOptions) -> Result<Arc<Self>, String> {
        options.validate()?;
        let scenario = Scenario::parse(&options.scenario, &HashMap::new(), &options)?;
        let mut credentials = CredentialSchedule::new(options.rotate_every, options.lifetime)?;
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
                clock_offset: options.clock_offset,
                clock_drift_ppm: options.clock_drift,
                drift_since: Instant::now(),
                script: None,
                server_error_toggle: false,
            }),
            options,
        }))
    }

    /// The shared state. Nothing panics while holding it, but if something ever did, the
    /// simulator would go on answering with the state as that panic left it rather than fail
    /// every later request on the poisoned lock.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn count(&self, group: &str, status: &str) {
        let mut inner = self.lock();
        *inner
            .counts
            .entry(group.to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    fn next_server_error(&self) -> u16 {
        let mut inner = self.lock();
        inner.server_error_toggle = !inner.server_error_toggle;
        if inner.server_error_toggle { 500 } else { 503 }
    }

    /// Issues a token valid for `ttl`.
    fn issue_token(&self, ttl: Duration) -> String {
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

    fn token_valid(&self, token: &str) -> bool {
        let inner = self.lock();
        inner
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }

    fn replace_script(&self, handle: tokio::task::JoinHandle<()>) {
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
            "requests": inner.counts,
        })
    }
}

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub ntp_addr: Option<SocketAddr>,
    pub state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the listeners and starts serving; returns once they are bound.
/// Every option, the script included, is checked before anything is bound: an error leaves
/// nothing listening.
pub async fn start(listen: SocketAddr, options: SimOptions) -> Result<RunningSim, String> {
    let state = SimState::new(options)?;
    let steps = match &state.options.script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--script {}: {e}", path.display()))?;
            let steps = script::parse(&text, &state.options)
                .map_err(|e| format!("--script {}: {e}", path.display()))?;
            Some(steps)
        }
        None => None,
    };
    let (shutdown, rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut tasks = vec![tokio::spawn(server::serve(
        listener,
        state.clone(),
        rx.clone(),
    ))];
    let mut ntp_addr = None;
    if let Some(ntp_listen) = state.options.ntp_listen {
        let socket = tokio::net::UdpSocket::bind(ntp_listen)
            .await
            .map_err(|e| format!("--ntp-listen {ntp_listen}: {e}"))?;
        ntp_addr = Some(socket.local_addr().map_err(|e| e.to_string())?);
        tasks.push(tokio::spawn(ntp::serve(socket, state.clone(), rx.clone())));
    }
    if let Some(steps) = steps {
        script::play(state.clone(), steps);
    }
    Ok(RunningSim {
        addr,
        ntp_addr,
        state,
        shutdown,
        tasks,
    })
}

/// `imds_exporter simulate`: runs until SIGINT/SIGTERM.
pub async fn run(args: crate::cli::SimulateArgs) -> crate::CliResult {
    crate::logging::init(args.log.level, args.log.format);
    let stop = crate::shutdown_signal();
    let sim = start(args.listen, args.sim).await?;
    tracing::info!(address = %sim.addr, "IMDS simulator listening");
    if let Some(ntp) = sim.ntp_addr {
        tracing::info!(address = %ntp, "SNTP answerer listening");
    }
    println!("IMDS simulator on {}", sim.endpoint());
    if let Some(ntp) = sim.ntp_addr {
        println!("SNTP answerer on {ntp} (udp)");
    }
    println!(
        "Switch scenarios with: curl -X POST {}/_sim/scenario/<name>   (state: curl {}/_sim/state)",
        sim.endpoint(),
        sim.endpoint()
    );
    stop.await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_does_not_take_the_simulator_down() {
        let state = SimState::new(SimOptions::from_flags(&[])).unwrap();
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
