//! What a client of each SDK family, created now, would get: the exporter's per-SDK verdicts
//! (`imds_sdk_credentials_available`), from the same replay of each SDK's algorithm over the run
//! (`probe::imds::sdk`, docs/sdk-model.md), with the traits of the family that decided it.
//! Pure: the observation comes in from the runner.

use crate::labels::Sdk;
use crate::probe::imds::sdk::{self, Verdict};

use super::model::{Check, CheckId, ImdsObservation};

/// Above this a client that gets credentials is slow to start (`sdk_wait_warning_seconds`).
const WAIT_WARN_SECONDS: f64 = crate::thresholds::SDK_WAIT_WARNING_SECONDS;

fn id(family: Sdk) -> CheckId {
    match family {
        Sdk::Python => CheckId::ClientsPython,
        Sdk::Javascript => CheckId::ClientsJavascript,
        Sdk::Rust => CheckId::ClientsRust,
        Sdk::Go => CheckId::ClientsGo,
    }
}

/// How the family gets its credentials, for the cause of a failure or a wait.
fn traits(family: Sdk) -> &'static str {
    match family {
        Sdk::Python => {
            "For botocore (boto3, the AWS CLI): one attempt per request with a 1 s timeout, a \
             fallback to IMDSv1 when the token request fails (except on HTTP 400), and a client \
             created without credentials keeps none until it is recreated"
        }
        Sdk::Javascript => {
            "For the JavaScript v3 provider: one attempt per request with a 1 s timeout, and a \
             fallback to IMDSv1 when the token request fails (except on HTTP 400); a body cut \
             mid-transfer leaves its promise unsettled"
        }
        Sdk::Rust => {
            "For aws-config (the Rust SDK): IMDSv2 only (no IMDSv1 fallback), a token answer with its \
             TTL header, 1 s to each response head, and 5xx and 401 retried up to 4 times"
        }
        Sdk::Go => {
            "For aws-sdk-go-v2: 0.5 s to each response head, 3 tries 1 s apart within 5 s per \
             operation, and a fallback to IMDSv1 when the token request fails"
        }
    }
}

/// One check per family, in `CheckId` order; families not in `families` are skipped. When IMDS
/// cannot be reached at all, every family is skipped: that one cause is `imds.reachable`'s, and
/// no family gets credentials.
pub fn evaluate(obs: &ImdsObservation, families: &[Sdk]) -> Vec<Check> {
    if obs.connect.is_err() {
        return Sdk::ALL
            .map(|family| {
                Check::skip(
                    id(family),
                    "not judged: IMDS cannot be reached, so no family gets credentials (see imds.reachable)",
                )
            })
            .to_vec();
    }
    sdk::verdicts(&obs.run.evidence)
        .into_iter()
        .map(|(family, verdict)| judge(family, verdict, families.contains(&family)))
        .collect()
}

fn judge(family: Sdk, v: Verdict, in_use: bool) -> Check {
    let id = id(family);
    if !in_use {
        return Check::skip(id, "not in --imds.sdk: no such clients here");
    }
    let fix = "See the failing IMDS check above for its cause and fix.";
    if v.wait_seconds.is_infinite() {
        return Check::fail(
            id,
            "gets no credentials: its credentials call never settles",
        )
        .cause(format!(
            "{}. The process hangs rather than fails.",
            traits(family)
        ))
        .fix(fix);
    }
    if !v.available {
        return Check::fail(
            id,
            format!(
                "gets no credentials (gives up after {:.1} s)",
                v.wait_seconds
            ),
        )
        .cause(format!("{}.", traits(family)))
        .fix(fix);
    }
    if v.wait_seconds > WAIT_WARN_SECONDS {
        return Check::warn(
            id,
            format!("gets credentials after {:.1} s", v.wait_seconds),
        )
        .cause(format!(
            "{}. The wait is those timeouts and that fallback (or a slow IMDS); a little more and it gets none.",
            traits(family)
        ))
        .fix(fix);
    }
    Check::ok(id, format!("gets credentials in {:.2} s", v.wait_seconds))
}

/// The family checks when IMDS was not probed: all skipped.
pub fn not_probed() -> Vec<Check> {
    Sdk::ALL
        .map(|family| Check::skip(id(family), "not probed (see imds.reachable)"))
        .to_vec()
}
