//! Command-line flags and their validation, and the dispatch to subcommands.
//!
//! Flags follow the Prometheus exporters' dotted style (`--web.listen-address`,
//! `--imds.interval`); every flag has an `IMDS_EXPORTER_...` environment twin for DaemonSets.
//! Values that parse but make no sense (a zero interval, a token TTL IMDS would refuse) are
//! rejected here, with the flag's name, before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::{LogFormat, LogLevel};

/// The default IMDS endpoint, for real EC2 nodes only. Tests and demos always pass loopback.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The Amazon Time Sync Service, for real EC2 nodes only.
pub const DEFAULT_NTP_SERVER: &str = "169.254.169.123:123";

#[derive(Debug, Parser)]
#[command(
    name = "imds_exporter",
    version,
    about = "Prometheus exporter for the health of EC2 instance credentials: IMDS, credential rotation and the clock.",
    long_about = "Probes the EC2 Instance Metadata Service (IMDS) the way an AWS SDK does, and the \
                  Amazon Time Sync Service, in the background, and serves the results on /metrics.\n\n\
                  Without a subcommand it runs the exporter.",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a fault-injecting fake IMDS (and NTP server) for demos, alert rehearsal and tests.
    Simulate(SimulateArgs),
    /// Run the simulator and the exporter against it in one process, on loopback.
    Demo(DemoArgs),
    /// Diagnose this node (or pod) once: every probe, the SDK environment, a report with fixes.
    /// Exits 0 when nothing failed, 1 when something did, 2 when the check could not run.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ExporterArgs {
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub imds: ImdsArgs,
    #[command(flatten)]
    pub ntp: NtpArgs,
    #[command(flatten)]
    pub collectors: CollectorArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ExporterArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.imds.validate()?;
        if self.collectors.ntp() {
            self.ntp.validate()?;
        }
        self.collectors.ethtool_filter()?;
        Ok(())
    }

    /// The exporter's configuration, once [`Self::validate`] has passed.
    pub fn config(&self) -> Result<crate::exporter::ExporterConfig, String> {
        self.validate()?;
        Ok(crate::exporter::ExporterConfig {
            listen: self.web.listen_address,
            telemetry_path: self.web.telemetry_path.clone(),
            imds: self.imds.probe_config(),
            imds_interval: self.imds.interval,
            ntp: self.collectors.ntp().then(|| self.ntp.probe_config()),
            clock: self.collectors.clock(),
            ethtool: self.collectors.ethtool_filter()?,
        })
    }
}

#[derive(Debug, Args, Clone)]
pub struct NtpArgs {
    /// NTP server to query, host:port (repeatable) [default: 169.254.169.123:123, the Amazon Time Sync Service].
    #[arg(
        long = "ntp.server",
        env = "IMDS_EXPORTER_NTP_SERVER",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub servers: Vec<String>,

    /// Time between NTP queries (a little jitter is added).
    #[arg(id = "ntp.interval", long = "ntp.interval", env = "IMDS_EXPORTER_NTP_INTERVAL", default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,

    /// Deadline of each NTP query.
    #[arg(id = "ntp.timeout", long = "ntp.timeout", env = "IMDS_EXPORTER_NTP_TIMEOUT", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Allow public NTP pools and services as --ntp.server (a fleet of DaemonSets must not hammer them).
    #[arg(long = "ntp.allow-public", env = "IMDS_EXPORTER_NTP_ALLOW_PUBLIC")]
    pub allow_public: bool,
}

impl NtpArgs {
    pub fn servers(&self) -> Vec<String> {
        ntp_servers_or_default(&self.servers)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("--ntp.interval must be greater than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--ntp.timeout must be greater than 0".into());
        }
        for s in self.servers() {
            crate::probe::ntp::validate_server_name(&s, self.allow_public)
                .map_err(|e| format!("--ntp.server: {e}"))?;
        }
        Ok(())
    }

    pub fn probe_config(&self) -> crate::exporter::NtpConfig {
        crate::exporter::NtpConfig {
            servers: self.servers(),
            interval: self.interval,
            timeout: self.timeout,
        }
    }
}

