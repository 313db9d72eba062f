//! Node-level views that are not requests to a service: the kernel's clock discipline
//! (`adjtimex`) and the ENA driver's allowance counters (ethtool). Both are read on their own
//! schedule (`--collector.interval`, [`NodeViewsConfig`]) by the scheduler and served from a
//! cache, so a scrape makes no system call. Each collector owns its metric names (see
//! [`crate::metrics`] for the rule).
//!
//! Layout: `clock` reads `adjtimex(2)`; `ethtool` reads `SIOCETHTOOL` statistics; this file
//! holds their configuration, caches their results and renders them as metric families.
//! `process` is the exporter's own `process_*` metrics, read at scrape time.

pub mod clock;
pub mod ethtool;
pub mod process;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use crate::config::ConfigError;
use crate::labels::Probe;
use crate::metrics::{desc, family, label};
use crate::probe::{Failure, Prober, Schedule};

/// Which node views run, and how often they are read (flags `--collector.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeViewsConfig {
    /// Time between reads of the views.
    pub interval: Duration,
    /// Read the kernel clock (adjtimex).
    pub clock: bool,
    /// Read the ENA allowance counters (ethtool).
    pub ethtool: bool,
    /// Regex of the interfaces whose counters are read, anchored at both ends.
    pub ethtool_interfaces: String,
}

impl NodeViewsConfig {
    /// The kernel's clock state and the drop counters move slowly: once a minute is enough for
    /// alerts whose windows are 5 minutes.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_ETHTOOL_INTERFACES: &str = ".*";

    /// The anchored interface filter, or `None` when the ethtool view is off.
    pub fn ethtool_filter(&self) -> Result<Option<regex_lite::Regex>, ConfigError> {
        if !self.ethtool {
            return Ok(None);
        }
        regex_lite::Regex::new(&format!("^(?:{})$", self.ethtool_interfaces))
            .map(Some)
            .map_err(|e| ConfigError::new("collector.ethtool.interfaces", e.to_string()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("collector.interval", self.interval)?;
        self.ethtool_filter()?;
        Ok(())
    }

    /// Reads are quick system calls; a deadline of 10 s (or the interval) only guards against
    /// a driver that hangs.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            deadline: self.interval.min(Duration::from_secs(10)),
        }
    }
}

impl Default for NodeViewsConfig {
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            clock: true,
            ethtool: true,
            ethtool_interfaces: Self::DEFAULT_ETHTOOL_INTERFACES.into(),
        }
    }
}

/// The allowance counters and their `allowance` label values.
const ALLOWANCES: [&str; 4] = ["bw_in", "bw_out", "pps", "conntrack"];

/// What the node views last read.
#[derive(Default)]
struct NodeState {
    /// `None` until the first read (or when the clock view is disabled).
    clock: Option<Result<clock::KernelClock, ()>>,
    /// ENA interfaces and their counters.
    interfaces: Vec<(String, ethtool::AllowanceCounters)>,
}

/// Caches the node views and serves them as a Prometheus collector.
pub struct NodeViews {
    state: Mutex<NodeState>,
    descs: Vec<Desc>,
    clock_enabled: bool,
    ethtool_filter: Option<regex_lite::Regex>,
    logged_not_permitted: Mutex<bool>,
}

const HELP_SYNC: &str = "Whether the kernel reports the clock synchronised (adjtimex: not TIME_ERROR and no STA_UNSYNC). Read in the background every --collector.interval, not at scrape time.";
const HELP_MAXERR: &str = "Maximum error of the clock reported by the kernel (adjtimex maxerror), in seconds. Read in the background every --collector.interval, not at scrape time.";
const HELP_ESTERR: &str = "Estimated error of the clock reported by the kernel (adjtimex esterror), in seconds. Read in the background every --collector.interval, not at scrape time.";
const HELP_READABLE: &str = "Whether adjtimex(2) could be read (0 under a seccomp profile that needs CAP_SYS_TIME). Read in the background every --collector.interval, not at scrape time.";
const HELP_LINKLOCAL: &str = "Packets dropped because traffic to link-local services (IMDS, Amazon DNS, Amazon Time Sync) exceeded 1024 packets/s, from the ENA driver (ethtool linklocal_allowance_exceeded). Read in the background every --collector.interval, not at scrape time.";
const HELP_ALLOWANCE: &str = "Packets queued or dropped because an instance network allowance was exceeded, from the ENA driver (ethtool <allowance>_allowance_exceeded). Read in the background every --collector.interval, not at scrape time.";

impl NodeViews {
    /// `ethtool_filter` is `None` when the ethtool view is disabled.
    pub fn new(clock_enabled: bool, ethtool_filter: Option<regex_lite::Regex>) -> Self {
        let descs = vec![
            desc("imds_clock_synchronized", HELP_SYNC, &[]),
            desc("imds_clock_max_error_seconds", HELP_MAXERR, &[]),
            desc("imds_clock_estimated_error_seconds", HELP_ESTERR, &[]),
            desc("imds_clock_kernel_readable", HELP_READABLE, &[]),
            desc(
                "imds_linklocal_allowance_exceeded_total",
                HELP_LINKLOCAL,
                &["interface"],
            ),
            desc(
                "imds_network_allowance_exceeded_total",
                HELP_ALLOWANCE,
                &["interface", "allowance"],
            ),
        ];
        Self {
            state: Mutex::new(NodeState::default()),
            descs,
            clock_enabled,
            ethtool_filter,
            logged_not_permitted: Mutex::new(false),
        }
    }

