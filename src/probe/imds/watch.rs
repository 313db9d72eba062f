//! The outage watch: a cheap check between full runs, so that a short IMDS outage is seen and
//! counted.
//!
//! A boto3 client created during an IMDS failure of a few seconds keeps no credentials until it
//! is recreated, and a full run every 30 s sees a 2 s outage only one time in fifteen. Between
//! full runs the watch asks for the credentials document once, with the token and role of the
//! last successful run (what a client needs after its token), every
//! `--imds.outage-check-interval`. An outage is a window of consecutive checks that did not get
//! the document; it is counted when IMDS serves again, with its length. A failure that never ends
//! is not an outage but an unavailability, which the full runs and their alerts report.
//!
//! Cost: IMDS closes every connection, so each check is a fresh TCP connection, about ten packets;
//! at the default 1.5 s that is about 7 packets a second (BENCHMARKS.md measures it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use prometheus::core::Collector;
use reqwest::Method;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::config::{Endpoint, ImdsConfig};
use super::http::{DocumentAnswer, ImdsHttp};
use super::protocol::{
    ROLE_LIST_PATH, SessionToken, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER, token_text,
};
use crate::config::ConfigError;
use crate::labels::{Probe, Reason};
use crate::metrics::{Families, Metrics, OptionalGauge, Recorded, background_help as help};
use crate::probe::credentials::KeyIdHasher;
use crate::probe::{Failure, Prober};

/// The token and role of the last successful run, shared by the IMDS probe with the watch.
#[derive(Clone, Default)]
pub struct WatchTarget(Arc<Mutex<Option<Credentialed>>>);

/// A token and the role it was used with.
type Credentialed = (Arc<SessionToken>, String);

impl WatchTarget {
    pub(super) fn set(&self, token: &SessionToken, role: &str) {
        let token = Arc::new(SessionToken(Zeroizing::new(token.0.to_string())));
        *self.0.lock().unwrap() = Some((token, role.to_string()));
    }

    fn get(&self) -> Option<Credentialed> {
        self.0.lock().unwrap().clone()
    }
}

/// Windows of consecutive failed checks. Pure: the times come in.
#[derive(Debug, Default)]
pub struct OutageTracker {
    /// When the first failed check of the open window started.
    open_since: Option<Instant>,
}

impl OutageTracker {
    /// A check that started at `started` and got the document (`served`) or not. Returns the
    /// length of the window this check closes: from the start of its first failed check to the
    /// start of this one.
    pub fn observe(&mut self, started: Instant, served: bool) -> Option<Duration> {
        match (self.open_since, served) {
            (None, false) => {
                self.open_since = Some(started);
                None
            }
            (Some(since), true) => {
                self.open_since = None;
                Some(started.saturating_duration_since(since))
            }
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }
}

/// The watch's series.
pub struct OutageFamilies {
    outages: IntCounter,
    last_duration: OptionalGauge,
}

impl OutageFamilies {
    pub fn new() -> Self {
        Self {
            outages: IntCounter::new(
                "imds_credentials_outages_total",
                help("Windows in which IMDS did not serve the credentials document to the outage watch's checks, counted when they end: a client created in one got no credentials (boto3 clients keep none until recreated)."),
            )
            .expect("valid metric"),
            last_duration: OptionalGauge::new(
                "imds_credentials_last_outage_duration_seconds",
                &help("Length in seconds of the last outage window, from its first failed check to the check that was served again (within one check interval either way); absent until one has ended."),
            ),
        }
    }
}

impl OutageFamilies {
    /// Counts an outage window that lasted `length`.
    pub fn record_outage(&self, length: Duration) {
        self.outages.inc();
        self.last_duration.set(length.as_secs_f64());
    }
}

impl Default for OutageFamilies {
    fn default() -> Self {
        Self::new()
    }
}

impl Families for OutageFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.outages.clone()),
            Box::new(self.last_duration.clone()),
        ]
    }
}

/// One check's outcome.
#[derive(Debug)]
pub enum Check {
    /// No run has succeeded yet: nothing to check with.
    NotReady,
    Served {
        started: Instant,
    },
    Failed {
        started: Instant,
        failure: Failure,
    },
}

/// The watch as the scheduler runs it.
pub struct OutageWatch {
    http: ImdsHttp,
    hasher: KeyIdHasher,
    target: WatchTarget,
    token_ttl: String,
    tracker: OutageTracker,
    families: Recorded<OutageFamilies>,
}

impl OutageWatch {
    pub(super) fn new(
        config: &ImdsConfig,
        target: WatchTarget,
        metrics: &Metrics,
    ) -> Result<Self, ConfigError> {
        let Endpoint(url) = Endpoint::parse(&config.endpoint)?;
        let http = ImdsHttp::new(url, config.timeout).map_err(|e| {
            ConfigError::new("imds.endpoint", format!("cannot set up the client: {e}"))
        })?;
        Ok(Self {
            http,
            hasher: KeyIdHasher::default(),
            target,
            token_ttl: config.token_ttl.as_secs().to_string(),
            tracker: OutageTracker::default(),
            families: metrics.register(OutageFamilies::new()),
        })
    }

