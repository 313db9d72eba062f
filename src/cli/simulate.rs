//! The flags of `simulate` and `demo`, and their mapping into [`crate::sim::config::SimConfig`]
//! and [`crate::demo::DemoConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::help;
use super::log::LogArgs;
use crate::config::parse_duration;
use crate::demo::DemoConfig;
use crate::sim::config::SimConfig;
use crate::web::parse_listen_address;

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Address of the fake IMDS and its control API (/_sim/...).
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_LISTEN",
        default_value = SimConfig::DEFAULT_LISTEN,
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub sim: SimArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Behaviour of the simulator.
#[derive(Debug, Args, Clone)]
pub struct SimArgs {
    /// Also answer SNTP on this UDP address (e.g. 127.0.0.1:1123).
    #[arg(long = "ntp-listen", env = "IMDS_EXPORTER_SIM_NTP_LISTEN", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub ntp_listen: Option<SocketAddr>,

    /// How often new credentials are issued in the healthy scenario.
    #[arg(long = "rotate-every", env = "IMDS_EXPORTER_SIM_ROTATE_EVERY", default_value = help::human(SimConfig::DEFAULT_ROTATE_EVERY), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub rotate_every: Duration,

    /// Lifetime of each set of credentials (Expiration - issue time).
    #[arg(long, env = "IMDS_EXPORTER_SIM_LIFETIME", default_value = help::human(SimConfig::DEFAULT_LIFETIME), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub lifetime: Duration,

    /// Seconds added to the clock the NTP answerer reports (positive: our clock looks behind).
    #[arg(
        long = "clock-offset",
        env = "IMDS_EXPORTER_SIM_CLOCK_OFFSET",
        default_value_t = 0.0,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub clock_offset: f64,

    /// Parts per million by which the NTP answerer's offset grows from start-up, on top of
    /// --clock-offset (500: 0.5 ms more every second; negative: it falls). At most 100000 either way.
    #[arg(
        long = "clock-drift",
        env = "IMDS_EXPORTER_SIM_CLOCK_DRIFT",
        default_value_t = 0.0,
        value_name = "PPM",
        allow_negative_numbers = true
    )]
    pub clock_drift: f64,

    /// Delay of the `slow` scenario when the switch gives no ?delay=.
    #[arg(long = "slow-delay", env = "IMDS_EXPORTER_SIM_SLOW_DELAY", default_value = help::human(SimConfig::DEFAULT_SLOW_DELAY), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub slow_delay: Duration,

    /// The scenario at start-up.
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_SCENARIO",
        default_value = SimConfig::DEFAULT_SCENARIO,
        value_name = "NAME"
    )]
    pub scenario: String,

    /// A timeline to play: YAML or JSON list of {at: 30s, scenario: outage} steps.
    #[arg(long, env = "IMDS_EXPORTER_SIM_SCRIPT", value_name = "FILE")]
    pub script: Option<PathBuf>,

    /// Name of the IAM role the fake instance profile carries.
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_ROLE",
        default_value = SimConfig::DEFAULT_ROLE,
        value_name = "NAME"
    )]
    pub role: String,

    /// The Authorization value the container endpoint (/v1/credentials) expects; empty: none.
    #[arg(
        long = "container-token",
        env = "IMDS_EXPORTER_SIM_CONTAINER_TOKEN",
        default_value = SimConfig::DEFAULT_CONTAINER_TOKEN,
        value_name = "TOKEN"
    )]
    pub container_token: String,
}

impl SimArgs {
    pub fn config(&self) -> SimConfig {
        SimConfig {
            ntp_listen: self.ntp_listen,
            rotate_every: self.rotate_every,
            lifetime: self.lifetime,
            clock_offset: self.clock_offset,
            clock_drift: self.clock_drift,
            slow_delay: self.slow_delay,
            scenario: self.scenario.clone(),
            script: self.script.clone(),
            role: self.role.clone(),
            container_token: self.container_token.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the exporter's /metrics (loopback by default; :0 picks a free port).
    #[arg(
        long = "web.listen-address",
        env = "IMDS_EXPORTER_DEMO_WEB_LISTEN_ADDRESS",
        default_value = DemoConfig::DEFAULT_LISTEN_ADDRESS,
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Time between probe runs (short, so that the demo moves).
    #[arg(long = "imds.interval", env = "IMDS_EXPORTER_DEMO_IMDS_INTERVAL", default_value = help::seconds(DemoConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// How often the simulator rotates credentials.
    #[arg(long = "rotate-every", env = "IMDS_EXPORTER_DEMO_ROTATE_EVERY", default_value = help::human(DemoConfig::DEFAULT_ROTATE_EVERY), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub rotate_every: Duration,

    /// Lifetime of each set of simulated credentials.
    #[arg(long, env = "IMDS_EXPORTER_DEMO_LIFETIME", default_value = help::human(DemoConfig::DEFAULT_LIFETIME), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub lifetime: Duration,

    /// The simulator's scenario at start-up.
    #[arg(
        long,
        env = "IMDS_EXPORTER_DEMO_SCENARIO",
        default_value = SimConfig::DEFAULT_SCENARIO,
        value_name = "NAME"
    )]
    pub scenario: String,

    /// A timeline for the simulator to play (see `simulate --help`).
    #[arg(long, env = "IMDS_EXPORTER_DEMO_SCRIPT", value_name = "FILE")]
    pub script: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl DemoArgs {
    pub fn config(&self) -> DemoConfig {
        DemoConfig {
            listen_address: self.listen_address,
            interval: self.interval,
            rotate_every: self.rotate_every,
            lifetime: self.lifetime,
            scenario: self.scenario.clone(),
            script: self.script.clone(),
        }
    }
}
