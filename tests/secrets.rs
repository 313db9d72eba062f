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

/// The container, web identity and STS probes, at trace level: the container authorization
/// token, the web identity token, both endpoints' credentials, and every part of a signed
/// request (the `Authorization` header's signature, `X-Amz-Security-Token`) stay out of the logs
/// and the exposition, through successes and failures (a rejected token, ExpiredToken,
/// SignatureDoesNotMatch from the STS stand-in).
async fn scan_the_new_probes(format: &str) {
    let auth_token = "pod-identity-token-eyJhbGciOiJSUzI1NiJ9SECRETPART";
    let sim = start_sim(imds_exporter::sim::config::SimConfig {
        container_token: auth_token.into(),
        ..sim_options()
    })
    .await;
    let dir = std::env::temp_dir().join(format!(
        "imds-exporter-secrets-{}-{format}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let auth_file = dir.join("auth-token");
    std::fs::write(&auth_file, auth_token).unwrap();
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let exp = chrono::Utc::now().timestamp() + 3600;
    let web_token = format!(
        "{}.{}.{}",
        b(r#"{"alg":"RS256"}"#),
        b(&format!(
            r#"{{"exp":{exp},"sub":"system:serviceaccount:ns:sa-with-a-long-name"}}"#
        )),
        "c2lnbmF0dXJlLW9mLXRoZS13ZWItaWRlbnRpdHktdG9rZW4tU0VDUkVU"
    );
    let web_file = dir.join("web-token");
    std::fs::write(&web_file, &web_token).unwrap();
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .env_clear()
        .args([
            "--imds.endpoint",
            &sim.endpoint(),
            "--imds.interval",
            "100ms",
            "--collector.ntp=false",
            "--collector.ethtool=false",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.level",
            "trace",
            "--log.format",
            format,
            "--container.endpoint",
            &format!("{}/v1/credentials", sim.endpoint()),
            "--container.token-file",
            auth_file.to_str().unwrap(),
            "--container.interval",
            "100ms",
            "--container.attempts",
            "1",
            "--web-identity.token-file",
            web_file.to_str().unwrap(),
            "--web-identity.role-arn",
            "arn:aws:iam::123456789012:role/web",
            "--web-identity.interval",
            "100ms",
            "--web-identity.exchange",
            "--sts.enabled",
            "--sts.endpoint",
            &format!("{}/_sts", sim.endpoint()),
            "--sts.region",
            "us-east-1",
            "--sts.interval",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let sts_runs = |e: &str| {
        parse(e)
            .get("imds_probe_runs_total{probe=\"sts\"}")
            .copied()
            .unwrap_or(0.0)
    };
    let mut expositions = String::new();
    let mut secrets: Vec<String> = vec![auth_token.into(), web_token.clone()];
    secrets.extend(current_secrets(&sim.endpoint()).await);
    for (what, url) in [
        (
            "container token-rejected",
            format!("{}/_sim/container/scenario/token-rejected", sim.endpoint()),
        ),
        (
            "container healthy",
            format!("{}/_sim/container/scenario/healthy", sim.endpoint()),
        ),
        (
            "IMDS expired: ExpiredToken",
            format!("{}/_sim/scenario/expired", sim.endpoint()),
        ),
        (
            "STS SignatureDoesNotMatch",
            format!("{}/_sim/sts/code/SignatureDoesNotMatch", sim.endpoint()),
        ),
        ("STS auto", format!("{}/_sim/sts/code/auto", sim.endpoint())),
    ] {
        let (status, body) = post(&url, "").await;
        assert_eq!(status, 200, "{what}: {body}");
        let before = eventually(Duration::from_secs(10), "the exporter serves", || async {
            imds_exporter::probe::client_tls::install_provider();
            match reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(&metrics_url)
                .send()
                .await
            {
                Ok(r) => Ok(sts_runs(&r.text().await.unwrap_or_default())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        let exposition = eventually(Duration::from_secs(10), what, || async {
            let body = get(&metrics_url).await.1;
            if sts_runs(&body) >= before + 2.0 {
                Ok(body)
            } else {
                Err("waiting".into())
            }
        })
        .await;
        expositions.push_str(&exposition);
        if what.starts_with("IMDS expired") {
            secrets.extend(current_secrets(&sim.endpoint()).await);
        }
    }
    // The container endpoint's credentials, as the probe got them.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let doc: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/v1/credentials", sim.endpoint()))
            .header("authorization", auth_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    secrets.push(doc["SecretAccessKey"].as_str().unwrap().into());
    secrets.push(doc["Token"].as_str().unwrap().into());
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits promptly after SIGTERM")
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The scan means something only if the probes ran and failed as staged.
    assert!(
        logs.contains("STS refused the request") && logs.contains("ExpiredToken"),
        "{logs}"
    );
    assert!(logs.contains("SignatureDoesNotMatch"), "{logs}");
    assert!(expositions.contains("imds_sts_last_response"));
    assert!(expositions.contains("probe=\"container\""));
    for leak in [
        "AWS4-HMAC-SHA256",
        "Signature=",
        "X-Amz-Security-Token",
        "x-amz-security-token",
    ] {
        assert!(!logs.contains(leak), "{leak} in the {format} logs");
        assert!(!expositions.contains(leak), "{leak} in the exposition");
    }
    for secret in &secrets {
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
async fn tokens_and_signed_requests_never_appear_logfmt() {
    scan_the_new_probes("logfmt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_signed_requests_never_appear_json() {
    scan_the_new_probes("json").await;
}
