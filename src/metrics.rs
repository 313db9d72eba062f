//! The exposition: the registries, the cache that makes a scrape cheap, the `imds_probe_*`
//! series common to every probe, and the build info.
//!
//! Metric ownership follows node_exporter: each probe and collector declares the families it
//! records beside the code that measures them (`probe::imds::metrics`, `probe::ntp`,
//! `collector`, `collector::process`), and the golden file `tests/fixtures/metrics.golden` (with
//! `metrics.labels`) is the one contract for names, types, HELP and labels, checked by
//! `tests/golden.rs` against a live exposition and by the alert and dashboard checks. This
//! module owns only the names it records itself.
//!
//! The exporter probes in the background (smokeping_prober's model): a scrape reads what the
//! last run measured and never triggers a request to IMDS. Families that change only when a
//! probe records are registered with [`Metrics::register`] and served from a rendering cache; the
//! only way to change them is [`Recorded::update`], whose guard bumps the cache's generation
//! when dropped, so no change can miss the next scrape. Collectors that change on their own (the
//! node views, the process) are registered with [`Metrics::register_live`] and gathered at every
//! scrape.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::labels::{Probe, Reason};

const BACKGROUND: &str = "Refreshed by the background probe, not at scrape time.";

/// A HELP text for a series a background probe refreshes.
pub fn background_help(text: &str) -> String {
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

/// A set of families that changes only when a probe records: its collectors go into the cached
/// registry, and the value itself is reachable only through [`Recorded::update`].
pub trait Families: Send + Sync + 'static {
    /// Clones of every family (they share their values with `self`), for the registry.
    fn collectors(&self) -> Vec<Box<dyn Collector>>;
}

/// Families whose every change reaches the next scrape: the only access is [`Self::update`].
pub struct Recorded<T> {
    families: T,
    generation: Arc<AtomicU64>,
}

impl<T> Recorded<T> {
    /// Access for recording. The cached exposition is rendered anew after the guard is dropped.
    pub fn update(&self) -> Update<'_, T> {
        Update {
            families: &self.families,
            generation: &self.generation,
        }
    }
}

/// Derefs to the families; marks them changed when dropped.
pub struct Update<'a, T> {
    families: &'a T,
    generation: &'a AtomicU64,
}

impl<T> Deref for Update<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.families
    }
}

