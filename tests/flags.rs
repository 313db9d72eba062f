//! Every flag of every subcommand, as `--help` lists them, given hostile values through the
//! binary: huge and negative numbers, unicode, empty strings, format characters, path specials.
//! None may panic (exit 101, or a "panicked" message from a task that the process survived). A
//! value is either refused at start-up (exit 2, with a message naming the flag) or taken: then
//! the subcommand must start, serve, and end with 0 on SIGTERM (`check`: finish with 0, 1 or 2).
//!
//! Loopback only. Every subcommand gets loopback endpoints; the flags whose value is resolved as
//! a host name (`--ntp.server`, `--imds.endpoint`, `--web.listen-address`) are not given values
//! that are plausible host names ("NaN", "inf"), which the resolver would send to the network's
//! DNS; they are refused before any look-up otherwise (`config::is_host`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_imds_exporter");

fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "0",
        "-0",
        "-1",
        "1",
        "4294967296",
        "18446744073709551616",
        "-9223372036854775809",
        "99999999999999999999999999999999999999",
        "1e309",
        "-1e309",
        "NaN",
        "inf",
        "0s",
        "-1s",
        "1ns",
        "18446744073709551615s",
        "584942417355y",
        "99999999999999999999h",
        "1h-1s",
        "ü",
        "日本語",
        "🦀",
        "a\u{202e}b",
        "\u{7f}",
        "\t",
        "a\nb",
        "%s%n%x%p",
        "{}",
        "{0}",
        "{",
        "}",
        "$(id)",
        "`id`",
        "'",
        "\"",
        "\\",
        ";",
        "|",
        "&",
        "-",
        "--",
        "=",
        "/",
        ".",
        "..",
        "../../../../../../etc/passwd",
        "/dev/zero",
        "/dev/stdin",
        "/dev/null",
        "/proc/self/mem",
        "/nonexistent/file",
        "true",
        "false",
        "127.0.0.1:99999999",
        "127.0.0.1:-1",
        "[::1",
        "http://127.0.0.1:99999999",
        "http://[::1",
        "http://127.0.0.1:9/%s%n{}",
        "/:metrics",
        "/*metrics",
        "/{x}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    v.push("a".repeat(70_000));
    v.push("9".repeat(5_000));
    v
}

/// Flags whose value can reach the resolver.
const HOST_FLAGS: &[&str] = &["ntp.server", "imds.endpoint", "web.listen-address"];

/// A value the resolver would look up as a name (after stripping a scheme and a port).
fn plausible_host_name(value: &str) -> bool {
    let v = value.strip_prefix("http://").unwrap_or(value);
    let host = v.split([':', '/']).next().unwrap_or("");
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.parse::<std::net::IpAddr>().is_err()
}

/// The long flags `--help` of `sub` lists (without help and version).
fn flags_of(sub: Option<&str>) -> Vec<String> {
    let out = Command::new(BIN).args(sub).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            let name = l.strip_prefix("--")?;
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            (!name.is_empty() && name != "help" && name != "version").then_some(name)
        })
        .collect();
    flags.dedup();
    assert!(flags.len() >= 5, "{sub:?}: {help}");
    flags
}

