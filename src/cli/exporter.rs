//! The exporter's flags (the default subcommand), and their mapping into
//! [`crate::exporter::ExporterConfig`]. Defaults come from the configuration types' constants.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::help;
use super::log::LogArgs;
use crate::collector::NodeViewsConfig;
use crate::config::{ConfigError, parse_duration};
use crate::exporter::ExporterConfig;
use crate::labels::Sdk;
use crate::probe::container::ContainerConfig;
use crate::probe::imds::ImdsConfig;
use crate::probe::ntp::NtpConfig;
use crate::probe::sts::StsConfig;
use crate::probe::web_identity::WebIdentityConfig;
use crate::web::{WebConfig, parse_listen_address};

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
    pub container: ContainerArgs,
    #[command(flatten)]
    pub web_identity: WebIdentityArgs,
    #[command(flatten)]
    pub sts: StsArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ExporterArgs {
    /// The exporter's configuration; an invalid value is an error naming its flag.
    pub fn config(&self) -> Result<ExporterConfig, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let sts = StsConfig {
            endpoint: self.sts.endpoint.clone(),
            region: StsConfig::region_from(self.sts.region.clone(), env),
            interval: self.sts.interval,
            timeout: self.sts.timeout,
        };
        let config = ExporterConfig {
            container: ContainerConfig::resolve(
                self.container.endpoint.clone(),
                self.container.token_file.clone(),
                env,
            )
            .map(|c| ContainerConfig {
                interval: self.container.interval,
                timeout: self.container.timeout,
                attempts: self.container.attempts,
                ..c
            }),
            web_identity: WebIdentityConfig::resolve(
                self.web_identity.token_file.clone(),
                self.web_identity.role_arn.clone(),
                env,
            )
            .map(|w| WebIdentityConfig {
                interval: self.web_identity.interval,
                exchange: self.web_identity.exchange.then(|| sts.clone()),
                ..w
            }),
            sts: self.sts.enabled.then_some(sts),
            web: WebConfig {
                listen_address: self.web.listen_address,
                telemetry_path: self.web.telemetry_path.clone(),
                config_file: self.web.config_file.clone(),
                max_connections: self.web.max_connections,
                read_header_timeout: self.web.read_header_timeout,
                idle_timeout: self.web.idle_timeout,
            },
            imds: ImdsConfig {
                endpoint: ImdsConfig::endpoint_from(
                    self.imds.endpoint.clone(),
                    std::env::var(ImdsConfig::ENDPOINT_VARIABLE).ok(),
                ),
                interval: self.imds.interval,
                timeout: self.imds.timeout,
                token_ttl: self.imds.token_ttl,
                sdks: ImdsConfig::parse_sdks(&self.imds.sdks)?,
                outage_check_interval: self.imds.outage_check_interval,
            },
            ntp: self.collectors.ntp().then(|| NtpConfig {
                servers: NtpConfig::servers_or_default(&self.ntp.servers),
                interval: self.ntp.interval,
                timeout: self.ntp.timeout,
                allow_public: self.ntp.allow_public,
            }),
            node: NodeViewsConfig {
                interval: self.collectors.interval,
                clock: self.collectors.clock(),
                ethtool: self.collectors.ethtool(),
                ethtool_interfaces: self.collectors.ethtool_interfaces.clone(),
            },
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to serve /metrics on: host:port, or :port for every address (IPv6 and IPv4).
    #[arg(
        long = "web.listen-address",
        env = "IMDS_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = WebConfig::DEFAULT_LISTEN_ADDRESS,
        value_name = "ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "IMDS_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = WebConfig::DEFAULT_TELEMETRY_PATH,
        value_name = "PATH",
        value_parser = parse_telemetry_path
    )]
    pub telemetry_path: String,

    /// Web configuration file (the exporter-toolkit's format: TLS, mutual TLS, basic auth,
    /// headers); re-read when it changes and on SIGHUP.
    #[arg(
        long = "web.config.file",
        env = "IMDS_EXPORTER_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    /// Connections served at once (also capped by the open-files limit); when reached, the
    /// connection idle the longest is closed to make room.
    #[arg(
        long = "web.max-connections",
        env = "IMDS_EXPORTER_WEB_MAX_CONNECTIONS",
        default_value_t = WebConfig::DEFAULT_MAX_CONNECTIONS,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub max_connections: usize,

    /// Deadline of the TLS handshake and the request head.
    #[arg(
        long = "web.read-header-timeout",
        env = "IMDS_EXPORTER_WEB_READ_HEADER_TIMEOUT",
        default_value = help::seconds(WebConfig::DEFAULT_READ_HEADER_TIMEOUT),
        value_name = "DURATION",
        value_parser = parse_duration,
        allow_hyphen_values = true
    )]
    pub read_header_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request.
    #[arg(
        long = "web.idle-timeout",
        env = "IMDS_EXPORTER_WEB_IDLE_TIMEOUT",
        default_value = help::seconds(WebConfig::DEFAULT_IDLE_TIMEOUT),
        value_name = "DURATION",
        value_parser = parse_duration,
        allow_hyphen_values = true
    )]
    pub idle_timeout: Duration,
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    crate::web::validate_telemetry_path(s).map(|()| s.to_string())
}

