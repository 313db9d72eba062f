//! imds_exporter: a Prometheus exporter that tells you, before applications fail, that the AWS
//! credentials on an EC2 node are in trouble.
//!
//! Layout:
//! - `cli`: flags, their validation and the subcommands;
//! - `exporter`: the background probe loops and the HTTP server (default subcommand);
//! - `web`: `/metrics`, the landing page, `/-/healthy`, `/-/ready`;
//! - `metrics`: every metric name, HELP string and label: the one place they are spelled;
//! - `probe`: the label vocabularies (`probe`, `phase`, `reason`), and the probes:
//!   `probe::imds` (the SDK-like credential probe), `probe::credentials` (parsing and rotation,
//!   pure), `probe::ntp` (SNTP);
//! - `collector`: node views served from a cache: kernel clock (adjtimex), ENA allowance
//!   counters (ethtool);
//! - `sim`: the fault-injecting IMDS and NTP simulator (`simulate`);
//! - `demo`: simulator and exporter in one process;
//! - `check`: the one-shot diagnosis (`check`): every probe once, the SDK environment, a report;
//! - `logging`: logfmt/JSON logs.

pub mod check;
pub mod cli;
pub mod collector;
pub mod demo;
pub mod exporter;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod sim;
pub mod web;

/// What a subcommand returns to `main`: an error is a message that names what was wrong.
pub type CliResult = Result<(), String>;

/// Resolves on SIGINT or SIGTERM. A second one while the caller shuts down exits at once
/// (status 130), as a second Ctrl-C is expected to.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Registered here, before the caller starts anything: a SIGINT or SIGTERM that arrives while
    // the servers start is then a graceful shutdown, not the default action (death).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn one(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async fn either(a: &mut Option<Signal>, b: &mut Option<Signal>) {
            tokio::select! {
                _ = one(a) => {}
                _ = one(b) => {}
            }
        }
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        async move {
            either(&mut interrupt, &mut terminate).await;
            tokio::spawn(async move {
                either(&mut interrupt, &mut terminate).await;
                tracing::warn!("second signal: exiting without waiting for the shutdown");
                std::process::exit(130);
            });
        }
    }
    // Elsewhere only Ctrl-C, registered when first polled.
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    /// The handlers exist as soon as `shutdown_signal()` returns, before it is polled: a signal
    /// raised in between is caught (the default action would end this test process).
    #[tokio::test]
    async fn a_signal_before_the_first_poll_is_caught() {
        let stop = super::shutdown_signal();
        // SAFETY: raise(3) on this process; the handler above is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), stop)
            .await
            .expect("the raised SIGTERM ends the wait");
    }
}

/// Parses the command line and runs the chosen subcommand. `Ok` carries the exit code: the
/// long-running subcommands end with success, `check` with its verdict (0 or 1); `Err` is a
/// subcommand that could not run, which `main` turns into exit code 2.
pub async fn main_with_args() -> Result<std::process::ExitCode, String> {
    use clap::Parser;
    let cli = cli::Cli::parse();
    let done = |r: CliResult| r.map(|()| std::process::ExitCode::SUCCESS);
    match cli.command {
        None => done(exporter::run(cli.exporter).await),
        Some(cli::Command::Simulate(args)) => done(sim::run(args).await),
        Some(cli::Command::Demo(args)) => done(demo::run(args).await),
        Some(cli::Command::Check(args)) => check::run_cli(args).await,
    }
}