/// The servers given, with port 123 added where missing, or the Amazon Time Sync Service.
pub fn ntp_servers_or_default(servers: &[String]) -> Vec<String> {
    if servers.is_empty() {
        vec![DEFAULT_NTP_SERVER.to_string()]
    } else {
        servers.iter().map(|s| normalize_ntp_server(s)).collect()
    }
}

/// Adds NTP's port 123 to a server given without one.
pub fn normalize_ntp_server(s: &str) -> String {
    let s = s.trim();
    if s.parse::<SocketAddr>().is_ok() {
        return s.to_string();
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{s}]:123");
    }
    if s.starts_with('[') && !s.contains("]:") {
        return format!("{s}:123");
    }
    if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:123")
    }
}

/// Which node views run. Each takes `--collector.X=false` or `--no-collector.X`, as in
/// node_exporter.
#[derive(Debug, Args, Clone)]
pub struct CollectorArgs {
    /// Query NTP servers (imds_ntp_*).
    #[arg(id = "collector.ntp", long = "collector.ntp", env = "IMDS_EXPORTER_COLLECTOR_NTP", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ntp: bool,
    #[arg(long = "no-collector.ntp", hide = true)]
    pub no_ntp: bool,

    /// Read the kernel's clock status with adjtimex(2) (imds_clock_*).
    #[arg(id = "collector.clock", long = "collector.clock", env = "IMDS_EXPORTER_COLLECTOR_CLOCK", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub clock: bool,
    #[arg(long = "no-collector.clock", hide = true)]
    pub no_clock: bool,

    /// Read ENA allowance counters with ethtool (imds_*_allowance_exceeded_total).
    #[arg(id = "collector.ethtool", long = "collector.ethtool", env = "IMDS_EXPORTER_COLLECTOR_ETHTOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ethtool: bool,
    #[arg(long = "no-collector.ethtool", hide = true)]
    pub no_ethtool: bool,

    /// Regex of the interfaces whose ethtool statistics are read (anchored).
    #[arg(
        long = "collector.ethtool.interfaces",
        env = "IMDS_EXPORTER_COLLECTOR_ETHTOOL_INTERFACES",
        default_value = ".*",
        value_name = "REGEX"
    )]
    pub ethtool_interfaces: String,
}

impl CollectorArgs {
    pub fn ntp(&self) -> bool {
        self.ntp && !self.no_ntp
    }

    pub fn clock(&self) -> bool {
        self.clock && !self.no_clock
    }

    /// The anchored interface filter, or `None` when the ethtool view is off.
    pub fn ethtool_filter(&self) -> Result<Option<regex_lite::Regex>, String> {
        if !self.ethtool || self.no_ethtool {
            return Ok(None);
        }
        regex_lite::Regex::new(&format!("^(?:{})$", self.ethtool_interfaces))
            .map(Some)
            .map_err(|e| format!("--collector.ethtool.interfaces: {e}"))
    }
}

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to serve /metrics on: host:port, or :port for every address (IPv6 and IPv4).
    #[arg(
        long = "web.listen-address",
        env = "IMDS_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = ":19254",
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "IMDS_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_name = "PATH",
        value_parser = parse_telemetry_path
    )]
    pub telemetry_path: String,
}

#[derive(Debug, Args, Clone)]
pub struct ImdsArgs {
    /// IMDS base URL [default: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254].
    #[arg(
        long = "imds.endpoint",
        env = "IMDS_EXPORTER_IMDS_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,

    /// Time between probe runs (a little jitter is added; runs never overlap).
    #[arg(
        long = "imds.interval",
        env = "IMDS_EXPORTER_IMDS_INTERVAL",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub interval: Duration,

    /// Deadline of each IMDS request; 1s is the SDKs' default, so the exporter feels what they feel.
    #[arg(
        long = "imds.timeout",
        env = "IMDS_EXPORTER_IMDS_TIMEOUT",
        default_value = "1s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub timeout: Duration,

