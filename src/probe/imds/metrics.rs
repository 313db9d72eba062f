//! The IMDS probe's own series: request latency and failures by phase, the credentials'
//! expiry and rotation, the instance's identity, the IMDSv1 posture, and each SDK family's
//! verdict. Names, HELP and labels here are part of the contract in
//! `tests/fixtures/metrics.golden`.

use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};

use super::report::ImdsRun;
use super::sdk::Verdict;
use crate::labels::{Phase, Reason, Sdk};
use crate::metrics::{Families, OptionalGauge, background_help as help, unix_seconds};

/// Buckets of `imds_request_duration_seconds`: from a healthy IMDS (about a millisecond) to the
/// SDKs' 1 s timeout and past it, so `le="1"` separates "slow" from "an SDK gave up". A request
/// that times out at the default 1 s observes just over 1 s: the 1.1 bucket keeps quantiles of
/// timeouts near 1 s instead of interpolating them towards 2.5 s.
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.1, 2.5,
];

/// The families the IMDS probe records.
pub struct ImdsFamilies {
    request_duration: HistogramVec,
    request_failures: IntCounterVec,
    credentials_expiration: Gauge,
    credentials_last_updated: OptionalGauge,
    credentials_rotations: IntCounter,
    credentials_last_rotation: Gauge,
    credentials_rotation_lead: OptionalGauge,
    credentials_info: IntGaugeVec,
    /// The labels of the one `imds_credentials_info` series.
    credentials_labels: Mutex<Option<(String, String)>>,
    v1_enabled: OptionalGauge,
    instance_info: IntGaugeVec,
    sdk_available: IntGaugeVec,
    sdk_wait: GaugeVec,
    /// The families whose verdicts are recorded.
    sdks: Vec<Sdk>,
}

