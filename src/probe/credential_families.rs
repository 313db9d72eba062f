//! The credential families that the IMDS probe and the container probe share, told apart by the
//! `probe` label (`imds`, `container`), so that one alert and one dashboard row serve both:
//! request latency and failures by phase, and the served credentials' expiry, rotation and
//! rotation lead. Names, HELP and labels are part of the contract in
//! `tests/fixtures/metrics.golden`.
//!
//! Registered once ([`crate::metrics::Metrics::shared`]); each probe creates its own series at
//! start ([`CredentialFamilies::add`]) and records through its own handle. A probe that is off
//! has no series here: at default flags only `probe="imds"` exists.

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::labels::{Phase, Probe, Reason};
use crate::metrics::{Families, background_help as help, unix_seconds};
use crate::probe::credentials::{CredentialsDoc, Rotation};

/// Buckets of `imds_request_duration_seconds`: from a healthy IMDS (about a millisecond) to the
/// SDKs' 1 s timeout and past it, so `le="1"` separates "slow" from "an SDK gave up". A request
/// that times out at the default 1 s observes just over 1 s: the 1.1 bucket keeps quantiles of
/// timeouts near 1 s instead of interpolating them towards 2.5 s. (The container endpoint's SDK
/// timeout is 2 s: its timeouts land in the 2.5 bucket.)
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.1, 2.5,
];

/// The shared credential families. Clones share their series.
#[derive(Clone)]
pub struct CredentialFamilies {
    request_duration: HistogramVec,
    request_failures: IntCounterVec,
    expiration: GaugeVec,
    last_updated: GaugeVec,
    rotations: IntCounterVec,
    last_rotation: GaugeVec,
    rotation_lead: GaugeVec,
    info: IntGaugeVec,
    /// The labels of each probe's one `imds_credentials_info` series.
    info_labels: Arc<Mutex<Vec<(Probe, String, String)>>>,
}

