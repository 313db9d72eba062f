//! The thresholds are spelled once: `alerts/thresholds.yml`. The alert rules are checked against
//! it by scripts/check-alert-thresholds.py, the dashboards are generated from it, and here the
//! Rust side (`check`'s verdicts, the latency buckets) is checked against it.

use std::collections::BTreeMap;

use imds_exporter::thresholds;

fn file() -> BTreeMap<String, f64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/thresholds.yml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).expect("a flat mapping of numbers")
}

#[test]
fn every_threshold_in_the_file_has_its_rust_constant_with_the_same_value() {
    let file = file();
    let rust: BTreeMap<String, f64> = thresholds::ALL
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(
        file.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "keys differ between alerts/thresholds.yml and src/thresholds.rs"
    );
    for (key, value) in &file {
        assert_eq!(rust[key], *value, "{key}");
    }
}

#[test]
fn every_latency_bucket_set_has_a_bucket_at_the_slow_request_bound() {
    use imds_exporter::labels::Probe;
    use imds_exporter::probe::credential_families::request_buckets;
    let bound = thresholds::SLOW_REQUEST.as_secs_f64();
    for probe in [Probe::Imds, Probe::Container] {
        for phase in probe.phases() {
            assert!(
                request_buckets(probe, *phase).contains(&bound),
                "{probe:?} {phase:?}: the alerts read le=\"{bound}\""
            );
        }
    }
}

#[test]
fn check_judges_by_the_alerting_thresholds() {
    use imds_exporter::check;
    assert_eq!(
        check::imds::EXPIRY_FAIL,
        thresholds::CREDENTIALS_EXPIRY_WARNING
    );
    assert_eq!(
        check::node::NTP_WARN_SECONDS,
        thresholds::CLOCK_SKEW_WARNING_SECONDS
    );
    assert_eq!(
        check::node::NTP_FAIL_SECONDS,
        thresholds::CLOCK_SKEW_CRITICAL_SECONDS
    );
    assert_eq!(
        check::settings::DEFAULT_SDK_TIMEOUT,
        thresholds::SLOW_REQUEST
    );
}
