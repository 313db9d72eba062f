//! IMDS observations to checks: reachability, the token (and the hop-limit signature), IMDSv1,
//! the role, the credentials document, its expiry, latency against the SDK timeout, and the two
//! best-effort metadata documents.
//!
//! Pure: everything comes in as an [`ImdsObservation`] (one run of the exporter's own prober
//! plus a TCP connect), the SDK settings, the time and the NTP offset.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::model::{
    Check, CheckId, ConnectFailure, ImdsObservation, fmt_deadline, fmt_latency, fmt_span,
};
use super::settings::{SdkSettings, Setting, list_origins, why_not_probed};
use crate::labels::Phase;
use crate::probe::credentials::{Identity, ParseError};
use crate::probe::imds::{PhaseResult, RequestError};
use crate::untrusted;

/// botocore starts refreshing credentials 15 minutes before they expire (its "advisory"
/// window; 10 minutes is "mandatory"), Java v1 under 15 minutes too. IMDS normally serves
/// credentials with hours left, so less than this means rotation has stopped: a failure.
pub const EXPIRY_FAIL: Duration = crate::thresholds::CREDENTIALS_EXPIRY_WARNING;
/// EC2 typically serves credentials valid about 6 hours, reissued about hourly (observed, not
/// promised): under an hour left is unusual and worth a warning.
pub const EXPIRY_WARN: Duration = Duration::from_secs(60 * 60);
/// The Go SDK v2's IMDS client waits 500 ms for response headers: slower answers are timeouts
/// for Go applications even though botocore's 1 s still holds.
pub const GO_HEADER_TIMEOUT: Duration = Duration::from_millis(500);

const TOKEN: &str = "PUT /latest/api/token";
const ROLE: &str = "GET /latest/meta-data/iam/security-credentials/";
const INFO: &str = "GET /latest/meta-data/iam/info";
const IDENTITY: &str = "GET /latest/dynamic/instance-identity/document";

/// All IMDS checks, in report order.
pub fn evaluate(
    obs: &ImdsObservation,
    sdk: &SdkSettings,
    now: DateTime<Utc>,
    ntp_offset: Option<f64>,
) -> Vec<Check> {
    let mut checks = vec![
        reachable(obs),
        token(obs, sdk),
        v1(obs, sdk),
        role(obs, sdk),
        credentials(obs, sdk),
        expiry(obs, now, ntp_offset),
        latency(obs, sdk),
        info(obs, sdk),
        identity(obs, sdk),
    ];
    if obs.instance_id.is_some() && instance_id(obs) == INSTANCE_ID_PLACEHOLDER {
        for fix in checks.iter_mut().filter_map(|c| c.fix.as_mut()) {
            if fix.contains(INSTANCE_ID_PLACEHOLDER) {
                fix.push('\n');
                fix.push_str(INSTANCE_ID_REFUSED);
            }
        }
    }
    checks
}

/// The IMDS checks when the endpoint setting (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, or the
/// profile's `ec2_metadata_service_endpoint`; no `--imds.endpoint` given) names an endpoint this
/// check cannot probe: all skipped, with the reason; `sdk.imds_endpoint` judges the setting itself.
pub fn not_probed(endpoint: &str, sdk: &SdkSettings) -> Vec<Check> {
    let reason = format!(
        "not probed: {}: {} (see sdk.imds_endpoint; --imds.endpoint probes another)",
        sdk.endpoint
            .named(&format!("{:?}", super::settings::redact_url(endpoint))),
        why_not_probed(endpoint)
    );
    let rest = format!(
        "not probed: {} is not an endpoint this check can probe (see imds.reachable)",
        sdk.endpoint.origin()
    );
    CheckId::ALL[..9]
        .iter()
        .map(|&id| {
            let value = if id == CheckId::ImdsReachable {
                reason.as_str()
            } else {
                rest.as_str()
            };
            Check::skip(id, value)
        })
        .collect()
}

/// The role name for values and commands: from the role list, else a placeholder.
fn role_name(obs: &ImdsObservation) -> &str {
    match (&obs.role, &obs.run.outcome) {
        (Some(role), _) => role,
        (None, Some(Ok((role, _)))) => role,
        _ => "<role>",
    }
}

fn phase(obs: &ImdsObservation, phase: Phase) -> Option<&PhaseResult> {
    obs.run.phases.iter().find(|p| p.phase == phase)
}

/// Whether a request got any HTTP answer (whatever its status or body).
fn answered(p: &PhaseResult) -> bool {
    !matches!(
        p.error,
        Some(RequestError::Timeout(_) | RequestError::Connect(_))
    )
}

/// The instance id for commands: only one that has the format of an EC2 instance id, else a
/// placeholder (what IMDS sent is shown by `imds.identity`, never pasted into a command).
fn instance_id(obs: &ImdsObservation) -> &str {
    obs.instance_id
        .as_deref()
        .filter(|id| untrusted::is_instance_id(id))
        .unwrap_or(INSTANCE_ID_PLACEHOLDER)
}

const INSTANCE_ID_PLACEHOLDER: &str = "<instance-id>";

/// Said under every fix that shows the placeholder because IMDS sent something else.
const INSTANCE_ID_REFUSED: &str = "(<instance-id>: the instanceId IMDS sent is not an EC2 \
     instance id, see imds.identity, so it is not pasted here; take the id from the EC2 console.)";

