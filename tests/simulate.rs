//! `imds_exporter simulate` itself: `truncated?mode=transfer` on the wire and in the prober, the
//! NTP answerer's clock drift, the binary playing a `--script` with a negative `--clock-offset`,
//! and start-up refusing a bad script before anything is bound.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use imds_exporter::labels::{Phase, Reason};
use imds_exporter::probe::imds::{ImdsConfig, ImdsProber, RequestError};
use imds_exporter::probe::ntp;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn state(endpoint: &str) -> serde_json::Value {
    let (status, body) = get(&format!("{endpoint}/_sim/state")).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// The raw bytes of one `GET path` on a fresh connection (with `Connection: close`), read until
/// the simulator closes the connection.
async fn raw_get(sim: &SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(sim).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {sim}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the simulator closes the connection within 5s")
        .expect("a clean close (FIN), not a reset");
    received
}

/// Head and body of a raw HTTP/1.1 response, and its `Content-Length`.
fn split_response(raw: &[u8]) -> (String, Vec<u8>, usize) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    (head, raw[end + 4..].to_vec(), length)
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_transfer_announces_the_whole_document_and_closes_after_a_third() {
    let sim = start_sim(sim_options()).await;
    let creds = "/latest/meta-data/iam/security-credentials/test-role";
    // The full document as `healthy` serves it, for its length.
    let full = raw_get(&sim.addr, creds).await;
    let (_, full_body, full_length) = split_response(&full);
    assert_eq!(full_body.len(), full_length);

    // The default mode: a complete response whose body is the first third.
    switch(&sim, "truncated").await;
    let (head, body, length) = split_response(&raw_get(&sim.addr, creds).await);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(length, full_length / 3, "{head}");
    assert_eq!(body, full_body[..full_length / 3]);

    // mode=transfer: the whole length announced, a third sent, then the connection closed.
    switch(&sim, "truncated?mode=transfer").await;
    let (head, body, length) = split_response(&raw_get(&sim.addr, creds).await);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(length, full_length, "{head}");
    assert_eq!(body, full_body[..full_length / 3]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prober_fails_a_cut_transfer_in_the_credentials_phase_with_reason_connect() {
    let mut options = sim_options();
    options.scenario = "truncated?mode=transfer".into();
    let sim = start_sim(options).await;

    // The prober itself: token and role list answered, the credentials document's transfer cut.
    let mut prober = ImdsProber::new(ImdsConfig {
        endpoint: sim.endpoint(),
        timeout: Duration::from_secs(2),
        ..ImdsConfig::default()
    })
    .unwrap();
    let run = prober.run().await;
    assert_eq!(run.failure_reason(), Some(Reason::Connect), "{run:?}");
    let phases: Vec<(Phase, bool)> = run
        .phases
        .iter()
        .map(|p| (p.phase, p.error.is_some()))
        .collect();
    let chain: Vec<(Phase, bool)> = phases
        .iter()
        .copied()
        .filter(|(p, _)| [Phase::Token, Phase::Role, Phase::Credentials].contains(p))
        .collect();
    assert_eq!(
        chain,
        [
            (Phase::Token, false),
            (Phase::Role, false),
            (Phase::Credentials, true)
        ],
        "{run:?}"
    );
    let credentials = run
        .phases
        .iter()
        .find(|p| p.phase == Phase::Credentials)
        .unwrap();
    let error = credentials.error.as_ref().unwrap();
    assert!(matches!(error, RequestError::Connect(_)), "{error:?}");
    // Cut by a close, not by the deadline.
    assert!(credentials.duration < Duration::from_secs(1), "{run:?}");

    // And the exporter's metrics say the same.
    let exporter = start_exporter(exporter_config(&sim)).await;
    let s = after_runs(&exporter, 2.0).await;
    assert_eq!(value(&s, "imds_probe_success{probe=\"imds\"}"), 0.0);
    assert!(
        value(
            &s,
            "imds_probe_failures_total{probe=\"imds\",reason=\"connect\"}"
        ) >= 2.0
    );
    assert!(
        value(
            &s,
            "imds_request_failures_total{phase=\"credentials\",probe=\"imds\",reason=\"connect\"}"
        ) >= 2.0
    );
    for phase in ["token", "role"] {
        for reason in ["connect", "timeout", "invalid_response"] {
            let key = format!(
                "imds_request_failures_total{{phase=\"{phase}\",probe=\"imds\",reason=\"{reason}\"}}"
            );
            // invalid_response on token and role is outside the table of series created at
            // start-up: absent means never counted.
            assert_eq!(s.get(&key).copied().unwrap_or(0.0), 0.0, "{key}");
        }
    }
    assert_eq!(
        value(
            &s,
            "imds_request_failures_total{phase=\"credentials\",probe=\"imds\",reason=\"invalid_response\"}"
        ),
        0.0
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_modes_are_reported_and_an_unknown_one_is_a_400_listing_the_valid_ones() {
    let sim = start_sim(sim_options()).await;
    let base = sim.endpoint();
    let (status, body) = post(&format!("{base}/_sim/scenario/truncated"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["params"], serde_json::json!({"mode": "body"}));
    let (status, body) = post(&format!("{base}/_sim/scenario/truncated?mode=transfer"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body)["params"],
        serde_json::json!({"mode": "transfer"})
    );

    for bad in ["chunked", "", "TRANSFER"] {
        let (status, body) = post(&format!("{base}/_sim/scenario/truncated?mode={bad}"), "").await;
        assert_eq!(status, 400, "mode={bad}: {body}");
        let error = json(&body)["error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with("mode=") && error.contains("expected one of body, transfer"),
            "mode={bad}: {error}"
        );
    }
    let (status, body) = post(&format!("{base}/_sim/scenario/truncated?cut=1"), "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("mode"), "{body}");
    // Nothing changed.
    let s = state(&base).await;
    assert_eq!(s["scenario"], "truncated", "{s}");
    assert_eq!(s["params"], serde_json::json!({"mode": "transfer"}), "{s}");
    sim.shutdown().await;
}

/// How far one loopback SNTP measurement may be off: half a round trip on a busy machine.
// Loopback SNTP error is at most half a round trip; generous for a loaded 2-core machine.
const SLACK: f64 = 0.05;

/// The simulator answerer's offset, with the monotonic time it was measured at (the middle of
/// the exchange): of three SNTP queries, the one with the shortest round trip, as NTP clients
/// do, so one delayed packet on a loaded machine does not skew it.
async fn ntp_offset(server: &str) -> (f64, Instant) {
    let mut best: Option<(f64, f64, Instant)> = None;
    for _ in 0..3 {
        let before = Instant::now();
        let sample = ntp::query(server, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("NTP query of {server}: {e}"));
        let after = Instant::now();
        let at = before + (after - before) / 2;
        if best.is_none_or(|(_, rtt, _)| sample.rtt_seconds < rtt) {
            best = Some((sample.offset_seconds, sample.rtt_seconds, at));
        }
    }
    let (offset, _, at) = best.expect("three samples");
    (offset, at)
}

/// [`ntp_offset`], measured at least a second after `t1`.
async fn ntp_offset_a_second_after(server: &str, t1: Instant) -> (f64, Instant) {
    eventually(Duration::from_secs(10), "a second later", || async {
        let (v, t) = ntp_offset(server).await;
        if t.duration_since(t1) >= Duration::from_secs(1) {
            Ok((v, t))
        } else {
            Err(format!("{:?} elapsed", t.duration_since(t1)))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_drift_makes_the_ntp_offset_grow_at_the_set_rate_on_top_of_the_offset() {
    let mut options = sim_options();
    options.clock_offset = 0.2;
    let sim = start_sim(options).await;
    let base = sim.endpoint();
    let server = sim.ntp_addr.unwrap().to_string();
    let (offset, _) = ntp_offset(&server).await;
    assert!((offset - 0.2).abs() < SLACK, "no drift yet: {offset}");

    // The largest drift, 100000 ppm: 100 ms more every second.
    let sent = Instant::now();
    let (status, body) = post(&format!("{base}/_sim/clock-drift/100000"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"clock_drift_ppm": 100000.0})
    );
    let (first, t1) = ntp_offset(&server).await;
    let since_sent = t1.duration_since(sent).as_secs_f64();
    assert!(
        first >= 0.2 - SLACK && first <= 0.2 + 0.1 * since_sent + SLACK,
        "offset {first} {since_sent}s after the drift was set"
    );
    // Measure the growth over at least a second: the answerer's offset at two query times.
    let (second, t2) = ntp_offset_a_second_after(&server, t1).await;
    let elapsed = t2.duration_since(t1).as_secs_f64();
    let expected = 100_000e-6 * elapsed;
    let grew = second - first;
    assert!(
        (grew - expected).abs() < 0.25 * expected + SLACK,
        "grew {grew} s in {elapsed} s, expected {expected}"
    );
    let s = state(&base).await;
    assert_eq!(s["clock_offset_seconds"], 0.2, "{s}");
    assert_eq!(s["clock_drift_ppm"], 100000.0, "{s}");
    let now = s["ntp_offset_seconds"].as_f64().unwrap();
    assert!(now >= second - SLACK, "state {now} after {second}: {s}");

    // A negative drift: it restarts from the clock offset and falls.
    let (status, body) = post(&format!("{base}/_sim/clock-drift/-100000"), "").await;
    assert_eq!(status, 200, "{body}");
    let (first, t1) = ntp_offset(&server).await;
    assert!(first <= 0.2 + SLACK, "restarted from 0.2: {first}");
    let (second, t2) = ntp_offset_a_second_after(&server, t1).await;
    let expected = -100_000e-6 * t2.duration_since(t1).as_secs_f64();
    let fell = second - first;
    assert!(
        (fell - expected).abs() < 0.25 * expected.abs() + SLACK,
        "moved {fell} s, expected {expected}"
    );

    // 0 stops it: back to the clock offset, constant.
    let (status, body) = post(&format!("{base}/_sim/clock-drift/0"), "").await;
    assert_eq!(status, 200, "{body}");
    let (offset, _) = ntp_offset(&server).await;
    assert!((offset - 0.2).abs() < SLACK, "{offset}");
    sim.shutdown().await;
}

/// A running `imds_exporter simulate` (killed when dropped) and the addresses its log gave.
struct Binary {
    _child: tokio::process::Child,
    endpoint: String,
    ntp: Option<String>,
}

/// Starts the binary with `args` (and `env`; the caller's IMDS_EXPORTER_* variables removed) and
/// reads the listening addresses from its log lines on stderr.
async fn simulate(args: &[&str], env: &[(&str, &str)]) -> Binary {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"));
    command
        .arg("simulate")
        .args(args)
        .args(["--log.level", "info", "--log.format", "logfmt"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("IMDS_EXPORTER_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let wants_ntp = args.contains(&"--ntp-listen");
    let address = |line: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("address="))
            .map(|a| a.trim_matches('"').to_string())
    };
    let (mut endpoint, mut ntp) = (None, None);
    let mut seen = Vec::new();
    while endpoint.is_none() || (wants_ntp && ntp.is_none()) {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no listening log line within 20s: {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the simulator exited: {seen:#?}"));
        if line.contains("IMDS simulator listening") {
            endpoint = address(&line).map(|a| format!("http://{a}"));
        } else if line.contains("SNTP answerer listening") {
            ntp = address(&line);
        }
        seen.push(line);
    }
    // Keep reading, so that the simulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Binary {
        _child: child,
        endpoint: endpoint.unwrap(),
        ntp,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_plays_its_script_and_takes_a_negative_clock_offset() {
    let script = std::env::temp_dir().join(format!("simulate_script_{}.yml", std::process::id()));
    std::fs::write(
        &script,
        "- {at: 0s, scenario: healthy}\n- {at: 1s, scenario: throttle}\n",
    )
    .unwrap();
    let sim = simulate(
        &[
            "--listen",
            "127.0.0.1:0",
            "--ntp-listen",
            "127.0.0.1:0",
            "--clock-offset",
            "-2.5",
            "--script",
            script.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let _ = std::fs::remove_file(&script);
    assert!(
        sim.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        sim.endpoint
    );

    // Until the last step has played the script is running; then throttle, and it is done.
    let last = eventually(Duration::from_secs(20), "the throttle step", || async {
        let s = state(&sim.endpoint).await;
        match s["scenario"].as_str() {
            Some("healthy") => {
                assert_eq!(
                    s["script_running"], true,
                    "healthy before the last step: {s}"
                );
                Err(s.to_string())
            }
            Some("throttle") if s["script_running"] == false => Ok(s),
            Some("throttle") => Err(s.to_string()), // the step played; the task is ending
            _ => panic!("a scenario the script does not have: {s}"),
        }
    })
    .await;
    assert_eq!(last["clock_offset_seconds"], -2.5, "{last}");
    assert_eq!(last["clock_drift_ppm"], 0.0, "{last}");
    // The throttle is real: IMDS answers 429.
    let (status, _) = get(&format!("{}/latest/meta-data/", sim.endpoint)).await;
    assert_eq!(status, 429);
    // And the SNTP answerer reports the node 2.5 s ahead.
    let (offset, _) = ntp_offset(sim.ntp.as_deref().unwrap()).await;
    assert!((offset + 2.5).abs() < SLACK, "{offset}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clock_drift_flag_and_its_environment_twin_set_the_drift() {
    let flag = simulate(&["--listen", "127.0.0.1:0", "--clock-drift", "-250"], &[]).await;
    let s = state(&flag.endpoint).await;
    assert_eq!(s["clock_drift_ppm"], -250.0, "{s}");
    assert_eq!(s["clock_offset_seconds"], 0.0, "{s}");
    let twin = simulate(
        &["--listen", "127.0.0.1:0", "--clock-offset", "1"],
        &[("IMDS_EXPORTER_SIM_CLOCK_DRIFT", "500")],
    )
    .await;
    let s = state(&twin.endpoint).await;
    assert_eq!(s["clock_drift_ppm"], 500.0, "{s}");
    let now = s["ntp_offset_seconds"].as_f64().unwrap();
    // 1 s plus 500 ppm of the time since start-up: strictly more than the offset alone.
    assert!(now > 1.0, "the drift adds to the offset: {s}");
}

/// A TCP listener and a UDP socket on the same 127.0.0.1 port, held by the caller.
fn held_port() -> (std::net::TcpListener, std::net::UdpSocket, SocketAddr) {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        if let Ok(udp) = std::net::UdpSocket::bind(addr) {
            return (tcp, udp, addr);
        }
    }
}

/// Both addresses are held by this test for its whole length: if `start` bound anything before
/// reading the script it would fail with "address in use", not with the script's error.
#[tokio::test(flavor = "current_thread")]
async fn a_bad_script_stops_start_up_before_anything_is_bound() {
    let (_tcp, _udp, addr) = held_port();
    let script = std::env::temp_dir().join(format!("simulate_bad_{}.yml", std::process::id()));
    std::fs::write(&script, "- {at: 1s, scenario: meltdown}\n").unwrap();
    let mut options = sim_options();
    options.ntp_listen = Some(addr);
    options.script = Some(script.clone());
    let err = match imds_exporter::sim::start(addr, options).await {
        Ok(_) => panic!("a bad script was accepted"),
        Err(e) => e,
    };
    let _ = std::fs::remove_file(&script);
    assert!(
        err.starts_with("--script") && err.contains("step 1"),
        "{err}"
    );

    // A missing file too.
    let mut options = sim_options();
    options.ntp_listen = Some(addr);
    options.script = Some(std::env::temp_dir().join("simulate_no_such_script.yml"));
    let err = match imds_exporter::sim::start(addr, options).await {
        Ok(_) => panic!("a missing script was accepted"),
        Err(e) => e,
    };
    assert!(err.starts_with("--script"), "{err}");
}
