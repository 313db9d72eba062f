//! The alerting thresholds that the Rust code shares with the bundled alert rules and dashboards.
//!
//! `alerts/thresholds.yml` is the one source: the alert rules are checked against it
//! (`scripts/check-alert-thresholds.py`), the dashboard generator reads it, and these constants
//! are checked against it by `tests/thresholds.rs`, so `check` judges a node by the numbers that
//! would page for it. (The file is not read at build time: the image is built from `src/` alone.)
//! The reasons for each value are in that file and in docs/runbooks.md.

use std::time::Duration;

/// `credentials_expiry_warning_seconds`: botocore's advisory refresh starts here.
pub const CREDENTIALS_EXPIRY_WARNING: Duration = Duration::from_secs(900);
/// `credentials_expiry_critical_seconds`: AWS promises new credentials at least this early.
pub const CREDENTIALS_EXPIRY_CRITICAL: Duration = Duration::from_secs(300);
/// `credentials_rotation_lead_seconds`: the old credentials' promised remaining life at rotation.
pub const CREDENTIALS_ROTATION_LEAD: Duration = Duration::from_secs(300);
/// `clock_skew_warning_seconds`: beyond this, nothing disciplines the clock.
pub const CLOCK_SKEW_WARNING_SECONDS: f64 = 0.05;
/// `clock_skew_critical_seconds`: a fifth of SigV4's 300 s allowance.
pub const CLOCK_SKEW_CRITICAL_SECONDS: f64 = 60.0;
/// `kernel_clock_max_error_seconds`: the kernel's "unsynchronised" ceiling of maxerror.
pub const KERNEL_CLOCK_MAX_ERROR_SECONDS: f64 = 16.0;
/// `slow_request_seconds`: the SDKs' default IMDS timeout; a bucket bound of the latency
/// histogram.
pub const SLOW_REQUEST: Duration = Duration::from_secs(1);
/// `hop_limit_token_timeout_ratio`: share of token PUTs timing out in the hop-limit signature.
pub const HOP_LIMIT_TOKEN_TIMEOUT_RATIO: f64 = 0.5;
/// `hop_limit_v1_answered_ratio`: share of token-less GETs answered in the hop-limit signature.
pub const HOP_LIMIT_V1_ANSWERED_RATIO: f64 = 0.5;
/// `slow_request_ratio`: share of requests slower than [`SLOW_REQUEST`] that pages.
pub const SLOW_REQUEST_RATIO: f64 = 0.01;

/// `sdk_wait_warning_seconds`: a new client waits longer than this for its credentials.
pub const SDK_WAIT_WARNING_SECONDS: f64 = 1.0;

/// `web_identity_token_expiry_warning_seconds`: the IRSA token has less than this left.
pub const WEB_IDENTITY_TOKEN_EXPIRY_WARNING: Duration = Duration::from_secs(600);
/// `probe_stale_max_interval_seconds`: ImdsProbeStale leaves out probes with longer intervals.
pub const PROBE_STALE_MAX_INTERVAL_SECONDS: f64 = 60.0;

/// Every constant by its key in `alerts/thresholds.yml`, in base units.
pub const ALL: [(&str, f64); 13] = [
    (
        "credentials_expiry_warning_seconds",
        CREDENTIALS_EXPIRY_WARNING.as_secs() as f64,
    ),
    (
        "credentials_expiry_critical_seconds",
        CREDENTIALS_EXPIRY_CRITICAL.as_secs() as f64,
    ),
    (
        "credentials_rotation_lead_seconds",
        CREDENTIALS_ROTATION_LEAD.as_secs() as f64,
    ),
    ("clock_skew_warning_seconds", CLOCK_SKEW_WARNING_SECONDS),
    ("clock_skew_critical_seconds", CLOCK_SKEW_CRITICAL_SECONDS),
    (
        "kernel_clock_max_error_seconds",
        KERNEL_CLOCK_MAX_ERROR_SECONDS,
    ),
    (
        "hop_limit_token_timeout_ratio",
        HOP_LIMIT_TOKEN_TIMEOUT_RATIO,
    ),
    ("hop_limit_v1_answered_ratio", HOP_LIMIT_V1_ANSWERED_RATIO),
    ("slow_request_seconds", SLOW_REQUEST.as_secs() as f64),
    ("slow_request_ratio", SLOW_REQUEST_RATIO),
    ("sdk_wait_warning_seconds", SDK_WAIT_WARNING_SECONDS),
    (
        "web_identity_token_expiry_warning_seconds",
        WEB_IDENTITY_TOKEN_EXPIRY_WARNING.as_secs() as f64,
    ),
    (
        "probe_stale_max_interval_seconds",
        PROBE_STALE_MAX_INTERVAL_SECONDS,
    ),
];