/// The role name as one shell word, for commands; the placeholder when no role was listed.
fn role_arg(obs: &ImdsObservation) -> String {
    match role_name(obs) {
        placeholder @ "<role>" => placeholder.to_string(),
        name => untrusted::shell_word(name),
    }
}

fn reachable(obs: &ImdsObservation) -> Check {
    const ID: CheckId = CheckId::ImdsReachable;
    match &obs.connect {
        Ok(d) => Check::ok(ID, format!("TCP connect to {} in {}", obs.endpoint, fmt_latency(*d))),
        Err(ConnectFailure::Timeout(d)) => Check::fail(
            ID,
            format!("no TCP connection to {} within {}", obs.endpoint, fmt_deadline(*d)),
        )
        .cause(
            "Nothing answers the TCP handshake: packets to IMDS are dropped (a firewall or \
             NetworkPolicy with a DROP rule, a route that does not lead to the instance), or this \
             is not an EC2 instance (Fargate has no node IMDS).",
        )
        .fix(
            "On the node, look for rules and routes:\n$ iptables-save | grep 169.254.169.254\n$ ip \
             route get 169.254.169.254\nIn a pod, check the NetworkPolicies that select it (egress to \
             169.254.169.254/32 port 80).",
        ),
        Err(ConnectFailure::Failed(e)) => Check::fail(
            ID,
            format!("no TCP connection to {}: {e}", obs.endpoint),
        )
        .cause(
            "The connection was refused or could not be attempted: IMDS is turned off for this \
             instance (HttpEndpoint=disabled), a firewall rule rejects it, or this is not an EC2 \
             instance.",
        )
        .fix(format!(
            "Check the metadata options, and enable the endpoint if it is off:\n$ aws ec2 \
             describe-instances --instance-ids {id} --query \
             'Reservations[].Instances[].MetadataOptions'\n$ aws ec2 \
             modify-instance-metadata-options --instance-id {id} --http-endpoint enabled",
            id = instance_id(obs)
        )),
    }
}

/// Cause and fix for a request that failed, shared by every phase. `None` for the failures a
/// phase explains itself.
fn request_failure(
    obs: &ImdsObservation,
    sdk: &SdkSettings,
    what: &str,
    err: &RequestError,
) -> (String, String, String) {
    let id = instance_id(obs);
    match err {
        RequestError::Timeout(d) => (
            format!("no answer to {what} within {}", fmt_deadline(*d)),
            "IMDS accepted the connection but did not answer in time: an IMDS outage or \
             overload, or a node so busy (CPU, the link-local packet budget) that answers arrive \
             late. SDKs, with a 1 s timeout, get no credentials, and a botocore client created now \
             stays without them."
                .into(),
            "Run the check again in a minute; see network.linklocal below; the exporter's \
             imds_request_failures_total{reason=\"timeout\"} shows since when. If it persists, stop \
             and start the instance (it moves to another host)."
                .into(),
        ),
        RequestError::Connect(e) => (
            format!("{what}: {e}"),
            "The connection was reset or closed before an answer: IMDS is turned off for this \
             instance (HttpEndpoint=disabled), or something between (a firewall rule with REJECT, \
             a security agent, a proxy) cuts IMDS connections."
                .into(),
            format!(
                "Check the metadata options and the rules in the path:\n$ aws ec2 \
                 describe-instances --instance-ids {id} --query \
                 'Reservations[].Instances[].MetadataOptions'\n$ iptables-save | grep \
                 169.254.169.254"
            ),
        ),
        RequestError::Status(429) => (
            format!("{what}: HTTP 429 (throttled)"),
            "IMDS throttles requests per instance and no SDK retries a 429 from IMDS by default: \
             processes on this instance call IMDS too often (every SDK client created asks again), \
             and the ones that are refused get no credentials."
                .into(),
            "Find who polls IMDS, then cache credentials (reuse SDK clients) and lengthen agents' \
             polling intervals:\n$ ss -tnp dst 169.254.169.254"
                .into(),
        ),
        RequestError::Status(s @ 500..=599) => (
            format!("{what}: HTTP {s}"),
            if sdk.attempts > 1 {
                format!(
                    "IMDS answered with a server error. botocore makes {} ({}), the Rust SDK \
                     and Java v2 retry too, so a brief error costs a retry; one that outlasts the \
                     attempts leaves SDKs without credentials. Usually brief.",
                    sdk.attempts_text(),
                    sdk.attempts_origin()
                )
            } else {
                format!(
                    "IMDS answered with a server error. botocore makes one attempt ({}) and \
                     gives up; the Rust SDK and Java v2 retry. Usually brief.",
                    sdk.attempts_origin()
                )
            },
            "Run the check again; if it persists for minutes, stop and start the instance. The \
             exporter's imds_request_failures_total{reason=\"server_error\"} shows how often."
                .into(),
        ),
        RequestError::Status(403) => (
            format!("{what}: HTTP 403"),
            "IMDS refuses requests: metadata access is turned off for this instance, or the \
             request went through a proxy (IMDS rejects a token request carrying \
             X-Forwarded-For)."
                .into(),
            format!(
                "$ aws ec2 modify-instance-metadata-options --instance-id {id} --http-endpoint \
                 enabled\nand see sdk.proxy below."
            ),
        ),
        RequestError::Status(401) => (
            format!("{what}: HTTP 401"),
            "IMDS rejected the session token it had just issued: something other than IMDS \
             answers some requests (a proxy or an interceptor in the path)."
                .into(),
            "Look for interceptors of 169.254.169.254 (iptables DNAT rules, a metadata proxy such \
             as kube2iam or kiam):\n$ iptables-save -t nat | grep 169.254.169.254"
                .into(),
        ),
        RequestError::Status(s) => (
            format!("{what}: HTTP {s}"),
            format!(
                "An unexpected status: something other than IMDS may be answering at {} (a \
                 proxy, a redirect: SDKs never follow redirects from IMDS).",
                obs.endpoint
            ),
            "Look for interceptors of 169.254.169.254:\n$ iptables-save -t nat | grep \
             169.254.169.254"
                .into(),
        ),
        RequestError::BodyTooLarge(_) => (
            format!("{what}: body larger than 64 KiB"),
            "A real IMDS document is at most a few KiB: something between rewrites the answer, or \
             the endpoint is not IMDS. This check (like a careful SDK) refuses to buffer it."
                .into(),
            "Look for interceptors of 169.254.169.254:\n$ iptables-save -t nat | grep \
             169.254.169.254"
                .into(),
        ),
        RequestError::Invalid(e) => (
            format!("{what}: {e}"),
            "The answer is not what IMDS sends: something between rewrites it, or the endpoint \
             is not IMDS."
                .into(),
            "Look for interceptors of 169.254.169.254:\n$ iptables-save -t nat | grep \
             169.254.169.254"
                .into(),
        ),
        RequestError::Parse(e) => (
            format!("{what}: {e}"),
            "IMDS sent a document SDKs cannot use: a truncated or rewritten answer (a proxy, an \
             interceptor, an emulator), or a faulty IMDS. SDKs fail to load credentials."
                .into(),
            "Run the check again; if it persists, look for interceptors of 169.254.169.254 \
             (iptables-save -t nat), then stop and start the instance."
                .into(),
        ),
    }
}