impl ImdsFamilies {
    /// Every phase's latency and every phase/reason failure series, at zero; verdicts for `sdks`
    /// once the first run has been recorded.
    pub fn new(sdks: &[Sdk]) -> Self {
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "imds_request_duration_seconds",
                help("Duration of IMDS requests in seconds, by phase; every attempt, failed ones included (a timeout observes the timeout)."),
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["phase"],
        )
        .expect("valid metric");
        let request_failures = IntCounterVec::new(
            Opts::new(
                "imds_request_failures_total",
                help("Failed IMDS requests, by phase and reason."),
            ),
            &["phase", "reason"],
        )
        .expect("valid metric");
        for phase in Phase::ALL {
            request_duration.with_label_values(&[phase.as_str()]);
            for reason in Reason::IMDS {
                request_failures.with_label_values(&[phase.as_str(), reason.as_str()]);
            }
        }
        Self {
            request_duration,
            request_failures,
            credentials_expiration: Gauge::new(
                "imds_credentials_expiration_timestamp_seconds",
                help("Expiration of the instance-profile credentials IMDS serves, as Unix time in seconds; keeps the last value seen while IMDS fails; 0 if none seen yet."),
            )
            .expect("valid metric"),
            credentials_last_updated: OptionalGauge::new(
                "imds_credentials_last_updated_timestamp_seconds",
                &help("LastUpdated of the credentials IMDS serves, as Unix time in seconds; absent until IMDS has sent one."),
            ),
            credentials_rotations: IntCounter::new(
                "imds_credentials_rotations_total",
                help("Credential rotations seen: the AccessKeyId served by IMDS changed."),
            )
            .expect("valid metric"),
            credentials_last_rotation: Gauge::new(
                "imds_credentials_last_rotation_timestamp_seconds",
                help(
                    "Unix time in seconds when the probe last saw the credentials rotate; 0 if never.",
                ),
            )
            .expect("valid metric"),
            credentials_rotation_lead: OptionalGauge::new(
                "imds_credentials_rotation_lead_seconds",
                &help("Remaining lifetime in seconds of the old credentials when the last rotation was seen (AWS promises at least 300); absent until the first rotation."),
            ),
            credentials_info: IntGaugeVec::new(
                Opts::new(
                    "imds_credentials_info",
                    help("The IAM role and instance profile whose credentials IMDS serves; always 1."),
                ),
                &["role", "instance_profile_arn"],
            )
            .expect("valid metric"),
            credentials_labels: Mutex::new(None),
            v1_enabled: OptionalGauge::new(
                "imds_v1_enabled",
                &help("Whether IMDS answers token-less (IMDSv1) requests (1) or requires tokens (0); keeps the last answer while IMDS does not answer, absent until IMDS has answered one. A security finding, not an outage."),
            ),
            instance_info: IntGaugeVec::new(
                Opts::new(
                    "imds_instance_info",
                    help("The instance identity document's fields; always 1."),
                ),
                &[
                    "instance_id",
                    "instance_type",
                    "region",
                    "availability_zone",
                    "account_id",
                    "image_id",
                ],
            )
            .expect("valid metric"),
            sdk_available: IntGaugeVec::new(
                Opts::new(
                    "imds_sdk_credentials_available",
                    help("Whether a client of this SDK family, created at the time of the last run with the SDK's default IMDS settings, would get credentials (1) or not (0): the SDK's own algorithm (timeouts, retries, IMDSv1 fallback) replayed over what the run saw."),
                ),
                &["sdk"],
            )
            .expect("valid metric"),
            sdk_wait: GaugeVec::new(
                Opts::new(
                    "imds_sdk_credentials_wait_seconds",
                    help("How long a client of this SDK family, created at the time of the last run, would wait for its credentials or for its failure, fallbacks and retries included; +Inf when it would never settle."),
                ),
                &["sdk"],
            )
            .expect("valid metric"),
            sdks: sdks.to_vec(),
        }
    }

    /// Records each configured family's verdict.
    pub fn record_verdicts(&self, verdicts: &[(Sdk, Verdict)]) {
        for (sdk, v) in verdicts.iter().filter(|(s, _)| self.sdks.contains(s)) {
            self.sdk_available
                .with_label_values(&[sdk.as_str()])
                .set(i64::from(v.available));
            self.sdk_wait
                .with_label_values(&[sdk.as_str()])
                .set(v.wait_seconds);
        }
    }

    /// Records everything a run saw.
    pub fn record(&self, run: &ImdsRun) {
        for phase in &run.phases {
            let name = phase.phase.as_str();
            self.request_duration
                .with_label_values(&[name])
                .observe(phase.duration.as_secs_f64());
            if let Some(e) = &phase.error {
                self.request_failures
                    .with_label_values(&[name, e.reason().as_str()])
                    .inc();
            }
        }
        if let Some(Ok((role, doc))) = &run.outcome {
            self.credentials_expiration
                .set(unix_seconds(doc.expiration));
            if let Some(t) = doc.last_updated {
                self.credentials_last_updated.set(unix_seconds(t));
            }
            let arn = run.profile.as_ref().map(|p| p.arn.clone());
            self.set_credentials_info(role, arn);
        }
        if let Some(rotation) = run.rotation {
            self.credentials_rotations.inc();
            self.credentials_last_rotation
                .set(unix_seconds(rotation.at));
            self.credentials_rotation_lead.set(rotation.lead_seconds);
        }
        if let Some(id) = &run.identity {
            self.instance_info.reset();
            self.instance_info
                .with_label_values(&[
                    &id.instance_id,
                    &id.instance_type,
                    &id.region,
                    &id.availability_zone,
                    &id.account_id,
                    &id.image_id,
                ])
                .set(1);
        }
        if let Some(v1) = run.v1_enabled {
            self.v1_enabled.set(f64::from(u8::from(v1)));
        }
    }

    /// Keeps exactly one `imds_credentials_info` series; a new ARN arrives only hourly, so the
    /// last known one is kept for the same role.
    fn set_credentials_info(&self, role: &str, arn: Option<String>) {
        let mut current = self.credentials_labels.lock().unwrap();
        let arn = match (arn, current.as_ref()) {
            (Some(a), _) => a,
            (None, Some((r, a))) if r == role => a.clone(),
            (None, _) => String::new(),
        };
        if current.as_ref() != Some(&(role.to_string(), arn.clone())) {
            self.credentials_info.reset();
            self.credentials_info
                .with_label_values(&[role, &arn])
                .set(1);
            *current = Some((role.to_string(), arn));
        }
    }
}

impl Families for ImdsFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.request_duration.clone()),
            Box::new(self.request_failures.clone()),
            Box::new(self.credentials_expiration.clone()),
            Box::new(self.credentials_last_updated.clone()),
            Box::new(self.credentials_rotations.clone()),
            Box::new(self.credentials_last_rotation.clone()),
            Box::new(self.credentials_rotation_lead.clone()),
            Box::new(self.credentials_info.clone()),
            Box::new(self.v1_enabled.clone()),
            Box::new(self.instance_info.clone()),
            Box::new(self.sdk_available.clone()),
            Box::new(self.sdk_wait.clone()),
        ]
    }
}
