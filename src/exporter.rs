//! The exporter: background probe loops, and the HTTP server that serves what they recorded.
//!
//! Each probe runs on its own timer (interval plus a little jitter, so a fleet of DaemonSets
//! started together does not hit the link-local services in lockstep); a run never overlaps the
//! next, and a run that takes longer than the interval is followed at once by the next one.
//! Shutdown goes through a `watch` channel that every task selects on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::probe::Probe;
use crate::probe::imds::{ImdsConfig, ImdsProber, ImdsRun};

#[derive(Debug, Clone)]
pub struct ExporterConfig {
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub imds: ImdsConfig,
    pub imds_interval: Duration,
    /// `None` when the NTP probe is off.
    pub ntp: Option<NtpConfig>,
    /// Read the kernel clock (adjtimex).
    pub clock: bool,
    /// Interfaces whose ethtool allowance counters are read; `None` when off.
    pub ethtool: Option<regex_lite::Regex>,
}

#[derive(Debug, Clone)]
pub struct NtpConfig {
    /// `host:port` each; also the `server` label values.
    pub servers: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// How often the node views (kernel clock, ethtool) are read when the NTP probe is off.
const NODE_VIEW_INTERVAL: Duration = Duration::from_secs(30);

impl ExporterConfig {
    fn describe(&self) -> Vec<(&'static str, String)> {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        vec![
            ("web.listen-address", self.listen.to_string()),
            ("web.telemetry-path", self.telemetry_path.clone()),
            (
                "imds.endpoint",
                crate::probe::imds::redacted_endpoint(&self.imds.endpoint),
            ),
            ("imds.interval", d(self.imds_interval)),
            ("imds.timeout", d(self.imds.timeout)),
            (
                "imds.token-ttl",
                format!("{}s", self.imds.token_ttl_seconds),
            ),
            (
                "ntp.server",
                match &self.ntp {
                    Some(ntp) => ntp.servers.join(", "),
                    None => "(the ntp collector is off)".into(),
                },
            ),
            (
                "ntp.interval",
                self.ntp.as_ref().map_or("-".into(), |n| d(n.interval)),
            ),
            (
                "ntp.timeout",
                self.ntp.as_ref().map_or("-".into(), |n| d(n.timeout)),
            ),
            ("collector.ntp", self.ntp.is_some().to_string()),
            ("collector.clock", self.clock.to_string()),
            (
                "collector.ethtool",
                match &self.ethtool {
                    // The anchored form cli::CollectorArgs::ethtool_filter builds.
                    Some(re) => format!("true (interfaces {})", re.as_str()),
                    None => "false".into(),
                },
            ),
        ]
    }
}

