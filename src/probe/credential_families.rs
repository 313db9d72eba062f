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

/// Buckets of `imds_request_duration_seconds`, per probe and phase: only what the alerts and
/// panels read (issue 18: each bucket is a series on every node of a fleet).
///
/// - IMDS's SDK path (`token`, `role`, `credentials`): 10 ms (a healthy IMDS answers in about
///   1 ms), 100 ms, and 1 s, the SDKs' default timeout: `le="1"` separates "slow" from "an SDK
///   gave up" (`instance:imds_request_duration_seconds_over_1s:ratio_rate5m`). A request that
///   times out observes just over 1 s and lands above the last bound, so `histogram_quantile`
///   reads it as 1 s. The latency panels (quantiles by phase, heatmaps) show these phases.
/// - IMDS's other phases (`imdsv1`, `info`, `identity`): `le="1"` only, what the slow-request
///   share reads. (The IMDSv1 fallback's cost to the SDKs that take it is in
///   `imds_sdk_credentials_wait_seconds`.)
/// - The container endpoint (SDK timeout 2 s): 10 ms, 100 ms, 1 s and 2 s.
pub const SDK_PATH_BUCKETS: [f64; 3] = [0.01, 0.1, 1.0];
pub const COARSE_BUCKETS: [f64; 1] = [1.0];
pub const CONTAINER_BUCKETS: [f64; 4] = [0.01, 0.1, 1.0, 2.0];

/// The phases with [`SDK_PATH_BUCKETS`]: those the latency panels show (`scripts/gen-dashboards`
/// selects them by name; `tests/golden.rs` holds the two to the same list).
pub const SDK_PATH_PHASES: [Phase; 3] = [Phase::Token, Phase::Role, Phase::Credentials];

/// The buckets of one probe's phase.
pub fn request_buckets(probe: Probe, phase: Phase) -> &'static [f64] {
    match probe {
        Probe::Container => &CONTAINER_BUCKETS,
        _ if SDK_PATH_PHASES.contains(&phase) => &SDK_PATH_BUCKETS,
        _ => &COARSE_BUCKETS,
    }
}

/// One histogram family whose series have different buckets: a `HistogramVec` per bucket set
/// (same name, HELP and labels), gathered as one family. The prometheus crate fixes the buckets
/// per `HistogramVec` and refuses two collectors of one name, hence this small merge.
#[derive(Clone)]
struct PhaseHistograms {
    sets: Vec<(&'static [f64], HistogramVec)>,
}

impl PhaseHistograms {
    fn new(name: &str, text: &str, sets: &[&'static [f64]]) -> Self {
        let sets = sets
            .iter()
            .map(|buckets| {
                let vec = HistogramVec::new(
                    HistogramOpts::new(name, help(text)).buckets(buckets.to_vec()),
                    &["probe", "phase"],
                )
                .expect("valid metric");
                (*buckets, vec)
            })
            .collect();
        Self { sets }
    }

    fn with(&self, probe: Probe, phase: Phase) -> prometheus::Histogram {
        let buckets = request_buckets(probe, phase);
        let (_, vec) = self
            .sets
            .iter()
            .find(|(b, _)| *b == buckets)
            .expect("every bucket set is registered");
        vec.with_label_values(&[probe.as_str(), phase.as_str()])
    }
}

impl Collector for PhaseHistograms {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.sets[0].1.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.sets.iter().flat_map(|(_, v)| v.collect());
        let Some(mut first) = families.next() else {
            return Vec::new();
        };
        for family in families {
            first
                .mut_metric()
                .extend(family.get_metric().iter().cloned());
        }
        if first.get_metric().is_empty() {
            return Vec::new();
        }
        vec![first]
    }
}

/// The shared credential families. Clones share their series.
#[derive(Clone)]
pub struct CredentialFamilies {
    request_duration: PhaseHistograms,
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
            request_duration: PhaseHistograms::new(
                "imds_request_duration_seconds",
                "Duration of credential requests in seconds, by probe (imds, container) and phase; every attempt, failed ones included (a timeout observes the timeout). Buckets per phase: see the README.",
                &[&SDK_PATH_BUCKETS, &COARSE_BUCKETS, &CONTAINER_BUCKETS],
            ),
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
    /// token read's, which is no request), the failure series of the phase/reason pairs the
    /// endpoint can produce ([`Probe::expected_failures`]; any other pair appears at its first
    /// occurrence), the expiry and rotation at 0.
    pub fn add(&self, probe: Probe) {
        let p = probe.as_str();
        for phase in probe.phases() {
            if *phase != Phase::AuthToken {
                self.request_duration.with(probe, *phase);
            }
            for reason in probe.expected_failures(*phase) {
                self.request_failures
                    .with_label_values(&[p, phase.as_str(), reason.as_str()]);
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
                .with(probe, phase)
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
