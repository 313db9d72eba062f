//! The `imds_sts_*` families: what STS said of each credential source (`source`: `imds`,
//! `container`, `web_identity`), how long it took, whether the ARN it returned is the expected
//! role, and the clock skew its `Date` header shows. Shared by the STS probe (`imds`,
//! `container`) and the web identity probe's exchange (`web_identity`): registered once
//! ([`crate::metrics::Metrics::shared`]), with series only for the sources in use, so that at
//! default flags there are none. Names, HELP and labels are part of the contract in
//! `tests/fixtures/metrics.golden`.

use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::labels::{Source, StsCode};
use crate::metrics::{Families, OptionalGauge, background_help as help};

/// STS answers in tens to hundreds of milliseconds from a region; the SDKs wait far longer.
pub const STS_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The STS families. Clones share their series.
#[derive(Clone)]
pub struct StsFamilies {
    requests: IntCounterVec,
    last_response: IntGaugeVec,
    duration: HistogramVec,
    role_match: GaugeVec,
    skew: OptionalGauge,
}

impl Default for StsFamilies {
    fn default() -> Self {
        Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "imds_sts_requests_total",
                    help("STS answers to requests made with a credential source (imds, container: a signed GetCallerIdentity; web_identity: AssumeRoleWithWebIdentity), by the AWS error code's class (ok for success). Requests STS did not answer are not counted here: imds_probe_failures_total has them."),
                ),
                &["source", "code"],
            )
            .expect("valid metric"),
            last_response: IntGaugeVec::new(
                Opts::new(
                    "imds_sts_last_response",
                    help("1 for the class of STS's last answer for the source (ok, expired_token, ...), 0 for the others; all 0 until STS has answered; keeps the last answer while STS does not answer."),
                ),
                &["source", "code"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "imds_sts_request_duration_seconds",
                    help("Duration of STS requests in seconds, by source; every request, failed ones included."),
                )
                .buckets(STS_BUCKETS.to_vec()),
                &["source"],
            )
            .expect("valid metric"),
            role_match: GaugeVec::new(
                Opts::new(
                    "imds_sts_role_match",
                    help("Whether the ARN STS returned is the role the source names (IMDS: its role list; container: the document's RoleArn; web_identity: AWS_ROLE_ARN): 1 or 0; absent until known."),
                ),
                &["source"],
            )
            .expect("valid metric"),
            skew: OptionalGauge::new(
                "imds_sts_clock_skew_seconds",
                &help("STS's clock minus this host's, from the Date header of STS's last answer (whole seconds: good to about +-0.5 s plus half the round trip); positive means the local clock is behind. SigV4 requests more than 300 s off are refused. Absent until STS has answered."),
            ),
        }
    }
}

impl StsFamilies {
    /// Creates `source`'s series: every code at 0, the latency histogram.
    pub fn add(&self, source: Source) {
        let s = source.as_str();
        for code in StsCode::ALL {
            self.requests.with_label_values(&[s, code.as_str()]);
            self.last_response
                .with_label_values(&[s, code.as_str()])
                .set(0);
        }
        self.duration.with_label_values(&[s]);
    }

    /// A request that took `seconds`, and STS's answer class if it answered.
    pub fn record(&self, source: Source, seconds: f64, code: Option<StsCode>) {
        let s = source.as_str();
        self.duration.with_label_values(&[s]).observe(seconds);
        if let Some(code) = code {
            self.requests.with_label_values(&[s, code.as_str()]).inc();
            for c in StsCode::ALL {
                self.last_response
                    .with_label_values(&[s, c.as_str()])
                    .set(i64::from(c == code));
            }
        }
    }

    pub fn record_role_match(&self, source: Source, matches: bool) {
        self.role_match
            .with_label_values(&[source.as_str()])
            .set(f64::from(u8::from(matches)));
    }

    pub fn record_skew(&self, seconds: f64) {
        self.skew.set(seconds);
    }
}

impl Families for StsFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.last_response.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.role_match.clone()),
            Box::new(self.skew.clone()),
        ]
    }
}
