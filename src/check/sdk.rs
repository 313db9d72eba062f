//! The SDK environment to checks: [`evaluate`] runs the six `sdk.*` checks in report order, and
//! this file holds the four about the IMDS settings (`AWS_EC2_METADATA_DISABLED`, the IMDSv1
//! switch, the endpoint and its mode, the timeout and attempts): their verdicts and their prose.
//!
//! Does not own: resolving the settings (`settings`), the proxy check (`proxy`) or the
//! credential-source check (`chain`), which live beside the semantics they judge. Pure: the
//! variables and the home directory are arguments; only the shared config and credentials files
//! are read, from the paths they name. No secret is printed: variables holding secrets are
//! reported by name only, and a URL (a proxy, an IMDS endpoint) loses its user information.

use super::chain::{Chain, credential_chain, credential_source_check};
use super::model::{Check, CheckId};
use super::proxy::proxy_check;
use super::settings::{
    ATTEMPTS, EnvView, IMDS_IPV6_ENDPOINT, IntSetting, SdkSettings, Setting, Source, TIMEOUT,
    list_named, profile_name, redact_url, short, why_not_probed,
};
const DEFAULT_IMDS_ENDPOINT: &str = crate::probe::imds::ImdsConfig::DEFAULT_ENDPOINT;

/// The SDK-environment checks, in report order. `probed` is the endpoint this check probed (for
/// display, user information redacted), `None` when the one SDKs use (from the environment or the
/// profile) could not be.
pub fn evaluate(
    env: &EnvView,
    endpoint_flag: Option<&str>,
    probed: Option<&str>,
    sdk: &SdkSettings,
) -> Vec<Check> {
    let chain = credential_chain(env, sdk.imds_disabled);
    vec![
        imds_disabled_check(env, &chain),
        v1_disabled_check(sdk),
        endpoint_check(sdk, endpoint_flag, probed),
        timeout_check(sdk),
        proxy_check(env, sdk),
        credential_source_check(&chain),
    ]
}

// ---------------------------------------------------------------------------------------------
// IMDS switches and overrides
// ---------------------------------------------------------------------------------------------

fn imds_disabled_check(env: &EnvView, chain: &Chain) -> Check {
    const ID: CheckId = CheckId::SdkImdsDisabled;
    match env.raw("AWS_EC2_METADATA_DISABLED") {
        None | Some("") => Check::ok(ID, "AWS_EC2_METADATA_DISABLED not set: SDKs may use IMDS"),
        Some(v) if v.eq_ignore_ascii_case("true") => match chain.first_source() {
            None if chain.blocked().is_some() && !chain.found.is_empty() => Check::ok(
                ID,
                "AWS_EC2_METADATA_DISABLED=true: SDKs skip IMDS (the IMDS checks do not describe this process's credentials); botocore raises before it reaches another source (see sdk.credential_source)",
            ),
            Some(first) => Check::ok(
                ID,
                format!(
                    "AWS_EC2_METADATA_DISABLED=true: SDKs skip IMDS and use {} (the IMDS checks do not describe this process's credentials)",
                    first.source.describe()
                ),
            ),
            None => Check::fail(ID, "AWS_EC2_METADATA_DISABLED=true")
                .cause(
                    "SDKs skip the instance profile entirely, and no other credential source is \
                     configured: they find no credentials at all (\"Unable to locate \
                     credentials\"), however healthy IMDS is.",
                )
                .fix(
                    "Remove the variable where it is set (the pod spec, the service unit, \
                     /etc/environment, a shell profile):\n$ unset AWS_EC2_METADATA_DISABLED",
                ),
        },
        Some(v) => Check::ok(
            ID,
            format!(
                "AWS_EC2_METADATA_DISABLED={:?}: not \"true\", so SDKs ignore it",
                short(v)
            ),
        ),
    }
}

fn v1_disabled_check(sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::SdkImdsV1Disabled;
    let s = &sdk.v1;
    let note = s.shadow_note(word);
    match s.value.as_deref() {
        Some(_) if sdk.v1_disabled => Check::ok(
            ID,
            format!(
                "{}: SDKs never fall back to token-less IMDSv1 requests{note}",
                sdk.v1_disabled_by()
            ),
        ),
        Some(v) => Check::ok(
            ID,
            format!(
                "{}: not \"true\"; SDKs fall back to IMDSv1 when the token request fails{note}",
                s.named(&format!("{:?}", short(v)))
            ),
        ),
        None => Check::ok(
            ID,
            format!(
                "not set in the environment or profile [{}]: SDKs fall back to IMDSv1 when the \
                 token request fails",
                profile_name(&sdk.profile)
            ),
        ),
    }
}

