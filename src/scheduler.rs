//! The one loop that runs every probe: on its interval with a little jitter, one run at a time,
//! each run bounded by a deadline, until shutdown; it records the common `imds_probe_*` series
//! and logs a probe's failure reason once per change.
//!
//! smokeping_prober's model: probing happens on a timer in the background, never at scrape time.
//! The jitter (±5 %) keeps a fleet of DaemonSets started together from hitting the link-local
//! services in lockstep. A run that takes longer than the interval is followed at once by the
//! next; runs never overlap. Owns no probe and no metric names beyond calling
//! [`crate::metrics::ProbeFamilies`]; knows nothing of flags.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::labels::Reason;
use crate::metrics::Metrics;
use crate::probe::{Prober, Schedule};

/// The share of the interval by which each wait is moved, either way.
pub const JITTER: f64 = 0.05;

/// What the scheduled loops share with the exporter.
#[derive(Clone)]
pub struct Scheduler {
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    /// Cleared when a loop dies (a panic unwinds out of it): `/-/healthy` then fails.
    alive: Arc<AtomicBool>,
}

impl Scheduler {
    pub fn new(
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        alive: Arc<AtomicBool>,
    ) -> Self {
        Self {
            metrics,
            shutdown,
            alive,
        }
    }

    /// Creates the probe's common series and starts its loop. `ready`, if given, is set once the
    /// first run has been recorded (`/-/ready`).
    pub fn spawn<P: Prober>(
        &self,
        name: &'static str,
        prober: P,
        schedule: Schedule,
        ready: Option<Arc<AtomicBool>>,
    ) -> JoinHandle<()> {
        if let Some(probe) = P::PROBE {
            self.metrics.probes().update().add(probe, schedule.interval);
        }
        let guard = LoopGuard {
            name,
            alive: self.alive.clone(),
        };
        let looped = run_loop(
            name,
            prober,
            schedule,
            self.metrics.clone(),
            ready,
            self.shutdown.clone(),
        );
        tokio::spawn(async move {
            let _guard = guard;
            looped.await;
        })
    }
}

async fn run_loop<P: Prober>(
    name: &'static str,
    mut prober: P,
    schedule: Schedule,
    metrics: Arc<Metrics>,
    ready: Option<Arc<AtomicBool>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = RunState::NotRun;
    loop {
        let started = tokio::time::Instant::now();
        let report = tokio::select! {
            run = tokio::time::timeout(schedule.deadline, prober.run()) => match run {
                Ok(report) => report,
                Err(_) => prober.cut_off(schedule.deadline),
            },
            _ = shutdown.changed() => return,
        };
        let elapsed = started.elapsed();
        let now = Utc::now();
        let failure = prober.record(&report, now);
        if let Some(probe) = P::PROBE {
            metrics.probes().update().record_run(
                probe,
                elapsed,
                failure.as_ref().map(|f| f.reason),
                now,
            );
        }
        match state.observe(failure.as_ref().map(|f| f.reason)) {
            Some(Change::Failing) => {
                let f = failure.as_ref().expect("a failing change has a failure");
                tracing::warn!(probe = name, reason = f.reason.as_str(), error = %f.detail, "{}", P::FAILING);
            }
            Some(Change::Recovered) => tracing::info!(probe = name, "{}", P::RECOVERED),
            Some(Change::FirstSuccess) => tracing::info!(probe = name, "first run succeeded"),
            None => {}
        }
        if let Some(f) = &failure {
            tracing::debug!(probe = name, reason = f.reason.as_str(), error = %f.detail, duration = ?elapsed, "run failed");
        } else {
            tracing::debug!(probe = name, duration = ?elapsed, "run succeeded");
        }
        if let Some(ready) = &ready {
            ready.store(true, Ordering::Release);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + jittered(schedule.interval)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The interval moved by up to ±[`JITTER`].
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + (fastrand::f64() - 0.5) * 2.0 * JITTER)
}

/// A probe's state as its log has told it: a line is written only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    NotRun,
    Succeeding,
    Failing(Reason),
}

/// A change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    FirstSuccess,
    /// Failing, or failing for another reason than before.
    Failing,
    Recovered,
}