    /// The credentials document with `token`: `Ok(true)` served, `Ok(false)` token refused.
    async fn fetch(&self, token: &SessionToken, role: &str) -> Result<bool, Failure> {
        let path = format!("{ROLE_LIST_PATH}{role}");
        let (result, _) = self
            .http
            .send_document(&path, &[(TOKEN_HEADER, &token.0)], &self.hasher)
            .await;
        let failure = |reason: Reason, detail: String| Failure { reason, detail };
        match result {
            Ok(DocumentAnswer {
                status: 200,
                inspection: Some(Ok(inspection)),
            }) => match inspection.document {
                Ok(_) => Ok(true),
                Err(e) => Err(failure(e.reason(), format!("credentials: {e}"))),
            },
            Ok(DocumentAnswer { status: 401, .. }) => Ok(false),
            Ok(DocumentAnswer { status, .. }) => Err(failure(
                Reason::from_status(status),
                format!("credentials: HTTP status {status}"),
            )),
            Err(e) => Err(failure(e.reason(), format!("credentials: {e}"))),
        }
    }

    /// A new token, when IMDS refused the last one (it expired, or IMDS restarted).
    async fn new_token(&self) -> Result<SessionToken, Failure> {
        let (result, _) = self
            .http
            .send(
                Method::PUT,
                TOKEN_PATH,
                &[(TOKEN_TTL_HEADER, &self.token_ttl)],
            )
            .await;
        match result {
            Ok(a) if a.status == 200 => match token_text(&a.body) {
                Some(t) => Ok(SessionToken(Zeroizing::new(t.to_string()))),
                None => Err(Failure {
                    reason: Reason::InvalidResponse,
                    detail: "token: empty or not printable ASCII".into(),
                }),
            },
            Ok(a) => Err(Failure {
                reason: Reason::from_status(a.status),
                detail: format!("token: HTTP status {}", a.status),
            }),
            Err(e) => Err(Failure {
                reason: e.reason(),
                detail: format!("token: {e}"),
            }),
        }
    }

    async fn check(&self) -> Check {
        let Some((token, role)) = self.target.get() else {
            return Check::NotReady;
        };
        let started = Instant::now();
        let served = match self.fetch(&token, &role).await {
            Ok(true) => Ok(()),
            Ok(false) => match self.new_token().await {
                Ok(fresh) => {
                    self.target.set(&fresh, &role);
                    match self.fetch(&fresh, &role).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(Failure {
                            reason: Reason::Unauthorized,
                            detail: "credentials: HTTP status 401 with a new token".into(),
                        }),
                        Err(f) => Err(f),
                    }
                }
                Err(f) => Err(f),
            },
            Err(f) => Err(f),
        };
        match served {
            Ok(()) => Check::Served { started },
            Err(failure) => Check::Failed { started, failure },
        }
    }
}

impl Prober for OutageWatch {
    /// No `imds_probe_*` series: the outage counters are its output.
    const PROBE: Option<Probe> = None;
    const FAILING: &'static str = "IMDS stopped serving credentials: AWS clients created now may get none (boto3 clients keep none until recreated)";
    const RECOVERED: &'static str = "IMDS serves credentials again";
    type Report = Check;

    fn run(&mut self) -> impl std::future::Future<Output = Check> + Send {
        self.check()
    }

    fn cut_off(&mut self, deadline: Duration) -> Check {
        Check::Failed {
            started: Instant::now() - deadline,
            failure: Failure {
                reason: Reason::Timeout,
                detail: "the check did not finish within its deadline".into(),
            },
        }
    }

    fn record(&mut self, report: &Check, _now: DateTime<Utc>) -> Option<Failure> {
        let (started, failure) = match report {
            Check::NotReady => return None,
            Check::Served { started } => (*started, None),
            Check::Failed { started, failure } => (*started, Some(failure.clone())),
        };
        if let Some(length) = self.tracker.observe(started, failure.is_none()) {
            tracing::warn!(
                seconds = length.as_secs_f64(),
                "IMDS outage ended: boto3 clients created during it keep no credentials until recreated"
            );
            self.families.update().record_outage(length);
        }
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opens_at_the_first_failed_check_and_is_measured_when_served_again() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut tracker = OutageTracker::default();
        assert_eq!(tracker.observe(at(0.0), true), None, "healthy");
        assert_eq!(tracker.observe(at(1.5), false), None, "opens");
        assert!(tracker.is_open());
        assert_eq!(tracker.observe(at(3.0), false), None, "still open");
        assert_eq!(
            tracker.observe(at(4.5), true),
            Some(Duration::from_secs(3)),
            "closed: 1.5 s to 4.5 s"
        );
        assert!(!tracker.is_open());
        assert_eq!(tracker.observe(at(6.0), true), None, "nothing to close");
        assert_eq!(tracker.observe(at(7.5), false), None);
        assert_eq!(
            tracker.observe(at(9.0), true),
            Some(Duration::from_millis(1500))
        );
    }
}