    /// Reads both views again.
    pub fn refresh(&self) {
        if self.clock_enabled {
            let reading = match clock::read() {
                Ok(c) => Ok(c),
                Err(clock::ClockError::NotPermitted) => {
                    let mut logged = self.logged_not_permitted.lock().unwrap();
                    if !*logged {
                        tracing::warn!(
                            "adjtimex(2) is not permitted here (seccomp without CAP_SYS_TIME): exporting imds_clock_kernel_readable 0; add the SYS_TIME capability to read the kernel clock status"
                        );
                        *logged = true;
                    }
                    Err(())
                }
                Err(e) => {
                    tracing::debug!(error = %e, "adjtimex failed");
                    Err(())
                }
            };
            self.state.lock().unwrap().clock = Some(reading);
        }
        if let Some(filter) = &self.ethtool_filter {
            let interfaces = read_allowances(filter);
            self.state.lock().unwrap().interfaces = interfaces;
        }
    }

    /// Replaces what the views serve: the kernel clock reading (`Err(())` = not permitted) and
    /// the ENA interfaces' counters. [`Self::refresh`] uses it; so do tests.
    pub fn set(
        &self,
        clock: Option<Result<clock::KernelClock, ()>>,
        interfaces: Vec<(String, ethtool::AllowanceCounters)>,
    ) {
        let mut state = self.state.lock().unwrap();
        state.clock = clock;
        state.interfaces = interfaces;
    }
}

/// Interfaces matching `filter` whose driver exposes allowance counters; others are skipped
/// silently (most interfaces are not ENA).
fn read_allowances(filter: &regex_lite::Regex) -> Vec<(String, ethtool::AllowanceCounters)> {
    let names = match ethtool::list_interfaces() {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list network interfaces");
            return Vec::new();
        }
    };
    names
        .into_iter()
        .filter(|n| filter.is_match(n))
        .filter_map(|name| match ethtool::read_stats(&name) {
            Ok(stats) => {
                let c = ethtool::allowance_counters(&stats);
                (!c.is_empty()).then_some((name, c))
            }
            Err(e) => {
                tracing::trace!(interface = %name, error = %e, "no ethtool statistics");
                None
            }
        })
        .collect()
}

impl Collector for NodeViews {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let state = self.state.lock().unwrap();
        let d = &self.descs;
        let mut out = Vec::new();
        match &state.clock {
            Some(Ok(c)) => {
                out.push(family(
                    &d[0],
                    MetricType::GAUGE,
                    vec![(vec![], f64::from(u8::from(c.synchronized)))],
                ));
                out.push(family(
                    &d[1],
                    MetricType::GAUGE,
                    vec![(vec![], c.max_error_seconds)],
                ));
                out.push(family(
                    &d[2],
                    MetricType::GAUGE,
                    vec![(vec![], c.estimated_error_seconds)],
                ));
                out.push(family(&d[3], MetricType::GAUGE, vec![(vec![], 1.0)]));
            }
            Some(Err(())) => out.push(family(&d[3], MetricType::GAUGE, vec![(vec![], 0.0)])),
            None => {}
        }
        let mut linklocal = Vec::new();
        let mut allowances = Vec::new();
        for (iface, c) in &state.interfaces {
            if let Some(v) = c.linklocal {
                linklocal.push((vec![label("interface", iface)], v as f64));
            }
            for (name, value) in ALLOWANCES
                .iter()
                .zip([c.bw_in, c.bw_out, c.pps, c.conntrack])
            {
                if let Some(v) = value {
                    allowances.push((
                        vec![label("allowance", name), label("interface", iface)],
                        v as f64,
                    ));
                }
            }
        }
        out.push(family(&d[4], MetricType::COUNTER, linklocal));
        out.push(family(&d[5], MetricType::COUNTER, allowances));
        out.retain(|f| !f.get_metric().is_empty());
        out
    }
}

impl NodeViews {
    /// The views `config` switches on.
    pub fn from_config(config: &NodeViewsConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(config.clock, config.ethtool_filter()?))
    }
}

/// The node views as the scheduler runs them: a blocking read of both, on a blocking thread.
pub struct NodeViewsProbe(pub Arc<NodeViews>);

impl Prober for NodeViewsProbe {
    const PROBE: Option<Probe> = None;
    const FAILING: &'static str = "node views cannot be read";
    const RECOVERED: &'static str = "node views read again";
    type Report = ();