impl RunState {
    /// Moves to the state of a run that failed with `failure` (or succeeded), and says what
    /// changed.
    pub fn observe(&mut self, failure: Option<Reason>) -> Option<Change> {
        let next = match failure {
            Some(reason) => RunState::Failing(reason),
            None => RunState::Succeeding,
        };
        let change = match (*self, next) {
            (a, b) if a == b => None,
            (_, RunState::Failing(_)) => Some(Change::Failing),
            (RunState::NotRun, _) => Some(Change::FirstSuccess),
            _ => Some(Change::Recovered),
        };
        *self = next;
        change
    }
}

/// Held by a loop for as long as it runs. A panic that unwinds out of it (tokio contains it to
/// the task, so nothing else would notice) clears `alive`, which fails `/-/healthy`; a loop that
/// returns because of shutdown leaves it set.
struct LoopGuard {
    name: &'static str,
    alive: Arc<AtomicBool>,
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.alive.store(false, Ordering::Release);
            tracing::error!(
                probe = self.name,
                "probe loop panicked; its metrics no longer change and /-/healthy now fails"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Probe;
    use crate::probe::Failure;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// A probe whose runs take `took` each (or never end) and fail with `fails`; it notes when
    /// each run started and ended, and how many ran at once.
    struct Fake {
        took: Option<Duration>,
        fails: Option<Reason>,
        log: Arc<Mutex<Vec<(Instant, Instant)>>>,
        running: Arc<Mutex<(u32, u32)>>,
        panic_on_record: bool,
    }

    impl Fake {
        fn new(took: Option<Duration>) -> Self {
            Self {
                took,
                fails: None,
                log: Arc::default(),
                running: Arc::default(),
                panic_on_record: false,
            }
        }
    }

    impl Prober for Fake {
        const PROBE: Option<Probe> = Some(Probe::Imds);
        const FAILING: &'static str = "fake failing";
        const RECOVERED: &'static str = "fake recovered";
        type Report = Option<Reason>;

        fn run(&mut self) -> impl std::future::Future<Output = Self::Report> + Send {
            let (took, fails) = (self.took, self.fails);
            let (log, running) = (self.log.clone(), self.running.clone());
            async move {
                let start = Instant::now();
                {
                    let mut r = running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                match took {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending::<()>().await,
                }
                running.lock().unwrap().0 -= 1;
                log.lock().unwrap().push((start, Instant::now()));
                fails
            }
        }

        fn cut_off(&mut self, _deadline: Duration) -> Self::Report {
            self.running.lock().unwrap().0 -= 1;
            Some(Reason::Timeout)
        }

        fn record(
            &mut self,
            report: &Self::Report,
            _now: chrono::DateTime<Utc>,
        ) -> Option<Failure> {
            assert!(!self.panic_on_record, "a bug in a probe");
            report.map(|reason| Failure {
                reason,
                detail: "fake".into(),
            })
        }
    }

    fn scheduler() -> (
        Scheduler,
        Arc<Metrics>,
        watch::Sender<bool>,
        Arc<AtomicBool>,
    ) {
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = watch::channel(false);
        let alive = Arc::new(AtomicBool::new(true));
        (
            Scheduler::new(metrics.clone(), rx, alive.clone()),
            metrics,
            tx,
            alive,
        )
    }

    fn sample(metrics: &Metrics, key: &str) -> f64 {
        let text = String::from_utf8(metrics.encode()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn runs_start_one_interval_apart_within_the_jitter() {
        let (s, metrics, stop, _) = scheduler();
        let fake = Fake::new(Some(Duration::from_millis(10)));
        let log = fake.log.clone();
        let schedule = Schedule {
            interval: 30 * SECOND,
            deadline: 10 * SECOND,
        };
        let task = s.spawn("fake", fake, schedule, None);
        tokio::time::sleep(Duration::from_secs(30 * 40)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let starts: Vec<Instant> = log.lock().unwrap().iter().map(|r| r.0).collect();
        assert!(starts.len() >= 38, "{} runs in 40 intervals", starts.len());
        let gaps: Vec<f64> = starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        for gap in &gaps {
            assert!(
                (28.5..=31.5).contains(gap),
                "gap {gap} s outside 30 s ± 5 %"
            );
        }
        // The jitter is real: not every gap is the same.
        assert!(gaps.iter().any(|g| (g - gaps[0]).abs() > 0.01), "{gaps:?}");
        assert_eq!(
            sample(&metrics, "imds_probe_runs_total{probe=\"imds\"}"),
            starts.len() as f64
        );
        assert_eq!(
            sample(&metrics, "imds_probe_interval_seconds{probe=\"imds\"}"),
            30.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_longer_than_the_interval_is_followed_at_once_and_never_overlaps() {
        let (s, _, stop, _) = scheduler();
        let fake = Fake::new(Some(45 * SECOND));
        let (log, running) = (fake.log.clone(), fake.running.clone());
        let schedule = Schedule {
            interval: 30 * SECOND,
            deadline: 60 * SECOND,
        };
        let task = s.spawn("fake", fake, schedule, None);
        tokio::time::sleep(Duration::from_secs(45 * 5 + 1)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let runs = log.lock().unwrap().clone();
        assert_eq!(runs.len(), 5);
        for w in runs.windows(2) {
            assert_eq!(w[1].0, w[0].1, "the next run starts as the last one ends");
        }
        assert_eq!(running.lock().unwrap().1, 1, "never two runs at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_its_deadline_is_cut_off_and_counted_as_a_timeout() {
        let (s, metrics, stop, _) = scheduler();
        let schedule = Schedule {
            interval: 30 * SECOND,
            deadline: 5 * SECOND,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let task = s.spawn("fake", Fake::new(None), schedule, Some(ready.clone()));
        tokio::time::sleep(4 * SECOND).await;
        assert!(
            !ready.load(Ordering::Acquire),
            "not ready before the first run ends"
        );
        tokio::time::sleep(2 * SECOND).await;
        assert!(
            ready.load(Ordering::Acquire),
            "ready once the cut-off run is recorded"
        );
        assert_eq!(
            sample(
                &metrics,
                "imds_probe_failures_total{probe=\"imds\",reason=\"timeout\"}"
            ),
            1.0
        );
        assert_eq!(sample(&metrics, "imds_probe_success{probe=\"imds\"}"), 0.0);
        assert_eq!(
            sample(&metrics, "imds_probe_duration_seconds{probe=\"imds\"}"),
            5.0
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_loop_during_a_run_and_during_the_wait() {
        for took in [None, Some(Duration::from_millis(1))] {
            let (s, _, stop, alive) = scheduler();
            let schedule = Schedule {
                interval: 3600 * SECOND,
                deadline: 3600 * SECOND,
            };
            let task = s.spawn("fake", Fake::new(took), schedule, None);
            tokio::time::sleep(SECOND).await;
            let asked = Instant::now();
            stop.send(true).unwrap();
            task.await.unwrap();
            assert_eq!(
                Instant::now(),
                asked,
                "no time passes before the loop returns"
            );
            assert!(
                alive.load(Ordering::Acquire),
                "a loop that returns is not a death"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_clears_alive() {
        let (s, _, _stop, alive) = scheduler();
        let mut fake = Fake::new(Some(SECOND));
        fake.panic_on_record = true;
        let schedule = Schedule {
            interval: 30 * SECOND,
            deadline: 10 * SECOND,
        };
        let joined = s.spawn("fake", fake, schedule, None).await;
        assert!(joined.unwrap_err().is_panic());
        assert!(!alive.load(Ordering::Acquire));
    }

    #[test]
    fn the_log_says_only_what_changed() {
        use Change::*;
        let t = Some(Reason::Timeout);
        let c = Some(Reason::Connect);
        type Case<'a> = (&'a [Option<Reason>], &'a [Option<Change>]);
        let cases: &[Case] = &[
            (&[None, None], &[Some(FirstSuccess), None]),
            (
                &[t, t, None, None],
                &[Some(Failing), None, Some(Recovered), None],
            ),
            (&[t, c, c], &[Some(Failing), Some(Failing), None]),
            (
                &[None, t, None],
                &[Some(FirstSuccess), Some(Failing), Some(Recovered)],
            ),
        ];
        for (runs, want) in cases {
            let mut state = RunState::NotRun;
            let got: Vec<_> = runs.iter().map(|r| state.observe(*r)).collect();
            assert_eq!(&got, want, "{runs:?}");
        }
    }
}
