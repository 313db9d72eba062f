//! Every metric the exporter serves: names, HELP strings, types and labels live here and only
//! here. Probes hand over typed reports; this module turns them into series.
//!
//! The exporter probes in the background (smokeping_prober's model): a scrape reads what the
//! last run measured and never triggers a request to IMDS. Every `probe`, `phase` and `reason`
//! series is created at zero on start-up, so `rate()` and `increase()` see the first failure.
//!
//! Because the probes' series change only when a run is recorded, their text is rendered once per
//! change and reused by every scrape until the next one; only the collectors that change on their
//! own (the node views, the process collector) are gathered at scrape time. A scrape is then
//! mostly a copy, which keeps `/metrics` cheap however often it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::probe::imds::ImdsRun;
use crate::probe::{Phase, Probe, Reason};

/// Buckets of `imds_request_duration_seconds`: from a healthy IMDS (about a millisecond) to the
/// SDKs' 1 s timeout and past it, so `le="1"` separates "slow" from "an SDK gave up". A request
/// that times out at the default 1 s observes just over 1 s: the 1.1 bucket keeps quantiles of
/// timeouts near 1 s instead of interpolating them towards 2.5 s.
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.1, 2.5,
];

const BACKGROUND: &str = "Refreshed by the background probe, not at scrape time.";

fn help(text: &str) -> String {
    format!("{text} {BACKGROUND}")
}

/// Build identity, filled in by `build.rs`.
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc_version: &'static str,
}

pub const BUILD_INFO: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("IMDS_EXPORTER_REVISION"),
    rustc_version: env!("IMDS_EXPORTER_RUSTC_VERSION"),
};

/// The exporter's series. Invariant behind the exposition cache: the families in `registry`
/// change only through the `&self` methods below, and each of those ends with `self.changed()`.
pub struct Metrics {
    /// Our own families, rendered once per change (see `rendered`).
    registry: Registry,
    /// Collectors whose values change on their own (node views, process): gathered every scrape.
    live: Registry,
    /// Bumped after every change to `registry` or to the optional gauges.
    generation: AtomicU64,
    /// The text of our own families at some generation.
    rendered: Mutex<Arc<Rendered>>,
    probe_success: IntGaugeVec,
    probe_duration: GaugeVec,
    probe_last_success: GaugeVec,
    probe_interval: GaugeVec,
    probe_runs: IntCounterVec,
    probe_failures: IntCounterVec,
    request_duration: HistogramVec,
    request_failures: IntCounterVec,
    credentials_expiration: Gauge,
    credentials_last_updated: Mutex<Option<f64>>,
    credentials_rotations: IntCounter,
    credentials_last_rotation: Gauge,
    credentials_rotation_lead: Mutex<Option<f64>>,
    credentials_info: IntGaugeVec,
    credentials_labels: Mutex<Option<(String, String)>>,
    v1_enabled: IntGauge,
    instance_info: IntGaugeVec,
    ntp_offset: GaugeVec,
    ntp_rtt: GaugeVec,
    ntp_stratum: GaugeVec,
    ntp_leap: GaugeVec,
    ntp_root_delay: GaugeVec,
    ntp_root_dispersion: GaugeVec,
}