    fn run(&mut self) -> impl std::future::Future<Output = ()> + Send {
        let views = self.0.clone();
        async move {
            // ethtool and adjtimex are quick system calls, but blocking ones.
            let _ = tokio::task::spawn_blocking(move || views.refresh()).await;
        }
    }

    fn cut_off(&mut self, deadline: Duration) {
        tracing::debug!(
            ?deadline,
            "reading the node views took longer than their deadline"
        );
    }

    /// The views record themselves (they are a live collector) and log what they cannot read.
    fn record(&mut self, _report: &(), _now: DateTime<Utc>) -> Option<Failure> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_counters_render_as_labelled_counters() {
        let views = NodeViews::new(false, None);
        views.state.lock().unwrap().interfaces = vec![(
            "eth0".into(),
            ethtool::AllowanceCounters {
                linklocal: Some(7),
                bw_in: Some(1),
                bw_out: None,
                pps: Some(3),
                conntrack: Some(0),
            },
        )];
        let families = views.collect();
        let names: Vec<_> = families.iter().map(|f| f.name().to_string()).collect();
        assert_eq!(
            names,
            [
                "imds_linklocal_allowance_exceeded_total",
                "imds_network_allowance_exceeded_total"
            ]
        );
        assert_eq!(families[0].get_metric()[0].get_counter().get_value(), 7.0);
        assert_eq!(families[1].get_metric().len(), 3, "bw_out is absent, not 0");
    }

    #[test]
    fn an_unreadable_kernel_clock_exports_only_kernel_readable_0() {
        let views = NodeViews::new(true, None);
        views.state.lock().unwrap().clock = Some(Err(()));
        let families = views.collect();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "imds_clock_kernel_readable");
        assert_eq!(families[0].get_metric()[0].get_gauge().get_value(), 0.0);
    }

    /// Makes `adjtimex` and `clock_adjtime` fail with EPERM for the calling thread (and only it),
    /// as a seccomp profile without `CAP_SYS_TIME` does. `Err` if this kernel has no seccomp
    /// filters. The filter is on the syscall number alone: the test runs native code only.
    fn forbid_adjtimex_in_this_thread() -> Result<(), std::io::Error> {
        const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS, offset 0 = seccomp_data.nr
        const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
        const RET: u16 = 0x06; // BPF_RET | BPF_K
        const ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32; // SECCOMP_RET_ERRNO
        const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
        let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let filter = [
            op(LD_NR, 0, 0, 0),
            op(JEQ, 0, 1, libc::SYS_adjtimex as u32),
            op(RET, 0, 0, ERRNO_EPERM),
            op(JEQ, 0, 1, libc::SYS_clock_adjtime as u32),
            op(RET, 0, 0, ERRNO_EPERM),
            op(RET, 0, 0, ALLOW),
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prctl with documented arguments; `prog` and `filter` outlive the call (the
        // kernel copies the program).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Collects what the logs say at warn level, for the calling thread.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_seccomp_denied_adjtimex_is_said_once_and_exported_as_unreadable() {
        let readable_before = clock::read().is_ok();
        let logs = Captured::default();
        let writer = logs.clone();
        let outcome = std::thread::spawn(move || -> std::io::Result<Vec<MetricFamily>> {
            forbid_adjtimex_in_this_thread()?;
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_writer(move || writer.clone())
                .finish();
            let views = NodeViews::new(true, None);
            tracing::subscriber::with_default(subscriber, || {
                assert!(matches!(
                    clock::read(),
                    Err(clock::ClockError::NotPermitted)
                ));
                views.refresh();
                views.refresh();
                views.refresh();
            });
            Ok(views.collect())
        })
        .join()
        .expect("the filtered thread does not panic");
        let families = match outcome {
            Ok(f) => f,
            // A kernel without seccomp filters cannot stage this; say so rather than pass, and
            // fail where the test command requires it (scripts/test sets this as root).
            Err(e) => {
                if std::env::var_os("IMDS_EXPORTER_REQUIRE_SECCOMP").is_some() {
                    panic!("IMDS_EXPORTER_REQUIRE_SECCOMP is set but no seccomp filter: {e}");
                }
                println!("skipped: cannot install a seccomp filter here: {e}");
                return;
            }
        };
        assert_eq!(families.len(), 1, "only imds_clock_kernel_readable");
        assert_eq!(families[0].name(), "imds_clock_kernel_readable");
        assert_eq!(families[0].get_metric()[0].get_gauge().get_value(), 0.0);
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logs.matches("adjtimex(2) is not permitted here").count(),
            1,
            "said once in three refreshes:\n{logs}"
        );
        // The filter stayed in its thread: this one reads as it did before.
        assert_eq!(clock::read().is_ok(), readable_before, "the filter leaked");
    }

    #[test]
    fn the_kernel_clock_of_this_machine_is_exported() {
        let views = NodeViews::new(true, None);
        views.refresh();
        let names: Vec<_> = views
            .collect()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        // Readable here (root, no seccomp): all four clock series.
        assert!(
            names.contains(&"imds_clock_kernel_readable".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"imds_clock_max_error_seconds".to_string()),
            "{names:?}"
        );
    }
}
