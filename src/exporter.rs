//! The exporter (the default subcommand): the probes, registered with the scheduler, and the HTTP
//! server that serves what they recorded.
//!
//! Data flows one way: configuration → [`crate::scheduler`] → the probes ([`crate::probe`],
//! [`crate::collector`]) → their classification into [`crate::labels`] → [`crate::metrics`] →
//! [`crate::web`]. This file wires them together; adding a probe is one registration line in
//! [`start`]. Shutdown goes through a `watch` channel that every task selects on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collector::process::ProcessMetrics;
use crate::collector::{NodeViews, NodeViewsConfig, NodeViewsProbe};
use crate::config::{ConfigError, human};
use crate::metrics::Metrics;
use crate::probe::container::{ContainerConfig, ContainerProbe};
use crate::probe::imds::{ImdsConfig, ImdsProbe, redacted_endpoint};
use crate::probe::ntp::{NtpConfig, NtpProbe};
use crate::probe::sts::{StsConfig, StsProbe};
use crate::probe::web_identity::{WebIdentityConfig, WebIdentityProbe};
use crate::scheduler::Scheduler;
use crate::web::WebConfig;
use crate::web::reload::LiveSettings;

/// Everything the exporter runs with, each part owned by the module that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExporterConfig {
    pub web: WebConfig,
    pub imds: ImdsConfig,
    /// `None` when the NTP probe is off (`--collector.ntp=false`).
    pub ntp: Option<NtpConfig>,
    pub node: NodeViewsConfig,
    /// `None` unless the container credential variables or `--container.*` are set.
    pub container: Option<ContainerConfig>,
    /// `None` unless `AWS_WEB_IDENTITY_TOKEN_FILE` or `--web-identity.token-file` is set.
    pub web_identity: Option<WebIdentityConfig>,
    /// `None` unless `--sts.enabled`.
    pub sts: Option<StsConfig>,
}

impl ExporterConfig {
    /// Checks every part; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.web.validate()?;
        self.imds.validate()?;
        if let Some(ntp) = &self.ntp {
            ntp.validate()?;
        }
        if let Some(c) = &self.container {
            c.validate()?;
        }
        if let Some(w) = &self.web_identity {
            w.validate()?;
        }
        if let Some(s) = &self.sts {
            s.validate()?;
        }
        self.node.validate()
    }

    /// The configuration in force, for the landing page, as `flag = value` pairs.
    fn describe(&self) -> Vec<(&'static str, String)> {
        let ntp = self.ntp.as_ref();
        vec![
            ("web.listen-address", self.web.listen_address.to_string()),
            ("web.telemetry-path", self.web.telemetry_path.clone()),
            (
                "web.config.file",
                self.web
                    .config_file
                    .as_ref()
                    .map_or("(none: plain HTTP)".into(), |p| p.display().to_string()),
            ),
            ("web.max-connections", self.web.max_connections.to_string()),
            (
                "web.read-header-timeout",
                human(self.web.read_header_timeout),
            ),
            ("web.idle-timeout", human(self.web.idle_timeout)),
            ("imds.endpoint", redacted_endpoint(&self.imds.endpoint)),
            ("imds.interval", human(self.imds.interval)),
            ("imds.timeout", human(self.imds.timeout)),
            (
                "imds.token-ttl",
                format!("{}s", self.imds.token_ttl.as_secs()),
            ),
            (
                "imds.sdk",
                self.imds
                    .sdks
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "imds.outage-check-interval",
                if self.imds.outage_check_interval.is_zero() {
                    "0s (the outage watch is off)".into()
                } else {
                    human(self.imds.outage_check_interval)
                },
            ),
            (
                "ntp.server",
                ntp.map_or("(the ntp collector is off)".into(), |n| {
                    n.servers.join(", ")
                }),
            ),
            (
                "ntp.interval",
                ntp.map_or("-".into(), |n| human(n.interval)),
            ),
            ("ntp.timeout", ntp.map_or("-".into(), |n| human(n.timeout))),
            ("collector.ntp", ntp.is_some().to_string()),
            (
                "container.endpoint",
                self.container.as_ref().map_or(
                    "(off: no AWS_CONTAINER_CREDENTIALS_* variable, no --container.endpoint)"
                        .into(),
                    |c| redacted_endpoint(&c.endpoint),
                ),
            ),
            (
                "container.token-file",
                self.container
                    .as_ref()
                    .and_then(|c| c.token.as_ref())
                    .map_or("-".into(), |t| t.describe()),
            ),
            (
                "web-identity.token-file",
                self.web_identity.as_ref().map_or(
                    "(off: no AWS_WEB_IDENTITY_TOKEN_FILE, no --web-identity.token-file)".into(),
                    |w| w.token_file.display().to_string(),
                ),
            ),
            (
                "web-identity.exchange",
                self.web_identity
                    .as_ref()
                    .is_some_and(|w| w.exchange.is_some())
                    .to_string(),
            ),
            (
                "sts.enabled",
                match &self.sts {
                    None => "false".into(),
                    Some(s) => format!(
                        "true (endpoint {}, every {})",
                        s.endpoint
                            .as_deref()
                            .map(redacted_endpoint)
                            .unwrap_or_else(|| format!(
                                "regional, region {}",
                                s.region.as_deref().unwrap_or("of the identity document")
                            )),
                        human(s.interval)
                    ),
                },
            ),
            ("collector.interval", human(self.node.interval)),
            ("collector.clock", self.node.clock.to_string()),
            (
                "collector.ethtool",
                if self.node.ethtool {
                    format!("true (interfaces {})", self.node.ethtool_interfaces)
                } else {
                    "false".into()
                },
            ),
        ]
    }
}

