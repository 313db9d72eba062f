//! The sections of `check` beyond IMDS, present only where an SDK here would use them: the
//! container credential provider (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI`, or only
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: the EKS Pod Identity agent) and web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE`, IRSA). Configured from the check's environment, resolved as the
//! exporter resolves its probes ([`ContainerConfig::resolve`], [`WebIdentityConfig::resolve`]).
//!
//! With `--sts.enabled`, a signed `GetCallerIdentity` with each source's credentials (`sts.*`).
//!
//! Never printed: the authorization token and the web identity token (only whether they could be
//! read, and the token's `exp`). Paths and ARNs from the environment reach a suggested command
//! only through [`crate::untrusted::shell_word`]; an ARN is shown only when it has an ARN's form.

use chrono::{DateTime, Utc};

use super::model::{Check, CheckId, fmt_latency, fmt_span};
use crate::labels::{Reason, Source, StsCode};
use crate::probe::container::{ContainerConfig, ContainerProber, ContainerRun, TokenSource};
use crate::probe::imds::ImdsConfig;
use crate::probe::sts::request::Verdict;
use crate::probe::sts::{SourceCheck, StsConfig, StsProber};
use crate::probe::web_identity::{WebIdentityConfig, jwt_expiry};
use crate::untrusted::{is_arn, shell_word, visible};

/// The web identity token's time left under which `web_identity.token` warns (the alert's
/// `web_identity_token_expiry_warning_seconds`, alerts/thresholds.yml).
pub const WEB_IDENTITY_EXPIRY_WARNING_SECONDS: i64 =
    crate::thresholds::WEB_IDENTITY_TOKEN_EXPIRY_WARNING.as_secs() as i64;

/// The container provider's configuration as an SDK here would resolve it, or `None`.
pub fn container_config(env: &dyn Fn(&str) -> Option<String>) -> Option<ContainerConfig> {
    ContainerConfig::resolve(None, None, env)
}

/// The web identity configuration as an SDK here would resolve it, or `None`.
pub fn web_identity_config(env: &dyn Fn(&str) -> Option<String>) -> Option<WebIdentityConfig> {
    WebIdentityConfig::resolve(None, None, env)
}

/// Where the endpoint came from, for the report.
fn endpoint_source(env: &dyn Fn(&str) -> Option<String>) -> &'static str {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set(ContainerConfig::RELATIVE_URI_VARIABLE) {
        ContainerConfig::RELATIVE_URI_VARIABLE
    } else if set(ContainerConfig::FULL_URI_VARIABLE) {
        ContainerConfig::FULL_URI_VARIABLE
    } else {
        "the EKS Pod Identity agent's default"
    }
}

/// Runs the container provider once (as botocore: every attempt) and evaluates it:
/// `container.endpoint`, `container.token`, `container.credentials`.
pub async fn container(
    config: ContainerConfig,
    env: &dyn Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Vec<Check> {
    let shown = super::settings::redact_url(&config.endpoint);
    let source = endpoint_source(env);
    let token = config.token.clone();
    let mut prober = match ContainerProber::new(config) {
        Ok(p) => p,
        Err(e) => {
            return vec![
                Check::fail(CheckId::ContainerEndpoint, format!("{shown} ({source})"))
                    .cause(format!(
                        "the SDKs refuse this endpoint: {e}; plain HTTP is allowed only to loopback, \
                         169.254.170.2, 169.254.170.23 and [fd00:ec2::23]"
                    ))
                    .fix(format!(
                        "Point {source} at the EKS Pod Identity agent (http://169.254.170.23/v1/credentials) \
                         or at an https:// URL."
                    )),
                Check::skip(CheckId::ContainerToken, "not checked: the endpoint is refused"),
                Check::skip(CheckId::ContainerCredentials, "not fetched: the endpoint is refused"),
            ];
        }
    };
    let run = prober.run().await;
    let mut checks = vec![Check::ok(
        CheckId::ContainerEndpoint,
        format!("{shown} ({source})"),
    )];
    checks.push(token_check(token.as_ref(), &run));
    checks.push(credentials_check(&run, now));
    checks
}

fn token_check(token: Option<&TokenSource>, run: &ContainerRun) -> Check {
    let id = CheckId::ContainerToken;
    match (token, &run.token_error) {
        (None, _) => Check::ok(id, "none sent (ECS: the relative URI needs no token)"),
        (Some(source), Some(e)) => {
            let cause = match e {
                crate::probe::container::TokenError::Unreadable { .. } => {
                    "the token file cannot be read: the projected token volume is missing (the pod \
                     was created before its Pod Identity association) or the path is wrong"
                }
                crate::probe::container::TokenError::NotAHeader => {
                    "the token holds a line break or a control character: the SDKs refuse it as a header value"
                }
            };
            let fix = match source {
                TokenSource::File(p) => format!(
                    "Recreate the pod once its ServiceAccount has an association (aws eks \
                     list-pod-identity-associations), then check the file:\n$ ls -l {}",
                    shell_word(&p.display().to_string())
                ),
                TokenSource::Value(_) => format!(
                    "Set {} to the token alone, on one line.",
                    ContainerConfig::TOKEN_VARIABLE
                ),
            };
            Check::fail(id, format!("{}: unusable", source.describe()))
                .cause(cause)
                .fix(fix)
        }
        (Some(source), None) => Check::ok(id, format!("{}: readable", source.describe())),
    }
}

fn credentials_check(run: &ContainerRun, now: DateTime<Utc>) -> Check {
    let id = CheckId::ContainerCredentials;
    let attempts = run.attempts.len();
    let took = fmt_latency(run.duration);
    match (run.failure_reason(), &run.outcome) {
        (None, Some(Ok(doc))) => Check::ok(
            id,
            format!(
                "served, expire in {} ({took})",
                fmt_span((doc.expiration - now).num_seconds())
            ),
        ),
        (Some(Reason::TokenFile), _) => {
            Check::skip(id, "not fetched: no usable authorization token")
        }
        (Some(reason), _) => {
            let (cause, fix) = container_advice(reason);
            Check::fail(
                id,
                format!(
                    "none after {attempts} attempt{} ({took}): {}",
                    if attempts == 1 { "" } else { "s" },
                    reason.as_str()
                ),
            )
            .cause(cause)
            .fix(fix)
        }
        (None, _) => Check::fail(id, "no answer").cause("the endpoint did not answer"),
    }
}

/// The cause and the fix of a failed container fetch (docs/runbooks.md#imdscontainercredentialsunavailable).
fn container_advice(reason: Reason) -> (&'static str, &'static str) {
    match reason {
        Reason::Timeout | Reason::Connect => (
            "the credential endpoint does not answer: on EKS the Pod Identity agent is not running on this \
             node (DaemonSet eks-pod-identity-agent), or a rule drops 169.254.170.23:80",
            "Check the agent on this node:\n$ kubectl -n kube-system rollout status daemonset/eks-pod-identity-agent\n\
             $ kubectl -n kube-system get pods -o wide | grep eks-pod-identity-agent",
        ),
        Reason::Unauthorized | Reason::Forbidden => (
            "the agent refuses the token: no Pod Identity association for this namespace and ServiceAccount, \
             or the token expired",
            "Create the association, then recreate the pod:\n$ aws eks create-pod-identity-association \
             --cluster-name CLUSTER --namespace NAMESPACE --service-account SERVICE_ACCOUNT --role-arn ROLE_ARN",
        ),
        Reason::ServerError => (
            "the agent could not get credentials from EKS Auth: the role's trust policy lacks \
             pods.eks.amazonaws.com (sts:AssumeRole, sts:TagSession), the role is gone, or the node cannot \
             reach EKS Auth",
            "Read the agent's log on this node:\n$ kubectl -n kube-system logs daemonset/eks-pod-identity-agent --since 30m",
        ),
        Reason::Throttled => (
            "the agent throttles (HTTP 429)",
            "Fewer clients creating credentials at once; read the agent's log.",
        ),
        Reason::Expired => (
            "the endpoint serves credentials that have already expired: the SDKs refuse them",
            "Restart the agent's pod on this node; read its log.",
        ),
        _ => (
            "the endpoint's answer is not a credential document the SDKs accept",
            "Read the agent's log on this node:\n$ kubectl -n kube-system logs daemonset/eks-pod-identity-agent --since 30m",
        ),
    }
}

/// `web_identity.token` and `web_identity.role_arn`: the file read now, its `exp` (no signature
/// check), and `AWS_ROLE_ARN`. Nothing of the token is shown but its expiry.
pub fn web_identity(config: &WebIdentityConfig, now: DateTime<Utc>) -> Vec<Check> {
    let path = config.token_file.display().to_string();
    let ls = format!("$ ls -l {}", shell_word(&path));
    let token = match crate::config::read_file(&config.token_file) {
        Err(_) => Check::fail(CheckId::WebIdentityToken, format!("{path}: unreadable"))
            .cause(
                "the projected token file cannot be read: the pod was created before its ServiceAccount got \
                 the eks.amazonaws.com/role-arn annotation, or the volume is not mounted",
            )
            .fix(format!("Recreate the pod, then check the file:\n{ls}")),
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            let text = String::from_utf8_lossy(&bytes);
            match jwt_expiry(text.trim()) {
                Err(_) => Check::fail(CheckId::WebIdentityToken, format!("{path}: not a JWT"))
                    .cause("the file does not hold a JWT with an exp claim: STS refuses it (InvalidIdentityToken)")
                    .fix(format!("Recreate the pod so that the kubelet writes the token again:\n{ls}")),
                Ok(exp) => {
                    let left = (exp - now).num_seconds();
                    let value = format!("{path}: expires in {}", fmt_span(left));
                    if left <= 0 {
                        Check::fail(CheckId::WebIdentityToken, format!("{path}: expired {} ago", fmt_span(left)))
                            .cause("the token's exp has passed: AssumeRoleWithWebIdentity fails (ExpiredTokenException)")
                            .fix("The kubelet stopped renewing the projected token: restart the kubelet or recreate the pod.")
                    } else if left < WEB_IDENTITY_EXPIRY_WARNING_SECONDS {
                        Check::warn(CheckId::WebIdentityToken, value)
                            .cause("the kubelet renews a projected token at 80 % of its lifetime: it has stopped")
                            .fix("Restart the kubelet on this node or recreate the pod.")
                    } else {
                        Check::ok(CheckId::WebIdentityToken, value)
                    }
                }
            }
        }
    };
    let role = match config.role_arn.as_deref().map(str::trim) {
        None | Some("") => Check::fail(CheckId::WebIdentityRoleArn, "AWS_ROLE_ARN unset")
            .cause("without AWS_ROLE_ARN the SDKs skip web identity and fall through to the next provider")
            .fix("Annotate the ServiceAccount with eks.amazonaws.com/role-arn and recreate the pod."),
        Some(arn) if is_arn(arn) => Check::ok(CheckId::WebIdentityRoleArn, arn.to_string()),
        Some(_) => Check::fail(CheckId::WebIdentityRoleArn, "AWS_ROLE_ARN is not an ARN")
            .cause("STS refuses AssumeRoleWithWebIdentity for a RoleArn that is not an ARN")
            .fix("Set the ServiceAccount's eks.amazonaws.com/role-arn annotation to the role's ARN."),
    };
    vec![token, role]
}

/// `--sts.enabled`: a signed `GetCallerIdentity` with each source's credentials, once, as the STS
/// probe makes it (`sts.imds`, and `sts.container` where the container provider is configured).
/// Never printed: the credentials, the signature, the request.
pub async fn sts(
    config: &StsConfig,
    imds: &ImdsConfig,
    container: Option<&ContainerConfig>,
) -> Vec<Check> {
    let mut prober = match StsProber::new(config.clone(), imds, container) {
        Ok(p) => p,
        Err(e) => {
            return vec![
                Check::fail(CheckId::StsImds, "not run")
                    .cause(visible(&e.to_string()).into_owned()),
            ];
        }
    };
    let run = prober.run().await;
    let region = prober.region().map(str::to_string);
    run.checks
        .iter()
        .filter_map(|c| {
            let id = match c.source {
                Source::Imds => CheckId::StsImds,
                Source::Container => CheckId::StsContainer,
                Source::WebIdentity => return None,
            };
            Some(sts_check(id, c, region.as_deref()))
        })
        .collect()
}

fn sts_check(id: CheckId, c: &SourceCheck, region: Option<&str>) -> Check {
    let whose = match c.source {
        Source::Container => "the container endpoint's",
        _ => "the instance profile's",
    };
    if let Some((reason, detail)) = &c.fetch_error {
        return Check::fail(id, format!("credentials not fetched ({})", reason.as_str()))
            .cause(format!(
                "{whose} credentials could not be fetched, so STS was not asked: {}",
                visible(detail)
            ))
            .fix("See the credential checks above.");
    }
    let took = fmt_latency(c.duration);
    let skew = c
        .skew
        .map(|s| format!(", STS clock {s:+.0} s from ours"))
        .unwrap_or_default();
    let egress = "Give the node egress to STS: a NAT gateway, or an STS interface VPC endpoint \
                  (com.amazonaws.REGION.sts) with private DNS; a proxy in HTTPS_PROXY is honoured.";
    match &c.answer {
        None => Check::fail(id, "no answer").cause("the run ended before STS answered"),
        Some(Err(e)) => Check::fail(id, format!("STS unreachable ({})", e.reason().as_str()))
            .cause(format!(
                "{} ({}): the SDKs' calls from here fail the same way",
                visible(&e.to_string()),
                region.map(|r| format!("region {r}")).unwrap_or_default()
            ))
            .fix(egress),
        Some(Ok(Verdict::Accepted { arn })) => {
            let shown = if is_arn(arn) { arn.as_str() } else { "an ARN" };
            let value = format!("{shown} in {took}{skew}");
            if c.role_match == Some(false) {
                Check::warn(id, value)
                    .cause("STS answers for a role other than the one the source names: the credentials are another role's")
                    .fix("Check the instance profile (or the pod's association) names the intended role.")
            } else if c
                .skew
                .is_some_and(|s| s.abs() > crate::thresholds::CLOCK_SKEW_CRITICAL_SECONDS)
            {
                Check::warn(id, value)
                    .cause("the local clock is far from STS's: SigV4 refuses requests more than 5 minutes off")
                    .fix("Fix the clock: see the NTP and kernel clock checks.")
            } else {
                Check::ok(id, value)
            }
        }
        Some(Ok(Verdict::Refused { code, .. })) => {
            let (cause, fix) = match code {
                StsCode::ExpiredToken => (
                    "STS says the session token has expired: the credentials were not rotated in time, or the clock is wrong",
                    "Compare the credentials' Expiration with the clock (checks above); a stuck rotation needs the instance profile re-associated.",
                ),
                StsCode::SignatureDoesNotMatch | StsCode::RequestTimeTooSkewed => (
                    "STS refuses the signature: most often the clock is off by more than 5 minutes",
                    "Fix the clock (the NTP and kernel clock checks above), then retry.",
                ),
                StsCode::InvalidClientTokenId => (
                    "STS does not know the access key: credentials of another partition, a region where STS is off, or revoked",
                    "Check the region (`--sts.region`) and that STS is active in it (IAM, Account settings).",
                ),
                StsCode::AccessDenied => (
                    "STS denies the call: an SCP or a permissions boundary blocks sts:GetCallerIdentity",
                    "Review the organisation's SCPs for this account.",
                ),
                StsCode::Throttling => (
                    "STS throttles this account's calls",
                    "Find the callers flooding STS (CloudTrail) and add backoff.",
                ),
                _ => (
                    "STS refuses the credentials",
                    "Run the same call with the AWS CLI to see the full error: aws sts get-caller-identity",
                ),
            };
            let check = if *code == StsCode::Throttling {
                Check::warn(id, format!("throttled in {took}"))
            } else {
                Check::fail(id, format!("refused: {}", code.as_str()))
            };
            check.cause(cause).fix(fix)
        }
        Some(Ok(Verdict::Unusable { status })) => {
            Check::fail(id, format!("HTTP {status} without an STS error"))
                .cause("the answer is not STS's: a proxy or a wrong --sts.endpoint")
                .fix(egress)
        }
    }
}
