//! `imds_exporter demo`, as a new user runs it: the binary starts the simulator and the exporter
//! on loopback, prints where the metrics are, and every metric family of the golden file is
//! served from the simulator, the NTP and clock views included (the ENA allowance counters
//! exist only on ENA interfaces, the last outage's length only after an outage). The printed
//! clock-offset hint
//! moves `imds_ntp_offset_seconds`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The value of the first sample whose `name{labels}` starts with `prefix`.
fn sample(exposition: &str, prefix: &str) -> Option<f64> {
    common::parse(exposition)
        .into_iter()
        .find_map(|(key, value)| key.starts_with(prefix).then_some(value))
}

async fn poll_metrics(url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = common::get(url).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "demo: {what} not seen in 30s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn demo_serves_every_metric_family_from_the_embedded_simulator() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args([
            "demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--imds.interval",
            "200ms",
            // A rotation within the test, so the rotation-lead gauge appears too.
            "--rotate-every",
            "2s",
        ])
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut metrics, mut sim, mut ntp) = (None, None, None);
    let mut printed = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("demo prints its hints within 20s")
            .unwrap()
            .expect("demo keeps running");
        let url = |l: &str| l.split_whitespace().nth(1).map(str::to_owned);
        if line.trim_start().starts_with("Metrics:") {
            metrics = url(&line);
        } else if line.trim_start().starts_with("Simulator:") {
            sim = url(&line);
        } else if line.trim_start().starts_with("NTP:") {
            ntp = url(&line);
        } else if line.starts_with("Press Ctrl-C") {
            break;
        }
        printed.push(line);
    }
    let (metrics, sim, ntp) = (metrics.unwrap(), sim.unwrap(), ntp.unwrap());
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");
    assert!(sim.starts_with("http://127.0.0.1:"), "{sim}");
    assert!(ntp.starts_with("127.0.0.1:"), "{ntp}");
    the_readme_shows_the_printed_hints(&printed, &metrics, &sim, &ntp);

    let golden = include_str!("fixtures/metrics.golden");
    let families: Vec<&str> = golden
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        // Exported only for interfaces whose driver has the ENA counters; none here.
        .filter(|f| !f.starts_with("imds_linklocal_") && !f.starts_with("imds_network_allowance_"))
        // Absent until an outage has ended; the healthy demo has none.
        .filter(|f| *f != "imds_credentials_last_outage_duration_seconds")
        // The STS and web identity probes are off unless configured; the demo leaves them off.
        .filter(|f| !f.starts_with("imds_sts_") && !f.starts_with("imds_web_identity_"))
        .collect();
    assert!(families.len() > 20, "golden file read");
    let body = poll_metrics(&metrics, "every golden family and a rotation", |b| {
        families.iter().all(|f| b.contains(&format!("# TYPE {f} ")))
            && sample(b, "imds_credentials_rotations_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert_eq!(
        sample(&body, r#"imds_probe_success{probe="imds"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, r#"imds_probe_success{probe="ntp"}"#),
        Some(1.0)
    );
    assert!(body.contains("imds_credentials_info{"), "{body}");
    assert!(body.contains("imds_instance_info{"), "{body}");

    // The hint the demo prints: skew the simulator's NTP clock, and the offset follows.
    let (status, _) = common::post(&format!("{sim}/_sim/clock-offset/2.5"), "").await;
    assert_eq!(status, 200);
    poll_metrics(&metrics, "imds_ntp_offset_seconds near 2.5", |b| {
        sample(b, "imds_ntp_offset_seconds{")
            .map(|v| (v - 2.5).abs() < 0.1)
            .unwrap_or(false)
    })
    .await;
    child.kill().await.unwrap();
}

/// The commands of the README's "Try it" are the ones the demo prints, with the demo's addresses
/// written as the README writes them (PORT and NTP_PORT: printed by the demo; the binary as
/// `cargo run --release` builds it).
fn the_readme_shows_the_printed_hints(printed: &[String], metrics: &str, sim: &str, ntp: &str) {
    let binary = env!("CARGO_BIN_EXE_imds_exporter");
    let canonical = std::fs::canonicalize(binary).unwrap();
    let from_demo: Vec<String> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| l.starts_with("curl ") || l.contains(" check "))
        .map(|l| {
            l.replace(
                &canonical.display().to_string(),
                "target/release/imds_exporter",
            )
            .replace(binary, "target/release/imds_exporter")
            .replace(metrics, "http://127.0.0.1:19254/metrics")
            .replace(sim, "http://127.0.0.1:PORT")
            .replace(ntp, "127.0.0.1:NTP_PORT")
        })
        .collect();
    let readme = include_str!("../README.md");
    let try_it = &readme[readme.find("## Try it").expect("a Try it section")..];
    let block = try_it
        .split("```sh\n")
        .find(|b| b.contains("/_sim/"))
        .and_then(|b| b.split("```").next())
        .expect("a block of commands in Try it");
    let in_readme: Vec<String> = block
        .lines()
        .map(|l| match l.find("    # ") {
            Some(comment) => l[..comment].trim_end().to_string(),
            None => l.to_string(),
        })
        .collect();
    assert_eq!(in_readme, from_demo, "README's Try it vs. the demo's hints");
}

/// What "Try it" promises a new user: the Rust version of `Cargo.toml` and the demo's interval.
#[test]
fn the_readme_states_the_rust_version_and_the_demo_interval() {
    let manifest = include_str!("../Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    let readme = include_str!("../README.md");
    let try_it = &readme[readme.find("## Try it").unwrap()..readme.find("## Test it").unwrap()];
    assert!(
        try_it.contains(&format!("Rust {msrv} or newer")),
        "the README's Try it must state Rust {msrv}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args(["demo", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let interval = help
        .split("--imds.interval")
        .nth(1)
        .and_then(|h| h.split("[default: ").nth(1))
        .and_then(|h| h.split(']').next())
        .expect("demo --help gives --imds.interval's default");
    let (number, unit) = interval.split_at(interval.len() - 1);
    assert_eq!(unit, "s", "{interval}");
    assert!(
        try_it.contains(&format!("every {number} s")),
        "the README's Try it must say the demo probes every {interval}"
    );
}