fn failed(id: CheckId, parts: (String, String, String)) -> Check {
    Check::fail(id, parts.0).cause(parts.1).fix(parts.2)
}

fn token(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsToken;
    let Some(p) = phase(obs, Phase::Token) else {
        return Check::skip(ID, "not attempted");
    };
    let Some(err) = &p.error else {
        return Check::ok(ID, format!("issued in {}", fmt_latency(p.duration)));
    };
    if obs.connect.is_err() && matches!(err, RequestError::Connect(_) | RequestError::Timeout(_)) {
        return Check::skip(ID, "no TCP connection (see imds.reachable)");
    }
    let v1 = phase(obs, Phase::ImdsV1);
    let v1_answered = v1.is_some_and(answered);
    if let (RequestError::Timeout(d), true, Some(v1)) = (err, v1_answered, v1) {
        // The hop-limit signature: the PUT's answer is sent with IP TTL = the hop limit and
        // dies one hop short of a container's network namespace; GETs are answered normally.
        let (status, consequence) = match obs.run.v1_enabled {
            Some(true) if sdk.v1_disabled => (
                "HTTP 200",
                format!(
                    "IMDSv1 still answers, but {} forbids SDKs to fall back to it: they get no \
                     credentials.",
                    sdk.v1_disabled_by()
                ),
            ),
            Some(true) => (
                "HTTP 200",
                "IMDSv1 still answers, so SDKs fall back to it after their token timeout: every \
                 credential fetch costs a second or more, and everything breaks the day the \
                 instance requires IMDSv2."
                    .to_string(),
            ),
            _ => (
                "HTTP 401",
                "The instance requires IMDSv2 (HttpTokens=required), so the token-less fallback \
                 gets 401 too: SDKs in this network namespace get no credentials at all."
                    .to_string(),
            ),
        };
        return Check::fail(
            ID,
            format!(
                "no answer to {TOKEN} within {} while a token-less GET was answered ({status}) in {}",
                fmt_deadline(*d),
                fmt_latency(v1.duration)
            ),
        )
        .cause(format!(
            "The hop-limit signature. IMDS sends the token's answer with IP TTL = the instance's \
             HttpPutResponseHopLimit (default 1); from a container outside the host network \
             namespace the extra hop drops it, so the PUT times out instead of failing fast. {consequence}"
        ))
        .fix(format!(
            "Raise the hop limit to 2 (on the instance, or in the launch template's metadata \
             options for new nodes):\n$ aws ec2 modify-instance-metadata-options --instance-id {} \
             --http-put-response-hop-limit 2 --http-endpoint enabled\nor run the workload with \
             hostNetwork: true. (On EKS the instance id is in: kubectl get node <node> -o \
             jsonpath='{{.spec.providerID}}')",
            instance_id(obs)
        ));
    }
    if let RequestError::Status(404) = err {
        return Check::fail(ID, format!("{TOKEN}: HTTP 404"))
            .cause(format!(
                "The endpoint does not issue IMDSv2 tokens: {} is not IMDS, or an old emulator or \
                 metadata proxy that knows only IMDSv1.",
                obs.endpoint
            ))
            .fix("Check what answers at the endpoint (see sdk.imds_endpoint and sdk.proxy), and replace or update the metadata proxy.");
    }
    failed(ID, request_failure(obs, sdk, TOKEN, err))
}

