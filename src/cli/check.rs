//! The flags of `check`, and their mapping into [`crate::check::CheckConfig`]. `check` shares the
//! exporter's `--imds.endpoint` and `--ntp.*` discovery flags on purpose.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::help;
use crate::check::{CheckConfig, OutputConfig, OutputFormat};
use crate::config::{ConfigError, parse_duration};
use crate::labels::Sdk;
use crate::probe::imds::ImdsConfig;
use crate::probe::ntp::NtpConfig;
use crate::probe::sts::StsConfig;

/// `imds_exporter check`: the probes once, with the flags the exporter uses to find IMDS and NTP.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// IMDS base URL (http:// only) [default: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else the active
    /// profile's ec2_metadata_service_endpoint, else the endpoint $AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE
    /// (else the active profile's ec2_metadata_service_endpoint_mode) selects (http://[fd00:ec2::254]
    /// for IPv6), else http://169.254.169.254]: what an SDK here uses. The exporter honours only
    /// the variable.
    #[arg(
        long = "imds.endpoint",
        env = "IMDS_EXPORTER_IMDS_ENDPOINT",
        value_name = "URL"
    )]
    pub imds_endpoint: Option<String>,

    /// Deadline of each IMDS request. Longer than the SDKs' 1 s on purpose: a slow answer is
    /// measured and compared with the SDK timeout instead of merely timing out.
    #[arg(long = "imds.timeout", env = "IMDS_EXPORTER_CHECK_IMDS_TIMEOUT", default_value = help::seconds(CheckConfig::DEFAULT_IMDS_TIMEOUT), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
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
    #[arg(long = "ntp.timeout", env = "IMDS_EXPORTER_CHECK_NTP_TIMEOUT", default_value = help::seconds(NtpConfig::DEFAULT_TIMEOUT), value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub ntp_timeout: Duration,

    /// Allow public NTP pools and services as --ntp.server.
    #[arg(long = "ntp.allow-public", env = "IMDS_EXPORTER_NTP_ALLOW_PUBLIC")]
    pub ntp_allow_public: bool,

    /// SDK families whose clients run here (repeatable): each gets a verdict; the others are
    /// skipped.
    #[arg(
        long = "imds.sdk",
        env = "IMDS_EXPORTER_IMDS_SDK",
        value_delimiter = ',',
        default_value = help::list(&Sdk::ALL.map(Sdk::as_str)),
        value_name = "FAMILY"
    )]
    pub sdks: Vec<String>,

    /// Report format: aligned text for people, or JSON (schema in docs/check.md).
    #[arg(
        long,
        env = "IMDS_EXPORTER_CHECK_OUTPUT",
        value_enum,
        default_value = "human",
        value_name = "FORMAT"
    )]
    pub output: Output,

    /// Treat warnings as failures (exit 1).
    #[arg(long, env = "IMDS_EXPORTER_CHECK_STRICT")]
    pub strict: bool,

    /// Also check the fetched credentials with a signed STS GetCallerIdentity (needs egress to
    /// STS; the exporter's --sts.enabled).
    #[arg(
        id = "sts.enabled",
        long = "sts.enabled",
        env = "IMDS_EXPORTER_CHECK_STS_ENABLED"
    )]
    pub sts_enabled: bool,

    /// STS URL [default: the regional endpoint, https://sts.REGION.amazonaws.com; never the global one unless given].
    #[arg(
        id = "sts.endpoint",
        long = "sts.endpoint",
        env = "IMDS_EXPORTER_CHECK_STS_ENDPOINT",
        value_name = "URL"
    )]
    pub sts_endpoint: Option<String>,

    /// Region to sign for and whose endpoint to use [default: $AWS_REGION, $AWS_DEFAULT_REGION, else the instance identity document's].
    #[arg(
        id = "sts.region",
        long = "sts.region",
        env = "IMDS_EXPORTER_CHECK_STS_REGION",
        value_name = "REGION"
    )]
    pub sts_region: Option<String>,

    /// Never colour the report (colour is used only on a terminal, and never when NO_COLOR is set).
    #[arg(long = "no-color", env = "IMDS_EXPORTER_CHECK_NO_COLOR")]
    pub no_color: bool,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

impl CheckArgs {
    /// The check's configuration: the flags, this process's environment and `$HOME`.
    pub fn config(&self) -> Result<CheckConfig, ConfigError> {
        let config = CheckConfig {
            imds_endpoint: self.imds_endpoint.clone(),
            imds_timeout: self.imds_timeout,
            ntp_servers: self.ntp_servers.clone(),
            ntp_timeout: self.ntp_timeout,
            ntp_allow_public: self.ntp_allow_public,
            sdks: ImdsConfig::parse_sdks(&self.sdks)?,
            ..CheckConfig::default()
        }
        .with_process_env();
        // Only with --sts.enabled: the region variables are the SDKs', read from the check's
        // environment.
        let sts = match self.sts_enabled {
            false => None,
            true => {
                let sts = StsConfig {
                    endpoint: self.sts_endpoint.clone(),
                    region: StsConfig::region_from(self.sts_region.clone(), |k| {
                        config.env.get(k).cloned()
                    }),
                    ..StsConfig::default()
                };
                sts.validate()?;
                Some(sts)
            }
        };
        Ok(CheckConfig { sts, ..config })
    }

    pub fn output(&self) -> OutputConfig {
        OutputConfig {
            format: match self.output {
                Output::Human => OutputFormat::Human,
                Output::Json => OutputFormat::Json,
            },
            strict: self.strict,
            no_color: self.no_color,
        }
    }
}
