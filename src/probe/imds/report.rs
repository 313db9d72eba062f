//! What one IMDS run saw: every request's outcome, and the credential chain's result. Plain data
//! for the exporter to record and for `check` to evaluate.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::http::RequestError;
use super::sdk::Evidence;
use crate::labels::{Phase, Reason};
use crate::probe::credentials::{CredentialsDoc, Identity, InstanceProfile, Rotation};

/// The outcome of one request of a run.
#[derive(Debug)]
pub struct PhaseResult {
    pub phase: Phase,
    pub duration: Duration,
    pub error: Option<RequestError>,
}

/// Everything one run saw, for the exporter to record.
#[derive(Debug, Default)]
pub struct ImdsRun {
    pub started_at: Option<DateTime<Utc>>,
    pub duration: Duration,
    /// Every request made, in order.
    pub phases: Vec<PhaseResult>,
    /// The credential chain's outcome: `Ok` with role and document, or the first failure.
    pub outcome: Option<Result<(String, CredentialsDoc), Reason>>,
    pub rotation: Option<Rotation>,
    pub profile: Option<InstanceProfile>,
    pub identity: Option<Identity>,
    /// `Some(true)` if a token-less GET was answered, `Some(false)` if refused, `None` if unknown.
    pub v1_enabled: Option<bool>,
    /// What the SDK verdicts read (see [`super::sdk`]).
    pub evidence: Evidence,
}

impl ImdsRun {
    pub fn success(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }

    pub fn failure_reason(&self) -> Option<Reason> {
        match self.outcome {
            Some(Err(r)) => Some(r),
            _ => None,
        }
    }
}
