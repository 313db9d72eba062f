//! The command line: the flags of every subcommand and their mapping into the configuration
//! types that the modules own, and the dispatch to the subcommands. Nothing else imports this
//! module; it only translates flags (and their `IMDS_EXPORTER_...` twins) into configuration.
//!
//! Flags follow the Prometheus exporters' dotted style (`--web.listen-address`,
//! `--imds.interval`); every flag has an environment twin for DaemonSets. A value that parses
//! but makes no sense (a zero interval, a token TTL IMDS would refuse) is refused by the
//! configuration's `validate`, with the flag's name, before anything starts.
//!
//! Layout: `exporter` (the default subcommand's flags), `simulate` (`simulate` and `demo`),
//! `check`, `log` (shared log flags), `help` (how defaults are shown), `origin` (errors that name
//! the environment variable a bad value came from).

mod check;
mod exporter;
mod help;
mod log;
mod origin;
mod simulate;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use self::check::CheckArgs;
pub use self::exporter::ExporterArgs;
pub use self::simulate::{DemoArgs, SimulateArgs};

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

/// Parses the command line and runs the chosen subcommand. `Ok` carries the exit code: the
/// long-running subcommands end with success, `check` with its verdict (0 or 1); `Err` is a
/// subcommand that could not run, which `main` turns into exit code 2.
pub async fn main_with_args() -> Result<std::process::ExitCode, String> {
    let matches =
        origin::parse(Cli::command(), std::env::args_os().collect()).unwrap_or_else(|e| e.exit());
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    // A value that parses but makes no sense stops start-up here, naming its flag (and the
    // environment variable, when that is where it came from), before anything is bound or sent.
    let explain = |e| origin::explain(e, &Cli::command(), &matches);
    let success = |()| std::process::ExitCode::SUCCESS;
    match cli.command {
        None => {
            cli.exporter.log.init();
            let config = cli.exporter.config().map_err(explain)?;
            crate::exporter::run(config).await.map(success)
        }
        Some(Command::Simulate(args)) => {
            args.log.init();
            let config = args.sim.config();
            config.validate().map_err(explain)?;
            crate::sim::run(args.listen, config).await.map(success)
        }
        Some(Command::Demo(args)) => {
            args.log.init();
            let config = args.config();
            config.validate().map_err(explain)?;
            crate::demo::run(config).await.map(success)
        }
        Some(Command::Check(args)) => {
            let config = args.config().map_err(explain)?;
            config.validate().map_err(explain)?;
            crate::check::run_and_print(config, args.output()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::ExporterConfig;
    use crate::probe::imds::ImdsConfig;
    use crate::probe::ntp::{NtpConfig, normalize_server};
    use crate::web::parse_listen_address;
    use clap::CommandFactory;
    use std::time::Duration;

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
            "IMDS_EXPORTER_IMDS_SDK",
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

    /// The flags' defaults are the configuration types' defaults (the AWS SDK variable aside).
    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = parse(&[]).unwrap();
        let c = cli.exporter.config().unwrap();
        assert_eq!(c.web.listen_address, "[::]:19254".parse().unwrap());
        assert_eq!(c.web.telemetry_path, "/metrics");
        assert_eq!(c.web.config_file, None);
        assert_eq!(c.web.max_connections, 64);
        assert_eq!(c.web.read_header_timeout, Duration::from_secs(5));
        assert_eq!(c.web.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.imds.interval, Duration::from_secs(30));
        assert_eq!(c.imds.timeout, Duration::from_secs(1));
        assert_eq!(c.imds.token_ttl, Duration::from_secs(21600));
        let ntp = c.ntp.as_ref().expect("the ntp probe is on");
        assert_eq!(ntp.servers, ["169.254.169.123:123"]);
        assert_eq!(ntp.interval, Duration::from_secs(60));
        assert_eq!(c.node.interval, Duration::from_secs(60));
        assert!(c.node.clock && c.node.ethtool);
        let defaults = ExporterConfig {
            imds: ImdsConfig {
                endpoint: c.imds.endpoint.clone(),
                ..ImdsConfig::default()
            },
            ntp: Some(NtpConfig::default()),
            ..ExporterConfig::default()
        };
        assert_eq!(c, defaults);
    }

    #[test]
    fn the_node_views_have_their_own_interval() {
        let c = parse(&["--ntp.interval", "10s", "--collector.interval", "2m"])
            .unwrap()
            .exporter
            .config()
            .unwrap();
        assert_eq!(c.ntp.unwrap().interval, Duration::from_secs(10));
        assert_eq!(c.node.interval, Duration::from_secs(120));
        let err = parse(&["--collector.interval", "0s"])
            .unwrap()
            .exporter
            .config()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--collector.interval must be greater than 0"
        );
    }

    #[test]
    fn collectors_can_be_switched_off_both_ways() {
        let cli = parse(&["--collector.ntp=false", "--no-collector.ethtool"]).unwrap();
        let c = cli.exporter.config().unwrap();
        assert!(c.ntp.is_none());
        assert!(!c.node.ethtool);
        assert!(c.node.clock);
    }

    #[test]
    fn ntp_servers_get_port_123_and_public_pools_are_refused() {
        let cli = parse(&["--ntp.server", "127.0.0.1:1", "--ntp.server", "127.0.0.2"]).unwrap();
        assert_eq!(
            cli.exporter.config().unwrap().ntp.unwrap().servers,
            ["127.0.0.1:1", "127.0.0.2:123"],
            "repeatable"
        );
        assert_eq!(normalize_server("127.0.0.1"), "127.0.0.1:123");
        assert_eq!(normalize_server("fd00:ec2::123"), "[fd00:ec2::123]:123");
        assert_eq!(normalize_server("[::1]:1123"), "[::1]:1123");
        assert_eq!(normalize_server("time.internal"), "time.internal:123");
        let cli = parse(&["--ntp.server", "0.pool.ntp.org"]).unwrap();
        let err = cli.exporter.config().unwrap_err().to_string();
        assert!(
            err.contains("--ntp.server") && err.contains("--ntp.allow-public"),
            "{err}"
        );
        let cli = parse(&["--ntp.server", "0.pool.ntp.org", "--ntp.allow-public"]).unwrap();
        assert!(cli.exporter.config().is_ok());
        let cli = parse(&["--collector.ethtool.interfaces", "eth(0"]).unwrap();
        assert!(
            cli.exporter
                .config()
                .unwrap_err()
                .to_string()
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
            (
                &["--web.telemetry-path", "/:metrics"],
                "--web.telemetry-path",
            ),
            (&["--web.telemetry-path", "/{x}"], "--web.telemetry-path"),
            (&["--web.max-connections", "-1"], "--web.max-connections"),
            (&["--web.idle-timeout", "soon"], "--web.idle-timeout"),
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
            (["--web.max-connections", "0"], "--web.max-connections"),
            (
                ["--web.read-header-timeout", "0s"],
                "--web.read-header-timeout",
            ),
            (["--web.idle-timeout", "2h"], "--web.idle-timeout"),
        ] {
            let cli = parse(&args).unwrap();
            let err = cli.exporter.config().expect_err(flag).to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    /// Every duration flag of every subcommand takes a value starting with `-`, so that a
    /// negative duration is refused by the duration parser, naming the flag, rather than read
    /// as an unknown flag (`unexpected argument '-5' found`).
    #[test]
    fn negative_durations_are_refused_naming_the_flag() {
        let root = Cli::command();
        let mut commands = vec![(None, root.clone())];
        commands.extend(
            root.get_subcommands()
                .map(|c| (Some(c.get_name().to_string()), c.clone())),
        );
        let mut checked = 0;
        for (name, command) in &commands {
            for arg in command.get_arguments() {
                let durations = arg.get_value_names().unwrap_or_default();
                if durations.iter().all(|v| v.as_str() != "DURATION") {
                    continue;
                }
                let flag = format!("--{}", arg.get_long().unwrap());
                assert!(arg.is_allow_hyphen_values_set(), "{name:?} {flag}");
                let args: Vec<&str> = name
                    .iter()
                    .map(String::as_str)
                    .chain([flag.as_str(), "-5s"])
                    .collect();
                let err = parse(&args).expect_err(&flag);
                assert!(
                    err.contains(&format!("'{flag} <DURATION>'"))
                        && err.contains("durations cannot be negative"),
                    "{args:?}: {err}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 22, "every duration flag");
    }

    #[test]
    fn sub_second_intervals_are_allowed() {
        let cli = parse(&["--imds.interval", "100ms"]).unwrap();
        assert_eq!(cli.exporter.imds.interval, Duration::from_millis(100));
        assert!(cli.exporter.config().is_ok());
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
        assert_eq!(args.output, check::Output::Human);
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
        assert_eq!(args.output, check::Output::Json);
        assert!(args.strict);
        assert!(parse(&["check", "--output", "xml"]).is_err());
    }
}
