//! The IMDS probe's own series: the instance's identity, the IMDSv1 posture, and each SDK
//! family's verdict; request latency and failures by phase and the credentials' expiry and
//! rotation go to the credential families it shares with the container probe
//! ([`crate::probe::credential_families`], `probe="imds"`). Names, HELP and labels here are part
//! of the contract in `tests/fixtures/metrics.golden`.

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use super::report::ImdsRun;
use super::sdk::Verdict;
use crate::labels::{Probe, Sdk};
use crate::metrics::{Families, Metrics, OptionalGauge, Recorded, background_help as help};
use crate::probe::credential_families::CredentialFamilies;

/// The families the IMDS probe records.
pub struct ImdsFamilies {
    /// `probe="imds"` of the shared credential families.
    credentials: Recorded<CredentialFamilies>,
    v1_enabled: OptionalGauge,
    instance_info: IntGaugeVec,
    sdk_available: IntGaugeVec,
    sdk_wait: GaugeVec,
    /// The families whose verdicts are recorded.
    sdks: Vec<Sdk>,
}

impl ImdsFamilies {
    /// Every phase's latency and every phase/reason failure series of `probe="imds"`, at zero;
    /// verdicts for `sdks` once the first run has been recorded.
    pub fn new(sdks: &[Sdk], metrics: &Metrics) -> Self {
        let credentials = metrics.shared::<CredentialFamilies>();
        credentials.update().add(Probe::Imds);
        Self {
            credentials,
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
        {
            let credentials = self.credentials.update();
            for phase in &run.phases {
                let reason = phase.error.as_ref().map(|e| e.reason());
                credentials.record_request(Probe::Imds, phase.phase, phase.duration, reason);
            }
            if let Some(Ok((role, doc))) = &run.outcome {
                credentials.record_document(Probe::Imds, doc);
                let arn = run.profile.as_ref().map(|p| p.arn.clone());
                credentials.set_info(Probe::Imds, role, arn);
            }
            if let Some(rotation) = &run.rotation {
                credentials.record_rotation(Probe::Imds, rotation);
            }
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
}

impl Families for ImdsFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.v1_enabled.clone()),
            Box::new(self.instance_info.clone()),
            Box::new(self.sdk_available.clone()),
            Box::new(self.sdk_wait.clone()),
        ]
    }
}
