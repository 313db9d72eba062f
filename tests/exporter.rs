//! The exporter against the simulator: every scenario shows up on /metrics as the README's
//! table says, and the HTTP side behaves (readiness, a scrape never waits for IMDS).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// What a scrape must show after a few runs in a scenario: one row of the README's table.
struct Case {
    scenario: String,
    /// `None`: the probe succeeds. `Some((phase, reason))`: it fails at `phase` with `reason`.
    failure: Option<(String, String)>,
    v1_enabled: Option<f64>,
}

async fn check_case(case: Case) -> Result<(), String> {
    let mut options = sim_options();
    options.scenario = case.scenario.clone();
    let sim = start_sim(options).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    let s = after_runs(&exporter, 2.0).await;
    let name = &case.scenario;
    let success = value(&s, "imds_probe_success{probe=\"imds\"}");
    let result = match case.failure {
        None if success == 1.0 => Ok(()),
        None => Err(format!("{name}: probe failed, expected success")),
        Some((phase, reason)) => {
            let probe_failures = value(
                &s,
                &format!("imds_probe_failures_total{{probe=\"imds\",reason=\"{reason}\"}}"),
            );
            let request_failures = value(
                &s,
                &format!(
                    "imds_request_failures_total{{phase=\"{phase}\",probe=\"imds\",reason=\"{reason}\"}}"
                ),
            );
            if success != 0.0 {
                Err(format!(
                    "{name}: probe succeeded, expected {phase}/{reason}"
                ))
            } else if probe_failures < 1.0 || request_failures < 1.0 {
                Err(format!(
                    "{name}: expected {phase}/{reason}; probe failures {probe_failures}, request failures {request_failures}"
                ))
            } else {
                Ok(())
            }
        }
    };
    let result = result.and_then(|()| match case.v1_enabled {
        Some(want) if value(&s, "imds_v1_enabled") != want => Err(format!(
            "{name}: imds_v1_enabled {} != {want}",
            value(&s, "imds_v1_enabled")
        )),
        _ => Ok(()),
    });
    exporter.shutdown().await;
    sim.shutdown().await;
    result
}