    /// Lifetime requested for the IMDSv2 session token (1s to 6h).
    #[arg(
        long = "imds.token-ttl",
        env = "IMDS_EXPORTER_IMDS_TOKEN_TTL",
        default_value = "21600s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub token_ttl: Duration,
}

impl ImdsArgs {
    /// The endpoint in force: the flag (or its env twin), then the SDKs' variable, then EC2's.
    pub fn effective_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| {
                std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_string())
    }

    /// Checks what parsing cannot; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("--imds.interval must be greater than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--imds.timeout must be greater than 0".into());
        }
        let ttl = self.token_ttl.as_secs();
        if self.token_ttl.subsec_nanos() != 0 || !(1..=21600).contains(&ttl) {
            return Err(format!(
                "--imds.token-ttl must be whole seconds from 1s to 21600s (6h), got {}",
                humantime::format_duration(self.token_ttl)
            ));
        }
        Ok(())
    }

    pub fn probe_config(&self) -> crate::probe::imds::ImdsConfig {
        crate::probe::imds::ImdsConfig {
            endpoint: self.effective_endpoint(),
            timeout: self.timeout,
            token_ttl_seconds: self.token_ttl.as_secs() as u32,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Only log messages with the given severity or above.
    #[arg(
        long = "log.level",
        env = "IMDS_EXPORTER_LOG_LEVEL",
        default_value = "info",
        value_enum
    )]
    pub level: LogLevel,

    /// Output format of log messages.
    #[arg(
        long = "log.format",
        env = "IMDS_EXPORTER_LOG_FORMAT",
        default_value = "logfmt",
        value_enum
    )]
    pub format: LogFormat,
}

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Address of the fake IMDS and its control API (/_sim/...).
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_LISTEN",
        default_value = "127.0.0.1:1338",
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub sim: SimOptions,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Behaviour of the simulator, shared by `simulate` and `demo`.
#[derive(Debug, Args, Clone)]
pub struct SimOptions {
    /// Also answer SNTP on this UDP address (e.g. 127.0.0.1:1123).
    #[arg(long = "ntp-listen", env = "IMDS_EXPORTER_SIM_NTP_LISTEN", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub ntp_listen: Option<SocketAddr>,

    /// How often new credentials are issued in the healthy scenario.
    #[arg(long = "rotate-every", env = "IMDS_EXPORTER_SIM_ROTATE_EVERY", default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub rotate_every: Duration,

    /// Lifetime of each set of credentials (Expiration - issue time).
    #[arg(long, env = "IMDS_EXPORTER_SIM_LIFETIME", default_value = "6h", value_name = "DURATION", value_parser = parse_duration)]
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
    #[arg(long = "slow-delay", env = "IMDS_EXPORTER_SIM_SLOW_DELAY", default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub slow_delay: Duration,

    /// The scenario at start-up.
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_SCENARIO",
        default_value = "healthy",
        value_name = "NAME"
    )]
    pub scenario: String,

    /// A timeline to play: YAML or JSON list of {at: 30s, scenario: outage} steps.
    #[arg(long, env = "IMDS_EXPORTER_SIM_SCRIPT", value_name = "FILE")]
    pub script: Option<std::path::PathBuf>,

    /// Name of the IAM role the fake instance profile carries.
    #[arg(
        long,
        env = "IMDS_EXPORTER_SIM_ROLE",
        default_value = "imds-exporter-demo-role",
        value_name = "NAME"
    )]
    pub role: String,
}

