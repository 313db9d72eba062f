//! The metric contract: every family's name, type and HELP, in a golden file that makes every
//! rename a reviewed diff (node_exporter's e2e-output.txt, in spirit). Alerts and dashboards are
//! checked against the same file. Regenerate with `UPDATE_GOLDEN=1 cargo test --test golden`.

use std::time::Duration;

use chrono::Utc;
use imds_exporter::collector::{NodeViews, clock::KernelClock, ethtool::AllowanceCounters};
use imds_exporter::metrics::Metrics;
use imds_exporter::probe::Phase;
use imds_exporter::probe::credentials::{CredentialsDoc, Identity, InstanceProfile, Rotation};
use imds_exporter::probe::imds::{ImdsRun, PhaseResult};
use imds_exporter::probe::ntp::NtpSample;

const GOLDEN: &str = "tests/fixtures/metrics.golden";

/// An exposition in which every family has a sample.
fn full_exposition() -> String {
    let metrics = Metrics::new();
    metrics.set_interval(imds_exporter::probe::Probe::Imds, Duration::from_secs(30));
    metrics.set_interval(imds_exporter::probe::Probe::Ntp, Duration::from_secs(60));
    let now = Utc::now();
    let run = ImdsRun {
        started_at: Some(now),
        duration: Duration::from_millis(5),
        phases: vec![PhaseResult {
            phase: Phase::Token,
            duration: Duration::from_millis(1),
            error: None,
        }],
        outcome: Some(Ok((
            "role".into(),
            CredentialsDoc {
                expiration: now,
                last_updated: Some(now),
                key_id_hash: 1,
            },
        ))),
        rotation: Some(Rotation {
            at: now,
            lead_seconds: 3600.0,
        }),
        profile: Some(InstanceProfile { arn: "arn".into() }),
        identity: Some(Identity::default()),
        v1_enabled: Some(false),
    };
    metrics.record_imds(&run, now);
    metrics.record_ntp_sample(
        "127.0.0.1:123",
        &NtpSample {
            offset_seconds: 0.0,
            rtt_seconds: 0.0,
            stratum: 1,
            leap: 0,
            root_delay_seconds: 0.0,
            root_dispersion_seconds: 0.0,
            reference_id: *b"LOCL",
        },
    );
    let views = NodeViews::new(true, None);
    views.set(
        Some(Ok(KernelClock {
            synchronized: true,
            max_error_seconds: 0.0,
            estimated_error_seconds: 0.0,
            status: 0,
            state: 0,
        })),
        vec![(
            "eth0".into(),
            AllowanceCounters {
                linklocal: Some(0),
                bw_in: Some(0),
                bw_out: Some(0),
                pps: Some(0),
                conntrack: Some(0),
            },
        )],
    );
    metrics.register(Box::new(views));
    String::from_utf8(metrics.encode()).unwrap()
}

/// `name type HELP` per family, sorted; the process collector's are left out (not ours).
fn families(exposition: &str) -> String {
    let mut help = std::collections::BTreeMap::new();
    let mut types = std::collections::BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap();
            help.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        }
    }
    help.iter()
        .filter(|(name, _)| !name.starts_with("process_"))
        .map(|(name, text)| format!("{name} {} {text}\n", types[name]))
        .collect()
}

#[test]
fn metric_names_types_and_help_match_the_golden_file() {
    let got = families(&full_exposition());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).expect("golden file; UPDATE_GOLDEN=1 creates it");
    assert_eq!(
        got, want,
        "metric contract changed; review and UPDATE_GOLDEN=1"
    );
}

#[test]
fn names_follow_the_prometheus_conventions() {
    for line in families(&full_exposition()).lines() {
        let mut parts = line.splitn(3, ' ');
        let (name, kind, help) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(name.starts_with("imds_"), "{name}: one prefix");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: _total only on counters"
        );
        if name.ends_with("_timestamp_seconds") {
            assert_eq!(kind, "gauge", "{name}");
        }
        if name.ends_with("_info") {
            assert_eq!(kind, "gauge", "{name}");
        }
        assert!(help.len() > 20, "{name}: HELP says what it is");
        if !name.starts_with("imds_exporter_build_info") && !name.starts_with("imds_probe_interval")
        {
            assert!(
                help.contains("background"),
                "{name}: HELP says it is refreshed in the background"
            );
        }
    }
}

#[test]
fn the_readme_metric_table_lists_every_metric() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    for line in families(&full_exposition()).lines() {
        let name = line.split(' ').next().unwrap();
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in the README's metric table"
        );
    }
}
