//! The proxy rules of the two SDK families that proxy IMDS, and the check built on them
//! (`sdk.proxy`): would the SDKs here send their IMDS requests to an http(s) proxy?
//!
//! Owns: how botocore (through Python's `urllib`) and the Go SDK (through `httpproxy`) pick the
//! proxy variables (`HTTP_PROXY`, `http_proxy`, `NO_PROXY`, ...) and match the no-proxy list:
//! Python by name and suffix only, Go also by CIDR, and never for loopback. The Rust and Java v2
//! SDKs never proxy IMDS. Does not own: the endpoint the SDKs use (`settings`), or how a URL is
//! redacted for printing (`settings`): a proxy URL is shown without its user information.

use super::model::{Check, CheckId};
use super::settings::{EnvView, SdkSettings, redact_url, resolve_imds_endpoint, short};

/// A proxy-related variable's name and value.
type Var<'a> = (&'static str, &'a str);

/// Python's `urllib.request.getproxies_environment`: the lowercase variable wins, and a
/// lowercase variable set to the empty string removes the uppercase one.
fn python_var<'a>(env: &EnvView<'a>, upper: &'static str, lower: &'static str) -> Option<Var<'a>> {
    match env.raw(lower) {
        Some("") => None,
        Some(v) => Some((lower, v)),
        None => env.get(upper).map(|v| (upper, v)),
    }
}

/// Go's `golang.org/x/net/http/httpproxy.FromEnvironment`: the first non-empty of the
/// uppercase and the lowercase variable.
fn go_var<'a>(env: &EnvView<'a>, upper: &'static str, lower: &'static str) -> Option<Var<'a>> {
    env.get(upper)
        .map(|v| (upper, v))
        .or_else(|| env.get(lower).map(|v| (lower, v)))
}

/// Python's `proxy_bypass_environment(netloc)`: `*`, or an entry equal to the host (with or
/// without port), or a suffix after a dot. No CIDR: botocore's own comment says it does not
/// support IP ranges in no_proxy.
pub fn python_bypasses(no_proxy: &str, host: &str, netloc: &str) -> bool {
    if no_proxy == "*" {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let netloc = netloc.to_ascii_lowercase();
    no_proxy.split(',').any(|name| {
        let name = name.trim().trim_start_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        if host == name || netloc == name {
            return true;
        }
        let dotted = format!(".{name}");
        host.ends_with(&dotted) || netloc.ends_with(&dotted)
    })
}

/// Go's `httpproxy` `useProxy`, negated: loopback and `localhost` never go through a proxy;
/// entries are `*`, CIDRs, IPs (optionally with a port) or domain suffixes.
pub fn go_bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<std::net::IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    let port = port.to_string();
    no_proxy.split(',').any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            return false;
        }
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            return match (net.parse::<std::net::IpAddr>(), bits.parse::<u8>(), ip) {
                (Ok(net), Ok(bits), Some(ip)) => cidr_contains(net, bits, ip),
                _ => false,
            };
        }
        let (ehost, eport) = split_host_port(&entry);
        if eport.is_some_and(|p| p != port) {
            return false;
        }
        if let Ok(eip) = ehost.parse::<std::net::IpAddr>() {
            return ip == Some(eip);
        }
        let ehost = ehost.strip_prefix('*').unwrap_or(ehost);
        if let Some(suffix) = ehost.strip_prefix('.') {
            host.ends_with(&format!(".{suffix}"))
        } else {
            host == ehost || host.ends_with(&format!(".{ehost}"))
        }
    })
}

fn split_host_port(entry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = entry.strip_prefix('[') {
        // Go strips the brackets only together with a port (`net.SplitHostPort`): a bare
        // `[fd00:ec2::254]` is compared as a name and matches nothing.
        return match rest.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (entry, None),
    }
}

