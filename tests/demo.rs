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
    let (mut metrics, mut sim) = (None, None);
    while metrics.is_none() || sim.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("demo prints its URLs within 20s")
            .unwrap()
            .expect("demo keeps running");
        let url = |l: &str| l.split_whitespace().nth(1).map(str::to_owned);
        if line.trim_start().starts_with("Metrics:") {
            metrics = url(&line);
        } else if line.trim_start().starts_with("Simulator:") {
            sim = url(&line);
        }
    }
    let (metrics, sim) = (metrics.unwrap(), sim.unwrap());
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");
    assert!(sim.starts_with("http://127.0.0.1:"), "{sim}");

    let golden = include_str!("fixtures/metrics.golden");
    let families: Vec<&str> = golden
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        // Exported only for interfaces whose driver has the ENA counters; none here.
        .filter(|f| !f.starts_with("imds_linklocal_") && !f.starts_with("imds_network_allowance_"))
        // Absent until an outage has ended; the healthy demo has none.
        .filter(|f| *f != "imds_credentials_last_outage_duration_seconds")
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
