//! The metric contract: every family's name, type and HELP, in a golden file that makes every
//! rename a reviewed diff (node_exporter's e2e-output.txt, in spirit). Alerts and dashboards are
//! checked against the same file, and against a second one, `metrics.labels`: every family's label
//! names and, for the labels whose values come from a closed set (`phase`, `reason`, `probe`,
//! `allowance`), every value, so that renaming a label or a reason breaks a test here and the
//! alerts' check (`scripts/check-alert-metrics.py`) rather than an alert in production.
//! Regenerate both with `UPDATE_GOLDEN=1 cargo test --test golden`.

use std::time::Duration;

use chrono::Utc;
use imds_exporter::collector::{NodeViews, clock::KernelClock, ethtool::AllowanceCounters};
use imds_exporter::labels::{Phase, Probe, Source, StsCode};
use imds_exporter::metrics::Metrics;
use imds_exporter::probe::credential_families::CredentialFamilies;
use imds_exporter::probe::credentials::{CredentialsDoc, Identity, InstanceProfile, Rotation};
use imds_exporter::probe::imds::metrics::ImdsFamilies;
use imds_exporter::probe::imds::{ImdsRun, PhaseResult};
use imds_exporter::probe::ntp::NtpFamilies;
use imds_exporter::probe::ntp::NtpSample;
use imds_exporter::probe::sts::metrics::StsFamilies;
use imds_exporter::probe::web_identity::WebIdentityFamilies;

const GOLDEN: &str = "tests/fixtures/metrics.golden";
const LABELS: &str = "tests/fixtures/metrics.labels";

/// Labels whose values are a closed set the exporter defines; the others (identity data, the
/// NTP server, the interface, build facts) are open and listed as `*`.
const CLOSED: [&str; 7] = [
    "allowance",
    "code",
    "phase",
    "probe",
    "reason",
    "sdk",
    "source",
];

/// An exposition in which every family has a sample, registered as the exporter registers them.
fn full_exposition() -> String {
    let metrics = Metrics::new();
    let imds = metrics.register(ImdsFamilies::new(
        &imds_exporter::labels::Sdk::ALL,
        &metrics,
    ));
    let ntp = metrics.register(NtpFamilies::new());
    metrics
        .probes()
        .update()
        .add(Probe::Imds, Duration::from_secs(30));
    for probe in [Probe::Ntp, Probe::Container, Probe::WebIdentity, Probe::Sts] {
        metrics
            .probes()
            .update()
            .add(probe, Duration::from_secs(60));
    }
    let now = Utc::now();
    // The probes that are off at defaults, as they register when on.
    let credentials = metrics.shared::<CredentialFamilies>();
    credentials.update().add(Probe::Container);
    credentials.update().record_document(
        Probe::Container,
        &CredentialsDoc {
            expiration: now,
            last_updated: Some(now),
            key_id_hash: 2,
        },
    );
    credentials.update().record_rotation(
        Probe::Container,
        &Rotation {
            at: now,
            lead_seconds: 600.0,
        },
    );
    let sts = metrics.shared::<StsFamilies>();
    for source in [Source::Imds, Source::Container, Source::WebIdentity] {
        sts.update().add(source);
        sts.update().record(source, 0.1, Some(StsCode::Ok));
        sts.update().record_role_match(source, true);
    }
    sts.update().record_skew(0.0);
    let web_identity = metrics.register(WebIdentityFamilies::new());
    web_identity.update().record_expiration(now);
    web_identity.update().record_role_arn_present(true);
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
        ..ImdsRun::default()
    };
    imds.update().record(&run);
    imds.update()
        .record_verdicts(&imds_exporter::probe::imds::sdk::verdicts(
            &Default::default(),
        ));
    metrics
        .register(imds_exporter::probe::imds::watch::OutageFamilies::new())
        .update()
        .record_outage(Duration::from_secs(3));
    ntp.update().record_sample(
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
    metrics.register_live(Box::new(views));
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

/// `name label=v1|v2 other=*` per family, sorted; `le` of histograms is left out.
fn labels(exposition: &str) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    let mut families: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            kinds.insert(name.to_string(), kind.to_string());
            families.entry(name.to_string()).or_default();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let series = line.rsplit_once(' ').unwrap().0;
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| kinds.get(*f).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        let entry = families.entry(family.to_string()).or_default();
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (label, value) = pair.split_once('=').unwrap();
            if label == "le" {
                continue;
            }
            entry
                .entry(label.to_string())
                .or_default()
                .insert(value.trim_matches('"').to_string());
        }
    }
    families
        .iter()
        .filter(|(name, _)| !name.starts_with("process_"))
        .map(|(name, labels)| {
            let mut line = name.clone();
            for (label, values) in labels {
                let values = if CLOSED.contains(&label.as_str()) {
                    values.iter().cloned().collect::<Vec<_>>().join("|")
                } else {
                    "*".to_string()
                };
                line.push_str(&format!(" {label}={values}"));
            }
            line + "\n"
        })
        .collect()
}

