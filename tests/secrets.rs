//! Secrets never leave the probe: the simulator's SecretAccessKey and Token must not appear in
//! the exposition or in the logs, at trace level, in both log formats, across the scenarios
//! whose error paths handle the credentials document.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// The simulator's current SecretAccessKey and Token.
async fn current_secrets(endpoint: &str) -> Vec<String> {
    let doc = sim_credentials_document(endpoint).await;
    let secrets: Vec<String> = ["SecretAccessKey", "Token"]
        .iter()
        .map(|k| doc[k].as_str().expect("secret field").to_string())
        .collect();
    assert!(secrets.iter().all(|s| s.len() > 20));
    secrets
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn run_and_scan(format: &str) {
    let sim = start_sim(sim_options()).await;
    let mut secrets = current_secrets(&sim.endpoint()).await;
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args([
            "--imds.endpoint",
            &sim.endpoint(),
            "--imds.interval",
            "100ms",
            "--ntp.server",
            &sim.ntp_addr.unwrap().to_string(),
            "--ntp.interval",
            "200ms",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.level",
            "trace",
            "--log.format",
            format,
        ])
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    eventually(Duration::from_secs(10), "the exporter serves", || async {
        // Not common::get, which panics on a refused connection: the exporter is starting.
        // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
        imds_exporter::probe::client_tls::install_provider();
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&metrics_url)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let runs =
        |exposition: &str| value(&parse(exposition), "imds_probe_runs_total{probe=\"imds\"}");
    let mut expositions = String::new();
    for scenario in [
        "healthy",
        "malformed",
        "truncated",
        "huge",
        "code-error",
        "expired",
        "healthy",
    ] {
        switch(&sim, scenario).await;
        // Two complete runs after the switch: at least one ran wholly in this scenario.
        let before = runs(&get(&metrics_url).await.1);
        let exposition = eventually(Duration::from_secs(10), scenario, || async {
            let body = get(&metrics_url).await.1;
            match runs(&body) {
                n if n >= before + 2.0 => Ok(body),
                n => Err(format!("runs {n}, before {before}")),
            }
        })
        .await;
        expositions.push_str(&exposition);
        if scenario == "expired" {
            secrets.extend(current_secrets(&sim.endpoint()).await);
        }
    }
    // SIGTERM: the exporter shuts down gracefully and exits 0.
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits promptly after SIGTERM")
        .unwrap();
    assert!(
        out.status.success(),
        "exit status after SIGTERM: {:?}",
        out.status
    );
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The scan means something only if trace logging really was on and runs really happened.
    assert!(
        logs.contains("IMDS request ok"),
        "no trace logs captured:\n{logs}"
    );
    assert!(logs.contains("invalid_response") && logs.contains("code_not_success"));
    assert!(expositions.contains("imds_credentials_expiration_timestamp_seconds"));
    for secret in &secrets {
        // Any 16-character piece of a secret is enough to leak it.
        for piece in secret.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !logs.contains(piece),
                "a secret ({piece}) is in the {format} logs"
            );
            assert!(
                !expositions.contains(piece),
                "a secret ({piece}) is in the exposition"
            );
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_metrics_or_trace_logs_logfmt() {
    run_and_scan("logfmt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_metrics_or_trace_logs_json() {
    run_and_scan("json").await;
}