impl SimOptions {
    /// The options as `simulate` would parse them from `flags` (for tests).
    #[cfg(test)]
    pub(crate) fn from_flags(flags: &[&str]) -> SimOptions {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            o: SimOptions,
        }
        Wrap::parse_from(std::iter::once("simulate").chain(flags.iter().copied())).o
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rotate_every.is_zero() {
            return Err("--rotate-every must be greater than 0".into());
        }
        crate::sim::limits::check_flags(self)?;
        if self.lifetime <= self.rotate_every {
            return Err(format!(
                "--lifetime ({}) must be longer than --rotate-every ({}): new credentials must appear before the old ones expire",
                humantime::format_duration(self.lifetime),
                humantime::format_duration(self.rotate_every)
            ));
        }
        if !self.clock_offset.is_finite() || self.clock_offset.abs() > 1e9 {
            return Err("--clock-offset must be a number of seconds".into());
        }
        crate::sim::limits::clock_drift(self.clock_drift)
            .map_err(|e| format!("--clock-drift {e}"))?;
        crate::sim::scenario::Scenario::parse(&self.scenario, &Default::default(), self)
            .map_err(|e| format!("--scenario: {e}"))?;
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the exporter's /metrics (loopback by default; :0 picks a free port).
    #[arg(
        long = "web.listen-address",
        env = "IMDS_EXPORTER_DEMO_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:19254",
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Time between probe runs (short, so that the demo moves).
    #[arg(long = "imds.interval", env = "IMDS_EXPORTER_DEMO_IMDS_INTERVAL", default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,

    /// How often the simulator rotates credentials.
    #[arg(long = "rotate-every", env = "IMDS_EXPORTER_DEMO_ROTATE_EVERY", default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub rotate_every: Duration,

    /// Lifetime of each set of simulated credentials.
    #[arg(long, env = "IMDS_EXPORTER_DEMO_LIFETIME", default_value = "30m", value_name = "DURATION", value_parser = parse_duration)]
    pub lifetime: Duration,

    /// The simulator's scenario at start-up.
    #[arg(
        long,
        env = "IMDS_EXPORTER_DEMO_SCENARIO",
        default_value = "healthy",
        value_name = "NAME"
    )]
    pub scenario: String,

    /// A timeline for the simulator to play (see `simulate --help`).
    #[arg(long, env = "IMDS_EXPORTER_DEMO_SCRIPT", value_name = "FILE")]
    pub script: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `imds_exporter check`: the probes once, with the flags the exporter uses to find IMDS and NTP.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// IMDS base URL [default: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else the endpoint
    /// $AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE selects, else http://169.254.169.254].
    #[arg(
        long = "imds.endpoint",
        env = "IMDS_EXPORTER_IMDS_ENDPOINT",
        value_name = "URL"
    )]
    pub imds_endpoint: Option<String>,

    /// Deadline of each IMDS request. Longer than the SDKs' 1 s on purpose: a slow answer is
    /// measured and compared with the SDK timeout instead of merely timing out.
    #[arg(long = "imds.timeout", env = "IMDS_EXPORTER_CHECK_IMDS_TIMEOUT", default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub imds_timeout: Duration,

    /// NTP server to query, host:port (repeatable) [default: 169.254.169.123:123, the Amazon Time Sync Service].
    #[arg(
        long = "ntp.server",
        env = "IMDS_EXPORTER_NTP_SERVER",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub ntp_servers: Vec<String>,

    /// Deadline of each NTP query.
    #[arg(long = "ntp.timeout", env = "IMDS_EXPORTER_CHECK_NTP_TIMEOUT", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub ntp_timeout: Duration,

    /// Allow public NTP pools and services as --ntp.server.
    #[arg(long = "ntp.allow-public", env = "IMDS_EXPORTER_NTP_ALLOW_PUBLIC")]
    pub ntp_allow_public: bool,

    /// Report format: aligned text for people, or JSON (schema in docs/check.md).
    #[arg(
        long,
        env = "IMDS_EXPORTER_CHECK_OUTPUT",
        value_enum,
        default_value = "human",
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,

    /// Treat warnings as failures (exit 1).
    #[arg(long, env = "IMDS_EXPORTER_CHECK_STRICT")]
    pub strict: bool,

    /// Never colour the report (colour is used only on a terminal, and never when NO_COLOR is set).
    #[arg(long = "no-color", env = "IMDS_EXPORTER_CHECK_NO_COLOR")]
    pub no_color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