fn endpoint_check(sdk: &SdkSettings, flag: Option<&str>, probed: Option<&str>) -> Check {
    const ID: CheckId = CheckId::SdkImdsEndpoint;
    let (ep, mode) = (&sdk.endpoint, &sdk.endpoint_mode);
    let ep_note = ep.shadow_note(redact_url);
    let mode_note = mode.shadow_note(word);
    let probed_other = match (flag, probed) {
        (Some(_), Some(probed)) => format!(" (this check probed --imds.endpoint {probed} instead)"),
        _ => String::new(),
    };
    // `resolve_imds_endpoint_mode` runs whenever botocore builds the instance-profile provider,
    // before it looks at the endpoint: an invalid mode fails even next to an endpoint.
    if let Some(m) = mode.value.as_deref()
        && !m.eq_ignore_ascii_case("ipv4")
        && !m.eq_ignore_ascii_case("ipv6")
    {
        let empty = if m.is_empty() && mode.source == Source::Env {
            " The variable is set but empty, and botocore takes a set variable all the same."
        } else {
            ""
        };
        return Check::fail(
            ID,
            format!("{}{mode_note}", mode.named(&format!("{:?}", short(m)))),
        )
        .cause(format!(
            "Neither IPv4 nor IPv6: botocore raises InvalidIMDSEndpointModeError when it builds \
             the instance-profile provider (with or without an endpoint override), so clients \
             cannot be created.{empty}"
        ))
        .fix(mode.removal());
    }
    if let Some(e) = ep.value.as_deref().filter(|e| !e.is_empty()) {
        let e = e.trim();
        let valid = reqwest::Url::parse(e).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if !valid {
            return Check::fail(
                ID,
                format!("{}{ep_note}", ep.named(&format!("{:?}", redact_url(e)))),
            )
            .cause(
                "Not a URL: botocore raises InvalidIMDSEndpointError when it builds the \
                 instance-profile provider, so clients cannot be created.",
            )
            .fix(ep.removal());
        }
        let shown = ep.named(&redact_url(e));
        if e.trim_end_matches('/') == DEFAULT_IMDS_ENDPOINT
            || e.trim_end_matches('/') == IMDS_IPV6_ENDPOINT
        {
            return Check::ok(ID, format!("{shown}: the standard endpoint{ep_note}"));
        }
        let not_probed = match probed {
            Some(_) => String::new(),
            None => format!(
                "; not probed: {} (the IMDS checks are skipped; --imds.endpoint probes another)",
                why_not_probed(e)
            ),
        };
        let (what, scope, fix) = match &ep.source {
            Source::Profile(at) => (
                "The profile setting",
                format!(
                    "every SDK that reads profile [{}]",
                    profile_name(&sdk.profile)
                ),
                format!("If it is not intended, delete {} from {at}.", ep.key),
            ),
            _ => (
                "The variable",
                "every SDK in this environment".to_string(),
                format!(
                    "If it is not intended, remove it where it is set:\n{}",
                    ep.removal()
                ),
            ),
        };
        return Check::warn(
            ID,
            format!("{shown}: SDKs send IMDS requests there{probed_other}{not_probed}{ep_note}"),
        )
        .cause(format!(
            "{what} replaces 169.254.169.254 for {scope}. It is meant for IMDS emulators and \
             tests; on a real node it is usually a leftover, and SDKs then get their credentials \
             from whatever answers there."
        ))
        .fix(fix);
    }
    // An empty endpoint is no override to botocore (`elif custom_metadata_endpoint:`).
    let empty_endpoint = match ep.value.as_deref() {
        Some(_) if !ep_note.is_empty() => format!("{}{ep_note}; ", ep.named("\"\"")),
        Some(_) => format!("{} is set but empty; ", ep.origin()),
        None => String::new(),
    };
    match mode.value.as_deref() {
        None if empty_endpoint.is_empty() => Check::ok(
            ID,
            format!(
                "no override in the environment or profile [{}]: SDKs use {DEFAULT_IMDS_ENDPOINT}",
                profile_name(&sdk.profile)
            ),
        ),
        None => Check::ok(
            ID,
            format!("{empty_endpoint}SDKs use {DEFAULT_IMDS_ENDPOINT}"),
        ),
        Some(m) if m.eq_ignore_ascii_case("ipv4") => Check::ok(
            ID,
            format!(
                "{empty_endpoint}{}{mode_note}: SDKs use {DEFAULT_IMDS_ENDPOINT}",
                mode.named(m)
            ),
        ),
        Some(m) => Check::warn(
            ID,
            format!(
                "{empty_endpoint}{}{mode_note}: SDKs use {IMDS_IPV6_ENDPOINT}{probed_other}",
                mode.named(m)
            ),
        )
        .cause(
            "The IPv6 IMDS endpoint answers only on Nitro instances whose metadata options enable \
             it (HttpProtocolIpv6=enabled) and only over an IPv6 route; elsewhere SDKs time out.",
        )
        .fix(format!(
            "Enable it, or remove the setting:\n$ aws ec2 modify-instance-metadata-options \
             --instance-id <instance-id> --http-protocol-ipv6 enabled\n{}",
            mode.removal()
        )),
    }
}

