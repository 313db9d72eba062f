//! The vocabulary of a check run: what the runner observed (IMDS, NTP and node readings, handed
//! to the evaluators), what the evaluators concluded (checks with a status, a cause and a fix),
//! the verdict and its exit code, and the units the report writes. Plain data; no I/O.

use std::time::Duration;

use serde::Serialize;

/// Every check, in report order. The ids are a contract (`--output json`, docs/check.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckId {
    ImdsReachable,
    ImdsToken,
    ImdsV1,
    ImdsRole,
    ImdsCredentials,
    ImdsExpiry,
    ImdsLatency,
    ImdsInfo,
    ImdsIdentity,
    ClientsPython,
    ClientsJavascript,
    ClientsRust,
    ClientsGo,
    ClockNtp,
    ClockKernel,
    NetworkLinklocal,
    SdkImdsDisabled,
    SdkImdsV1Disabled,
    SdkImdsEndpoint,
    SdkImdsTimeout,
    SdkProxy,
    SdkCredentialSource,
    ContainerEndpoint,
    ContainerToken,
    ContainerCredentials,
    WebIdentityToken,
    WebIdentityRoleArn,
    StsImds,
    StsContainer,
}

impl CheckId {
    pub const ALL: [CheckId; 22] = [
        CheckId::ImdsReachable,
        CheckId::ImdsToken,
        CheckId::ImdsV1,
        CheckId::ImdsRole,
        CheckId::ImdsCredentials,
        CheckId::ImdsExpiry,
        CheckId::ImdsLatency,
        CheckId::ImdsInfo,
        CheckId::ImdsIdentity,
        CheckId::ClientsPython,
        CheckId::ClientsJavascript,
        CheckId::ClientsRust,
        CheckId::ClientsGo,
        CheckId::ClockNtp,
        CheckId::ClockKernel,
        CheckId::NetworkLinklocal,
        CheckId::SdkImdsDisabled,
        CheckId::SdkImdsV1Disabled,
        CheckId::SdkImdsEndpoint,
        CheckId::SdkImdsTimeout,
        CheckId::SdkProxy,
        CheckId::SdkCredentialSource,
    ];

    /// The checks present only where an SDK here would use their provider (the container
    /// credential provider, web identity), after [`Self::ALL`] in report order.
    pub const OPTIONAL: [CheckId; 7] = [
        CheckId::ContainerEndpoint,
        CheckId::ContainerToken,
        CheckId::ContainerCredentials,
        CheckId::WebIdentityToken,
        CheckId::WebIdentityRoleArn,
        CheckId::StsImds,
        CheckId::StsContainer,
    ];