/// A running exporter (used by `main`, `demo` and the tests).
pub struct RunningExporter {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningExporter {
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Validates the configuration, binds the listener and starts the probes.
pub async fn start(config: ExporterConfig) -> Result<RunningExporter, String> {
    let prober = ImdsProber::new(config.imds.clone()).map_err(|e| e.to_string())?;
    let listener = crate::web::bind(config.listen)
        .map_err(|e| format!("--web.listen-address {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let metrics = Arc::new(Metrics::new());
    metrics.set_interval(Probe::Imds, config.imds_interval);
    let ready = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let (shutdown, rx) = watch::channel(false);

    let mut tasks = Vec::new();
    let guard = LoopGuard::new("imds", &alive);
    tasks.push(tokio::spawn(imds_loop(
        prober,
        metrics.clone(),
        config.imds_interval,
        ready.clone(),
        rx.clone(),
        guard,
    )));

    let node = Arc::new(crate::collector::NodeViews::new(
        config.clock,
        config.ethtool.clone(),
    ));
    metrics.register(Box::new(ArcCollector(node.clone())));
    match &config.ntp {
        Some(ntp) => metrics.set_interval(Probe::Ntp, ntp.interval),
        None => metrics.disable_probe(Probe::Ntp),
    }
    let guard = LoopGuard::new("clock", &alive);
    tasks.push(tokio::spawn(clock_loop(
        config.ntp.clone(),
        node,
        metrics.clone(),
        rx.clone(),
        guard,
    )));

    let state = crate::web::WebState {
        metrics: metrics.clone(),
        ready,
        alive,
        landing: Arc::new(crate::web::landing_page(
            &config.telemetry_path,
            &config.describe(),
        )),
    };
    let app = crate::web::router(state, &config.telemetry_path);
    let mut web_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = web_rx.changed().await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    // NODE_NAME comes from the downward API in the DaemonSet: it ties this log to its node.
    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty());
    let endpoint = crate::probe::imds::redacted_endpoint(&config.imds.endpoint);
    tracing::info!(address = %addr, endpoint = %endpoint, interval = ?config.imds_interval, node = node.as_deref(), "imds_exporter listening");
    Ok(RunningExporter {
        addr,
        metrics,
        shutdown,
        tasks,
    })
}

/// Held by a probe loop for as long as it runs. A panic that unwinds out of the loop (tokio
/// contains it to the task, so nothing else would notice) clears `alive`, which fails
/// `/-/healthy`; a loop that returns because of shutdown leaves it set.
pub struct LoopGuard {
    name: &'static str,
    alive: Arc<AtomicBool>,
}

impl LoopGuard {
    pub fn new(name: &'static str, alive: &Arc<AtomicBool>) -> Self {
        Self {
            name,
            alive: alive.clone(),
        }
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.alive.store(false, Ordering::Release);
            tracing::error!(
                probe = self.name,
                "probe loop panicked; its metrics no longer change and /-/healthy now fails"
            );
        }
    }
}

/// The interval with up to ±5 % jitter.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + (fastrand::f64() - 0.5) * 0.1)
}

async fn imds_loop(
    mut prober: ImdsProber,
    metrics: Arc<Metrics>,
    interval: Duration,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
    _guard: LoopGuard,
) {
    let mut last_failure = None;
    loop {
        let started = tokio::time::Instant::now();
        let run = tokio::select! {
            run = prober.run() => run,
            _ = shutdown.changed() => return,
        };
        metrics.record_imds(&run, Utc::now());
        log_imds_run(&run, &mut last_failure);
        ready.store(true, Ordering::Release);
        tokio::select! {
            _ = tokio::time::sleep_until(started + jittered(interval)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Lets the registry own a shared collector.
struct ArcCollector(Arc<crate::collector::NodeViews>);

impl prometheus::core::Collector for ArcCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// The NTP probe and the node views, on the NTP interval.
async fn clock_loop(
    ntp: Option<NtpConfig>,
    node: Arc<crate::collector::NodeViews>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    _guard: LoopGuard,
) {
    let interval = ntp.as_ref().map_or(NODE_VIEW_INTERVAL, |n| n.interval);
    let mut last_failure = None;
    loop {
        let started = tokio::time::Instant::now();
        let node_view = node.clone();
        // ethtool and adjtimex are quick system calls, but blocking ones.
        let _ = tokio::task::spawn_blocking(move || node_view.refresh()).await;
        if let Some(ntp) = &ntp {
            tokio::select! {
                _ = ntp_run(ntp, &metrics, &mut last_failure) => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + jittered(interval)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Queries every server once; the run succeeds when all of them answered validly.
async fn ntp_run(
    config: &NtpConfig,
    metrics: &Metrics,
    last_failure: &mut Option<Option<crate::probe::Reason>>,
) {
    let start = std::time::Instant::now();
    let mut first_failure = None;
    for server in &config.servers {
        match crate::probe::ntp::query(server, config.timeout).await {
            Ok(sample) => {
                tracing::debug!(server = %server, offset_seconds = sample.offset_seconds, rtt_seconds = sample.rtt_seconds, "NTP sample");
                metrics.record_ntp_sample(server, &sample);
            }
            Err(e) => {
                // A stale offset must not keep a skew alert firing (or quiet): drop the series.
                metrics.forget_ntp_server(server);
                let reason = e.reason();
                if last_failure.as_ref() != Some(&Some(reason)) {
                    tracing::warn!(server = %server, reason = reason.as_str(), error = %e, "NTP query failed");
                } else {
                    tracing::debug!(server = %server, reason = reason.as_str(), error = %e, "NTP query failed");
                }
                first_failure.get_or_insert(reason);
            }
        }
    }
    if first_failure.is_none() && matches!(last_failure, Some(Some(_))) {
        tracing::info!("NTP queries succeeding again");
    }
    *last_failure = Some(first_failure);
    metrics.record_run(Probe::Ntp, start.elapsed(), first_failure, Utc::now());
}

/// Logs a run once per change of state at warn/info, and every run at debug.
fn log_imds_run(run: &ImdsRun, last_failure: &mut Option<Option<crate::probe::Reason>>) {
    for p in &run.phases {
        match &p.error {
            Some(e) => tracing::debug!(
                phase = p.phase.as_str(),
                reason = e.reason().as_str(),
                duration = ?p.duration,
                error = %e,
                "IMDS request failed"
            ),
            None => {
                tracing::trace!(phase = p.phase.as_str(), duration = ?p.duration, "IMDS request ok")
            }
        }
    }
    if let Some(r) = &run.rotation {
        tracing::info!(lead_seconds = r.lead_seconds, "credentials rotated");
    }
    let failure = run.failure_reason();
    if last_failure.as_ref() != Some(&failure) {
        match failure {
            Some(reason) => {
                let detail = run
                    .phases
                    .iter()
                    .find(|p| p.error.as_ref().is_some_and(|e| e.reason() == reason))
                    .map(|p| {
                        (
                            p.phase.as_str(),
                            p.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                        )
                    })
                    .unwrap_or(("", String::new()));
                tracing::warn!(
                    reason = reason.as_str(),
                    phase = detail.0,
                    error = %detail.1,
                    "IMDS probe failing: applications creating AWS clients now may get no credentials"
                );
            }
            None if last_failure.is_some() => tracing::info!("IMDS probe succeeding again"),
            None => tracing::info!("first IMDS probe run succeeded"),
        }
        *last_failure = Some(failure);
    }
    tracing::debug!(success = run.success(), duration = ?run.duration, "IMDS probe run finished");
}

/// `imds_exporter` without a subcommand.
pub async fn run(args: crate::cli::ExporterArgs) -> crate::CliResult {
    crate::logging::init(args.log.level, args.log.format);
    let config = args.config()?;
    let stop = crate::shutdown_signal();
    let exporter = start(config).await?;
    stop.await;
    tracing::info!("shutting down");
    exporter.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_probe_loop_clears_alive_and_a_returning_one_does_not() {
        let alive = Arc::new(AtomicBool::new(true));
        let guard = LoopGuard::new("imds", &alive);
        tokio::spawn(async move {
            let _guard = guard;
        })
        .await
        .unwrap();
        assert!(
            alive.load(Ordering::Acquire),
            "a loop that returns is not a death"
        );

        let guard = LoopGuard::new("imds", &alive);
        let joined = tokio::spawn(async move {
            let _guard = guard;
            panic!("a bug in a probe");
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        assert!(!alive.load(Ordering::Acquire), "a panic clears alive");
    }
}