fn timeout_check(sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::SdkImdsTimeout;
    let (t, n) = (TIMEOUT.0, ATTEMPTS.0);
    let settings = [
        (&sdk.timeout_from, &sdk.timeout_setting, true),
        (&sdk.attempts_from, &sdk.attempts_setting, false),
    ];
    let set: Vec<(&Setting, String)> = settings
        .iter()
        .filter_map(|(from, s, _)| {
            let shown = match s {
                IntSetting::Unset => return None,
                IntSetting::Valid(n) => n.to_string(),
                IntSetting::Invalid(v) => format!("{v:?}"),
            };
            Some((*from, shown))
        })
        .collect();
    let notes: String = set.iter().map(|(from, _)| from.shadow_note(word)).collect();
    let value = if set.is_empty() {
        format!(
            "{t} and {n} not set, nor in profile [{}]",
            profile_name(&sdk.profile)
        )
    } else if notes.is_empty() {
        list_named(&set, ", ")
    } else {
        let each: Vec<String> = set
            .iter()
            .map(|(from, v)| format!("{}{}", from.named(v), from.shadow_note(word)))
            .collect();
        each.join(", ")
    };
    let mut problems = Vec::new();
    let mut bad_in_profile = Vec::new();
    for (from, setting, is_timeout) in settings {
        let problem = match setting {
            IntSetting::Invalid(v) if v.is_empty() => format!(
                "{} is set but empty: botocore takes it all the same, reads it with int() and \
                 raises ValueError whenever a client is created.",
                from.origin()
            ),
            IntSetting::Invalid(_) => format!(
                "{} is not a whole number: botocore reads it with int() and raises ValueError \
                 whenever a client is created.",
                from.origin()
            ),
            IntSetting::Valid(v) if *v < 1 && is_timeout => format!(
                "{}: botocore's IMDS requests time out at once (urllib3 refuses a timeout of 0 or \
                 less).",
                from.named(&v.to_string())
            ),
            IntSetting::Valid(v) if *v < 1 => format!(
                "{}: botocore makes no IMDS request at all and finds no instance credentials.",
                from.named(&v.to_string())
            ),
            _ => continue,
        };
        problems.push(problem);
        if let Source::Profile(at) = &from.source {
            bad_in_profile.push(format!("{} in {at}", from.key));
        }
    }
    if problems.is_empty() {
        return Check::ok(
            ID,
            format!(
                "{value}: botocore waits {} s per IMDS request, {} attempt{}",
                sdk.timeout.as_secs(),
                sdk.attempts,
                if sdk.attempts == 1 { "" } else { "s" }
            ),
        );
    }
    let fix = if bad_in_profile.is_empty() {
        format!("Use whole seconds and at least one attempt, e.g.\n$ export {t}=2 {n}=2")
    } else {
        format!(
            "Use whole seconds and at least one attempt: correct {} (e.g. {} = 2), or override \
             the profile in the environment:\n$ export {t}=2 {n}=2",
            bad_in_profile.join(" and "),
            if bad_in_profile[0].starts_with(TIMEOUT.1) {
                TIMEOUT.1
            } else {
                ATTEMPTS.1
            }
        )
    };
    Check::fail(ID, value).cause(problems.join(" ")).fix(fix)
}

/// A setting's value for people: as is when it is one plain word (`3`, `true`, `IPv6`), else
/// quoted (`""`, `"1.5 s"`).
fn word(v: &str) -> String {
    if !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        v.to_string()
    } else {
        format!("{:?}", short(v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::Status;
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn timeout_settings_are_read_as_botocore_reads_them() {
        let settings = |env: &[(&str, &str)]| {
            let v = vars(env);
            SdkSettings::from_env(&EnvView::new(&v, None))
        };
        let s = settings(&[]);
        assert_eq!((s.timeout, s.attempts), (Duration::from_secs(1), 1));
        assert_eq!(timeout_check(&s).status, Status::Ok);
        let s = settings(&[
            ("AWS_METADATA_SERVICE_TIMEOUT", "3"),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", " 2 "),
        ]);
        assert_eq!((s.timeout, s.attempts), (Duration::from_secs(3), 2));
        let c = timeout_check(&s);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.value.contains("AWS_METADATA_SERVICE_TIMEOUT=3"),
            "{}",
            c.value
        );
        for bad in [
            ("AWS_METADATA_SERVICE_TIMEOUT", "1.5"),
            ("AWS_METADATA_SERVICE_TIMEOUT", "0"),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "0"),
        ] {
            let s = settings(&[bad]);
            assert_eq!(s.timeout, Duration::from_secs(1));
            assert_eq!(timeout_check(&s).status, Status::Fail, "{bad:?}");
        }
    }
}
