//! The probes, and the contract every one of them keeps with the scheduler.
//!
//! A probe is one file (or a directory for the IMDS probe) that owns its configuration, its
//! I/O, the classification of what it saw into the closed sets of [`crate::labels`], and the
//! series it records (node_exporter's way: each collector owns its metric names; the golden file
//! `tests/fixtures/metrics.golden` is the contract that holds them together). It implements
//! [`Prober`]; [`crate::scheduler`] runs it on its interval and records the `imds_probe_*`
//! series common to all. Adding a probe is its file, its config, and one registration line in
//! [`crate::exporter::start`].
//!
//! Layout: `imds` (the SDK-like credential probe), `credentials` (parsing and rotation, pure),
//! `document` (reading one JSON object of IMDS as the SDKs do), `ntp` (SNTP).

pub mod client_tls;
pub mod container;
pub mod credential_families;
pub mod credentials;
pub mod document;
pub mod imds;
pub mod ntp;
pub mod sts;
pub mod web_identity;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::labels::{Probe, Reason};

/// When a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time from the start of one run to the start of the next (before jitter).
    pub interval: Duration,
    /// The longest one run may take; it is then cut off and recorded as a timeout.
    pub deadline: Duration,
}

/// Why a run failed: the closed reason that the `imds_probe_failures_total` series count, and a
/// detail for the log line (which step, and the error's text; never a body or a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

/// Something the scheduler runs on a timer: a probe of a service, or a view of the node.
///
/// The scheduler calls [`run`](Self::run) once per interval (never two at once), cuts it off at
/// the schedule's deadline with [`cut_off`](Self::cut_off), hands the report to
/// [`record`](Self::record), and records the common series under [`PROBE`](Self::PROBE).
pub trait Prober: Send + 'static {
    /// The `probe` label of the common `imds_probe_*` series; `None` for a job that has none
    /// (the node views).
    const PROBE: Option<Probe>;
    /// Logged (warn) when runs start failing, with the reason and the detail.
    const FAILING: &'static str;
    /// Logged (info) when runs succeed again after failing.
    const RECOVERED: &'static str;

    /// What one run saw.
    type Report: Send;

    /// One run. Every network call in it has its own deadline; the whole run is bounded by the
    /// schedule's deadline on top.
    fn run(&mut self) -> impl Future<Output = Self::Report> + Send;

    /// The report of a run that the scheduler ended at `deadline`, as a timeout.
    fn cut_off(&mut self, deadline: Duration) -> Self::Report;

    /// Records the report in the probe's own series (and logs what only the probe can say) and
    /// returns why the run failed, if it did.
    fn record(&mut self, report: &Self::Report, now: DateTime<Utc>) -> Option<Failure>;
}