fn cidr_contains(net: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr::*;
    match (net, ip) {
        (V4(n), V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (V6(n), V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Whether the SDKs in this environment would send IMDS requests to an http(s) proxy. Judged
/// for the endpoint *they* use ([`resolve_imds_endpoint`] without `--imds.endpoint`, which only
/// says where this tool probes), with the proxy variable of that endpoint's scheme.
pub(super) fn proxy_check(env: &EnvView, sdk: &SdkSettings) -> Check {
    const ID: CheckId = CheckId::SdkProxy;
    let endpoint = resolve_imds_endpoint(None, sdk);
    let url = reqwest::Url::parse(&endpoint)
        .ok()
        .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "169.254.169.254".into());
    let netloc = match url.as_ref().and_then(|u| u.port()) {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let port = url
        .as_ref()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(80);
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // Both families pick the proxy by the request's scheme: IMDS is plain http unless the
    // endpoint setting says https.
    let https = url.as_ref().is_some_and(|u| u.scheme() == "https");
    let (scheme, upper, lower, other_upper, other_lower) = if https {
        (
            "https",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        )
    } else {
        (
            "http",
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
        )
    };

    let py_proxy = python_var(env, upper, lower);
    let go_proxy = go_var(env, upper, lower);
    let py_no = python_var(env, "NO_PROXY", "no_proxy");
    let go_no = go_var(env, "NO_PROXY", "no_proxy");
    let other_only = env.get(other_upper).or(env.get(other_lower)).is_some()
        && py_proxy.is_none()
        && go_proxy.is_none();

    let py_proxied =
        py_proxy.is_some() && !python_bypasses(py_no.map_or("", |v| v.1), &host, &netloc);
    // Go never proxies loopback, whatever NO_PROXY says, so the list is consulted even when empty.
    let go_proxied = go_proxy.is_some() && !go_bypasses(go_no.map_or("", |v| v.1), &host, port);

    let show = |v: Option<Var>| v.map(|(n, val)| format!("{n}={}", redact_url(val)));
    let show_no = |v: Option<Var>| v.map(|(n, val)| format!("{n}={}", short(val)));
    let mut settings: Vec<String> = Vec::new();
    for s in [
        show(py_proxy),
        show(go_proxy),
        show_no(py_no),
        show_no(go_no),
    ]
    .into_iter()
    .flatten()
    {
        if !settings.contains(&s) {
            settings.push(s);
        }
    }

    if py_proxy.is_none() && go_proxy.is_none() {
        return Check::ok(
            ID,
            if other_only {
                let endpoint = redact_url(&endpoint);
                format!(
                    "no {scheme} proxy ({other_upper} is set, but SDKs reach IMDS at {endpoint}, \
                     plain {scheme}, so it does not apply)"
                )
            } else {
                format!("no {scheme} proxy in the environment")
            },
        );
    }
    let settings = settings.join(", ");
    if !py_proxied && !go_proxied {
        return Check::ok(
            ID,
            format!("{settings}: the no-proxy list covers {bare_host}, IMDS goes direct"),
        );
    }
    let who = match (py_proxied, go_proxied) {
        (true, true) => "botocore (boto3, the AWS CLI) and Go SDK clients",
        (true, false) => "botocore (boto3, the AWS CLI) clients",
        _ => "Go SDK clients",
    };
    let requests = if https {
        "IMDS requests"
    } else {
        "IMDS requests, which are plain http,"
    };
    let mut cause = format!(
        "{who} send {requests} to the proxy unless the no-proxy list matches {bare_host}. The \
         proxy cannot reach this instance's link-local IMDS (or answers with its own host's), \
         so SDKs get no credentials (\"Unable to locate credentials\"). The Rust and Java v2 \
         SDKs never proxy IMDS."
    );
    let some_no_proxy = py_no.is_some() || go_no.is_some();
    if some_no_proxy && (py_proxied != go_proxied || py_no.map(|v| v.0) != go_no.map(|v| v.0)) {
        cause.push_str(
            " The two families read the variables differently: botocore prefers no_proxy to \
             NO_PROXY and matches names and suffixes only (a CIDR such as 169.254.0.0/16 does not \
             match); Go prefers NO_PROXY and understands CIDRs.",
        );
    }
    // An IPv6 literal: botocore compares the bracketed form, Go the bare address.
    let entries = if host.starts_with('[') {
        format!("{bare_host},{host}")
    } else {
        bare_host
    };
    // The host comes from the endpoint setting (the environment, a config file): a URL host
    // may hold `$`, `;` or backticks, and an IPv6 literal's brackets are glob characters.
    let entries = crate::untrusted::shell_word(&entries);
    Check::warn(
        ID,
        format!("{settings}: IMDS traffic of {who} goes to the proxy"),
    )
    .cause(cause)
    .fix(format!(
        "Add the IMDS address to both spellings, where the proxy variables are set:\n$ export \
             NO_PROXY={entries},$NO_PROXY no_proxy={entries},$no_proxy"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Status;
    use super::super::sdk::evaluate;
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn python_no_proxy_matching_is_by_name_and_suffix() {
        let host = "169.254.169.254";
        for (no_proxy, want) in [
            ("169.254.169.254", true),
            ("localhost, 169.254.169.254", true),
            (".169.254", true),
            ("*", true),
            ("169.254.0.0/16", false),
            ("169.254.169.25", false),
            ("example.com", false),
            ("", false),
        ] {
            assert_eq!(python_bypasses(no_proxy, host, host), want, "{no_proxy:?}");
        }
    }

    #[test]
    fn go_no_proxy_matching_understands_cidrs_and_loopback() {
        for (no_proxy, host, port, want) in [
            ("169.254.169.254", "169.254.169.254", 80, true),
            ("169.254.0.0/16", "169.254.169.254", 80, true),
            ("10.0.0.0/8", "169.254.169.254", 80, false),
            ("169.254.169.254:8080", "169.254.169.254", 80, false),
            ("169.254.169.254:80", "169.254.169.254", 80, true),
            ("", "127.0.0.1", 1338, true),
            (".internal", "imds.internal", 80, true),
            ("internal", "internal", 80, true),
            ("*", "169.254.169.254", 80, true),
            ("fd00:ec2::254", "[fd00:ec2::254]", 80, true),
            ("[fd00:ec2::254]:80", "[fd00:ec2::254]", 80, true),
            // Without a port Go keeps the brackets and compares a name: no match.
            ("[fd00:ec2::254]", "[fd00:ec2::254]", 80, false),
        ] {
            assert_eq!(
                go_bypasses(no_proxy, host, port),
                want,
                "{no_proxy:?} {host}"
            );
        }
    }

    #[test]
    fn proxy_variables_are_read_as_each_sdk_family_reads_them() {
        let check = |env: &[(&str, &str)]| {
            let v = vars(env);
            let view = EnvView::new(&v, None);
            proxy_check(&view, &SdkSettings::from_env(&view))
        };
        assert_eq!(check(&[]).status, Status::Ok);
        let c = check(&[("HTTPS_PROXY", "http://p:1")]);
        assert_eq!(c.status, Status::Ok);
        assert!(c.value.contains("does not apply"), "{}", c.value);
        let c = check(&[("HTTP_PROXY", "http://p:1")]);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.value.contains("botocore") && c.value.contains("Go"),
            "{}",
            c.value
        );
        assert!(c.fix.unwrap().contains("NO_PROXY=169.254.169.254"));
        let c = check(&[
            ("HTTP_PROXY", "http://p:1"),
            ("NO_PROXY", "169.254.169.254"),
        ]);
        assert_eq!(c.status, Status::Ok, "{}", c.value);
        // A CIDR: Go bypasses, botocore does not.
        let c = check(&[("http_proxy", "http://p:1"), ("no_proxy", "169.254.0.0/16")]);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.value.contains("botocore") && !c.value.contains("Go"),
            "{}",
            c.value
        );
        // botocore prefers the lowercase variable; Go the uppercase one.
        let c = check(&[
            ("HTTP_PROXY", "http://p:1"),
            ("NO_PROXY", "169.254.169.254"),
            ("no_proxy", "localhost"),
        ]);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.value.contains("botocore") && !c.value.contains("Go"),
            "{}",
            c.value
        );
        // An empty lowercase variable unsets the proxy for Python only.
        let c = check(&[("HTTP_PROXY", "http://p:1"), ("http_proxy", "")]);
        assert!(
            !c.value.contains("botocore") && c.value.contains("Go"),
            "{}",
            c.value
        );
    }

    /// The proxy check as `evaluate` runs it, after probing `probed` (given as --imds.endpoint).
    fn proxy_after_probing(probed: &str, env: &[(&str, &str)]) -> Check {
        let v = vars(env);
        let view = EnvView::new(&v, None);
        let endpoint = resolve_imds_endpoint(Some(probed), &SdkSettings::from_env(&view));
        assert_eq!(endpoint, probed);
        evaluate(
            &view,
            Some(probed),
            Some(&endpoint),
            &SdkSettings::from_env(&view),
        )
        .into_iter()
        .find(|c| c.id == CheckId::SdkProxy)
        .unwrap()
    }

    fn text(c: &Check) -> String {
        format!(
            "{} {} {}",
            c.value,
            c.cause.as_deref().unwrap_or(""),
            c.fix.as_deref().unwrap_or("")
        )
    }

    const LOOPBACK: &str = "http://127.0.0.1:1338";

    #[test]
    fn the_proxy_check_ignores_a_loopback_probe_when_no_proxy_covers_imds() {
        let c = proxy_after_probing(
            LOOPBACK,
            &[
                ("HTTP_PROXY", "http://u:pw@p:3128"),
                ("NO_PROXY", "169.254.169.254"),
            ],
        );
        assert_eq!(c.status, Status::Ok, "{}", text(&c));
        assert!(c.value.contains("covers 169.254.169.254"), "{}", c.value);
        assert!(!text(&c).contains("127.0.0.1"), "{}", text(&c));
        assert!(!text(&c).contains("pw"), "{}", text(&c));
    }

    #[test]
    fn the_proxy_check_warns_for_169_254_169_254_whatever_the_probe() {
        let c = proxy_after_probing(LOOPBACK, &[("HTTP_PROXY", "http://u:pw@p:3128")]);
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        // Both families: Go would have bypassed the loopback probe, but SDKs do not use it.
        assert!(
            c.value.contains("botocore") && c.value.contains("Go"),
            "{}",
            c.value
        );
        assert!(
            c.cause
                .as_deref()
                .unwrap()
                .contains("matches 169.254.169.254"),
            "{}",
            text(&c)
        );
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("NO_PROXY=169.254.169.254,"),
            "{}",
            text(&c)
        );
        assert!(!text(&c).contains("127.0.0.1"), "{}", text(&c));
        assert!(c.value.contains("http://***@p:3128"), "{}", c.value);
        assert!(!text(&c).contains("pw"), "{}", text(&c));
    }

    #[test]
    fn the_proxy_check_judges_the_endpoint_override() {
        let endpoint = (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://imds.internal:8080",
        );
        let proxy = ("HTTP_PROXY", "http://p:3128");
        // Covering 169.254.169.254 is not enough: SDKs go to the override.
        let c = proxy_after_probing(
            LOOPBACK,
            &[endpoint, proxy, ("NO_PROXY", "169.254.169.254")],
        );
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("NO_PROXY=imds.internal,"),
            "{}",
            text(&c)
        );
        let c = proxy_after_probing(LOOPBACK, &[endpoint, proxy, ("NO_PROXY", "imds.internal")]);
        assert_eq!(c.status, Status::Ok, "{}", text(&c));
        assert!(c.value.contains("covers imds.internal"), "{}", c.value);
        // A loopback override is never proxied by Go, and botocore follows no_proxy.
        let c = proxy_after_probing(
            LOOPBACK,
            &[
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
                proxy,
            ],
        );
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        assert!(
            c.value.contains("botocore") && !c.value.contains("Go"),
            "{}",
            c.value
        );
    }

    #[test]
    fn the_proxy_check_uses_the_proxy_of_the_endpoint_scheme() {
        let endpoint = ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "https://imds.internal");
        let c = proxy_after_probing(LOOPBACK, &[endpoint, ("HTTP_PROXY", "http://p:3128")]);
        assert_eq!(c.status, Status::Ok, "{}", text(&c));
        assert!(
            c.value
                .contains("HTTP_PROXY is set, but SDKs reach IMDS at https://imds.internal"),
            "{}",
            c.value
        );
        let c = proxy_after_probing(LOOPBACK, &[endpoint, ("https_proxy", "http://p:3128")]);
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        assert!(c.value.contains("https_proxy="), "{}", c.value);
        // The default endpoint is plain http: HTTPS_PROXY alone does not apply, and says why.
        let c = proxy_after_probing(LOOPBACK, &[("HTTPS_PROXY", "http://u:pw@p:3128")]);
        assert_eq!(c.status, Status::Ok, "{}", text(&c));
        assert_eq!(
            c.value,
            "no http proxy (HTTPS_PROXY is set, but SDKs reach IMDS at http://169.254.169.254, \
             plain http, so it does not apply)"
        );
    }

    #[test]
    fn the_proxy_check_follows_the_ipv6_endpoint_mode() {
        let mode = ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6");
        let proxy = ("HTTP_PROXY", "http://p:3128");
        let c = proxy_after_probing(LOOPBACK, &[mode, proxy]);
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        // botocore compares "[fd00:ec2::254]", Go "fd00:ec2::254": the fix names both, quoted
        // (brackets are glob characters to a shell).
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("NO_PROXY='fd00:ec2::254,[fd00:ec2::254]',$NO_PROXY"),
            "{}",
            text(&c)
        );
        let c = proxy_after_probing(
            LOOPBACK,
            &[mode, proxy, ("NO_PROXY", "fd00:ec2::254,[fd00:ec2::254]")],
        );
        assert_eq!(c.status, Status::Ok, "{}", text(&c));
        let c = proxy_after_probing(LOOPBACK, &[mode, proxy, ("NO_PROXY", "fd00:ec2::254")]);
        assert_eq!(c.status, Status::Warn, "{}", text(&c));
        assert!(
            c.value.contains("botocore") && !c.value.contains("Go"),
            "{}",
            c.value
        );
    }
}