/// A running exporter (used by `main`, `demo` and the tests).
pub struct RunningExporter {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    web: Arc<LiveSettings>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningExporter {
    /// Re-reads `--web.config.file` (SIGHUP); the last good one stays when the new one is bad.
    pub fn reload_web_config(&self) -> bool {
        self.web.reload("SIGHUP")
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Validates the configuration, binds the listener and starts the probes.
pub async fn start(config: ExporterConfig) -> Result<RunningExporter, String> {
    config.validate().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new());
    metrics.register_live(Box::new(ProcessMetrics::new()));
    let mut imds = ImdsProbe::new(config.imds.clone(), &metrics).map_err(|e| e.to_string())?;
    let watch = match config.imds.outage_schedule() {
        Some(schedule) => Some((
            imds.outage_watch(&metrics).map_err(|e| e.to_string())?,
            schedule,
        )),
        None => None,
    };
    let views = Arc::new(NodeViews::from_config(&config.node).map_err(|e| e.to_string())?);
    metrics.register_live(Box::new(SharedCollector(views.clone())));
    let web = Arc::new(config.web.load_settings().map_err(|e| e.to_string())?);
    let limits = connection_limits(&config.web)?;
    let listener = crate::web::bind(config.web.listen_address)
        .map_err(|e| format!("--web.listen-address {}: {e}", config.web.listen_address))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let ready = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let (shutdown, rx) = watch::channel(false);
    let scheduler = Scheduler::new(metrics.clone(), rx.clone(), alive.clone());

    // The probes: one line each.
    let mut tasks = vec![
        scheduler.spawn("imds", imds, config.imds.schedule(), Some(ready.clone())),
        scheduler.spawn("node", NodeViewsProbe(views), config.node.schedule(), None),
    ];
    if let Some((watch, schedule)) = watch {
        tasks.push(scheduler.spawn("outage", watch, schedule, None));
    }
    if let Some(ntp) = &config.ntp {
        let probe = NtpProbe::new(ntp.clone(), &metrics);
        tasks.push(scheduler.spawn("ntp", probe, ntp.schedule(), None));
    }
    if let Some(c) = &config.container {
        let probe = ContainerProbe::new(c.clone(), &metrics).map_err(|e| e.to_string())?;
        tasks.push(scheduler.spawn("container", probe, c.schedule(), None));
    }
    if let Some(w) = &config.web_identity {
        let probe = WebIdentityProbe::new(w.clone(), &metrics).map_err(|e| e.to_string())?;
        tasks.push(scheduler.spawn("web_identity", probe, w.schedule(), None));
    }
    if let Some(s) = &config.sts {
        let probe = StsProbe::new(s.clone(), &config.imds, config.container.as_ref(), &metrics)
            .map_err(|e| e.to_string())?;
        tasks.push(scheduler.spawn("sts", probe, s.schedule(), None));
    }

    let state = crate::web::WebState {
        metrics: metrics.clone(),
        ready,
        alive,
        landing: Arc::new(crate::web::landing_page(
            &config.web.telemetry_path,
            &config.describe(),
        )),
        telemetry_path: config.web.telemetry_path.as_str().into(),
    };
    let app = crate::web::router(state);
    tasks.push(tokio::spawn(crate::web::server::serve(
        listener,
        app,
        limits,
        web.clone(),
        rx.clone(),
    )));
    // NODE_NAME comes from the downward API in the DaemonSet: it ties this log to its node.
    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty());
    let endpoint = redacted_endpoint(&config.imds.endpoint);
    tracing::info!(address = %addr, endpoint = %endpoint, interval = ?config.imds.interval, node = node.as_deref(), web = %web.current().describe(), max_connections = limits.max_connections, "imds_exporter listening");
    Ok(RunningExporter {
        addr,
        metrics,
        web,
        shutdown,
        tasks,
    })
}

/// The connection limits, with `--web.max-connections` lowered to what the open-files limit
/// leaves after the descriptors kept for the probes (a warning says so).
fn connection_limits(web: &WebConfig) -> Result<crate::web::server::Limits, String> {
    let mut limits = web.limits();
    let (soft, room) = crate::web::server::descriptor_room();
    if room == 0 {
        return Err(format!(
            "--web.max-connections: the open-files limit ({soft}) leaves no descriptor for \
             connections once {} are kept for the probes; raise it (ulimit -n, LimitNOFILE=)",
            crate::web::server::FD_RESERVE
        ));
    }
    if limits.max_connections as u64 > room {
        tracing::warn!(
            requested = limits.max_connections,
            allowed = room,
            open_files_limit = soft,
            "--web.max-connections lowered to what the open-files limit allows"
        );
        limits.max_connections = room as usize;
    }
    Ok(limits)
}

/// Runs the exporter until SIGINT or SIGTERM; SIGHUP re-reads `--web.config.file`.
pub async fn run(config: ExporterConfig) -> Result<(), String> {
    let stop = crate::signals::shutdown();
    let mut hangups = crate::signals::hangups();
    let exporter = start(config).await?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangups.recv() => {
                exporter.reload_web_config();
            }
        }
    }
    tracing::info!("shutting down");
    exporter.shutdown().await;
    Ok(())
}

/// Lets the registry own a collector that the scheduler also holds.
struct SharedCollector(Arc<NodeViews>);

impl prometheus::core::Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}
