//! The binary's start-up: bad flags and config values stop it with exit code 2 and a message
//! that names the flag.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    run_with_env(&[], args)
}

fn run_with_env(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args(args)
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_stop_start_up_naming_the_flag() {
    let loopback = [
        "--imds.endpoint",
        "http://127.0.0.1:9",
        "--collector.ntp=false",
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["--imds.interval", "soon"], "--imds.interval"),
        (&["--imds.interval", "0s"], "--imds.interval"),
        (&["--imds.token-ttl", "7h"], "--imds.token-ttl"),
        (&["--imds.endpoint", "https://127.0.0.1"], "--imds.endpoint"),
        (&["--web.listen-address", "nowhere"], "--web.listen-address"),
        (&["--log.format", "xml"], "--log.format"),
        (
            &["--ntp.server", "pool.ntp.org", "--collector.ntp=true"],
            "--ntp.server",
        ),
        (
            &["--collector.ethtool.interfaces", "eth("],
            "--collector.ethtool.interfaces",
        ),
    ];
    for (args, flag) in cases {
        let mut all: Vec<&str> = loopback.to_vec();
        all.extend_from_slice(args);
        let (code, stderr) = run(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn a_negative_duration_is_refused_naming_the_flag() {
    // Refused while parsing: nothing starts, nothing is sent.
    let cases: [&[&str]; 4] = [
        &["--imds.interval", "-5s"],
        &[
            "check",
            "--imds.timeout",
            "-1s",
            "--imds.endpoint",
            "http://127.0.0.1:9",
        ],
        &["demo", "--lifetime=-1h"],
        &["simulate", "--rotate-every", "-2m"],
    ];
    for args in cases {
        let flag = args.iter().find(|a| a.starts_with("--")).unwrap();
        let flag = flag.split('=').next().unwrap();
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "'{flag} <DURATION>': durations cannot be negative"
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// A bad value set by an environment twin is reported under the variable's name (with a tip
/// naming its flag), whether it does not parse or parses but makes no sense. Each is refused
/// before anything starts.
#[test]
fn a_bad_environment_twin_is_named_in_the_error() {
    let loopback = ["--imds.endpoint", "http://127.0.0.1:9"];
    let cases: &[(&str, &str, &[&str], &str)] = &[
        // (variable, value, subcommand, what the error must say besides the variable)
        (
            "IMDS_EXPORTER_IMDS_INTERVAL",
            "abc",
            &[],
            "'--imds.interval <DURATION>'",
        ),
        (
            "IMDS_EXPORTER_IMDS_INTERVAL",
            "-5s",
            &[],
            "durations cannot be negative",
        ),
        (
            "IMDS_EXPORTER_WEB_LISTEN_ADDRESS",
            "nowhere",
            &[],
            "'--web.listen-address <ADDRESS>'",
        ),
        (
            "IMDS_EXPORTER_COLLECTOR_NTP",
            "maybe",
            &[],
            "'--collector.ntp [<BOOL>]'",
        ),
        (
            "IMDS_EXPORTER_LOG_FORMAT",
            "xml",
            &[],
            "'--log.format <FORMAT>'",
        ),
        (
            "IMDS_EXPORTER_CHECK_OUTPUT",
            "xml",
            &["check"],
            "'--output <FORMAT>'",
        ),
        (
            "IMDS_EXPORTER_CHECK_STRICT",
            "maybe",
            &["check"],
            "'--strict'",
        ),
    ];
    for (variable, value, subcommand, flag) in cases {
        let args: Vec<&str> = subcommand.iter().chain(&loopback).copied().collect();
        let (code, stderr) = run_with_env(&[(variable, value)], &args);
        assert_eq!(code, 2, "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("error: invalid value '{value}' for '{variable}'"))
                && stderr.contains(&format!("tip: {variable} sets ")),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(flag), "{variable}={value}: {stderr}");
    }
    // Parses, but makes no sense: the configuration's error, and where the value came from.
    for (variable, value, args, message) in [
        (
            "IMDS_EXPORTER_IMDS_INTERVAL",
            "0s",
            &loopback[..],
            "--imds.interval must be greater than 0",
        ),
        (
            "IMDS_EXPORTER_CHECK_IMDS_TIMEOUT",
            "0s",
            &["check", "--imds.endpoint", "http://127.0.0.1:9"][..],
            "--imds.timeout must be greater than 0",
        ),
        (
            "IMDS_EXPORTER_DEMO_LIFETIME",
            "1m",
            &["demo", "--web.listen-address", "127.0.0.1:0"][..],
            "--lifetime (1m) must be longer",
        ),
    ] {
        let (code, stderr) = run_with_env(&[(variable, value)], args);
        assert_eq!(code, 2, "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(message)
                && stderr.contains(&format!(
                    "(the value comes from {variable}, its environment twin)"
                )),
            "{variable}={value}: {stderr}"
        );
    }
}

/// A value on the command line is the user's: its error names the flag only, even when the
/// flag's twin is set too (the flag wins); and a subcommand reads only its own twins, so an
/// exporter variable (a DaemonSet's) does not stop `check` or `demo`.
#[test]
fn a_bad_flag_is_named_as_a_flag_and_subcommands_ignore_the_exporters_twins() {
    let (code, stderr) = run_with_env(
        &[("IMDS_EXPORTER_IMDS_INTERVAL", "abc")],
        &["--imds.interval", "xyz"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value 'xyz' for '--imds.interval <DURATION>'")
            && !stderr.contains("IMDS_EXPORTER_IMDS_INTERVAL"),
        "{stderr}"
    );
    let exporters = [
        ("IMDS_EXPORTER_IMDS_TIMEOUT", "abc"),
        ("IMDS_EXPORTER_IMDS_INTERVAL", "0s"),
    ];
    let (code, stderr) = run_with_env(
        &exporters,
        &[
            "check",
            "--imds.endpoint",
            "http://127.0.0.1:9",
            "--imds.timeout",
            "0s",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: --imds.timeout must be greater than 0")
            && !stderr.contains("IMDS_EXPORTER_"),
        "{stderr}"
    );
    let (code, stderr) = run_with_env(
        &exporters,
        &[
            "demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--rotate-every",
            "0s",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: --rotate-every must be greater than 0")
            && !stderr.contains("IMDS_EXPORTER_"),
        "{stderr}"
    );
}

#[test]
fn demo_rejects_bad_values_naming_the_flag() {
    for (args, flag) in [
        (["--imds.interval", "0s"], "--imds.interval"),
        (["--rotate-every", "0s"], "--rotate-every"),
        (["--lifetime", "1m"], "--lifetime"),
        (["--scenario", "nonsense"], "--scenario"),
    ] {
        let mut all = vec!["demo", "--web.listen-address", "127.0.0.1:0"];
        all.extend_from_slice(&args);
        let (code, stderr) = run(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn a_taken_port_is_reported_with_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run(&[
        "--imds.endpoint",
        "http://127.0.0.1:9",
        "--collector.ntp=false",
        "--web.listen-address",
        &addr,
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--web.listen-address") && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--web.listen-address",
        "--web.telemetry-path",
        "--web.config.file",
        "--web.max-connections",
        "--web.read-header-timeout",
        "--web.idle-timeout",
        "--imds.endpoint",
        "--imds.interval",
        "--imds.timeout",
        "--imds.token-ttl",
        "--ntp.server",
        "--ntp.interval",
        "--ntp.timeout",
        "--ntp.allow-public",
        "--collector.ntp",
        "--collector.clock",
        "--collector.ethtool",
        "--collector.ethtool.interfaces",
        "--log.level",
        "--log.format",
        "IMDS_EXPORTER_IMDS_INTERVAL",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

/// The `endpoint=` of the exporter's start-up log line, run with `env` and `args` (loopback
/// only: nothing listens on port 9, so the probe fails fast and harmlessly).
fn logged_endpoint(env: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds_exporter"));
    cmd.args([
        "--web.listen-address",
        "127.0.0.1:0",
        "--collector.ntp=false",
    ])
    .args(args)
    .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    .env_remove("IMDS_EXPORTER_IMDS_ENDPOINT");
    if let Some(value) = env {
        cmd.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", value);
    }
    first_log_endpoint(cmd)
}

/// Kills the child when a test ends, passing or not, so none is left behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits (20 s at most) for its "imds_exporter listening" log line; the reader
/// runs on a thread, so a binary that never logs it fails the test instead of hanging it.
fn spawn_until_listening(mut cmd: Command) -> (Reaped, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Reaped(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs"),
    );
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining after the line, so the child never writes into a closed pipe.
        let mut sent = false;
        for line in stderr.lines().map_while(Result::ok) {
            if !sent && line.contains("imds_exporter listening") {
                let _ = tx.send(Some(line));
                sent = true;
            }
        }
        if !sent {
            let _ = tx.send(None);
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the start-up line within 20s")
        .expect("the start-up line is logged");
    (child, line)
}

/// Runs `cmd` until it logs that it listens, and returns that line's `endpoint=`.
fn first_log_endpoint(cmd: Command) -> String {
    let (_child, line) = spawn_until_listening(cmd);
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("endpoint="))
        .unwrap_or_else(|| panic!("no endpoint= in {line}"))
        .to_string()
}

#[test]
fn the_sdks_endpoint_variable_is_honoured_unless_the_flag_is_given() {
    assert_eq!(
        logged_endpoint(Some("http://127.0.0.1:9"), &[]),
        "http://127.0.0.1:9"
    );
    assert_eq!(
        logged_endpoint(
            Some("http://127.0.0.1:9"),
            &["--imds.endpoint", "http://127.0.0.2:9"]
        ),
        "http://127.0.0.2:9"
    );
}

#[test]
fn an_environment_twin_sets_its_flag() {
    // IMDS_EXPORTER_IMDS_ENDPOINT is --imds.endpoint's twin, and wins over the SDKs' variable.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds_exporter"));
    cmd.args([
        "--web.listen-address",
        "127.0.0.1:0",
        "--collector.ntp=false",
    ])
    .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    .env("IMDS_EXPORTER_IMDS_ENDPOINT", "http://127.0.0.3:9");
    assert_eq!(first_log_endpoint(cmd), "http://127.0.0.3:9");
}

#[test]
fn sigint_shuts_the_exporter_down_gracefully() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds_exporter"));
    cmd.args([
        "--web.listen-address",
        "127.0.0.1:0",
        "--collector.ntp=false",
        "--imds.endpoint",
        "http://127.0.0.1:9",
    ])
    .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    let (mut child, _) = spawn_until_listening(cmd);
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10s after SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

/// The `[default: ...]` of `--imds.endpoint` in `args`' help, brackets inside it kept.
fn endpoint_default(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args(args)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = help.split("--imds.endpoint <URL>").nth(1).unwrap();
    let after = &after[after.find("[default: ").unwrap() + "[default: ".len()..];
    let mut depth = 0;
    let end = after
        .char_indices()
        .find_map(|(i, c)| match c {
            '[' => {
                depth += 1;
                None
            }
            ']' if depth == 0 => Some(i),
            ']' => {
                depth -= 1;
                None
            }
            _ => None,
        })
        .unwrap();
    after[..end].to_string()
}

/// One wording of `--imds.endpoint`'s default everywhere: the exporter's `--help` is the
/// README's flag table; `check --help` is docs/check.md's, and says the shared part (the SDKs'
/// variable first, EC2's address last) in the same words.
#[test]
fn the_imds_endpoint_default_reads_the_same_everywhere() {
    let plain = |s: &str| s.replace('`', "");
    let exporter = endpoint_default(&["--help"]);
    let readme = include_str!("../README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `--imds.endpoint` |"))
        .unwrap();
    assert_eq!(plain(row.split(" | ").nth(1).unwrap()), exporter);

    let check = endpoint_default(&["check", "--help"]);
    let (first, last) = exporter.split_once(", else ").unwrap();
    assert!(
        check.starts_with(&format!("{first}, else ")) && check.ends_with(&format!(", else {last}")),
        "{check}"
    );
    let docs = include_str!("../docs/check.md");
    let row = docs
        .lines()
        .find(|l| l.starts_with("| `--imds.endpoint URL` |"))
        .unwrap();
    assert!(plain(row).contains(&format!("| {check}; see ")), "{row}");
}