/// Parses `30s`, `100ms`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 100ms, 30s, 5m or 1h)"))
}

/// Parses `host:port` or `:port`. Like Go exporters, `:port` means every address: `[::]:port`,
/// bound dual-stack (IPv4 too) by [`crate::web::bind`], which falls back to `0.0.0.0:port` on a
/// node without IPv6.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let full = if let Some(port) = s.strip_prefix(':') {
        format!("[::]:{port}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{e} (expected host:port or :port, e.g. :19254)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    let reserved = ["/", "/-/healthy", "/-/ready"];
    if !s.starts_with('/') || s.len() < 2 || s.contains(char::is_whitespace) {
        return Err("must be a path such as /metrics".into());
    }
    if reserved.contains(&s) {
        return Err(format!("{s} is served by the exporter itself"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag of the exporter and of each subcommand has an `IMDS_EXPORTER_...` twin, and the
    /// subcommands' own flags carry the subcommand's name (`check` shares the exporter's
    /// `--imds.endpoint`/`--ntp.*` discovery flags on purpose; the log flags are shared).
    #[test]
    fn every_flag_has_an_environment_twin() {
        let shared = [
            "IMDS_EXPORTER_IMDS_ENDPOINT",
            "IMDS_EXPORTER_NTP_SERVER",
            "IMDS_EXPORTER_NTP_ALLOW_PUBLIC",
            "IMDS_EXPORTER_LOG_LEVEL",
            "IMDS_EXPORTER_LOG_FORMAT",
        ];
        let root = Cli::command();
        let mut commands = vec![(String::new(), root.clone())];
        commands.extend(
            root.get_subcommands()
                .map(|c| (c.get_name().to_string(), c.clone())),
        );
        let mut missing = Vec::new();
        for (name, command) in &commands {
            let prefix = match name.as_str() {
                "" => "IMDS_EXPORTER_".to_string(),
                "simulate" => "IMDS_EXPORTER_SIM_".to_string(),
                other => format!("IMDS_EXPORTER_{}_", other.to_uppercase()),
            };
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version"].contains(&long) || long.starts_with("no-collector.") {
                    continue; // --no-collector.X is the negation of --collector.X (same twin)
                }
                match arg.get_env().and_then(|e| e.to_str()) {
                    None => missing.push(format!("{name} --{long}: no env twin")),
                    Some(env) if !env.starts_with(&prefix) && !shared.contains(&env) => {
                        missing.push(format!("{name} --{long}: {env} lacks {prefix}"))
                    }
                    Some(_) => {}
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("imds_exporter").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = parse(&[]).unwrap();
        let e = cli.exporter;
        assert_eq!(e.web.listen_address, "[::]:19254".parse().unwrap());
        assert_eq!(e.web.telemetry_path, "/metrics");
        assert_eq!(e.imds.interval, Duration::from_secs(30));
        assert_eq!(e.imds.timeout, Duration::from_secs(1));
        assert_eq!(e.imds.token_ttl, Duration::from_secs(21600));
        assert!(e.imds.validate().is_ok());
        assert_eq!(e.ntp.servers(), ["169.254.169.123:123"]);
        assert_eq!(e.ntp.interval, Duration::from_secs(60));
        assert!(e.collectors.ntp() && e.collectors.clock());
        assert!(e.collectors.ethtool_filter().unwrap().is_some());
    }

    #[test]
    fn collectors_can_be_switched_off_both_ways() {
        let cli = parse(&["--collector.ntp=false", "--no-collector.ethtool"]).unwrap();
        assert!(!cli.exporter.collectors.ntp());
        assert!(cli.exporter.collectors.ethtool_filter().unwrap().is_none());
        assert!(cli.exporter.collectors.clock());
    }

    #[test]
    fn ntp_servers_get_port_123_and_public_pools_are_refused() {
        let cli = parse(&["--ntp.server", "127.0.0.1:1", "--ntp.server", "127.0.0.2"]).unwrap();
        assert_eq!(
            cli.exporter.ntp.servers(),
            ["127.0.0.1:1", "127.0.0.2:123"],
            "repeatable"
        );
        assert_eq!(normalize_ntp_server("127.0.0.1"), "127.0.0.1:123");
        assert_eq!(normalize_ntp_server("fd00:ec2::123"), "[fd00:ec2::123]:123");
        assert_eq!(normalize_ntp_server("[::1]:1123"), "[::1]:1123");
        assert_eq!(normalize_ntp_server("time.internal"), "time.internal:123");
        let cli = parse(&["--ntp.server", "0.pool.ntp.org"]).unwrap();
        let err = cli.exporter.validate().unwrap_err();
        assert!(
            err.contains("--ntp.server") && err.contains("--ntp.allow-public"),
            "{err}"
        );
        let cli = parse(&["--ntp.server", "0.pool.ntp.org", "--ntp.allow-public"]).unwrap();
        assert!(cli.exporter.validate().is_ok());
        let cli = parse(&["--collector.ethtool.interfaces", "eth(0"]).unwrap();
        assert!(
            cli.exporter
                .validate()
                .unwrap_err()
                .contains("--collector.ethtool.interfaces")
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--imds.interval", "soon"], "--imds.interval"),
            (&["--imds.timeout=-1s"], "--imds.timeout"),
            (
                &["--web.listen-address", "nonsense"],
                "--web.listen-address",
            ),
            (&["--web.telemetry-path", "metrics"], "--web.telemetry-path"),
            (&["--log.level", "loud"], "--log.level"),
            (&["--log.format", "xml"], "--log.format"),
        ];
        for (args, flag) in cases {
            let err = parse(args).expect_err(flag);
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        for (args, flag) in [
            (["--imds.interval", "0s"], "--imds.interval"),
            (["--imds.token-ttl", "7h"], "--imds.token-ttl"),
            (["--imds.token-ttl", "1500ms"], "--imds.token-ttl"),
        ] {
            let cli = parse(&args).unwrap();
            let err = cli.exporter.imds.validate().expect_err(flag);
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn sub_second_intervals_are_allowed() {
        let cli = parse(&["--imds.interval", "100ms"]).unwrap();
        assert_eq!(cli.exporter.imds.interval, Duration::from_millis(100));
        assert!(cli.exporter.imds.validate().is_ok());
    }

    #[test]
    fn listen_addresses_accept_the_go_style() {
        assert_eq!(
            parse_listen_address(":9100").unwrap(),
            "[::]:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_listen_address("[::1]:80").is_ok());
        assert!(parse_listen_address("9100").is_err());
    }

    #[test]
    fn subcommands_parse() {
        assert!(matches!(
            parse(&["simulate", "--listen", "127.0.0.1:0"])
                .unwrap()
                .command,
            Some(Command::Simulate(_))
        ));
        assert!(matches!(
            parse(&["demo"]).unwrap().command,
            Some(Command::Demo(_))
        ));
    }

    #[test]
    fn check_parses_with_its_defaults() {
        let Some(Command::Check(args)) = parse(&["check"]).unwrap().command else {
            panic!("not check");
        };
        assert_eq!(args.imds_timeout, Duration::from_secs(2));
        assert_eq!(args.ntp_timeout, Duration::from_secs(1));
        assert_eq!(args.output, OutputFormat::Human);
        assert!(!args.strict && !args.no_color && args.ntp_servers.is_empty());
        let Some(Command::Check(args)) = parse(&[
            "check",
            "--imds.endpoint",
            "http://127.0.0.1:1",
            "--ntp.server",
            "127.0.0.1:2",
            "--ntp.server",
            "127.0.0.1:3",
            "--output",
            "json",
            "--strict",
        ])
        .unwrap()
        .command
        else {
            panic!("not check");
        };
        assert_eq!(args.ntp_servers, ["127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(args.output, OutputFormat::Json);
        assert!(args.strict);
        assert!(parse(&["check", "--output", "xml"]).is_err());
    }
}