fn v1(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsV1;
    let p = phase(obs, Phase::ImdsV1);
    match (obs.run.v1_enabled, p) {
        (Some(false), _) => Check::ok(
            ID,
            "disabled: token-less requests are refused (HTTP 401 or 403)",
        ),
        (Some(true), _) => {
            let hop_limited = phase(obs, Phase::Token)
                .is_some_and(|t| matches!(t.error, Some(RequestError::Timeout(_))));
            let caveat = match (hop_limited, sdk.v1_disabled) {
                (true, false) => "\nFix the hop limit first (see imds.token): SDKs here depend on the IMDSv1 fallback until then.".to_string(),
                (true, true) => format!(
                    "\nFix the hop limit first (see imds.token): with {}, SDKs here get no credentials until then.",
                    sdk.v1_disabled_by()
                ),
                _ => String::new(),
            };
            // The SDKs here never use IMDSv1: requiring IMDSv2 cannot break them.
            let sdks = if sdk.v1_disabled {
                format!(
                    " SDKs in this environment never use it ({}), so requiring IMDSv2 does not \
                     affect them.",
                    sdk.v1_disabled_by()
                )
            } else {
                String::new()
            };
            Check::warn(
                ID,
                "enabled: a token-less GET of the role list was answered",
            )
            .cause(format!(
                "Any process on the node, and any web application tricked into fetching a URL \
                     (SSRF), can read the role's credentials with a single GET. AWS recommends \
                     requiring IMDSv2.{sdks}"
            ))
            .fix(format!(
                "Check that nothing still uses IMDSv1 (the instance's MetadataNoToken \
                     CloudWatch metric stays at 0), then require tokens:\n$ aws ec2 \
                     modify-instance-metadata-options --instance-id {} --http-tokens \
                     required{caveat}",
                instance_id(obs)
            ))
        }
        (None, Some(PhaseResult { error: Some(e), .. })) => {
            Check::skip(ID, format!("unknown: the token-less GET failed ({e})"))
        }
        (None, _) => Check::skip(ID, "unknown"),
    }
}

fn no_token(obs: &ImdsObservation) -> bool {
    phase(obs, Phase::Token).is_none_or(|p| p.error.is_some())
}

fn role(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsRole;
    if no_token(obs) {
        return Check::skip(ID, "not checked: no IMDSv2 token");
    }
    let Some(p) = phase(obs, Phase::Role) else {
        return Check::skip(ID, "not checked");
    };
    match &p.error {
        None => {
            let name = match role_name(obs) {
                "<role>" => "a role",
                name => name,
            };
            Check::ok(ID, format!("{name} (in {})", fmt_latency(p.duration)))
        }
        Some(RequestError::Status(404)) => Check::fail(ID, format!("{ROLE}: HTTP 404, no role"))
            .cause(
                "No IAM role is attached: the instance has no instance profile, or its instance \
                 profile contains no role. SDKs find no instance credentials (\"Unable to locate \
                 credentials\").",
            )
            .fix(format!(
                "Attach an instance profile (or add a role to the attached one):\n$ aws ec2 \
                 associate-iam-instance-profile --instance-id {} --iam-instance-profile \
                 Name=<profile>\n$ aws iam add-role-to-instance-profile --instance-profile-name \
                 <profile> --role-name <role>",
                instance_id(obs)
            )),
        Some(RequestError::Parse(e @ (ParseError::EmptyRoleList | ParseError::BadRoleName))) => {
            Check::fail(ID, format!("{ROLE}: {e}"))
                .cause("IMDS listed no usable role name: the instance profile is being changed, or something rewrites the answer.")
                .fix("Run the check again; if it persists, re-associate the instance profile.")
        }
        Some(e) => failed(ID, request_failure(obs, sdk, ROLE, e)),
    }
}

fn credentials(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsCredentials;
    let role_ok = phase(obs, Phase::Role).is_some_and(|p| p.error.is_none());
    if no_token(obs) || !role_ok {
        return Check::skip(ID, "not checked: no role");
    }
    let Some(p) = phase(obs, Phase::Credentials) else {
        return Check::skip(ID, "not checked");
    };
    match &p.error {
        None => Check::ok(
            ID,
            format!(
                "Code Success, in {} (secrets not shown)",
                fmt_latency(p.duration)
            ),
        ),
        Some(RequestError::Parse(ParseError::CodeNotSuccess { code })) => {
            let cause = if code == "AssumeRoleUnauthorizedAccess" {
                "EC2 could not assume the instance profile's role: its trust policy does not let \
                 ec2.amazonaws.com call sts:AssumeRole, or the role was deleted and re-created \
                 (the instance profile still points at the old one). IMDS answers HTTP 200 with \
                 this Code and no keys, so SDKs get no credentials."
                    .to_string()
            } else {
                format!(
                    "IMDS answered HTTP 200 with Code {code:?} instead of \"Success\", and no \
                     usable keys: SDKs get no credentials."
                )
            };
            Check::fail(ID, format!("Code {code}"))
                .cause(cause)
                .fix(format!(
                    "Check the role's trust policy (it must allow ec2.amazonaws.com to call \
                     sts:AssumeRole), then re-associate the instance profile:\n$ aws iam get-role \
                     --role-name {} --query Role.AssumeRolePolicyDocument\n$ aws ec2 \
                     describe-iam-instance-profile-associations --filters \
                     Name=instance-id,Values={}",
                    role_arg(obs),
                    instance_id(obs)
                ))
        }
        Some(e) => failed(
            ID,
            request_failure(obs, sdk, &format!("{ROLE}{}", role_name(obs)), e),
        ),
    }
}