impl<T> Drop for Update<'_, T> {
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// The exporter's registries and the exposition cache. No globals: each exporter (and each
/// test) builds its own.
pub struct Metrics {
    /// Families that change only through [`Recorded::update`]: rendered once per change.
    cached: Registry,
    /// Collectors whose values change on their own: gathered every scrape.
    live: Registry,
    /// Bumped by every [`Update`] guard and every registration.
    generation: Arc<AtomicU64>,
    /// The text of the cached families at some generation.
    rendered: Mutex<Arc<Rendered>>,
    probes: Recorded<ProbeFamilies>,
    /// Families that several probes record into (one registration each), by type.
    shared: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

impl Metrics {
    /// The build info and the (still empty) common probe families; probes and collectors
    /// register their own.
    pub fn new() -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let cached = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "imds_exporter_build_info",
                "Version, revision and compiler of the running imds_exporter; always 1.",
            ),
            &["version", "revision", "rustc_version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                BUILD_INFO.version,
                BUILD_INFO.revision,
                BUILD_INFO.rustc_version,
            ])
            .set(1);
        cached
            .register(Box::new(build_info))
            .expect("metric names are unique");
        let probes = ProbeFamilies::new();
        for c in probes.collectors() {
            cached.register(c).expect("metric names are unique");
        }
        Self {
            cached,
            live: Registry::new(),
            probes: Recorded {
                families: probes,
                generation: generation.clone(),
            },
            generation,
            rendered: Mutex::new(Arc::new(Rendered::default())),
            shared: Mutex::new(Vec::new()),
        }
    }

    /// Families that more than one probe records into (the credential families of the IMDS and
    /// container probes): registered at the first call, and the same families, through a handle
    /// of their own, at every later call. A family with no series is not exposed, so families
    /// registered this way cost nothing until a probe creates its series.
    pub fn shared<T: Families + Clone + Default>(&self) -> Recorded<T> {
        let mut shared = self.shared.lock().unwrap();
        if let Some(families) = shared.iter().find_map(|f| f.downcast_ref::<T>()) {
            return Recorded {
                families: families.clone(),
                generation: self.generation.clone(),
            };
        }
        let families = T::default();
        shared.push(Box::new(families.clone()));
        drop(shared);
        self.register(families)
    }

    /// Registers families that change only when a probe records, and returns the only handle
    /// through which they can be changed.
    pub fn register<T: Families>(&self, families: T) -> Recorded<T> {
        for c in families.collectors() {
            self.cached.register(c).expect("metric names are unique");
        }
        self.generation.fetch_add(1, Ordering::Release);
        Recorded {
            families,
            generation: self.generation.clone(),
        }
    }

    /// Registers a collector whose values change on their own; it is gathered at every scrape.
    pub fn register_live(&self, c: Box<dyn Collector>) {
        self.live.register(c).expect("collector names are unique");
    }

    /// The `imds_probe_*` series, recorded by the scheduler for every probe.
    pub fn probes(&self) -> &Recorded<ProbeFamilies> {
        &self.probes
    }

    /// Renders the text exposition format, families sorted by name.
    pub fn encode(&self) -> Vec<u8> {
        let mut live = self.live.gather();
        live.sort_by(|a, b| a.name().cmp(b.name()));
        let own = self.rendered_cached();
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

    /// The text of the cached families, rendered again only if they changed since last time.
    fn rendered_cached(&self) -> Arc<Rendered> {
        // Read before gathering: a change that lands during the render bumps the generation
        // again, so the next scrape renders anew rather than serving a half-applied change.
        let generation = self.generation.load(Ordering::Acquire);
        let mut rendered = self.rendered.lock().unwrap();
        if rendered.generation != Some(generation) {
            *rendered = Arc::new(Rendered::new(generation, self.cached.gather()));
        }
        rendered.clone()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The series every probe has, by `probe`: success, duration, runs, failures by reason.
pub struct ProbeFamilies {
    success: IntGaugeVec,
    duration: GaugeVec,
    last_success: GaugeVec,
    interval: GaugeVec,
    runs: IntCounterVec,
    failures: IntCounterVec,
}

impl ProbeFamilies {
    fn new() -> Self {
        let gauge = |name: &str, help: String| {
            GaugeVec::new(Opts::new(name, help), &["probe"]).expect("valid metric")
        };
        Self {
            success: IntGaugeVec::new(
                Opts::new(
                    "imds_probe_success",
                    background_help(
                        "Whether the last run of the probe succeeded (1) or failed (0).",
                    ),
                ),
                &["probe"],
            )
            .expect("valid metric"),
            duration: gauge(
                "imds_probe_duration_seconds",
                background_help("Duration of the last run of the probe, in seconds."),
            ),
            last_success: gauge(
                "imds_probe_last_success_timestamp_seconds",
                background_help(
                    "Unix time in seconds of the last successful run of the probe; 0 if none yet.",
                ),
            ),
            interval: gauge(
                "imds_probe_interval_seconds",
                "Configured interval between runs of the probe, in seconds.".into(),
            ),
            runs: IntCounterVec::new(
                Opts::new(
                    "imds_probe_runs_total",
                    background_help("Runs of the probe; stops increasing when the probe is stuck."),
                ),
                &["probe"],
            )
            .expect("valid metric"),
            failures: IntCounterVec::new(
                Opts::new(
                    "imds_probe_failures_total",
                    background_help(
                        "Failed runs of the probe, by the reason of the first failing step.",
                    ),
                ),
                &["probe", "reason"],
            )
            .expect("valid metric"),
        }
    }

    /// Creates a probe's series at their start-up values (its failure reasons at 0), so that
    /// `rate()` sees the first failure. A probe that is switched off is never added: it has no
    /// series, rather than a `success 0` that would read as failing.
    pub fn add(&self, probe: Probe, interval: std::time::Duration) {
        let p = probe.as_str();
        self.success.with_label_values(&[p]).set(0);
        self.duration.with_label_values(&[p]).set(0.0);
        self.last_success.with_label_values(&[p]).set(0.0);
        self.interval
            .with_label_values(&[p])
            .set(interval.as_secs_f64());
        self.runs.with_label_values(&[p]);
        for reason in probe.reasons() {
            self.failures.with_label_values(&[p, reason.as_str()]);
        }
    }

    /// Records one run of `probe`.
    pub fn record_run(
        &self,
        probe: Probe,
        duration: std::time::Duration,
        failure: Option<Reason>,
        now: DateTime<Utc>,
    ) {
        let p = probe.as_str();
        self.runs.with_label_values(&[p]).inc();
        self.duration
            .with_label_values(&[p])
            .set(duration.as_secs_f64());
        match failure {
            None => {
                self.success.with_label_values(&[p]).set(1);
                self.last_success
                    .with_label_values(&[p])
                    .set(unix_seconds(now));
            }
            Some(reason) => {
                self.success.with_label_values(&[p]).set(0);
                self.failures.with_label_values(&[p, reason.as_str()]).inc();
            }
        }
    }
}

impl Families for ProbeFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.success.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.last_success.clone()),
            Box::new(self.interval.clone()),
            Box::new(self.runs.clone()),
            Box::new(self.failures.clone()),
        ]
    }
}

/// An unlabelled gauge that is absent until it has a value: a 0 would read as "1970" or as
/// "no lead". Clones share the value.
#[derive(Clone)]
pub struct OptionalGauge {
    desc: Desc,
    value: Arc<Mutex<Option<f64>>>,
}

impl OptionalGauge {
    pub fn new(name: &str, help: &str) -> Self {
        Self {
            desc: desc(name, help, &[]),
            value: Arc::new(Mutex::new(None)),
        }
    }