impl Default for CredentialFamilies {
    fn default() -> Self {
        let gauge = |name: &str, text: &str| {
            GaugeVec::new(Opts::new(name, help(text)), &["probe"]).expect("valid metric")
        };
        Self {
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "imds_request_duration_seconds",
                    help("Duration of credential requests in seconds, by probe (imds, container) and phase; every attempt, failed ones included (a timeout observes the timeout)."),
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["probe", "phase"],
            )
            .expect("valid metric"),
            request_failures: IntCounterVec::new(
                Opts::new(
                    "imds_request_failures_total",
                    help("Failed credential requests, by probe (imds, container), phase and reason."),
                ),
                &["probe", "phase", "reason"],
            )
            .expect("valid metric"),
            expiration: gauge(
                "imds_credentials_expiration_timestamp_seconds",
                "Expiration of the credentials the probe's endpoint serves (IMDS: the instance profile's; container: the pod's or task's), as Unix time in seconds; keeps the last value seen while the endpoint fails; 0 if none seen yet.",
            ),
            last_updated: gauge(
                "imds_credentials_last_updated_timestamp_seconds",
                "LastUpdated of the credentials the endpoint serves, as Unix time in seconds; absent until the endpoint has sent one.",
            ),
            rotations: IntCounterVec::new(
                Opts::new(
                    "imds_credentials_rotations_total",
                    help("Credential rotations seen: the AccessKeyId the endpoint serves changed."),
                ),
                &["probe"],
            )
            .expect("valid metric"),
            last_rotation: gauge(
                "imds_credentials_last_rotation_timestamp_seconds",
                "Unix time in seconds when the probe last saw the credentials rotate; 0 if never.",
            ),
            rotation_lead: gauge(
                "imds_credentials_rotation_lead_seconds",
                "Remaining lifetime in seconds of the old credentials when the last rotation was seen (AWS promises at least 300 for IMDS); absent until the first rotation.",
            ),
            info: IntGaugeVec::new(
                Opts::new(
                    "imds_credentials_info",
                    help("The IAM role (and, for IMDS, the instance profile) whose credentials the endpoint serves; always 1. The container endpoint names a role only when its document has a RoleArn (ECS)."),
                ),
                &["probe", "role", "instance_profile_arn"],
            )
            .expect("valid metric"),
            info_labels: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl CredentialFamilies {
    /// Creates `probe`'s series at their start-up values: every phase's latency (but the
    /// token read's, which is no request) and failure series, the expiry and rotation at 0.
    pub fn add(&self, probe: Probe) {
        let p = probe.as_str();
        for phase in probe.phases() {
            if *phase != Phase::AuthToken {
                self.request_duration
                    .with_label_values(&[p, phase.as_str()]);
                for reason in probe.reasons() {
                    if *reason != Reason::TokenFile {
                        self.request_failures.with_label_values(&[
                            p,
                            phase.as_str(),
                            reason.as_str(),
                        ]);
                    }
                }
            } else {
                self.request_failures.with_label_values(&[
                    p,
                    phase.as_str(),
                    Reason::TokenFile.as_str(),
                ]);
            }
        }
        self.expiration.with_label_values(&[p]).set(0.0);
        self.rotations.with_label_values(&[p]);
        self.last_rotation.with_label_values(&[p]).set(0.0);
    }

    /// One request (or, for `auth_token`, the token read): its duration and, if it failed, why.
    pub fn record_request(
        &self,
        probe: Probe,
        phase: Phase,
        duration: std::time::Duration,
        failure: Option<Reason>,
    ) {
        let (p, ph) = (probe.as_str(), phase.as_str());
        if phase != Phase::AuthToken {
            self.request_duration
                .with_label_values(&[p, ph])
                .observe(duration.as_secs_f64());
        }
        if let Some(reason) = failure {
            self.request_failures
                .with_label_values(&[p, ph, reason.as_str()])
                .inc();
        }
    }

    /// A document the endpoint served.
    pub fn record_document(&self, probe: Probe, doc: &CredentialsDoc) {
        let p = probe.as_str();
        self.expiration
            .with_label_values(&[p])
            .set(unix_seconds(doc.expiration));
        if let Some(t) = doc.last_updated {
            self.last_updated
                .with_label_values(&[p])
                .set(unix_seconds(t));
        }
    }

    pub fn record_rotation(&self, probe: Probe, rotation: &Rotation) {
        let p = probe.as_str();
        self.rotations.with_label_values(&[p]).inc();
        self.last_rotation
            .with_label_values(&[p])
            .set(unix_seconds(rotation.at));
        self.rotation_lead
            .with_label_values(&[p])
            .set(rotation.lead_seconds);
    }

    /// Keeps exactly one `imds_credentials_info` series per probe; a new ARN arrives only
    /// hourly (IMDS), so the last known one is kept for the same role.
    pub fn set_info(&self, probe: Probe, role: &str, arn: Option<String>) {
        let mut current = self.info_labels.lock().unwrap();
        let known = current.iter().position(|(p, _, _)| *p == probe);
        let arn = match (arn, known.map(|i| &current[i])) {
            (Some(a), _) => a,
            (None, Some((_, r, a))) if r == role => a.clone(),
            (None, _) => String::new(),
        };
        let p = probe.as_str();
        if let Some(i) = known {
            let (_, r, a) = &current[i];
            if r == role && *a == arn {
                return;
            }
            let _ = self.info.remove_label_values(&[p, r, a]);
            current.remove(i);
        }
        self.info.with_label_values(&[p, role, &arn]).set(1);
        current.push((probe, role.to_string(), arn));
    }
}

impl Families for CredentialFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.request_duration.clone()),
            Box::new(self.request_failures.clone()),
            Box::new(self.expiration.clone()),
            Box::new(self.last_updated.clone()),
            Box::new(self.rotations.clone()),
            Box::new(self.last_rotation.clone()),
            Box::new(self.rotation_lead.clone()),
            Box::new(self.info.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn only_the_probes_added_have_series() {
        let metrics = Metrics::new();
        let families = metrics.shared::<CredentialFamilies>();
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(!text.contains("imds_request_"), "{text}");
        families.update().add(Probe::Imds);
        let again = metrics.shared::<CredentialFamilies>();
        again.update().add(Probe::Container);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains(
                r#"imds_request_failures_total{phase="token",probe="imds",reason="timeout"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"imds_request_failures_total{phase="auth_token",probe="container",reason="token_file"} 0"#), "{text}");
        assert!(
            !text.contains(r#"phase="token",probe="container""#),
            "{text}"
        );
        assert!(
            !text.contains(r#"phase="auth_token",probe="imds""#),
            "{text}"
        );
    }

    #[test]
    fn each_probe_keeps_one_info_series() {
        let f = CredentialFamilies::default();
        f.set_info(Probe::Imds, "web", Some("arn:p".into()));
        f.set_info(Probe::Container, "pod-role", None);
        f.set_info(Probe::Imds, "web", None);
        f.set_info(Probe::Container, "other", None);
        let mut series: Vec<String> = f.info.collect()[0]
            .get_metric()
            .iter()
            .map(|m| {
                m.get_label()
                    .iter()
                    .map(|l| l.value().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        series.sort();
        assert_eq!(series, [",container,other", "arn:p,imds,web"]);
    }
}