fn expiry(obs: &ImdsObservation, now: DateTime<Utc>, ntp_offset: Option<f64>) -> Check {
    const ID: CheckId = CheckId::ImdsExpiry;
    let Some(Ok((_, doc))) = &obs.run.outcome else {
        return Check::skip(ID, "not checked: no credentials");
    };
    let at = doc.expiration.to_rfc3339_opts(SecondsFormat::Secs, true);
    let local = (doc.expiration - now).num_seconds();
    // By AWS's clock: positive offset = our clock is behind, so AWS's "now" is later.
    let by_ntp = ntp_offset.map(|o| local - o.round() as i64);
    let skewed = by_ntp.is_some_and(|t| (t - local).abs() >= 1);
    let worst = by_ntp.map_or(local, |t| t.min(local));
    let describe = |s: i64| {
        if s > 0 {
            format!("expires in {}", fmt_span(s))
        } else {
            format!("expired {} ago", fmt_span(s))
        }
    };
    let mut value = format!("{} ({at})", describe(local));
    if let (true, Some(t)) = (skewed, by_ntp) {
        value.push_str(&format!("; by the NTP clock it {}", describe(t)));
    }
    let skew_note = if skewed && by_ntp.is_some_and(|t| t < local) {
        " The local clock is behind (see clock.ntp): AWS's clock is later than ours, so \
         the credentials expire sooner than SDKs here believe, and they refresh too late."
    } else if skewed {
        " The local clock is ahead (see clock.ntp): SDKs here believe the credentials expire \
         sooner than they do and refresh early; far enough ahead, they see fresh credentials as \
         already expired."
    } else {
        ""
    };
    let rotate_fix = format!(
        "If IMDS keeps serving these credentials, replace the instance profile association (or \
         stop and start the instance):\n$ aws ec2 describe-iam-instance-profile-associations \
         --filters Name=instance-id,Values={}\n$ aws ec2 replace-iam-instance-profile-association \
         --association-id <association-id> --iam-instance-profile Name=<profile>",
        instance_id(obs)
    );
    let clock_fix = if skewed {
        "\nAnd fix the clock (see clock.ntp)."
    } else {
        ""
    };
    if worst <= 0 {
        return Check::fail(ID, value)
            .cause(format!(
                "The credentials IMDS serves have expired: every request signed with them fails \
                 with ExpiredToken (HTTP 403). EC2 makes new credentials available at least five \
                 minutes before the old ones expire, so delivery to this instance is stuck.{skew_note}"
            ))
            .fix(format!("{rotate_fix}{clock_fix}"));
    }
    if worst < EXPIRY_FAIL.as_secs() as i64 {
        return Check::fail(ID, value)
            .cause(format!(
                "Less than 15 minutes left. botocore starts refreshing 15 minutes before expiry \
                 and insists at 10 (the advisory and mandatory windows), but IMDS has nothing \
                 newer: normally it serves credentials with hours left and new ones at least five \
                 minutes before expiry, so rotation has stopped and requests will fail with \
                 ExpiredToken when these run out.{skew_note}"
            ))
            .fix(format!("{rotate_fix}{clock_fix}"));
    }
    if worst < EXPIRY_WARN.as_secs() as i64 {
        return Check::warn(ID, value)
            .cause(format!(
                "Under an hour left. EC2 usually serves instance-profile credentials valid about \
                 six hours and reissues them about hourly (observed, not promised), so rotation \
                 may have stopped; if nothing newer appears before the last 15 minutes, SDKs start \
                 failing.{skew_note}"
            ))
            .fix(format!(
                "Run the check again in a few minutes: the expiry should move forward. The \
                 exporter's imds_credentials_rotations_total shows rotations over time.{clock_fix}"
            ));
    }
    let mut c = Check::ok(ID, value);
    if let Some(updated) = doc.last_updated {
        let age = (now - updated).num_seconds();
        if age >= 0 {
            c.value.push_str(&format!(", issued {} ago", fmt_span(age)));
        }
    }
    c
}

