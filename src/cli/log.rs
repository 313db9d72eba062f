//! `--log.level` and `--log.format`, shared by every subcommand.

use clap::Args;

use crate::logging::{LogFormat, LogLevel};

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

impl LogArgs {
    /// Installs the logger these flags ask for.
    pub fn init(&self) {
        crate::logging::init(self.level, self.format);
    }
}