impl Metrics {
    /// Creates every series at its start-up value, with the process collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self::with_registry(registry);
        m.register(Box::new(crate::collector::process::ProcessMetrics::new()));
        m
    }

    fn with_registry(registry: Registry) -> Self {
        let probe_success = IntGaugeVec::new(
            Opts::new(
                "imds_probe_success",
                help("Whether the last run of the probe succeeded (1) or failed (0)."),
            ),
            &["probe"],
        )
        .unwrap();
        let probe_duration = GaugeVec::new(
            Opts::new(
                "imds_probe_duration_seconds",
                help("Duration of the last run of the probe, in seconds."),
            ),
            &["probe"],
        )
        .unwrap();
        let probe_last_success = GaugeVec::new(
            Opts::new(
                "imds_probe_last_success_timestamp_seconds",
                help(
                    "Unix time in seconds of the last successful run of the probe; 0 if none yet.",
                ),
            ),
            &["probe"],
        )
        .unwrap();
        let probe_interval = GaugeVec::new(
            Opts::new(
                "imds_probe_interval_seconds",
                "Configured interval between runs of the probe, in seconds.",
            ),
            &["probe"],
        )
        .unwrap();
        let probe_runs = IntCounterVec::new(
            Opts::new(
                "imds_probe_runs_total",
                help("Runs of the probe; stops increasing when the probe is stuck."),
            ),
            &["probe"],
        )
        .unwrap();
        let probe_failures = IntCounterVec::new(
            Opts::new(
                "imds_probe_failures_total",
                help("Failed runs of the probe, by the reason of the first failing step."),
            ),
            &["probe", "reason"],
        )
        .unwrap();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "imds_request_duration_seconds",
                help("Duration of IMDS requests in seconds, by phase; every attempt, failed ones included (a timeout observes the timeout)."),
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["phase"],
        )
        .unwrap();
        let request_failures = IntCounterVec::new(
            Opts::new(
                "imds_request_failures_total",
                help("Failed IMDS requests, by phase and reason."),
            ),
            &["phase", "reason"],
        )
        .unwrap();
        let credentials_expiration = Gauge::new(
            "imds_credentials_expiration_timestamp_seconds",
            help("Expiration of the instance-profile credentials IMDS serves, as Unix time in seconds; keeps the last value seen while IMDS fails; 0 if none seen yet."),
        )
        .unwrap();
        let credentials_rotations = IntCounter::new(
            "imds_credentials_rotations_total",
            help("Credential rotations seen: the AccessKeyId served by IMDS changed."),
        )
        .unwrap();
        let credentials_last_rotation = Gauge::new(
            "imds_credentials_last_rotation_timestamp_seconds",
            help(
                "Unix time in seconds when the probe last saw the credentials rotate; 0 if never.",
            ),
        )
        .unwrap();
        let credentials_info = IntGaugeVec::new(
            Opts::new(
                "imds_credentials_info",
                help("The IAM role and instance profile whose credentials IMDS serves; always 1."),
            ),
            &["role", "instance_profile_arn"],
        )
        .unwrap();
        let v1_enabled = IntGauge::new(
            "imds_v1_enabled",
            help("Whether IMDS answers token-less (IMDSv1) requests (1) or requires tokens (0); keeps the last answer while IMDS does not answer, 0 before the first. A security finding, not an outage."),
        )
        .unwrap();
        let instance_info = IntGaugeVec::new(
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
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "imds_exporter_build_info",
                "Version, revision and compiler of the running imds_exporter; always 1.",
            ),
            &["version", "revision", "rustc_version"],
        )
        .unwrap();
        let ntp = |name: &str, text: &str| {
            GaugeVec::new(Opts::new(name, help(text)), &["server"]).unwrap()
        };
        let ntp_offset = ntp(
            "imds_ntp_offset_seconds",
            "Clock offset against the NTP server in seconds: server time minus local time, so positive means the local clock is behind.",
        );
        let ntp_rtt = ntp(
            "imds_ntp_rtt_seconds",
            "Round-trip time of the last NTP exchange in seconds, server processing time excluded.",
        );
        let ntp_stratum = ntp("imds_ntp_stratum", "Stratum reported by the NTP server.");
        let ntp_leap = ntp(
            "imds_ntp_leap",
            "Leap indicator reported by the NTP server: 0 none, 1 insert, 2 delete, 3 server unsynchronised.",
        );
        let ntp_root_delay = ntp(
            "imds_ntp_root_delay_seconds",
            "Root delay reported by the NTP server, in seconds.",
        );
        let ntp_root_dispersion = ntp(
            "imds_ntp_root_dispersion_seconds",
            "Root dispersion reported by the NTP server, in seconds.",
        );

        for probe in Probe::ALL {
            let p = probe.as_str();
            probe_success.with_label_values(&[p]).set(0);
            probe_duration.with_label_values(&[p]).set(0.0);
            probe_last_success.with_label_values(&[p]).set(0.0);
            probe_runs.with_label_values(&[p]);
            for reason in probe.reasons() {
                probe_failures.with_label_values(&[p, reason.as_str()]);
            }
        }
        for phase in Phase::ALL {
            request_duration.with_label_values(&[phase.as_str()]);
            for reason in Reason::IMDS {
                request_failures.with_label_values(&[phase.as_str(), reason.as_str()]);
            }
        }
        build_info
            .with_label_values(&[
                BUILD_INFO.version,
                BUILD_INFO.revision,
                BUILD_INFO.rustc_version,
            ])
            .set(1);

        let m = Self {
            registry,
            live: Registry::new(),
            generation: AtomicU64::new(0),
            rendered: Mutex::new(Arc::new(Rendered::default())),
            probe_success,
            probe_duration,
            probe_last_success,
            probe_interval,
            probe_runs,
            probe_failures,
            request_duration,
            request_failures,
            credentials_expiration,
            credentials_last_updated: Mutex::new(None),
            credentials_rotations,
            credentials_last_rotation,
            credentials_rotation_lead: Mutex::new(None),
            credentials_info,
            credentials_labels: Mutex::new(None),
            v1_enabled,
            instance_info,
            ntp_offset,
            ntp_rtt,
            ntp_stratum,
            ntp_leap,
            ntp_root_delay,
            ntp_root_dispersion,
        };
        let r = &m.registry;
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.probe_success.clone()),
            Box::new(m.probe_duration.clone()),
            Box::new(m.probe_last_success.clone()),
            Box::new(m.probe_interval.clone()),
            Box::new(m.probe_runs.clone()),
            Box::new(m.probe_failures.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.request_failures.clone()),
            Box::new(m.credentials_expiration.clone()),
            Box::new(m.credentials_rotations.clone()),
            Box::new(m.credentials_last_rotation.clone()),
            Box::new(m.credentials_info.clone()),
            Box::new(m.v1_enabled.clone()),
            Box::new(m.instance_info.clone()),
            Box::new(build_info),
            Box::new(m.ntp_offset.clone()),
            Box::new(m.ntp_rtt.clone()),
            Box::new(m.ntp_stratum.clone()),
            Box::new(m.ntp_leap.clone()),
            Box::new(m.ntp_root_delay.clone()),
            Box::new(m.ntp_root_dispersion.clone()),
        ];
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        m
    }

    /// Registers a collector that owns its own series (the clock and ethtool views); it is
    /// gathered at every scrape.
    pub fn register(&self, c: Box<dyn Collector>) {
        self.live.register(c).expect("collector names are unique");
    }

    /// Marks our own families as changed, so the next scrape renders them again.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Renders the text exposition format, families sorted by name.
    pub fn encode(&self) -> Vec<u8> {
        let mut live = self.live.gather();
        live.retain(|f| !f.get_metric().is_empty());
        live.sort_by(|a, b| a.name().cmp(b.name()));
        let own = self.rendered_own();
        let mut buf = Vec::with_capacity(own.len + 4 * 1024);
        let mut own_families = own.families.iter().peekable();
        for family in &live {
            while let Some((_, text)) =
                own_families.next_if(|(name, _)| name.as_str() < family.name())
            {
                buf.extend_from_slice(text);
            }
            encode_families(std::slice::from_ref(family), &mut buf);
        }
        for (_, text) in own_families {
            buf.extend_from_slice(text);
        }
        buf
    }

    /// The text of our own families, rendered again only if they changed since the last time.
    fn rendered_own(&self) -> Arc<Rendered> {
        // Read before gathering: a change that lands during the render bumps the generation
        // again, so the next scrape renders anew rather than serving a half-applied change.
        let generation = self.generation.load(Ordering::Acquire);
        let mut rendered = self.rendered.lock().unwrap();
        if rendered.generation != Some(generation) {
            let mut families = self.registry.gather();
            families.extend(self.optional_gauges());
            *rendered = Arc::new(Rendered::new(generation, families));
        }
        rendered.clone()
    }

    /// Gauges that are absent until there is a value: a 0 would read as "1970" or as "no lead".
    fn optional_gauges(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let last_updated = *self.credentials_last_updated.lock().unwrap();
        out.push(gauge_family(
            "imds_credentials_last_updated_timestamp_seconds",
            &help("LastUpdated of the credentials IMDS serves, as Unix time in seconds; absent until IMDS has sent one."),
            last_updated,
        ));
        let lead = *self.credentials_rotation_lead.lock().unwrap();
        out.push(gauge_family(
            "imds_credentials_rotation_lead_seconds",
            &help("Remaining lifetime in seconds of the old credentials when the last rotation was seen (AWS promises at least 300); absent until the first rotation."),
            lead,
        ));
        out
    }

    pub fn set_interval(&self, probe: Probe, interval: std::time::Duration) {
        self.probe_interval
            .with_label_values(&[probe.as_str()])
            .set(interval.as_secs_f64());
        self.changed();
    }

    /// Drops the `imds_probe_*` series of a probe that is switched off (`--collector.ntp=false`),
    /// so that no `imds_probe_success{probe="ntp"} 0` reads as a failing probe.
    pub fn disable_probe(&self, probe: Probe) {
        let p = probe.as_str();
        let _ = self.probe_success.remove_label_values(&[p]);
        let _ = self.probe_duration.remove_label_values(&[p]);
        let _ = self.probe_last_success.remove_label_values(&[p]);
        let _ = self.probe_runs.remove_label_values(&[p]);
        for reason in probe.reasons() {
            let _ = self
                .probe_failures
                .remove_label_values(&[p, reason.as_str()]);
        }
        self.changed();
    }

    /// Records the common `imds_probe_*` series of one run.
    pub fn record_run(
        &self,
        probe: Probe,
        duration: std::time::Duration,
        failure: Option<Reason>,
        now: DateTime<Utc>,
    ) {
        let p = probe.as_str();
        self.probe_runs.with_label_values(&[p]).inc();
        self.probe_duration
            .with_label_values(&[p])
            .set(duration.as_secs_f64());
        match failure {
            None => {
                self.probe_success.with_label_values(&[p]).set(1);
                self.probe_last_success
                    .with_label_values(&[p])
                    .set(unix_seconds(now));
            }
            Some(reason) => {
                self.probe_success.with_label_values(&[p]).set(0);
                self.probe_failures
                    .with_label_values(&[p, reason.as_str()])
                    .inc();
            }
        }
        self.changed();
    }

    /// Records everything an IMDS run saw.
    pub fn record_imds(&self, run: &ImdsRun, now: DateTime<Utc>) {
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
        self.record_run(Probe::Imds, run.duration, run.failure_reason(), now);
        if let Some(Ok((role, doc))) = &run.outcome {
            self.credentials_expiration
                .set(unix_seconds(doc.expiration));
            if let Some(t) = doc.last_updated {
                *self.credentials_last_updated.lock().unwrap() = Some(unix_seconds(t));
            }
            let arn = run.profile.as_ref().map(|p| p.arn.clone());
            self.set_credentials_info(role, arn);
        }
        if let Some(rotation) = run.rotation {
            self.credentials_rotations.inc();
            self.credentials_last_rotation
                .set(unix_seconds(rotation.at));
            *self.credentials_rotation_lead.lock().unwrap() = Some(rotation.lead_seconds);
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
            self.v1_enabled.set(i64::from(v1));
        }
        self.changed();
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

    /// Removes a server's NTP series after a failed query.
    pub fn forget_ntp_server(&self, server: &str) {
        for g in [
            &self.ntp_offset,
            &self.ntp_rtt,
            &self.ntp_stratum,
            &self.ntp_leap,
            &self.ntp_root_delay,
            &self.ntp_root_dispersion,
        ] {
            let _ = g.remove_label_values(&[server]);
        }
        self.changed();
    }

    /// Records one NTP server's sample.
    pub fn record_ntp_sample(&self, server: &str, sample: &crate::probe::ntp::NtpSample) {
        let l = &[server];
        self.ntp_offset
            .with_label_values(l)
            .set(sample.offset_seconds);
        self.ntp_rtt.with_label_values(l).set(sample.rtt_seconds);
        self.ntp_stratum
            .with_label_values(l)
            .set(f64::from(sample.stratum));
        self.ntp_leap
            .with_label_values(l)
            .set(f64::from(sample.leap));
        self.ntp_root_delay
            .with_label_values(l)
            .set(sample.root_delay_seconds);
        self.ntp_root_dispersion
            .with_label_values(l)
            .set(sample.root_dispersion_seconds);
        self.changed();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Our own families' text at one generation, one entry per non-empty family, sorted by name.
#[derive(Default)]
struct Rendered {
    generation: Option<u64>,
    families: Vec<(String, Vec<u8>)>,
    /// Total bytes of text.
    len: usize,
}

impl Rendered {
    fn new(generation: u64, mut families: Vec<MetricFamily>) -> Self {
        // The encoder refuses families without samples; an absent gauge is simply not written.
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let families: Vec<(String, Vec<u8>)> = families
            .iter()
            .map(|f| {
                let mut text = Vec::with_capacity(1024);
                encode_families(std::slice::from_ref(f), &mut text);
                (f.name().to_string(), text)
            })
            .collect();
        let len = families.iter().map(|(_, t)| t.len()).sum();
        Self {
            generation: Some(generation),
            families,
            len,
        }
    }
}

fn encode_families(families: &[MetricFamily], buf: &mut Vec<u8>) {
    TextEncoder::new()
        .encode(families, buf)
        .expect("encoding to a Vec cannot fail");
}

pub fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A single unlabelled gauge family, or an empty one (which the encoder skips) for `None`.
pub fn gauge_family(name: &str, help: &str, value: Option<f64>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(MetricType::GAUGE);
    if let Some(v) = value {
        let mut g = proto::Gauge::default();
        g.set_value(v);
        let mut m = proto::Metric::default();
        m.set_gauge(g);
        family.mut_metric().push(m);
    }
    family
}

/// A description for a custom collector's family.
pub fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    Desc::new(
        name.to_string(),
        help.to_string(),
        labels.iter().map(|s| s.to_string()).collect(),
        Default::default(),
    )
    .expect("valid metric description")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::imds::PhaseResult;
    use crate::probe::ntp::NtpSample;
    use std::time::Duration;

    /// What `encode` returned before the cache: everything gathered and rendered at once.
    fn encode_uncached(m: &Metrics) -> String {
        let mut families = m.registry.gather();
        families.extend(m.optional_gauges());
        families.extend(m.live.gather());
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        encode_families(&families, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    /// The process collector's values move between two renders; compare everything else.
    fn without_process(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("process_") && !l.contains(" process_"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn ntp_sample(offset: f64) -> NtpSample {
        NtpSample {
            offset_seconds: offset,
            rtt_seconds: 0.001,
            stratum: 3,
            leap: 0,
            root_delay_seconds: 0.0,
            root_dispersion_seconds: 0.0,
            reference_id: *b"LOCL",
        }
    }

    #[test]
    fn every_change_reaches_the_next_scrape() {
        let m = Metrics::new();
        let now = Utc::now();
        let failed_run = ImdsRun {
            phases: vec![PhaseResult {
                phase: Phase::Token,
                duration: Duration::from_millis(1000),
                error: Some(crate::probe::imds::RequestError::Timeout(
                    Duration::from_secs(1),
                )),
            }],
            outcome: Some(Err(Reason::Timeout)),
            ..ImdsRun::default()
        };
        type Change = Box<dyn Fn(&Metrics)>;
        let changes: Vec<Change> = vec![
            Box::new(|m| m.set_interval(Probe::Imds, Duration::from_secs(30))),
            Box::new(move |m| m.record_imds(&failed_run, now)),
            Box::new(move |m| m.record_run(Probe::Ntp, Duration::from_millis(3), None, now)),
            Box::new(|m| m.record_ntp_sample("127.0.0.1:123", &ntp_sample(0.25))),
            Box::new(|m| m.record_ntp_sample("127.0.0.1:123", &ntp_sample(-0.5))),
            Box::new(|m| m.forget_ntp_server("127.0.0.1:123")),
        ];
        let mut before = String::from_utf8(m.encode()).unwrap();
        for (i, change) in changes.iter().enumerate() {
            change(&m);
            let after = String::from_utf8(m.encode()).unwrap();
            assert_ne!(
                before, after,
                "change {i} is not visible in the next scrape"
            );
            assert_eq!(
                without_process(&after),
                without_process(&encode_uncached(&m)),
                "change {i}: cached and fresh renders differ"
            );
            before = after;
        }
    }

    #[test]
    fn live_collectors_are_merged_in_name_order() {
        let m = Metrics::new();
        m.register(Box::new(crate::collector::NodeViews::new(true, None)));
        let text = String::from_utf8(m.encode()).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(names.iter().any(|n| n.starts_with("process_")));
        assert_eq!(
            without_process(&text),
            without_process(&encode_uncached(&m))
        );
    }
}
