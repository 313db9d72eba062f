//! `imds_exporter demo`: the simulator and the exporter in one process, on loopback.
//!
//! The embedded default that runs anywhere: no EC2 instance, no configuration, nothing leaves
//! 127.0.0.1. It prints where the metrics are and how to switch the simulator's scenarios.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::exporter::ExporterConfig;
use crate::probe::imds::ImdsConfig;
use crate::probe::ntp::NtpConfig;
use crate::sim::config::SimConfig;
use crate::web::WebConfig;

/// The demo's settings (flags of `demo`).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Address of the exporter's `/metrics` (loopback by default; `:0` picks a free port).
    pub listen_address: SocketAddr,
    /// Time between probe runs: short, so that the demo moves.
    pub interval: Duration,
    /// How often the simulator rotates credentials.
    pub rotate_every: Duration,
    /// Lifetime of each set of simulated credentials.
    pub lifetime: Duration,
    /// The simulator's scenario at start-up.
    pub scenario: String,
    /// A timeline for the simulator to play.
    pub script: Option<PathBuf>,
}

impl DemoConfig {
    pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:19254";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// A rotation every two minutes, so that one shows within the demo.
    pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(120);
    /// EC2's (and `simulate`'s) six hours, so that `healthy` looks like a healthy node: with
    /// under an hour left, `check` would warn that rotation may have stopped.
    pub const DEFAULT_LIFETIME: Duration = SimConfig::DEFAULT_LIFETIME;

    /// The simulator's half: everything on loopback, the NTP answerer on a free port.
    pub fn sim(&self) -> SimConfig {
        SimConfig {
            ntp_listen: Some(loopback()),
            rotate_every: self.rotate_every,
            lifetime: self.lifetime,
            scenario: self.scenario.clone(),
            script: self.script.clone(),
            ..SimConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("imds.interval", self.interval)?;
        self.sim().validate()
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            listen_address: Self::DEFAULT_LISTEN_ADDRESS
                .parse()
                .expect("the default address parses"),
            interval: Self::DEFAULT_INTERVAL,
            rotate_every: Self::DEFAULT_ROTATE_EVERY,
            lifetime: Self::DEFAULT_LIFETIME,
            scenario: SimConfig::DEFAULT_SCENARIO.into(),
            script: None,
        }
    }
}

/// The lines of the demo's first `grep`: whether each probe succeeds, and only the failure
/// counters that have moved (every series exists from start-up, most of them at 0).
const WHAT_MOVED: &str = "^imds_(probe_success|request_failures_total.* [1-9])";

/// This binary as the user can run it again (`check`), or its name when that is unknown.
fn this_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "imds_exporter".into())
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn run(config: DemoConfig) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    let stop = crate::signals::shutdown();
    // SIGHUP is ignored (the default action would end the process).
    let _hangups = crate::signals::hangups();
    let sim = crate::sim::start(loopback(), config.sim()).await?;
    let exporter = crate::exporter::start(ExporterConfig {
        web: WebConfig {
            listen_address: config.listen_address,
            ..WebConfig::default()
        },
        imds: ImdsConfig {
            endpoint: sim.endpoint(),
            interval: config.interval,
            ..ImdsConfig::default()
        },
        ntp: sim.ntp_addr.map(|a| NtpConfig {
            servers: vec![a.to_string()],
            interval: config.interval,
            ..NtpConfig::default()
        }),
        ..ExporterConfig::default()
    })
    .await?;
    let metrics = format!("http://{}/metrics", exporter.addr);
    let sim_url = sim.endpoint();
    let every = crate::config::human(config.interval);
    println!(
        "imds_exporter demo: the exporter probes an embedded IMDS simulator on loopback every {every}."
    );
    println!();
    println!("  Metrics:     {metrics}");
    println!("  Simulator:   {sim_url}   (state: {sim_url}/_sim/state)");
    if let Some(ntp) = sim.ntp_addr {
        println!("  NTP:         {ntp} (udp)");
    }
    println!();
    println!("Try a failure, then watch the metrics move:");
    println!("  curl -X POST {sim_url}/_sim/scenario/outage");
    println!("  curl -s {metrics} | grep -E '{WHAT_MOVED}'");
    println!("  curl -X POST {sim_url}/_sim/scenario/healthy");
    if let Some(ntp) = sim.ntp_addr {
        // IMDSv1 warns: `healthy` answers token-less requests, as an EC2 instance launched with
        // the default metadata options does; `imdsv2-only` is the hardened node.
        println!("Diagnose it as you would a node (IMDSv1 warns: `healthy` allows it, as EC2's");
        println!("default does; the scenario `imdsv2-only` does not):");
        println!(
            "  {} check --imds.endpoint {sim_url} --ntp.server {ntp}",
            this_binary()
        );
    }
    println!("Or skew the clock the NTP probe sees (seconds; positive = this node is behind):");
    println!("  curl -X POST {sim_url}/_sim/clock-offset/2.5");
    println!("  curl -s {metrics} | grep -E '^imds_(ntp|clock)_'");
    println!("Scenarios: {}", crate::sim::scenario::NAMES.join(", "));
    println!("Press Ctrl-C to stop.");
    stop.await;
    exporter.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