/// The rows of the README's scenario table (`<!-- scenario-classification ... -->`).
fn readme_cases() -> Vec<Case> {
    let readme = include_str!("../README.md");
    let table = readme
        .split("<!-- scenario-classification")
        .nth(1)
        .expect("the README has the scenario table");
    let cell = |c: &str| -> Option<String> {
        // The first `code` span of the cell, if any (notes after it are prose).
        let c = c.trim();
        c.strip_prefix('`')?.split('`').next().map(str::to_owned)
    };
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cols: Vec<&str> = row.trim_matches('|').split('|').collect();
            assert_eq!(cols.len(), 5, "README scenario row: {row}");
            let scenario = cell(cols[0]).expect("a scenario");
            let failure = match cols[1].trim() {
                "1" => None,
                "0" => Some((
                    cell(cols[2]).expect("a phase"),
                    cell(cols[3]).expect("a reason"),
                )),
                other => panic!("README scenario row {row}: success {other:?}"),
            };
            let v1_enabled = match cols[4].trim() {
                "" => None,
                v => Some(v.parse().expect("0 or 1")),
            };
            Case {
                scenario,
                failure,
                v1_enabled,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scenario_is_classified_as_the_readme_table_says() {
    let cases = readme_cases();
    let mut covered: Vec<&str> = cases
        .iter()
        .map(|c| c.scenario.split('?').next().unwrap())
        .collect();
    covered.sort_unstable();
    covered.dedup();
    let mut names = imds_exporter::sim::scenario::NAMES.to_vec();
    names.sort_unstable();
    assert_eq!(
        covered, names,
        "the README's table must cover every scenario"
    );
    let results = futures_util::future::join_all(cases.into_iter().map(check_case)).await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "misclassified:\n{}", errors.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_limit_signature_is_token_timeouts_while_v1_gets_answers() {
    let mut options = sim_options();
    options.scenario = "hop-limit-v2-only".into();
    let sim = start_sim(options).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    let s = after_runs(&exporter, 2.0).await;
    let runs = value(&s, "imds_probe_runs_total{probe=\"imds\"}");
    // Every run asked IMDSv1 and got an answer (401): no failure in that phase.
    assert!(
        value(
            &s,
            "imds_request_duration_seconds_count{phase=\"imdsv1\",probe=\"imds\"}"
        ) >= runs
    );
    assert!(
        !s.contains_key(
            "imds_request_failures_total{phase=\"imdsv1\",probe=\"imds\",reason=\"unauthorized\"}"
        ),
        "a 401 to IMDSv1 is the answer 'off', never a failure"
    );
    for reason in ["timeout", "connect", "throttled"] {
        assert_eq!(
            value(
                &s,
                &format!(
                    "imds_request_failures_total{{phase=\"imdsv1\",probe=\"imds\",reason=\"{reason}\"}}"
                )
            ),
            0.0,
            "{reason}"
        );
    }
    assert!(
        value(
            &s,
            "imds_request_failures_total{phase=\"token\",probe=\"imds\",reason=\"timeout\"}"
        ) >= runs
    );
    // The timed-out token request observed about the timeout (300 ms), not 0.
    assert!(
        value(
            &s,
            "imds_request_duration_seconds_bucket{phase=\"token\",probe=\"imds\",le=\"0.1\"}"
        ) == 0.0
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_expiry_and_info_are_exported() {
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    let s = after_runs(&exporter, 1.0).await;
    let now = chrono::Utc::now().timestamp() as f64;
    let expiration = value(
        &s,
        "imds_credentials_expiration_timestamp_seconds{probe=\"imds\"}",
    );
    assert!(
        (expiration - (now + 6.0 * 3600.0)).abs() < 120.0,
        "{expiration} vs {now}"
    );
    assert!(
        value(
            &s,
            "imds_credentials_last_updated_timestamp_seconds{probe=\"imds\"}"
        ) <= now + 1.0
    );
    assert_eq!(
        value(
            &s,
            "imds_credentials_info{instance_profile_arn=\"arn:aws:iam::123456789012:instance-profile/test-role\",probe=\"imds\",role=\"test-role\"}"
        ),
        1.0
    );
    assert!(
        s.keys()
            .any(|k| k.starts_with("imds_instance_info{account_id=\"123456789012\""))
    );
    // Before any rotation the lead is absent, not 0 (0 would read as "rotated at the last second").
    assert!(!s.contains_key("imds_credentials_rotation_lead_seconds{probe=\"imds\"}"));
    switch(&sim, "expired").await;
    let s = after_runs(&exporter, 2.0).await;
    assert!(
        value(
            &s,
            "imds_credentials_expiration_timestamp_seconds{probe=\"imds\"}"
        ) < chrono::Utc::now().timestamp() as f64
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_is_counted_with_its_lead() {
    let mut options = sim_options();
    options.rotate_every = Duration::from_secs(1);
    options.lifetime = Duration::from_secs(4);
    let sim = start_sim(options).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    let s = eventually(Duration::from_secs(10), "a rotation", || async {
        let s = scrape(&exporter).await;
        if value(&s, "imds_credentials_rotations_total{probe=\"imds\"}") >= 1.0 {
            Ok(s)
        } else {
            Err("no rotation yet".to_string())
        }
    })
    .await;
    // Healthy: the old credentials had about lifetime - rotate_every = 3 s left.
    let lead = value(&s, "imds_credentials_rotation_lead_seconds{probe=\"imds\"}");
    assert!((2.7..=3.05).contains(&lead), "lead {lead}");
    assert!(
        value(
            &s,
            "imds_credentials_last_rotation_timestamp_seconds{probe=\"imds\"}"
        ) > 0.0
    );

    // Late: new credentials only 1 s before expiry.
    switch(&sim, "rotate-late?lead=1s").await;
    let before = value(
        &scrape(&exporter).await,
        "imds_credentials_rotations_total{probe=\"imds\"}",
    );
    let s = eventually(Duration::from_secs(15), "a late rotation", || async {
        let s = scrape(&exporter).await;
        let lead = value(&s, "imds_credentials_rotation_lead_seconds{probe=\"imds\"}");
        if value(&s, "imds_credentials_rotations_total{probe=\"imds\"}") >= before + 2.0
            && lead < 1.5
        {
            Ok(s)
        } else {
            Err(format!("lead {lead}"))
        }
    })
    .await;
    let lead = value(&s, "imds_credentials_rotation_lead_seconds{probe=\"imds\"}");
    assert!((0.7..=1.05).contains(&lead), "late lead {lead}");
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_run_and_scrapes_never_wait_for_imds() {
    let mut options = sim_options();
    options.scenario = "outage".into();
    let sim = start_sim(options).await;
    let mut config = exporter_config(&sim);
    config.imds.timeout = Duration::from_secs(1);
    let exporter = start_exporter(config).await;
    let base = format!("http://{}", exporter.addr);
    let (status, _) = get(&format!("{base}/-/ready")).await;
    assert_eq!(status, 503, "not ready before the first run");
    assert_eq!(get(&format!("{base}/-/healthy")).await.0, 200);
    // The first run is stuck in a 1 s token timeout; a scrape is still immediate.
    let t = Instant::now();
    let (status, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("imds_probe_success"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "scrape took {:?}",
        t.elapsed()
    );
    eventually(Duration::from_secs(10), "ready", || async {
        match get(&format!("{base}/-/ready")).await.0 {
            200 => Ok(()),
            s => Err(format!("status {s}")),
        }
    })
    .await;
    let (status, page) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("/metrics") && page.contains(&sim.endpoint()),
        "landing page shows links and config"
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

/// The series at default flags (issue 18): exactly those of `tests/fixtures/metrics.defaults`
/// (the phase/reason table of `Probe::expected_failures`, the bucket sets of
/// `request_buckets`), every one there from the first scrape, and no more than 120 of them.
/// Regenerate with `UPDATE_GOLDEN=1 cargo test --test exporter the_series_at_default`.
#[tokio::test(flavor = "multi_thread")]
async fn the_series_at_default_flags_are_the_documented_table_within_the_budget() {
    const DEFAULTS: &str = "tests/fixtures/metrics.defaults";
    const BUDGET: usize = 120;
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    // From the first scrape, before any run: the failure and latency series already exist.
    let before = scrape(&exporter).await;
    let s = first_run(&exporter).await;
    let server = format!("server=\"{}\"", sim.ntp_addr.unwrap());
    let mut got: Vec<String> = s
        .keys()
        .map(|k| {
            let k = k.replace(&server, "server=\"127.0.0.1:PORT\"");
            // The build's facts change with every commit and toolchain.
            match k.starts_with("imds_exporter_build_info") {
                true => "imds_exporter_build_info{revision,rustc_version,version}".to_string(),
                false => k,
            }
        })
        .collect();
    got.sort();
    let got = got.join("\n") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(DEFAULTS, &got).unwrap();
    }
    let want = std::fs::read_to_string(DEFAULTS).expect("UPDATE_GOLDEN=1 creates it");
    assert_eq!(
        got, want,
        "the series at defaults changed; review and UPDATE_GOLDEN=1"
    );
    let count = got.lines().count();
    assert!(
        count <= BUDGET,
        "{count} series at defaults, over the budget of {BUDGET}"
    );
    for key in s.keys().filter(|k| {
        k.starts_with("imds_request_failures_total")
            || k.starts_with("imds_request_duration_seconds")
    }) {
        assert!(
            before.contains_key(key),
            "{key} appeared after the first scrape"
        );
    }
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_ntp_probe_exports_no_probe_series() {
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(imds_exporter::exporter::ExporterConfig {
        ntp: None,
        ..exporter_config(&sim)
    })
    .await;
    let s = after_runs(&exporter, 2.0).await;
    let ntp: Vec<_> = s.keys().filter(|k| k.contains("probe=\"ntp\"")).collect();
    assert!(ntp.is_empty(), "series of the disabled ntp probe: {ntp:?}");
    assert_eq!(value(&s, "imds_probe_success{probe=\"imds\"}"), 1.0);
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ntp_offset_follows_the_simulated_clock() {
    let mut options = sim_options();
    options.clock_offset = 2.5;
    let sim = start_sim(options).await;
    let exporter = start_exporter(exporter_config(&sim)).await;
    let key = format!(
        "imds_ntp_offset_seconds{{server=\"{}\"}}",
        sim.ntp_addr.unwrap()
    );
    let offset = eventually(Duration::from_secs(10), "an NTP sample", || async {
        scrape(&exporter)
            .await
            .get(&key)
            .copied()
            .ok_or_else(|| "none".to_string())
    })
    .await;
    assert!((offset - 2.5).abs() < 0.01, "offset {offset}");
    post(&format!("{}/_sim/clock-offset/-1.25", sim.endpoint()), "").await;
    let offset = eventually(Duration::from_secs(10), "the new offset", || async {
        let v = scrape(&exporter)
            .await
            .get(&key)
            .copied()
            .unwrap_or(f64::NAN);
        if (v + 1.25).abs() < 0.01 {
            Ok(v)
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
    assert!((offset + 1.25).abs() < 0.01);
    let s = scrape(&exporter).await;
    assert_eq!(value(&s, "imds_probe_success{probe=\"ntp\"}"), 1.0);
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ntp_server_that_never_answers_fails_the_probe_and_loses_its_series() {
    let sim = start_sim(sim_options()).await;
    // Bound and silent: every query times out (the socket is kept open until the end).
    let silent = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let (good, bad) = (
        sim.ntp_addr.unwrap().to_string(),
        silent.local_addr().unwrap().to_string(),
    );
    let mut config = exporter_config(&sim);
    config.ntp = Some(imds_exporter::probe::ntp::NtpConfig {
        servers: vec![good.clone(), bad.clone()],
        interval: Duration::from_millis(200),
        // Generous for the answering server on a loaded machine; the silent one uses it all.
        timeout: Duration::from_secs(1),
        ..Default::default()
    });
    let exporter = start_exporter(config).await;
    let s = eventually(Duration::from_secs(20), "two failed NTP runs", || async {
        let s = scrape(&exporter).await;
        match value(
            &s,
            "imds_probe_failures_total{probe=\"ntp\",reason=\"timeout\"}",
        ) {
            n if n >= 2.0 => Ok(s),
            n => Err(format!("timeouts {n}")),
        }
    })
    .await;
    // One server failing fails the run; the answering one keeps its series, the silent one has
    // none (a stale offset must not keep an alert firing or quiet).
    assert_eq!(value(&s, "imds_probe_success{probe=\"ntp\"}"), 0.0);
    assert!(s.contains_key(&format!("imds_ntp_offset_seconds{{server=\"{good}\"}}")));
    let stale: Vec<_> = s.keys().filter(|k| k.contains(&bad)).collect();
    assert!(stale.is_empty(), "series of the silent server: {stale:?}");
    // The IMDS probe is unaffected.
    assert_eq!(value(&s, "imds_probe_success{probe=\"imds\"}"), 1.0);
    exporter.shutdown().await;
    sim.shutdown().await;
    drop(silent);
}

/// The seed incident at the defaults' proportions: a 2 s outage between two full runs. The full
/// run never sees it; the outage watch counts it once, with its length, when IMDS serves again.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_outage_between_runs_is_counted_once_with_its_length() {
    let sim = start_sim(sim_options()).await;
    let mut config = exporter_config(&sim);
    // One full run, at start-up: only the watch can see what follows.
    config.imds.interval = Duration::from_secs(3600);
    config.imds.outage_check_interval = Duration::from_millis(200);
    let exporter = start_exporter(config).await;
    let s = first_run(&exporter).await;
    assert_eq!(value(&s, "imds_credentials_outages_total"), 0.0);
    // Let the watch see IMDS serve first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    switch(&sim, "outage").await;
    let outage = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    switch(&sim, "healthy").await;
    let played = outage.elapsed().as_secs_f64();
    let s = eventually(Duration::from_secs(10), "the outage counted", || async {
        let s = scrape(&exporter).await;
        match value(&s, "imds_credentials_outages_total") {
            1.0 => Ok(s),
            v => Err(format!("outages_total {v}")),
        }
    })
    .await;
    let length = value(&s, "imds_credentials_last_outage_duration_seconds");
    // Within one check (and one request deadline) of what was played.
    assert!(
        (played - 0.6..=played + 0.6).contains(&length),
        "measured {length} s for {played} s"
    );
    // The full run did not see it: the probe's verdict stayed "success".
    assert_eq!(value(&s, "imds_probe_success{probe=\"imds\"}"), 1.0);
    assert_eq!(value(&s, "imds_probe_runs_total{probe=\"imds\"}"), 1.0);
    exporter.shutdown().await;
    sim.shutdown().await;
}

/// Each SDK family's verdict is exported, for the families asked for only.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_verdicts_are_exported_for_the_families_asked_for() {
    let mut options = sim_options();
    options.scenario = "hop-limit".into();
    let sim = start_sim(options).await;
    let mut config = exporter_config(&sim);
    // The test's 300 ms request timeout is shorter than the SDKs' 1 s: use theirs.
    config.imds.timeout = Duration::from_secs(1);
    config.imds.interval = Duration::from_secs(3600);
    config.imds.sdks = vec![
        imds_exporter::labels::Sdk::Python,
        imds_exporter::labels::Sdk::Rust,
    ];
    let exporter = start_exporter(config).await;
    let s = first_run(&exporter).await;
    // Behind a hop limit with IMDSv1 allowed, botocore falls back a second late; Rust never does.
    assert_eq!(
        value(&s, "imds_sdk_credentials_available{sdk=\"python\"}"),
        1.0
    );
    assert_eq!(
        value(&s, "imds_sdk_credentials_available{sdk=\"rust\"}"),
        0.0
    );
    let wait = value(&s, "imds_sdk_credentials_wait_seconds{sdk=\"python\"}");
    assert!((0.9..2.0).contains(&wait), "python waits {wait} s");
    assert!(
        !s.keys()
            .any(|k| k.contains("sdk=\"javascript\"") || k.contains("sdk=\"go\"")),
        "families not asked for have no series"
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

/// The exposition once the first IMDS run has been recorded (for exporters whose interval is too
/// long for a second one).
async fn first_run(exporter: &imds_exporter::exporter::RunningExporter) -> Samples {
    eventually(Duration::from_secs(20), "the first run", || async {
        let s = scrape(exporter).await;
        match value(&s, "imds_probe_runs_total{probe=\"imds\"}") {
            n if n >= 1.0 => Ok(s),
            n => Err(format!("runs {n}")),
        }
    })
    .await
}
