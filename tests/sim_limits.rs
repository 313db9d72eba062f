//! The simulator's bounds: a control request with a hostile parameter is a 400 naming the
//! parameter and the simulator keeps answering; a simulator flag out of range stops start-up with
//! exit code 2 and a message naming the flag.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, post, sim_options, start_sim};
use imds_exporter::sim::RunningSim;

/// The simulator still serves its control API and IMDS: state, a token PUT, and the credentials
/// document with that token; and the scenario is still `scenario`.
async fn still_answers(sim: &RunningSim, scenario: &str, after: &str) {
    let (status, body) = get(&format!("{}/_sim/state", sim.endpoint())).await;
    assert_eq!(status, 200, "state after {after}: {body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["scenario"], scenario, "after {after}: {state}");
    assert_eq!(state["script_running"], false, "after {after}: {state}");

    // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
    imds_exporter::probe::client_tls::install_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let token = client
        .put(format!("{}/latest/api/token", sim.endpoint()))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap_or_else(|e| panic!("token PUT after {after}: {e}"));
    assert_eq!(token.status().as_u16(), 200, "token PUT after {after}");
    let token = token.text().await.unwrap();
    let creds = client
        .get(format!(
            "{}/latest/meta-data/iam/security-credentials/test-role",
            sim.endpoint()
        ))
        .header("x-aws-ec2-metadata-token", token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("credentials GET after {after}: {e}"));
    assert_eq!(creds.status().as_u16(), 200, "credentials after {after}");
    let doc: serde_json::Value = serde_json::from_str(&creds.text().await.unwrap()).unwrap();
    assert_eq!(doc["Code"], "Success", "after {after}");
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn every_hostile_control_parameter_is_a_400_naming_it_and_the_simulator_keeps_answering() {
    let sim = start_sim(sim_options()).await;
    let base = sim.endpoint();
    // (request path, what the error must name). The default lifetime is 6h.
    let switches = [
        ("scenario/expiring?in=500000years", "in="),
        ("scenario/expiring?in=1year%201s", "in="),
        ("scenario/expiring?in=99999999999999999999years", "in="),
        ("scenario/rotate-late?lead=500000years", "lead="),
        ("scenario/rotate-late?lead=6h", "lead="),
        ("scenario/slow?delay=500000years", "delay="),
        ("scenario/slow?delay=11m", "delay="),
        ("scenario/jitter?p50=500000years&p99=500000years", "p50="),
        ("scenario/jitter?p50=1ms&p99=500000years", "p99="),
        ("scenario/throttle-partial?ratio=NaN", "ratio="),
        ("scenario/throttle-partial?ratio=inf", "ratio="),
        ("scenario/throttle-partial?ratio=1e400", "ratio="),
        ("clock-offset/1e400", "clock offset"),
        ("clock-offset/NaN", "clock offset"),
        ("clock-offset/-inf", "clock offset"),
        ("clock-offset/1e10", "clock offset"),
        ("clock-drift/1e400", "clock drift"),
        ("clock-drift/NaN", "clock drift"),
        ("clock-drift/-inf", "clock drift"),
        ("clock-drift/100001", "clock drift"),
        ("clock-drift/-1e6", "clock drift"),
        ("clock-drift/fast", "clock drift"),
        ("scenario/truncated?mode=chunked", "mode="),
    ];
    for (path, names) in switches {
        let (status, body) = post(&format!("{base}/_sim/{path}"), "").await;
        assert_eq!(status, 400, "{path}: {body}");
        let error = error_of(&body);
        assert!(error.contains(names), "{path}: {error}");
        still_answers(&sim, "healthy", path).await;
        let (_, state) = get(&format!("{base}/_sim/state")).await;
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(state["clock_offset_seconds"], 0.0, "after {path}: {state}");
        assert_eq!(state["clock_drift_ppm"], 0.0, "after {path}: {state}");
    }
    let scripts = [
        ("- {at: 500000years, scenario: outage}\n", "step 1: at"),
        ("- {at: 1e300, scenario: outage}\n", "step 1: at"),
        ("- {at: -5, scenario: outage}\n", "step 1: at"),
        ("- {at: .nan, scenario: outage}\n", "step 1: at"),
        (r#"[{"at": 1e300, "scenario": "outage"}]"#, "step 1: at"),
        (
            "- {at: 0, scenario: healthy}\n- {at: 1, scenario: \"expiring?in=500000years\"}\n",
            "step 2: in=",
        ),
        (
            "- {at: 0, scenario: rotate-late, params: {lead: 500000years}}\n",
            "step 1: lead=",
        ),
    ];
    for (script, names) in scripts {
        let (status, body) = post(&format!("{base}/_sim/script"), script).await;
        assert_eq!(status, 400, "{script}: {body}");
        let error = error_of(&body);
        assert!(error.contains(names), "{script}: {error}");
        still_answers(&sim, "healthy", script).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_largest_accepted_values_work_and_a_numeric_at_plays() {
    let sim = start_sim(sim_options()).await;
    let base = sim.endpoint();
    let (status, body) = post(&format!("{base}/_sim/scenario/expiring?in=1year"), "").await;
    assert_eq!(status, 200, "{body}");
    let (_, state) = get(&format!("{base}/_sim/state")).await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let expiration =
        chrono::DateTime::parse_from_rfc3339(state["credentials"]["expiration"].as_str().unwrap())
            .unwrap();
    let ahead = expiration.signed_duration_since(chrono::Utc::now());
    assert!(
        (ahead.num_seconds() - 31_557_600).abs() < 60,
        "expires {ahead} ahead"
    );
    still_answers(&sim, "expiring", "expiring?in=1year").await;

    // Back to healthy: fresh credentials with the full 6h lifetime.
    let (status, body) = post(&format!("{base}/_sim/scenario/healthy"), "").await;
    assert_eq!(status, 200, "{body}");
    still_answers(&sim, "healthy", "healthy").await;

    // A lead a nanosecond short of the 6h lifetime: a late set every nanosecond, caught up in
    // one computation.
    let (status, body) = post(
        &format!("{base}/_sim/scenario/rotate-late?lead=5h%2059m%2059s%20999ms%20999us%20999ns"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, state) = get(&format!("{base}/_sim/state")).await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(
        state["credentials"]["generation"].as_u64().unwrap() > 1_000_000,
        "{state}"
    );
    still_answers(&sim, "rotate-late", "rotate-late with the longest lead").await;

    let (status, body) = post(&format!("{base}/_sim/clock-offset/-1e9"), "").await;
    assert_eq!(status, 200, "{body}");
    for ppm in ["-100000", "100000"] {
        let (status, body) = post(&format!("{base}/_sim/clock-drift/{ppm}"), "").await;
        assert_eq!(status, 200, "{ppm}: {body}");
    }
    let (_, state) = get(&format!("{base}/_sim/state")).await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["clock_drift_ppm"], 100_000.0, "{state}");

    let (status, body) = post(
        &format!("{base}/_sim/script"),
        "- {at: 0, scenario: stale}\n- {at: 0.2, scenario: healthy}\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, state) = get(&format!("{base}/_sim/state")).await;
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        if state["script_running"] == false {
            assert_eq!(state["scenario"], "healthy", "{state}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the script did not finish: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.shutdown().await;
}

/// Runs the binary and returns its exit code and stderr; kills it (and fails) if it is still
/// running after 10 s, i.e. if it started instead of refusing the flags.
fn run(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} started instead of refusing its flags");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn simulator_flags_out_of_range_stop_start_up_naming_the_flag() {
    let script = std::env::temp_dir().join(format!("sim_limits_{}.yml", std::process::id()));
    std::fs::write(&script, "- {at: 500000years, scenario: outage}\n").unwrap();
    let script = script.to_str().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--lifetime", "500000years"], "--lifetime"),
        (&["--rotate-every", "2years"], "--rotate-every"),
        (&["--slow-delay", "1h"], "--slow-delay"),
        (&["--scenario", "expiring?in=500000years"], "--scenario"),
        (&["--scenario", "rotate-late?lead=7h"], "--scenario"),
        (&["--script", &script], "--script"),
        (&["--clock-drift", "100001"], "--clock-drift"),
        (&["--clock-drift", "-1e6"], "--clock-drift"),
        (&["--clock-drift", "NaN"], "--clock-drift"),
        (&["--clock-drift", "fast"], "--clock-drift"),
    ];
    for (args, flag) in cases {
        let mut all = vec!["simulate", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (code, stderr) = run(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // `demo` shares the simulator's flags and checks them before it binds anything.
    let (code, stderr) = run(&[
        "demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--lifetime",
        "500000years",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--lifetime"), "{stderr}");
    let _ = std::fs::remove_file(&script);
}