#[derive(Debug, Args, Clone)]
pub struct ImdsArgs {
    /// IMDS base URL (http:// only) [default: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254].
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
        default_value = help::seconds(ImdsConfig::DEFAULT_INTERVAL),
        value_name = "DURATION",
        value_parser = parse_duration, allow_hyphen_values = true
    )]
    pub interval: Duration,

    /// Deadline of each IMDS request; 1s is the SDKs' default, so the exporter feels what they feel.
    #[arg(
        long = "imds.timeout",
        env = "IMDS_EXPORTER_IMDS_TIMEOUT",
        default_value = help::seconds(ImdsConfig::DEFAULT_TIMEOUT),
        value_name = "DURATION",
        value_parser = parse_duration, allow_hyphen_values = true
    )]
    pub timeout: Duration,

    /// Lifetime requested for the IMDSv2 session token (1s to 6h).
    #[arg(
        long = "imds.token-ttl",
        env = "IMDS_EXPORTER_IMDS_TOKEN_TTL",
        default_value = help::seconds(ImdsConfig::MAX_TOKEN_TTL),
        value_name = "DURATION",
        value_parser = parse_duration, allow_hyphen_values = true
    )]
    pub token_ttl: Duration,

    /// SDK families whose clients run on this node (repeatable): each gets its verdict series,
    /// and the bundled alerts page only for these.
    #[arg(
        long = "imds.sdk",
        env = "IMDS_EXPORTER_IMDS_SDK",
        value_delimiter = ',',
        default_value = help::list(&Sdk::ALL.map(Sdk::as_str)),
        value_name = "FAMILY"
    )]
    pub sdks: Vec<String>,

    /// Time between the outage watch's checks between probe runs (one credentials request with
    /// the last token); 0s turns the watch off.
    #[arg(
        long = "imds.outage-check-interval",
        env = "IMDS_EXPORTER_IMDS_OUTAGE_CHECK_INTERVAL",
        default_value = help::seconds(ImdsConfig::DEFAULT_OUTAGE_CHECK_INTERVAL),
        value_name = "DURATION",
        value_parser = parse_duration, allow_hyphen_values = true
    )]
    pub outage_check_interval: Duration,
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
    #[arg(id = "ntp.interval", long = "ntp.interval", env = "IMDS_EXPORTER_NTP_INTERVAL", default_value = help::seconds(NtpConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Deadline of each NTP query.
    #[arg(id = "ntp.timeout", long = "ntp.timeout", env = "IMDS_EXPORTER_NTP_TIMEOUT", default_value = help::seconds(NtpConfig::DEFAULT_TIMEOUT), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// Allow public NTP pools and services as --ntp.server (a fleet of DaemonSets must not hammer them).
    #[arg(long = "ntp.allow-public", env = "IMDS_EXPORTER_NTP_ALLOW_PUBLIC")]
    pub allow_public: bool,
}

/// Which node views run, and how often. Each takes `--collector.X=false` or `--no-collector.X`,
/// as in node_exporter.
#[derive(Debug, Args, Clone)]
pub struct CollectorArgs {
    /// Query NTP servers (imds_ntp_*).
    #[arg(id = "collector.ntp", long = "collector.ntp", env = "IMDS_EXPORTER_COLLECTOR_NTP", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ntp: bool,
    #[arg(long = "no-collector.ntp", hide = true)]
    pub no_ntp: bool,

    /// Time between reads of the kernel clock and the ethtool counters (a little jitter is added).
    #[arg(id = "collector.interval", long = "collector.interval", env = "IMDS_EXPORTER_COLLECTOR_INTERVAL", default_value = help::seconds(NodeViewsConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

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
        default_value = NodeViewsConfig::DEFAULT_ETHTOOL_INTERFACES,
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

    pub fn ethtool(&self) -> bool {
        self.ethtool && !self.no_ethtool
    }
}