fn latency(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsLatency;
    let slowest = obs
        .run
        .phases
        .iter()
        .filter(|p| answered(p))
        .max_by_key(|p| p.duration);
    let Some(p) = slowest else {
        return Check::skip(ID, "no answer to time");
    };
    let limit = sdk.timeout;
    let value = format!(
        "slowest answer {} ({}); SDK timeout {}, {}",
        fmt_latency(p.duration),
        p.phase.as_str(),
        fmt_deadline(limit),
        sdk.attempts_text()
    );
    if p.duration > limit {
        let mut settings = format!("{} s per attempt, {}", limit.as_secs(), sdk.attempts_text());
        if let Some(by) = sdk.timing_set_by() {
            settings.push_str(&format!("; set by {by}"));
        }
        let retries = if sdk.attempts > 1 {
            " botocore's further attempts help only if a later answer comes sooner."
        } else {
            ""
        };
        // Room above the slowest answer: whole seconds, as botocore reads the variable.
        let longer = p.duration.as_secs_f64().ceil() as u64 + 1;
        const SUGGESTED_ATTEMPTS: u32 = 3;
        let stopgap = if sdk.attempts < SUGGESTED_ATTEMPTS {
            format!(
                "As a stopgap for botocore, wait longer than the slowest answer and retry:\n$ \
                 export AWS_METADATA_SERVICE_TIMEOUT={longer} \
                 AWS_METADATA_SERVICE_NUM_ATTEMPTS={SUGGESTED_ATTEMPTS}"
            )
        } else {
            format!(
                "As a stopgap for botocore, wait longer than the slowest answer (with {} it \
                 already retries; more attempts do not help when each gives up too early):\n$ \
                 export AWS_METADATA_SERVICE_TIMEOUT={longer}",
                sdk.attempts_text()
            )
        };
        // What the stopgap exports overrides the profile; say so where the profile set it.
        let exported = if sdk.attempts < SUGGESTED_ATTEMPTS {
            vec![&sdk.timeout_from, &sdk.attempts_from]
        } else {
            vec![&sdk.timeout_from]
        };
        let in_profile: Vec<&Setting> = exported.into_iter().filter(|s| s.from_profile()).collect();
        let stopgap = if in_profile.is_empty() {
            stopgap
        } else {
            format!(
                "{stopgap}\nThe variables take precedence over {}; or raise the value there.",
                list_origins(&in_profile)
            )
        };
        return Check::fail(ID, value)
            .cause(format!(
                "IMDS answers, but slower than the SDKs wait: botocore and the AWS CLI ({settings}), \
                 the Rust SDK and Java v2 (1 s) give up first and get no credentials; \
                 a botocore client created now stays without them.{retries}"
            ))
            .fix(format!(
                "Find what slows IMDS: the link-local packet budget (see network.linklocal), a \
                 CPU-starved node, an interceptor. {stopgap}"
            ));
    }
    if p.duration > GO_HEADER_TIMEOUT {
        return Check::warn(ID, value)
            .cause(
                "Slower than the Go SDK v2 waits for response headers (500 ms): Go applications \
                 time out on IMDS, while the 1 s SDKs still cope, barely.",
            )
            .fix("Find what slows IMDS: the link-local packet budget (see network.linklocal), a CPU-starved node, an interceptor.");
    }
    Check::ok(ID, value)
}

fn info(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsInfo;
    match phase(obs, Phase::Info) {
        None => Check::skip(ID, "not checked: read only once the credentials succeed"),
        Some(PhaseResult { error: None, .. }) => match &obs.run.profile {
            Some(p) => Check::ok(ID, p.arn.clone()),
            None => Check::ok(ID, "answered"),
        },
        Some(PhaseResult { error: Some(e), .. }) => {
            let (value, cause, _) = request_failure(obs, sdk, INFO, e);
            Check::warn(ID, value)
                .cause(format!(
                    "{cause} This document (the instance profile's ARN) is not needed for \
                     credentials, but tools that read it fail."
                ))
                .fix("Run the check again; if only this path fails, it is an IMDS defect worth an AWS support case.")
        }
    }
}

fn identity(obs: &ImdsObservation, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::ImdsIdentity;
    match phase(obs, Phase::Identity) {
        None => Check::skip(ID, "not checked: no IMDSv2 token"),
        Some(PhaseResult { error: None, .. }) => match &obs.run.identity {
            Some(i) => identity_fields(i),
            None => Check::ok(ID, "answered"),
        },
        Some(PhaseResult { error: Some(e), .. }) => {
            let (value, cause, _) = request_failure(obs, sdk, IDENTITY, e);
            Check::warn(ID, value)
                .cause(format!(
                    "{cause} SDKs read the region from this document when AWS_REGION is not set, \
                     so clients without an explicit region fail to start."
                ))
                .fix("Set AWS_REGION for the applications, and run the check again; if only this path fails, it is an IMDS defect worth an AWS support case.")
        }
    }
}