    pub fn set(&self, value: f64) {
        *self.value.lock().unwrap() = Some(value);
    }
}

impl Collector for OptionalGauge {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = *self.value.lock().unwrap();
        // A family without samples is skipped by the registry's gather.
        let samples = value.map(|v| (Vec::new(), v)).into_iter().collect();
        vec![family(&self.desc, MetricType::GAUGE, samples)]
    }
}

/// Our cached families' text at one generation, one entry per non-empty family, sorted by name.
#[derive(Default)]
struct Rendered {
    generation: Option<u64>,
    families: Vec<(String, Vec<u8>)>,
    /// Total bytes of text.
    len: usize,
}

impl Rendered {
    fn new(generation: u64, mut families: Vec<MetricFamily>) -> Self {
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

/// A label pair for a custom collector's sample.
/// A label pair for a custom collector. The value loses control and format characters (an
/// interface name is the kernel's, but may hold any byte but `/`, `:` and whitespace).
pub fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(crate::untrusted::visible(value).into_owned());
    l
}

/// A family of counters or gauges for a custom collector.
pub fn family(d: &Desc, kind: MetricType, samples: Vec<(Vec<LabelPair>, f64)>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(d.fq_name.clone());
    f.set_help(d.help.clone());
    f.set_field_type(kind);
    for (labels, value) in samples {
        let mut m = Metric::default();
        m.set_label(labels);
        match kind {
            MetricType::COUNTER => {
                let mut c = proto::Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = proto::Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        f.mut_metric().push(m);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn custom_label_values_lose_hidden_characters() {
        assert_eq!(label("interface", "eth\u{202E}0\n").value(), "eth0");
    }

    /// What `encode` would return without the cache: everything gathered and rendered at once.
    fn encode_uncached(m: &Metrics) -> String {
        let mut families = m.cached.gather();
        families.extend(m.live.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        encode_families(&families, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    /// Families whose only handle is the guard: what a probe registers.
    struct Example {
        gauge: GaugeVec,
        optional: OptionalGauge,
    }

    impl Families for Example {
        fn collectors(&self) -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(self.gauge.clone()),
                Box::new(self.optional.clone()),
            ]
        }
    }

    #[test]
    fn every_change_through_the_guard_reaches_the_next_scrape() {
        let m = Metrics::new();
        let example = m.register(Example {
            gauge: GaugeVec::new(Opts::new("imds_example", "Example."), &["server"]).unwrap(),
            optional: OptionalGauge::new("imds_example_optional", "Example."),
        });
        let now = Utc::now();
        type Change<'a> = Box<dyn Fn() + 'a>;
        let changes: Vec<Change> = vec![
            Box::new(|| {
                m.probes()
                    .update()
                    .add(Probe::Imds, Duration::from_secs(30))
            }),
            Box::new(|| {
                m.probes().update().record_run(
                    Probe::Imds,
                    Duration::from_millis(3),
                    Some(Reason::Timeout),
                    now,
                )
            }),
            Box::new(|| {
                m.probes()
                    .update()
                    .record_run(Probe::Imds, Duration::from_millis(2), None, now)
            }),
            Box::new(|| example.update().gauge.with_label_values(&["a"]).set(0.25)),
            Box::new(|| example.update().gauge.with_label_values(&["a"]).set(-0.5)),
            Box::new(|| example.update().optional.set(7.0)),
            Box::new(|| {
                let _ = example.update().gauge.remove_label_values(&["a"]);
            }),
        ];
        let mut before = String::from_utf8(m.encode()).unwrap();
        for (i, change) in changes.iter().enumerate() {
            change();
            let after = String::from_utf8(m.encode()).unwrap();
            assert_ne!(before, after, "change {i} is not in the next scrape");
            assert_eq!(
                after,
                encode_uncached(&m),
                "change {i}: cached and fresh differ"
            );
            before = after;
        }
    }

    #[test]
    fn an_optional_gauge_is_absent_until_set() {
        let m = Metrics::new();
        let example = m.register(Example {
            gauge: GaugeVec::new(Opts::new("imds_example", "Example."), &["server"]).unwrap(),
            optional: OptionalGauge::new("imds_example_optional", "Example."),
        });
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("imds_example_optional"), "{text}");
        example.update().optional.set(1.5);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("imds_example_optional 1.5"), "{text}");
    }

    #[test]
    fn live_collectors_are_merged_in_name_order() {
        let m = Metrics::new();
        m.probes()
            .update()
            .add(Probe::Imds, Duration::from_secs(30));
        m.register_live(Box::new(
            GaugeVec::new(Opts::new("aaa_live", "First."), &[]).unwrap(),
        ));
        let live = GaugeVec::new(Opts::new("imds_m_live", "Middle."), &[]).unwrap();
        live.with_label_values::<&str>(&[]).set(1.0);
        m.register_live(Box::new(live));
        let text = String::from_utf8(m.encode()).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(names.contains(&"imds_m_live"));
        assert_eq!(text, encode_uncached(&m));
    }
}