    /// The stable id, `group.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::ImdsReachable => "imds.reachable",
            CheckId::ImdsToken => "imds.token",
            CheckId::ImdsV1 => "imds.v1",
            CheckId::ImdsRole => "imds.role",
            CheckId::ImdsCredentials => "imds.credentials",
            CheckId::ImdsExpiry => "imds.expiry",
            CheckId::ImdsLatency => "imds.latency",
            CheckId::ImdsInfo => "imds.info",
            CheckId::ImdsIdentity => "imds.identity",
            CheckId::ClientsPython => "clients.python",
            CheckId::ClientsJavascript => "clients.javascript",
            CheckId::ClientsRust => "clients.rust",
            CheckId::ClientsGo => "clients.go",
            CheckId::ClockNtp => "clock.ntp",
            CheckId::ClockKernel => "clock.kernel",
            CheckId::NetworkLinklocal => "network.linklocal",
            CheckId::SdkImdsDisabled => "sdk.imds_disabled",
            CheckId::SdkImdsV1Disabled => "sdk.imds_v1_disabled",
            CheckId::SdkImdsEndpoint => "sdk.imds_endpoint",
            CheckId::SdkImdsTimeout => "sdk.imds_timeout",
            CheckId::SdkProxy => "sdk.proxy",
            CheckId::SdkCredentialSource => "sdk.credential_source",
            CheckId::ContainerEndpoint => "container.endpoint",
            CheckId::ContainerToken => "container.token",
            CheckId::ContainerCredentials => "container.credentials",
            CheckId::WebIdentityToken => "web_identity.token",
            CheckId::WebIdentityRoleArn => "web_identity.role_arn",
            CheckId::StsImds => "sts.imds",
            CheckId::StsContainer => "sts.container",
        }
    }

    /// What a person reads in the report.
    pub fn name(self) -> &'static str {
        match self {
            CheckId::ImdsReachable => "IMDS reachable",
            CheckId::ImdsToken => "IMDSv2 token",
            CheckId::ImdsV1 => "IMDSv1",
            CheckId::ImdsRole => "IAM role attached",
            CheckId::ImdsCredentials => "Credentials",
            CheckId::ImdsExpiry => "Credential expiry",
            CheckId::ImdsLatency => "IMDS latency",
            CheckId::ImdsInfo => "Instance profile",
            CheckId::ImdsIdentity => "Identity document",
            CheckId::ClientsPython => "New botocore client",
            CheckId::ClientsJavascript => "New JS v3 client",
            CheckId::ClientsRust => "New Rust client",
            CheckId::ClientsGo => "New Go v2 client",
            CheckId::ClockNtp => "Clock offset (NTP)",
            CheckId::ClockKernel => "Kernel clock sync",
            CheckId::NetworkLinklocal => "Link-local drops",
            CheckId::SdkImdsDisabled => "SDK IMDS switch",
            CheckId::SdkImdsV1Disabled => "SDK IMDSv1 fallback",
            CheckId::SdkImdsEndpoint => "SDK IMDS endpoint",
            CheckId::SdkImdsTimeout => "SDK IMDS timeout",
            CheckId::SdkProxy => "HTTP proxy",
            CheckId::SdkCredentialSource => "Credential source",
            CheckId::ContainerEndpoint => "Container endpoint",
            CheckId::ContainerToken => "Container auth token",
            CheckId::ContainerCredentials => "Container credentials",
            CheckId::WebIdentityToken => "Web identity token",
            CheckId::WebIdentityRoleArn => "Web identity role",
            CheckId::StsImds => "STS, instance credentials",
            CheckId::StsContainer => "STS, container credentials",
        }
    }
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// A risk or a finding: nothing is broken yet (a failure under `--strict`).
    Warn,
    /// Breaks applications now or soon.
    Fail,
    /// Not applicable here, or depends on a step that failed; never changes the verdict.
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report: a status, what was measured, and when it is not fine, why and what
/// to do. Values never contain a secret: the evaluators only ever see presence, names and
/// timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub id: CheckId,
    pub status: Status,
    pub value: String,
    pub cause: Option<String>,
    /// One or more lines; a line starting with `$ ` is a command to run.
    pub fix: Option<String>,
}

impl Check {
    pub fn new(id: CheckId, status: Status, value: impl Into<String>) -> Self {
        Self {
            id,
            status,
            value: value.into(),
            cause: None,
            fix: None,
        }
    }

    pub fn ok(id: CheckId, value: impl Into<String>) -> Self {
        Self::new(id, Status::Ok, value)
    }

    pub fn warn(id: CheckId, value: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, value)
    }

    pub fn fail(id: CheckId, value: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, value)
    }

    pub fn skip(id: CheckId, value: impl Into<String>) -> Self {
        Self::new(id, Status::Skip, value)
    }

    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// The overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }

    /// 0 when nothing failed, 1 when something did. (2, "could not run", is an `Err` of
    /// [`run`] and never a verdict.)
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok | Verdict::Warn => 0,
            Verdict::Fail => 1,
        }
    }
}