/// The container credential probe: on when the SDK variables (EKS Pod Identity, ECS) or these
/// flags are set; absent otherwise.
#[derive(Debug, Args, Clone)]
pub struct ContainerArgs {
    /// Container credential endpoint (full URL) [default: $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on http://169.254.170.2, else $AWS_CONTAINER_CREDENTIALS_FULL_URI; the probe is off without one].
    #[arg(
        id = "container.endpoint",
        long = "container.endpoint",
        env = "IMDS_EXPORTER_CONTAINER_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,

    /// File holding the Authorization token, read at every run [default: $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE]; alone, it turns the probe on against the Pod Identity agent (http://169.254.170.23/v1/credentials).
    #[arg(
        id = "container.token-file",
        long = "container.token-file",
        env = "IMDS_EXPORTER_CONTAINER_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,

    /// Time between runs of the container probe.
    #[arg(id = "container.interval", long = "container.interval", env = "IMDS_EXPORTER_CONTAINER_INTERVAL", default_value = help::seconds(ContainerConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Deadline of each attempt (botocore's: 2s).
    #[arg(id = "container.timeout", long = "container.timeout", env = "IMDS_EXPORTER_CONTAINER_TIMEOUT", default_value = help::seconds(ContainerConfig::DEFAULT_TIMEOUT), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// Attempts per run, 1s apart (botocore's: 3).
    #[arg(id = "container.attempts", long = "container.attempts", env = "IMDS_EXPORTER_CONTAINER_ATTEMPTS", default_value_t = ContainerConfig::DEFAULT_ATTEMPTS, value_name = "N")]
    pub attempts: u32,
}

/// The web identity (IRSA) probe: on when AWS_WEB_IDENTITY_TOKEN_FILE or these flags are set.
#[derive(Debug, Args, Clone)]
pub struct WebIdentityArgs {
    /// The projected service-account token [default: $AWS_WEB_IDENTITY_TOKEN_FILE; the probe is off without one].
    #[arg(
        id = "web-identity.token-file",
        long = "web-identity.token-file",
        env = "IMDS_EXPORTER_WEB_IDENTITY_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,

    /// The role to assume [default: $AWS_ROLE_ARN].
    #[arg(
        id = "web-identity.role-arn",
        long = "web-identity.role-arn",
        env = "IMDS_EXPORTER_WEB_IDENTITY_ROLE_ARN",
        value_name = "ARN"
    )]
    pub role_arn: Option<String>,

    /// Time between runs of the web identity probe.
    #[arg(id = "web-identity.interval", long = "web-identity.interval", env = "IMDS_EXPORTER_WEB_IDENTITY_INTERVAL", default_value = help::seconds(WebIdentityConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Also exchange the token at STS (AssumeRoleWithWebIdentity; needs egress to STS, and
    /// --sts.region or --sts.endpoint).
    #[arg(
        id = "web-identity.exchange",
        long = "web-identity.exchange",
        env = "IMDS_EXPORTER_WEB_IDENTITY_EXCHANGE"
    )]
    pub exchange: bool,
}

/// The STS probe: opt-in.
#[derive(Debug, Args, Clone)]
pub struct StsArgs {
    /// Check the fetched credentials with a signed GetCallerIdentity (needs egress to STS).
    #[arg(
        id = "sts.enabled",
        long = "sts.enabled",
        env = "IMDS_EXPORTER_STS_ENABLED"
    )]
    pub enabled: bool,

    /// STS URL [default: the regional endpoint, https://sts.REGION.amazonaws.com; never the global one unless given].
    #[arg(
        id = "sts.endpoint",
        long = "sts.endpoint",
        env = "IMDS_EXPORTER_STS_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,

    /// Region to sign for and whose endpoint to use [default: $AWS_REGION, $AWS_DEFAULT_REGION, else the instance identity document's].
    #[arg(
        id = "sts.region",
        long = "sts.region",
        env = "IMDS_EXPORTER_STS_REGION",
        value_name = "REGION"
    )]
    pub region: Option<String>,

    /// Time between STS checks.
    #[arg(id = "sts.interval", long = "sts.interval", env = "IMDS_EXPORTER_STS_INTERVAL", default_value = help::seconds(StsConfig::DEFAULT_INTERVAL), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Deadline of each STS request.
    #[arg(id = "sts.timeout", long = "sts.timeout", env = "IMDS_EXPORTER_STS_TIMEOUT", default_value = help::seconds(StsConfig::DEFAULT_TIMEOUT), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
}
