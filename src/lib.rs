//! imds_exporter: a Prometheus exporter that tells you, before applications fail, that the AWS
//! credentials on an EC2 node are in trouble.
//!
//! Data flows one way: configuration → scheduler → probe → classification → metrics → web.
//! docs/architecture.md is the map; in short:
//! - `cli`: the flags of every subcommand, mapped into the configuration types below, and the
//!   dispatch (the only module that knows flags; nothing imports it);
//! - `config`: what every configuration type shares (the error that names a flag, durations);
//! - `exporter`: the default subcommand: registers the probes with the scheduler, serves the web;
//! - `scheduler`: the one loop that runs every probe on its interval;
//! - `probe`: the probe contract (`Prober`) and the probes: `probe::imds` (the SDK-like
//!   credential probe), `probe::credentials` (parsing and rotation, pure), `probe::ntp` (SNTP);
//! - `collector`: node views read on their own schedule (kernel clock, ENA counters) and the
//!   process metrics;
//! - `labels`: the closed sets of label values (`probe`, `phase`, `reason`);
//! - `thresholds`: the alerting thresholds `check` shares with `alerts/thresholds.yml`;
//! - `metrics`: the registries, the exposition cache, the series common to every probe;
//! - `web`: `/metrics`, the landing page, `/-/healthy`, `/-/ready`; the bounded server (connection
//!   cap, deadlines, shutdown) and `--web.config.file` (TLS, basic auth, headers);
//! - `sim`: the fault-injecting IMDS and NTP simulator (`simulate`);
//! - `demo`: simulator and exporter in one process;
//! - `check`: the one-shot diagnosis (`check`): every probe once, the SDK environment, a report;
//! - `untrusted`: text from outside made safe: AWS id formats, shell and HTML quoting, hidden
//!   characters removed;
//! - `logging`: logfmt/JSON logs; `signals`: graceful shutdown, SIGHUP.

pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod demo;
pub mod exporter;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod scheduler;
pub mod signals;
pub mod sim;
pub mod thresholds;
pub mod untrusted;
pub mod web;

pub use cli::main_with_args;