/// Everything one check run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The IMDS endpoint probed (or, when `imds_probed` is false, the one from the endpoint
    /// setting that could not be), user information shown as `***@`.
    pub imds_endpoint: String,
    /// Whether IMDS was probed: false when the endpoint SDKs use (`AWS_EC2_METADATA_SERVICE_ENDPOINT`
    /// or the profile's `ec2_metadata_service_endpoint`) is not one this check can probe (not a
    /// plain `http://` URL without a path).
    pub imds_probed: bool,
    /// When IMDS was not probed: the setting that named the endpoint, with its (redacted) value:
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT="..."` or `ec2_metadata_service_endpoint="..." from
    /// profile [p] in PATH`. Not part of the JSON document.
    pub imds_endpoint_setting: Option<String>,
    /// The NTP servers queried, host:port.
    pub ntp_servers: Vec<String>,
    /// One entry per [`CheckId`] of [`CheckId::ALL`], in that order, then those of
    /// [`CheckId::OPTIONAL`] whose provider is configured.
    pub checks: Vec<Check>,
}

/// How many checks ended in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Report {
    /// The check with this id (every id is present in a report from [`run`]).
    pub fn get(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for c in &self.checks {
            match c.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
            }
        }
        counts
    }

    /// `fail` if any check failed (or, with `strict`, warned), else `warn` if any warned.
    pub fn verdict(&self, strict: bool) -> Verdict {
        let counts = self.counts();
        if counts.fail > 0 || (strict && counts.warn > 0) {
            Verdict::Fail
        } else if counts.warn > 0 {
            Verdict::Warn
        } else {
            Verdict::Ok
        }
    }
}

/// The kernel's clock state as the check saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelReading {
    Clock(crate::collector::clock::KernelClock),
    /// `adjtimex` is blocked (seccomp without `CAP_SYS_TIME`).
    NotPermitted,
    Error(String),
}

/// The ENA `linklocal_allowance_exceeded` counters as the check saw them.
#[derive(Debug, Clone, PartialEq)]
pub enum LinklocalReading {
    /// Interfaces whose driver has the counter, with its value; empty when there is none.
    Interfaces(Vec<(String, u64)>),
    /// The interfaces could not even be listed.
    Unavailable(String),
}

/// What the node views returned.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReading {
    pub kernel_clock: KernelReading,
    pub linklocal: LinklocalReading,
}

/// Where the node views come from: this host, or (in tests) a fixed reading, so that a test's
/// verdict does not depend on whether the machine running it has a synchronised clock.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeSource {
    Host,
    Fixed(NodeReading),
}

/// Why the TCP connection to IMDS could not be made.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectFailure {
    Timeout(Duration),
    Failed(String),
}

/// What the IMDS side of one check run saw.
#[derive(Debug)]
pub struct ImdsObservation {
    /// The endpoint, for display: user information shown as `***@`.
    pub endpoint: String,
    /// The deadline of each request.
    pub deadline: Duration,
    /// Time to open a TCP connection to the endpoint (resolution excluded).
    pub connect: Result<Duration, ConnectFailure>,
    pub run: crate::probe::imds::ImdsRun,
    /// The role the role list named, also when its credentials then failed.
    pub role: Option<String>,
    /// For the fixes' commands: from the identity document, or from a token-less GET when only
    /// IMDSv1 answers (the hop-limit case).
    pub instance_id: Option<String>,
}

/// One NTP server's answer (or failure).
#[derive(Debug, Clone)]
pub struct NtpObservation {
    pub server: String,
    pub result: Result<crate::probe::ntp::NtpSample, String>,
}

// ---------------------------------------------------------------------------------------------
// Formatting shared by the evaluators
// ---------------------------------------------------------------------------------------------

/// A request latency: `0.21 ms`, `12.3 ms`, `1.50 s`.
pub fn fmt_latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A deadline as given: `2s`, `500ms`.
pub fn fmt_deadline(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A span of whole seconds, for expiries: `5h 59m`, `14m 3s`, `45s`.
pub fn fmt_span(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// A clock offset in seconds, with its sign spelled out.
pub fn fmt_offset(seconds: f64) -> String {
    let abs = seconds.abs();
    let magnitude = if abs < 1.0 {
        format!("{:.1} ms", abs * 1000.0)
    } else {
        format!("{abs:.1} s")
    };
    if seconds >= 0.0 {
        format!("{magnitude} behind")
    } else {
        format!("{magnitude} ahead")
    }
}