/// The identity document's fields, checked against the formats EC2 writes them in: one that is
/// not is shown quoted and escaped, and never pasted into a suggested command.
fn identity_fields(i: &Identity) -> Check {
    const ID: CheckId = CheckId::ImdsIdentity;
    type Format<'a> = (&'a str, &'a str, fn(&str) -> bool, &'a str);
    let formats: [Format; 3] = [
        (
            "instanceId",
            &i.instance_id,
            untrusted::is_instance_id,
            "i- and 8 or 17 hex digits",
        ),
        ("region", &i.region, untrusted::is_region, "a region name"),
        (
            "accountId",
            &i.account_id,
            untrusted::is_account_id,
            "12 digits",
        ),
    ];
    let odd: Vec<String> = formats
        .iter()
        .filter(|(_, value, valid, _)| !valid(value))
        .map(|(name, value, _, want)| format!("{name} {value:?} (want {want})"))
        .collect();
    if odd.is_empty() {
        return Check::ok(
            ID,
            format!(
                "{} ({}, {}, account {})",
                i.instance_id, i.instance_type, i.availability_zone, i.account_id
            ),
        );
    }
    Check::warn(ID, format!("not in EC2's formats: {}", odd.join(", ")))
        .cause(
            "EC2's IMDS writes these fields in fixed formats, and these are not: something other \
         than EC2's IMDS answers (an emulator, a metadata proxy that rewrites answers), or the \
         answer was altered. SDKs read the region from this document when AWS_REGION is not set. \
         The suggested commands of this check show <instance-id> rather than paste such a value.",
        )
        .fix("Find what answers at the endpoint (see sdk.imds_endpoint and sdk.proxy).")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::credentials::CredentialsDoc;
    use crate::probe::imds::ImdsRun;
    use chrono::TimeZone;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p(phase: Phase, duration: Duration, error: Option<RequestError>) -> PhaseResult {
        PhaseResult {
            phase,
            duration,
            error,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
    }

    fn healthy(expires_in: i64) -> ImdsObservation {
        ImdsObservation {
            endpoint: "http://127.0.0.1:1".into(),
            deadline: Duration::from_secs(2),
            connect: Ok(ms(1)),
            run: ImdsRun {
                phases: vec![
                    p(Phase::Token, ms(2), None),
                    p(Phase::Role, ms(2), None),
                    p(Phase::Credentials, ms(3), None),
                    p(Phase::ImdsV1, ms(1), None),
                ],
                outcome: Some(Ok((
                    "r".into(),
                    CredentialsDoc {
                        expiration: now() + chrono::Duration::seconds(expires_in),
                        last_updated: Some(now()),
                        key_id_hash: 1,
                    },
                ))),
                v1_enabled: Some(false),
                ..ImdsRun::default()
            },
            role: Some("r".into()),
            instance_id: Some("i-0123456789abcdef0".into()),
        }
    }

    fn check(obs: &ImdsObservation, id: CheckId, offset: Option<f64>) -> Check {
        evaluate(obs, &SdkSettings::default(), now(), offset)
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }

    fn check_with(obs: &ImdsObservation, id: CheckId, sdk: &SdkSettings) -> Check {
        evaluate(obs, sdk, now(), None)
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }

    fn sdk(pairs: &[(&str, &str)]) -> SdkSettings {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SdkSettings::from_env(&super::super::settings::EnvView::new(&vars, None))
    }

    #[test]
    fn expiry_thresholds_follow_the_sdk_refresh_windows() {
        use super::super::Status::*;
        // (seconds left by the local clock, NTP offset, status)
        let cases = [
            (6 * 3600, None, Ok),
            (6 * 3600, Some(400.0), Ok),
            (50 * 60, None, Warn),
            (16 * 60, None, Warn),
            (14 * 60, None, Fail),
            (-60, None, Fail),
            // Valid by our clock, 20 minutes left, but our clock is 10 minutes behind AWS's.
            (20 * 60, Some(600.0), Fail),
            // Our clock is ahead: SDKs here think less time is left than AWS does.
            (20 * 60, Some(-600.0), Warn),
            (10 * 60, Some(-600.0), Fail),
        ];
        for (left, offset, want) in cases {
            let c = check(&healthy(left), CheckId::ImdsExpiry, offset);
            assert_eq!(c.status, want, "{left} {offset:?}: {}", c.value);
        }
        let c = check(&healthy(20 * 60), CheckId::ImdsExpiry, Some(600.0));
        assert!(
            c.value.contains("by the NTP clock it expires in 10m"),
            "{}",
            c.value
        );
        assert!(c.cause.unwrap().contains("behind"));
    }

    #[test]
    fn a_token_timeout_with_answered_gets_is_the_hop_limit_signature() {
        for (v1_enabled, v1_error, want) in [
            (Some(true), None, "HTTP 200"),
            (Some(false), None, "HTTP 401"),
        ] {
            let mut obs = healthy(6 * 3600);
            obs.run.phases = vec![
                p(
                    Phase::Token,
                    ms(2000),
                    Some(RequestError::Timeout(ms(2000))),
                ),
                p(Phase::ImdsV1, ms(1), v1_error),
            ];
            obs.run.outcome = None;
            obs.run.v1_enabled = v1_enabled;
            let c = check(&obs, CheckId::ImdsToken, None);
            assert_eq!(c.status, super::super::Status::Fail);
            assert!(c.value.contains(want), "{}", c.value);
            assert!(c.cause.unwrap().contains("hop-limit"));
            assert!(
                c.fix
                    .unwrap()
                    .contains("--http-put-response-hop-limit 2 --http-endpoint enabled")
            );
        }
        // Both time out: an outage, not the hop limit.
        let mut obs = healthy(6 * 3600);
        obs.run.phases = vec![
            p(
                Phase::Token,
                ms(2000),
                Some(RequestError::Timeout(ms(2000))),
            ),
            p(
                Phase::ImdsV1,
                ms(2000),
                Some(RequestError::Timeout(ms(2000))),
            ),
        ];
        obs.run.v1_enabled = None;
        let c = check(&obs, CheckId::ImdsToken, None);
        assert!(!c.cause.unwrap().contains("hop-limit"));
    }

    #[test]
    fn latency_is_judged_against_the_sdk_timeout_and_go() {
        use super::super::Status::*;
        for (slowest, want) in [(ms(3), Ok), (ms(700), Warn), (ms(1500), Fail)] {
            let mut obs = healthy(6 * 3600);
            obs.run.phases[2].duration = slowest;
            assert_eq!(
                check(&obs, CheckId::ImdsLatency, None).status,
                want,
                "{slowest:?}"
            );
        }
    }
    #[test]
    fn latency_advice_follows_the_sdk_attempts_and_timeout() {
        let mut obs = healthy(6 * 3600);
        obs.run.phases[2].duration = ms(1500);
        // Defaults: one attempt of 1 s; the stopgap raises both.
        let c = check_with(&obs, CheckId::ImdsLatency, &SdkSettings::default());
        assert!(
            c.value.ends_with("SDK timeout 1s, 1 attempt"),
            "{}",
            c.value
        );
        let cause = c.cause.unwrap();
        assert!(cause.contains("(1 s per attempt, 1 attempt)"), "{cause}");
        assert!(c.fix.unwrap().contains(
            "$ export AWS_METADATA_SERVICE_TIMEOUT=3 AWS_METADATA_SERVICE_NUM_ATTEMPTS=3"
        ));
        // Three attempts already: said, and only the timeout is suggested.
        let three = sdk(&[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")]);
        let c = check_with(&obs, CheckId::ImdsLatency, &three);
        assert!(
            c.value.ends_with("SDK timeout 1s, 3 attempts"),
            "{}",
            c.value
        );
        let cause = c.cause.unwrap();
        assert!(
            cause.contains(
                "(1 s per attempt, 3 attempts; set by AWS_METADATA_SERVICE_NUM_ATTEMPTS=3)"
            ),
            "{cause}"
        );
        assert!(cause.contains("further attempts"), "{cause}");
        let fix = c.fix.unwrap();
        let command = fix.lines().find(|l| l.starts_with("$ ")).unwrap();
        assert_eq!(command, "$ export AWS_METADATA_SERVICE_TIMEOUT=3", "{fix}");
        assert!(fix.contains("with 3 attempts it already retries"), "{fix}");
    }

    #[test]
    fn server_errors_say_how_many_attempts_botocore_makes() {
        let mut obs = healthy(6 * 3600);
        obs.run.phases = vec![p(Phase::Token, ms(1), Some(RequestError::Status(503)))];
        obs.run.outcome = None;
        let c = check_with(&obs, CheckId::ImdsToken, &SdkSettings::default());
        let cause = c.cause.unwrap();
        assert!(
            cause.contains(
                "one attempt (AWS_METADATA_SERVICE_NUM_ATTEMPTS not set, nor \
                 metadata_service_num_attempts in profile [default])"
            ),
            "{cause}"
        );
        let two = sdk(&[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "2")]);
        let cause = check_with(&obs, CheckId::ImdsToken, &two).cause.unwrap();
        assert!(
            cause.contains("makes 2 attempts (AWS_METADATA_SERVICE_NUM_ATTEMPTS=2)"),
            "{cause}"
        );
        assert!(!cause.contains("one attempt"), "{cause}");
    }

    #[test]
    fn an_instance_id_not_in_ec2s_format_is_never_pasted_into_a_command() {
        let mut obs = healthy(10 * 60);
        obs.instance_id = Some("i-0$(echo X)`echo X`;\"q\\".into());
        let c = check(&obs, CheckId::ImdsExpiry, None);
        let fix = c.fix.unwrap();
        assert!(fix.contains("Values=<instance-id>"), "{fix}");
        assert!(fix.ends_with(INSTANCE_ID_REFUSED), "{fix}");
        assert!(!fix.contains("echo"), "{fix}");
        // A valid id is pasted, and no note is added.
        let c = check(&healthy(10 * 60), CheckId::ImdsExpiry, None);
        let fix = c.fix.unwrap();
        assert!(fix.contains("Values=i-0123456789abcdef0"), "{fix}");
        assert!(!fix.contains(INSTANCE_ID_REFUSED), "{fix}");
    }

    #[test]
    fn identity_fields_out_of_ec2s_formats_are_a_warning_shown_escaped() {
        let good = Identity {
            instance_id: "i-0123456789abcdef0".into(),
            instance_type: "m7g.large".into(),
            region: "eu-west-1".into(),
            availability_zone: "eu-west-1a".into(),
            account_id: "123456789012".into(),
            image_id: "ami-0123456789abcdef0".into(),
        };
        let c = identity_fields(&good);
        assert_eq!(c.status, super::super::Status::Ok);
        assert_eq!(
            c.value,
            "i-0123456789abcdef0 (m7g.large, eu-west-1a, account 123456789012)"
        );
        let bad = Identity {
            instance_id: "i-0\"$(x)".into(),
            region: "eu-west-1;x".into(),
            ..good
        };
        let c = identity_fields(&bad);
        assert_eq!(c.status, super::super::Status::Warn);
        assert_eq!(
            c.value,
            r#"not in EC2's formats: instanceId "i-0\"$(x)" (want i- and 8 or 17 hex digits), region "eu-west-1;x" (want a region name)"#
        );
    }

    #[test]
    fn the_role_name_survives_a_failed_credentials_document() {
        let mut obs = healthy(6 * 3600);
        obs.role = Some("app-role".into());
        obs.run.outcome = Some(Err(crate::labels::Reason::InvalidResponse));
        obs.run.phases[2].error = Some(RequestError::Parse(ParseError::CodeNotSuccess {
            code: "AssumeRoleUnauthorizedAccess".into(),
        }));
        let role = check(&obs, CheckId::ImdsRole, None);
        assert!(role.value.starts_with("app-role (in "), "{}", role.value);
        let fix = check(&obs, CheckId::ImdsCredentials, None).fix.unwrap();
        assert!(fix.contains("--role-name app-role "), "{fix}");
        assert!(!fix.contains("<role>"), "{fix}");
    }

    #[test]
    fn an_endpoint_that_cannot_be_probed_skips_every_imds_check() {
        let endpoint = "https://u:pw@imds.internal";
        let checks = not_probed(
            endpoint,
            &sdk(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)]),
        );
        let ids: Vec<CheckId> = checks.iter().map(|c| c.id).collect();
        assert_eq!(ids, CheckId::ALL[..9].to_vec());
        for c in &checks {
            assert_eq!(c.status, super::super::Status::Skip, "{}", c.id.as_str());
            assert!(
                c.value.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
                "{}",
                c.value
            );
            assert!(!c.value.contains("pw"), "{}", c.value);
        }
        assert!(
            checks[0].value.contains("plain http:// only"),
            "{}",
            checks[0].value
        );
    }
}