/// How a subcommand is run: the loopback arguments before the hostile flag, and the line that
/// says it is up (None: it runs to completion).
struct Sub {
    name: Option<&'static str>,
    base: Vec<&'static str>,
    ready: Option<(&'static str, bool)>,
}

fn subcommands() -> Vec<Sub> {
    vec![
        Sub {
            name: None,
            base: vec![
                "--web.listen-address=127.0.0.1:0",
                "--imds.endpoint=http://127.0.0.1:9",
                "--ntp.server=127.0.0.1:9",
                "--imds.timeout=200ms",
                "--ntp.timeout=200ms",
            ],
            // After the first probe run (port 9 refuses): the schedule's arithmetic has run.
            ready: Some(("IMDS probe failing", false)),
        },
        Sub {
            name: Some("simulate"),
            base: vec!["--listen=127.0.0.1:0", "--ntp-listen=127.0.0.1:0"],
            ready: Some(("IMDS simulator listening", false)),
        },
        Sub {
            name: Some("demo"),
            base: vec!["--web.listen-address=127.0.0.1:0"],
            ready: Some(("Press Ctrl-C to stop.", true)),
        },
        Sub {
            name: Some("check"),
            base: vec![
                "--imds.endpoint=http://127.0.0.1:9",
                "--ntp.server=127.0.0.1:9",
                "--imds.timeout=200ms",
                "--ntp.timeout=200ms",
                "--no-color",
            ],
            ready: None,
        },
    ]
}

/// What one run did.
#[derive(Debug)]
struct Outcome {
    args: Vec<String>,
    code: Option<i32>,
    started: bool,
    output: String,
}

/// Runs one case: waits for the ready line (then SIGTERM) or the exit, 30 s at most.
fn run(sub: &Sub, flag: &str, value: &str) -> Outcome {
    let mut args: Vec<String> = sub.name.iter().map(|s| s.to_string()).collect();
    args.extend(sub.base.iter().map(|s| s.to_string()));
    if sub.name != Some("check") {
        args.push("--log.format=logfmt".into());
    }
    args.push(format!("--{flag}={value}"));
    let mut cmd = Command::new(BIN);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("IMDS_EXPORTER_")
            || name.starts_with("AWS_")
            || name.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let (tx, rx) = mpsc::channel::<Option<String>>();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(Some(line));
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let mut output = String::new();
    let mut closed = 0;
    let mut started = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while closed < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                if let Some((needle, _)) = sub.ready
                    && !started
                    && line.contains(needle)
                {
                    started = true;
                    // SAFETY: kill(2) on our own child.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                }
                output.push_str(&line);
                output.push('\n');
            }
            Ok(None) => closed += 1,
            Err(_) => {
                let _ = child.kill();
                output.push_str("(killed: neither ready nor finished within 30s)\n");
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    Outcome {
        args,
        code: status.code(),
        started,
        output,
    }
}

/// What is wrong with an outcome, if anything.
fn judge(sub: &Sub, flag: &str, o: &Outcome) -> Option<String> {
    let lower = o.output.to_lowercase();
    if o.code == Some(101) || lower.contains("panicked") || lower.contains("panic") {
        return Some("panicked".into());
    }
    match (sub.ready, o.code) {
        (_, Some(2)) if !o.started => {
            // Refused at start-up: the message names the flag (clap's own errors do too).
            let short = flag.rsplit('.').next().unwrap_or(flag);
            (!o.output.contains(&format!("--{flag}")) && !o.output.contains(short))
                .then(|| "exit 2 without naming the flag".into())
        }
        (Some(_), Some(0)) if o.started => None,
        (Some(_), code) => Some(format!(
            "started={} code={code:?}: expected exit 2 at start-up, or 0 after SIGTERM",
            o.started
        )),
        (None, Some(0 | 1)) => None,
        (None, code) => Some(format!("check ended with {code:?}")),
    }
}

#[test]
fn no_flag_value_panics_and_every_refusal_names_its_flag() {
    let values = hostile_values();
    let mut cases = Vec::new();
    for (i, sub) in subcommands().into_iter().enumerate() {
        for flag in flags_of(sub.name) {
            for value in &values {
                if HOST_FLAGS.contains(&flag.as_str()) && plausible_host_name(value) {
                    continue;
                }
                cases.push((i, flag.clone(), value.clone()));
            }
        }
    }
    let total = cases.len();
    assert!(total > 1000, "only {total} cases");
    let cases = std::sync::Arc::new(std::sync::Mutex::new(cases));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let cases = cases.clone();
        workers.push(std::thread::spawn(move || {
            let subs = subcommands();
            let mut problems = Vec::new();
            let mut started = 0;
            loop {
                let Some((i, flag, value)) = cases.lock().unwrap().pop() else {
                    break;
                };
                let o = run(&subs[i], &flag, &value);
                started += usize::from(o.started);
                if let Some(p) = judge(&subs[i], &flag, &o) {
                    let shown: Vec<String> = o
                        .args
                        .iter()
                        .map(|a| a.chars().take(60).collect())
                        .collect();
                    let tail: String = o.output.chars().take(600).collect();
                    problems.push(format!("{shown:?}: {p}\n{tail}"));
                }
            }
            (problems, started)
        }));
    }
    let mut problems = Vec::new();
    let mut started = 0;
    for w in workers {
        let (p, s) = w.join().unwrap();
        problems.extend(p);
        started += s;
    }
    eprintln!("{total} cases, {started} started and stopped cleanly");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