#[test]
fn label_names_and_closed_label_values_match_the_golden_file() {
    let got = labels(&full_exposition());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(LABELS, &got).unwrap();
    }
    let want = std::fs::read_to_string(LABELS).expect("labels file; UPDATE_GOLDEN=1 creates it");
    assert_eq!(
        got, want,
        "label contract changed; review and UPDATE_GOLDEN=1"
    );
}

#[test]
fn the_readme_metric_table_gives_each_metrics_type_and_labels() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let types: std::collections::BTreeMap<String, String> = families(&full_exposition())
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            (p.next().unwrap().to_string(), p.next().unwrap().to_string())
        })
        .collect();
    let mut rows = 0;
    for line in labels(&full_exposition()).lines() {
        let mut parts = line.split(' ');
        let name = parts.next().unwrap();
        let want: Vec<&str> = parts.map(|p| p.split('=').next().unwrap()).collect();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("{name}: no row in the README's metric table"));
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cols[2], types[name], "{name}: type in the README");
        // Label names are the backticked words outside parentheses (which list values).
        let mut depth = 0;
        let mut outside = String::new();
        for c in cols[3].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                c if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        let mut got: Vec<&str> = outside.split('`').skip(1).step_by(2).collect();
        got.sort_unstable();
        assert_eq!(got, want, "{name}: labels in the README");
        rows += 1;
    }
    assert!(rows >= 25, "only {rows} families checked");
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

#[test]
fn the_simulator_docs_describe_every_scenario() {
    let docs = std::fs::read_to_string("docs/simulator.md").unwrap();
    let table = docs
        .split("| scenario (params) |")
        .nth(1)
        .expect("docs/simulator.md has the scenario table");
    let mut documented: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .map(|s| s.split('?').next().unwrap())
        .collect();
    documented.sort_unstable();
    documented.dedup();
    let mut names = imds_exporter::sim::scenario::NAMES.to_vec();
    names.sort_unstable();
    assert_eq!(
        documented, names,
        "one row per scenario in docs/simulator.md"
    );
}

/// The dashboards' latency panels select the phases with the full bucket set by name: the list in
/// scripts/gen-dashboards is the code's.
#[test]
fn the_dashboards_latency_phases_are_the_full_bucket_phases() {
    let script = std::fs::read_to_string("scripts/gen-dashboards").unwrap();
    let line = script
        .lines()
        .find(|l| l.starts_with("SDK_PATH_PHASES = "))
        .expect("SDK_PATH_PHASES in scripts/gen-dashboards");
    let want: Vec<&str> = imds_exporter::probe::credential_families::SDK_PATH_PHASES
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(
        line.trim_start_matches("SDK_PATH_PHASES = ")
            .trim_matches('"'),
        want.join("|")
    );
}
