//! The SDK environment: what an AWS SDK started in this process would make of its environment
//! variables and shared config files, as far as instance credentials are concerned.
//!
//! Owns: the IMDS switches (`AWS_EC2_METADATA_DISABLED`, `AWS_EC2_METADATA_V1_DISABLED`), the
//! endpoint overrides, botocore's IMDS timeout and attempts, the proxy rules of the two SDK
//! families that proxy IMDS (botocore through Python's `urllib`, and Go), and the credential
//! provider chain: which source an SDK uses before the instance profile.
//!
//! Pure: the variables and the home directory are arguments ([`EnvView`]); only the shared
//! config and credentials files are read, from the paths they name. Secrets never travel: the
//! INI reader keeps key *names* (and `credential_source`, a closed set of words), never values;
//! variables holding secrets are reported by name only; a URL (a proxy, an IMDS endpoint) loses its
//! user information.
//!
//! The chain order is botocore's (`botocore/credentials.py`, `create_credential_resolver`):
//! environment, assume-role profile, web identity, SSO, shared credentials file,
//! `credential_process`, config file keys, container credentials, instance profile. The other
//! SDKs also start with the environment and end with the container and the instance profile;
//! they differ only in the order of the profile-based sources in between.
//!
//! The profile is botocore's too (`botocore/configprovider.py`, `'profile': (None,
//! ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE'], None, None)`): the first of the two variables that is
//! set at all, even to the empty string, else `default`. The AWS CLI v2 (its bundled botocore
//! lists `AWS_PROFILE` first) and the other SDKs prefer `AWS_PROFILE`; when the two disagree the
//! check says so. Web identity follows `AssumeRoleWithWebIdentityProvider._get_config`: the token
//! file and the role ARN are each read from the environment if the variable is set (even empty),
//! else from the profile, so the two may come from different places (EKS IRSA sets both
//! variables). A profile `role_arn` without `web_identity_token_file` is claimed first by the
//! assume-role provider, whatever the environment says.
//!
//! The IMDS settings are botocore's too (`configprovider.py`, `BOTOCORE_DEFAUT_SESSION_VARIABLES`:
//! `metadata_service_timeout`, `metadata_service_num_attempts`, `ec2_metadata_service_endpoint`,
//! `ec2_metadata_service_endpoint_mode`, `ec2_metadata_v1_disabled`, each built by
//! `ConfigChainFactory.create_config_chain` as environment variable, then the active profile's key,
//! then the default; read by `credentials.py`, `create_credential_resolver`, into the
//! `InstanceMetadataFetcher`). A variable counts when it is set at all, even to the empty string
//! (`EnvironmentProvider`: `name in os.environ`), and then hides the profile's key; the profile's
//! value comes from the credentials file if it has the key, else the config file
//! (`Session.full_config` merges the credentials file's profiles over the config's).
//! `AWS_EC2_METADATA_DISABLED` has no config-file key: `IMDSFetcher` reads only the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, CheckId};
const DEFAULT_IMDS_ENDPOINT: &str = crate::probe::imds::ImdsConfig::DEFAULT_ENDPOINT;

/// The SDKs' default IMDS request timeout (botocore, Rust, Java v2: 1 s).
pub const DEFAULT_SDK_TIMEOUT: Duration = Duration::from_secs(1);
/// botocore's default number of IMDS attempts.
pub const DEFAULT_SDK_ATTEMPTS: u32 = 1;
/// The IPv6 IMDS endpoint (Nitro instances with `HttpProtocolIpv6=enabled`).
pub const IMDS_IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";

/// The environment variables and home directory an SDK in this process would see.
#[derive(Debug, Clone, Copy)]
pub struct EnvView<'a> {
    vars: &'a BTreeMap<String, String>,
    home: Option<&'a Path>,
}

impl<'a> EnvView<'a> {
    pub fn new(vars: &'a BTreeMap<String, String>, home: Option<&'a Path>) -> Self {
        Self { vars, home }
    }

    /// A variable that is set, empty or not.
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A variable that is set and not empty: the SDKs treat an empty variable as unset.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// A path from a variable, with `~/` expanded as botocore does.
    fn path(&self, value: &str) -> PathBuf {
        match (value.strip_prefix("~/"), self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(value),
        }
    }
}

/// The IMDS endpoint an SDK would use: `--imds.endpoint` if given, else the endpoint setting
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the profile's `ec2_metadata_service_endpoint`)
/// unless empty, else the one the endpoint mode selects (IPv4 unless `IPv6`).
pub fn resolve_imds_endpoint(flag: Option<&str>, sdk: &SdkSettings) -> String {
    if let Some(flag) = flag.map(str::trim).filter(|f| !f.is_empty()) {
        return flag.to_string();
    }
    // botocore: `elif custom_metadata_endpoint:`, so an empty value selects by mode.
    if let Some(e) = sdk.endpoint.value.as_deref().filter(|e| !e.is_empty()) {
        return e.trim().to_string();
    }
    match sdk.endpoint_mode.value.as_deref() {
        Some(m) if m.eq_ignore_ascii_case("ipv6") => IMDS_IPV6_ENDPOINT.to_string(),
        _ => DEFAULT_IMDS_ENDPOINT.to_string(),
    }
}

/// Why this check cannot probe `endpoint` (an endpoint setting's value the exporter's prober
/// refuses: it speaks plain `http://` to a base URL without a path).
pub fn why_not_probed(endpoint: &str) -> &'static str {
    match reqwest::Url::parse(endpoint.trim().trim_end_matches('/')) {
        Err(_) => "it is not a URL",
        Ok(u) if u.host_str().is_none_or(str::is_empty) => "it names no host",
        Ok(u) if u.scheme() == "https" => "this check speaks plain http:// only, not https://",
        Ok(u) if u.scheme() != "http" => "it is not an http:// URL",
        Ok(u) if u.path() != "/" => "this check probes only a base URL without a path",
        Ok(_) => "the exporter's prober refuses it",
    }
}

/// The IMDS settings botocore reads from the environment, then the active profile: (variable,
/// config-file key).
const TIMEOUT: (&str, &str) = ("AWS_METADATA_SERVICE_TIMEOUT", "metadata_service_timeout");
const ATTEMPTS: (&str, &str) = (
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
    "metadata_service_num_attempts",
);
const ENDPOINT: (&str, &str) = (
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "ec2_metadata_service_endpoint",
);
const ENDPOINT_MODE: (&str, &str) = (
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "ec2_metadata_service_endpoint_mode",
);
const V1_DISABLED: (&str, &str) = ("AWS_EC2_METADATA_V1_DISABLED", "ec2_metadata_v1_disabled");
/// The config-file keys whose values the INI reader keeps (none of them is a secret; an
/// endpoint's user information is redacted whenever it is shown).
const IMDS_KEYS: [&str; 5] = [
    TIMEOUT.1,
    ATTEMPTS.1,
    ENDPOINT.1,
    ENDPOINT_MODE.1,
    V1_DISABLED.1,
];

/// Where botocore found one of its IMDS settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Neither the variable nor the profile: botocore's default.
    Default,
    /// The variable, set (possibly to the empty string).
    Env,
    /// The active profile's key: `profile [NAME] in PATH`.
    Profile(String),
}

/// One IMDS setting as botocore resolves it: the variable if it is set at all, else the active
/// profile's key, else the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub var: &'static str,
    pub key: &'static str,
    /// The text botocore reads, before conversion; `None` for the default.
    pub value: Option<String>,
    pub source: Source,
    /// The variable is set and hides the profile's key: (the profile's value, where).
    pub shadowed: Option<(String, String)>,
}

impl Setting {
    fn unset((var, key): (&'static str, &'static str)) -> Self {
        Self {
            var,
            key,
            value: None,
            source: Source::Default,
            shadowed: None,
        }
    }

    fn resolve(env: &EnvView, files: &SharedFiles, name: (&'static str, &'static str)) -> Self {
        let mut s = Self::unset(name);
        let in_profile = files.profile_value(s.key);
        match env.raw(s.var) {
            Some(v) => {
                s.value = Some(v.to_string());
                s.source = Source::Env;
                s.shadowed = in_profile;
            }
            None => {
                if let Some((v, at)) = in_profile {
                    s.value = Some(v);
                    s.source = Source::Profile(at);
                }
            }
        }
        s
    }

    /// Whether the active profile set it.
    pub fn from_profile(&self) -> bool {
        matches!(self.source, Source::Profile(_))
    }

    /// The setting with its value (given as shown): `AWS_X=3`, or `key=3 from profile [p] in
    /// PATH`.
    pub fn named(&self, shown: &str) -> String {
        match &self.source {
            Source::Profile(at) => format!("{}={shown} from {at}", self.key),
            _ => format!("{}={shown}", self.var),
        }
    }

    /// The setting's name and place: `AWS_X`, or `key from profile [p] in PATH`.
    pub fn origin(&self) -> String {
        match &self.source {
            Source::Profile(at) => format!("{} from {at}", self.key),
            _ => self.var.to_string(),
        }
    }

    /// Said after the value when the variable hides the profile's key (`show` formats values).
    fn shadow_note(&self, show: impl Fn(&str) -> String) -> String {
        match (&self.shadowed, self.value.as_deref()) {
            (Some((v, at)), Some("")) => {
                // The timeout and attempts are botocore's own; the other keys are shared by SDKs.
                let others = if [TIMEOUT.1, ATTEMPTS.1].contains(&self.key) {
                    ""
                } else {
                    "; SDKs that treat an empty variable as unset use the profile's"
                };
                format!(
                    " (set but empty: botocore still takes it and ignores {}={} from {at}{others})",
                    self.key,
                    show(v)
                )
            }
            (Some((v, at)), _) => format!(" (overrides {}={} from {at})", self.key, show(v)),
            _ => String::new(),
        }
    }

    /// How to take the setting away where it is set.
    fn removal(&self) -> String {
        match &self.source {
            Source::Profile(at) => format!("Delete {} from {at}.", self.key),
            _ => format!("$ unset {}", self.var),
        }
    }
}

/// The place several settings share, when they all come from the same profile and file.
fn common_profile<'a>(settings: impl IntoIterator<Item = &'a Setting>) -> Option<&'a str> {
    let mut places = settings.into_iter().map(|s| match &s.source {
        Source::Profile(at) => Some(at.as_str()),
        _ => None,
    });
    let first = places.next()??;
    places.all(|p| p == Some(first)).then_some(first)
}

/// Settings with their values, `sep`-separated, naming a profile they share once:
/// `key=1, key2=2 from profile [p] in PATH`.
pub fn list_named(items: &[(&Setting, String)], sep: &str) -> String {
    match common_profile(items.iter().map(|(s, _)| *s)) {
        Some(at) if items.len() > 1 => {
            let keys: Vec<String> = items
                .iter()
                .map(|(s, v)| format!("{}={v}", s.key))
                .collect();
            format!("{} from {at}", keys.join(sep))
        }
        _ => {
            let named: Vec<String> = items.iter().map(|(s, v)| s.named(v)).collect();
            named.join(sep)
        }
    }
}

/// Settings' names and places, joined by "and", naming a profile they share once.
pub fn list_origins(items: &[&Setting]) -> String {
    match common_profile(items.iter().copied()) {
        Some(at) if items.len() > 1 => {
            let keys: Vec<&str> = items.iter().map(|s| s.key).collect();
            format!("{} from {at}", keys.join(" and "))
        }
        _ => {
            let origins: Vec<String> = items.iter().map(|s| s.origin()).collect();
            origins.join(" and ")
        }
    }
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

/// A numeric setting as botocore reads it: `int(value)`.
#[derive(Debug, Clone, PartialEq)]
enum IntSetting {
    Unset,
    Valid(i64),
    /// Not an integer (the empty string included): botocore's `int()` raises `ValueError` when a
    /// client is created.
    Invalid(String),
}

fn int_setting(s: &Setting) -> IntSetting {
    match s.value.as_deref() {
        None => IntSetting::Unset,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => IntSetting::Valid(n),
            // The value is a number the user typed, not a secret; cap its length anyway.
            Err(_) => IntSetting::Invalid(v.chars().take(32).collect()),
        },
    }
}

/// The SDK settings other checks depend on, resolved as botocore resolves them (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SdkSettings {
    /// The per-request IMDS timeout botocore would use (1 s unless overridden validly).
    pub timeout: Duration,
    /// botocore's IMDS attempts.
    pub attempts: u32,
    /// `AWS_EC2_METADATA_DISABLED=true` (the environment only).
    pub imds_disabled: bool,
    /// `ec2_metadata_v1_disabled` is true: no fallback to token-less requests.
    pub v1_disabled: bool,
    /// The profile botocore reads the settings from.
    pub profile: String,
    pub timeout_from: Setting,
    pub attempts_from: Setting,
    pub endpoint: Setting,
    pub endpoint_mode: Setting,
    pub v1: Setting,
    timeout_setting: IntSetting,
    attempts_setting: IntSetting,
}

impl SdkSettings {
    /// The settings from the variables and, for what they leave unset, the active profile in the
    /// shared config and credentials files.
    pub fn from_env(env: &EnvView) -> Self {
        let files = SharedFiles::load(env);
        let timeout_from = Setting::resolve(env, &files, TIMEOUT);
        let attempts_from = Setting::resolve(env, &files, ATTEMPTS);
        let timeout_setting = int_setting(&timeout_from);
        let attempts_setting = int_setting(&attempts_from);
        let timeout = match timeout_setting {
            IntSetting::Valid(n) if n >= 1 => Duration::from_secs(n as u64),
            _ => DEFAULT_SDK_TIMEOUT,
        };
        let attempts = match attempts_setting {
            IntSetting::Valid(n) if n >= 1 => n.min(u32::MAX as i64) as u32,
            _ => DEFAULT_SDK_ATTEMPTS,
        };
        let v1 = Setting::resolve(env, &files, V1_DISABLED);
        Self {
            timeout,
            attempts,
            imds_disabled: env.is_true("AWS_EC2_METADATA_DISABLED"),
            // `utils.ensure_boolean`: `val.lower() == 'true'`.
            v1_disabled: v1
                .value
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            profile: files.profile.clone(),
            timeout_from,
            attempts_from,
            endpoint: Setting::resolve(env, &files, ENDPOINT),
            endpoint_mode: Setting::resolve(env, &files, ENDPOINT_MODE),
            v1,
            timeout_setting,
            attempts_setting,
        }
    }

    /// What set [`Self::timeout`] and [`Self::attempts`], those that something set validly:
    /// `AWS_METADATA_SERVICE_TIMEOUT=3`, or `metadata_service_timeout=3 and
    /// metadata_service_num_attempts=2 from profile [p] in PATH`.
    pub fn timing_set_by(&self) -> Option<String> {
        let items: Vec<(&Setting, String)> = [
            (&self.timeout_from, &self.timeout_setting),
            (&self.attempts_from, &self.attempts_setting),
        ]
        .into_iter()
        .filter_map(|(from, s)| match s {
            IntSetting::Valid(n) if *n >= 1 => Some((from, n.to_string())),
            _ => None,
        })
        .collect();
        (!items.is_empty()).then(|| list_named(&items, " and "))
    }

    /// What set [`Self::attempts`], when something did validly.
    pub fn attempts_set_by(&self) -> Option<String> {
        match self.attempts_setting {
            IntSetting::Valid(n) if n >= 1 => Some(self.attempts_from.named(&n.to_string())),
            _ => None,
        }
    }

    /// Where the attempts come from, for people: what set them, or that nothing did.
    pub fn attempts_origin(&self) -> String {
        match (self.attempts_set_by(), &self.attempts_setting) {
            (Some(by), _) => by,
            (None, IntSetting::Unset) => format!(
                "{} not set, nor {} in profile [{}]",
                ATTEMPTS.0,
                ATTEMPTS.1,
                profile_name(&self.profile)
            ),
            (None, _) => format!(
                "{} is not usable, see sdk.imds_timeout",
                self.attempts_from.origin()
            ),
        }
    }

    /// What turned the IMDSv1 fallback off: `AWS_EC2_METADATA_V1_DISABLED=true` or
    /// `ec2_metadata_v1_disabled=true from profile [p] in PATH`.
    pub fn v1_disabled_by(&self) -> String {
        self.v1
            .named(&short(self.v1.value.as_deref().unwrap_or("")))
    }

    /// botocore's attempts for people: `1 attempt`, `3 attempts`.
    pub fn attempts_text(&self) -> String {
        match self.attempts {
            1 => "1 attempt".into(),
            n => format!("{n} attempts"),
        }
    }
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_SDK_TIMEOUT,
            attempts: DEFAULT_SDK_ATTEMPTS,
            imds_disabled: false,
            v1_disabled: false,
            profile: "default".into(),
            timeout_from: Setting::unset(TIMEOUT),
            attempts_from: Setting::unset(ATTEMPTS),
            endpoint: Setting::unset(ENDPOINT),
            endpoint_mode: Setting::unset(ENDPOINT_MODE),
            v1: Setting::unset(V1_DISABLED),
            timeout_setting: IntSetting::Unset,
            attempts_setting: IntSetting::Unset,
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Proxies
// ---------------------------------------------------------------------------------------------

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

/// A URL (a proxy, an IMDS endpoint) fit to print: user information (`user:password@`)
/// replaced by `***@`. Everything after the scheme up to the last `@` goes, so a password with
/// an unescaped `/` or `@` (not a valid URL, but a value someone typed) is not shown either.
pub fn redact_url(value: &str) -> String {
    short(&crate::probe::imds::redacted_endpoint(value))
}

/// Whether the SDKs in this environment would send IMDS requests to an http(s) proxy. Judged
/// for the endpoint *they* use ([`resolve_imds_endpoint`] without `--imds.endpoint`, which only
/// says where this tool probes), with the proxy variable of that endpoint's scheme.
fn proxy_check(env: &EnvView, sdk: &SdkSettings) -> Check {
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

// ---------------------------------------------------------------------------------------------
// The credential provider chain
// ---------------------------------------------------------------------------------------------

/// The places an SDK looks for credentials, in botocore's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    AssumeRoleProfile,
    WebIdentity,
    Sso,
    SharedCredentialsFile,
    CredentialProcess,
    ConfigFile,
    Container,
    InstanceProfile,
}

impl CredentialSource {
    pub fn describe(self) -> &'static str {
        match self {
            CredentialSource::Environment => "environment variables",
            CredentialSource::AssumeRoleProfile => "an assume-role profile",
            CredentialSource::WebIdentity => "web identity (IRSA)",
            CredentialSource::Sso => "an SSO profile",
            CredentialSource::SharedCredentialsFile => "the shared credentials file",
            CredentialSource::CredentialProcess => "a credential_process",
            CredentialSource::ConfigFile => "keys in the config file",
            CredentialSource::Container => "container credentials (ECS, EKS Pod Identity)",
            CredentialSource::InstanceProfile => "the instance profile (IMDS)",
        }
    }
}

/// One source found, with where (names and paths only).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub source: CredentialSource,
    pub detail: String,
}

/// A configuration on which botocore raises instead of returning credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    /// How many sources come before it in the chain: botocore raises only if none of them
    /// returns credentials, so only `after == 0` fails clients (0 also for what is raised before
    /// the chain starts, such as `ProfileNotFound`).
    pub after: usize,
    pub value: String,
    pub cause: String,
    pub fix: String,
}

/// What the chain looks like here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chain {
    /// Sources present, in chain order.
    pub found: Vec<Found>,
    /// Configurations botocore raises on, in chain order.
    pub broken: Vec<Broken>,
    /// Files that exist but could not be read (the SDK, running as another user, may).
    pub unreadable: Vec<String>,
    /// The profile botocore uses.
    pub profile: String,
    /// `AWS_DEFAULT_PROFILE` and `AWS_PROFILE` disagree: (value, cause).
    pub profile_conflict: Option<(String, String)>,
}

impl Chain {
    /// What botocore raises before any source answers, if anything.
    pub fn blocked(&self) -> Option<&Broken> {
        self.broken.iter().find(|b| b.after == 0)
    }

    /// The source botocore takes credentials from: the first one found, unless it raises first.
    pub fn first_source(&self) -> Option<&Found> {
        match self.blocked() {
            Some(_) => None,
            None => self.found.first(),
        }
    }

    fn push_broken(&mut self, value: String, cause: String, fix: String) {
        self.broken.push(Broken {
            after: self.found.len(),
            value,
            cause,
            fix,
        });
    }
}

/// One profile section: key names with a non-empty value, `credential_source` (a closed set of
/// words, safe to print), and the values of the IMDS settings ([`IMDS_KEYS`], none a secret;
/// kept even when empty, as configparser returns `''` for `key =`). No other value is kept.
#[derive(Debug, Clone, Default, PartialEq)]
struct Section {
    keys: BTreeSet<String>,
    credential_source: Option<String>,
    imds: BTreeMap<String, String>,
}

impl Section {
    fn has(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
}

/// Parses an AWS shared config (`config_style`: `[default]`, `[profile NAME]`) or credentials
/// file (`[NAME]`) into sections. Indented lines (nested settings) and comments are skipped.
fn parse_ini(text: &str, config_style: bool) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            current = if config_style {
                if name == "default" {
                    Some("default".into())
                } else {
                    name.strip_prefix("profile ").map(|p| p.trim().to_string())
                }
            } else {
                Some(name.to_string())
            };
            if let Some(c) = &current {
                sections.entry(c.clone()).or_default();
            }
            continue;
        }
        // configparser splits at the first `=` or `:`.
        let (Some(section), Some((key, value))) = (&current, line.split_once(['=', ':'])) else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if IMDS_KEYS.contains(&key.as_str()) {
            let s = sections.entry(section.clone()).or_default();
            s.imds
                .insert(key.clone(), value.chars().take(512).collect());
        }
        if value.is_empty() {
            continue;
        }
        let s = sections.entry(section.clone()).or_default();
        if key == "credential_source"
            && value.len() <= 32
            && value.chars().all(|c| c.is_ascii_alphanumeric())
        {
            s.credential_source = Some(value.to_string());
        }
        s.keys.insert(key);
    }
    sections
}

enum FileState {
    Missing,
    Unreadable(String),
    Parsed(BTreeMap<String, Section>),
}

fn load(path: &Path, config_style: bool) -> FileState {
    match std::fs::read_to_string(path) {
        Ok(text) => FileState::Parsed(parse_ini(&text, config_style)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.kind().to_string()),
    }
}

/// A profile name fit to print: `""` for the empty one.
fn profile_name(p: &str) -> String {
    if p.is_empty() {
        "\"\"".into()
    } else {
        short(p)
    }
}

/// Where a web identity setting comes from (`AssumeRoleWithWebIdentityProvider._get_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    /// The variable is set and not empty.
    Env,
    /// The variable is set but empty: botocore takes it as the value and never reads the profile.
    EnvEmpty,
    /// The variable is unset and the profile has the key.
    Profile,
    Nowhere,
}

fn web_identity_origin(env: &EnvView, var: &str, section: &Section, key: &str) -> Origin {
    match env.raw(var) {
        Some("") => Origin::EnvEmpty,
        Some(_) => Origin::Env,
        None if section.has(key) => Origin::Profile,
        None => Origin::Nowhere,
    }
}

/// The shared config and credentials files as botocore finds them, and the profile it reads.
struct SharedFiles {
    /// The variable that chose the profile, if one is set (even empty), and its value.
    explicit: Option<(&'static str, String)>,
    /// The profile: the explicit one if not empty, else `default`.
    profile: String,
    /// The file's path, or what to print for a file there is not.
    creds_path: Result<PathBuf, String>,
    config_path: Result<PathBuf, String>,
    creds: Option<BTreeMap<String, Section>>,
    config: Option<BTreeMap<String, Section>>,
    /// Files that exist but could not be read.
    unreadable: Vec<String>,
}

impl SharedFiles {
    fn load(env: &EnvView) -> Self {
        // botocore: 'profile': (None, ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE'], None, None), read
        // by EnvironmentProvider (`name in os.environ`): the first variable set at all wins,
        // even empty.
        let explicit = env
            .raw("AWS_DEFAULT_PROFILE")
            .map(|p| ("AWS_DEFAULT_PROFILE", p.to_string()))
            .or_else(|| {
                env.raw("AWS_PROFILE")
                    .map(|p| ("AWS_PROFILE", p.to_string()))
            });
        let profile = match &explicit {
            Some((_, p)) if !p.is_empty() => p.clone(),
            _ => "default".to_string(),
        };
        // 'config_file': (None, 'AWS_CONFIG_FILE', '~/.aws/config', None), and the same for
        // AWS_SHARED_CREDENTIALS_FILE: a variable set to the empty string names no file at all
        // (`os.path.isfile('')` is false), it does not fall back to the default.
        let path = |var: &str, default: &str| match env.raw(var) {
            Some("") => Err(format!("<no file: {var} is empty>")),
            Some(p) => Ok(env.path(p)),
            None => env
                .home
                .map(|h| h.join(default))
                .ok_or_else(|| "<no home directory>".to_string()),
        };
        let creds_path = path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let config_path = path("AWS_CONFIG_FILE", ".aws/config");
        let mut unreadable = Vec::new();
        let mut read = |path: &Result<PathBuf, String>, config_style: bool| match path {
            Err(_) => None,
            Ok(p) => match load(p, config_style) {
                FileState::Missing => None,
                FileState::Unreadable(why) => {
                    unreadable.push(format!("{} ({why})", p.display()));
                    None
                }
                FileState::Parsed(s) => Some(s),
            },
        };
        let creds = read(&creds_path, false);
        let config = read(&config_path, true);
        Self {
            explicit,
            profile,
            creds_path,
            config_path,
            creds,
            config,
            unreadable,
        }
    }

    fn in_creds(&self) -> Option<&Section> {
        self.creds.as_ref().and_then(|c| c.get(&self.profile))
    }

    fn in_config(&self) -> Option<&Section> {
        self.config.as_ref().and_then(|c| c.get(&self.profile))
    }

    /// The active profile's value of an IMDS key and where it is (`profile [p] in PATH`): the
    /// credentials file's over the config file's, as `Session.full_config` merges them. None for
    /// a profile botocore cannot load (an empty name: `ProfileNotFound`, see the chain).
    fn profile_value(&self, key: &str) -> Option<(String, String)> {
        if self.explicit.as_ref().is_some_and(|(_, p)| p.is_empty()) {
            return None;
        }
        [
            (self.in_creds(), &self.creds_path),
            (self.in_config(), &self.config_path),
        ]
        .into_iter()
        .find_map(|(section, path)| {
            let value = section?.imds.get(key)?.clone();
            let path = path.as_ref().ok()?;
            Some((
                value,
                format!(
                    "profile [{}] in {}",
                    profile_name(&self.profile),
                    path.display()
                ),
            ))
        })
    }
}

/// Works out which credential sources are configured, in chain order.
pub fn credential_chain(env: &EnvView, imds_disabled: bool) -> Chain {
    let mut chain = Chain::default();
    let files = SharedFiles::load(env);
    let default_var = env.raw("AWS_DEFAULT_PROFILE");
    let profile_var = env.raw("AWS_PROFILE");
    let explicit_profile = files.explicit.as_ref().map(|(v, p)| (*v, p.as_str()));
    if let (Some(d), Some(p)) = (default_var, profile_var)
        && d != p
    {
        let (d, p) = (profile_name(d), profile_name(p));
        chain.profile_conflict = Some((
            format!("AWS_DEFAULT_PROFILE={d} and AWS_PROFILE={p} disagree"),
            format!(
                "botocore (boto3, the AWS CLI v1) reads AWS_DEFAULT_PROFILE first and uses \
                 profile {d}, which this check follows; the AWS CLI v2 and the other SDKs prefer \
                 AWS_PROFILE and use profile {p}: clients in this environment do not agree on \
                 their credentials."
            ),
        ));
    }
    let profile = files.profile.clone();
    chain.profile = profile.clone();
    chain.unreadable = files.unreadable.clone();
    let (creds_path, config_path) = (&files.creds_path, &files.config_path);
    let empty = Section::default();
    let in_creds = files.in_creds();
    let in_config = files.in_config();
    let creds_section = in_creds.unwrap_or(&empty);
    let config_section = in_config.unwrap_or(&empty);
    // botocore merges the credentials file's profiles into the config's.
    let merged = Section {
        keys: creds_section
            .keys
            .union(&config_section.keys)
            .cloned()
            .collect(),
        credential_source: config_section
            .credential_source
            .clone()
            .or_else(|| creds_section.credential_source.clone()),
        imds: BTreeMap::new(),
    };
    let display = |p: &Result<PathBuf, String>| match p {
        Ok(p) => p.display().to_string(),
        Err(none) => none.clone(),
    };
    let profile_ref = format!("profile [{}]", profile_name(&profile));

    // Raised when the session loads the profile, before any provider runs.
    match explicit_profile {
        Some((var, "")) => chain.push_broken(
            format!("{var} is set but empty"),
            format!(
                "botocore takes a set variable as the profile name even when it is empty: it \
                 looks for a profile named \"\" and raises ProfileNotFound whenever a client is \
                 created, before any credential source is tried (the AWS CLI v2 and the other \
                 SDKs treat an empty {var} as unset)."
            ),
            format!(
                "Unset the variable where it is set, or give it a profile name:\n$ unset {var}"
            ),
        ),
        Some((var, name)) if in_creds.is_none() && in_config.is_none() => chain.push_broken(
            format!("{var}={name}, but no such profile"),
            format!(
                "Neither {} nor {} has a profile named {name:?}: botocore raises ProfileNotFound \
                 whenever a client is created, before any credential source is tried.",
                display(creds_path),
                display(config_path)
            ),
            format!("Unset the variable, or create the profile:\n$ unset {var}"),
        ),
        _ => {}
    }

    // 1. Environment.
    if env.get("AWS_ACCESS_KEY_ID").is_some() {
        if env.get("AWS_SECRET_ACCESS_KEY").is_some() {
            let mut vars = vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
            if env.get("AWS_SESSION_TOKEN").is_some() {
                vars.push("AWS_SESSION_TOKEN");
            }
            chain.found.push(Found {
                source: CredentialSource::Environment,
                detail: format!("{} set", vars.join(", ")),
            });
        } else {
            chain.push_broken(
                "AWS_ACCESS_KEY_ID set without AWS_SECRET_ACCESS_KEY".into(),
                "botocore's environment provider raises PartialCredentialsError when it finds an \
                 access key id without a secret key: clients fail instead of moving on to the \
                 instance profile."
                    .into(),
                "Remove the stray variable where it is set:\n$ unset AWS_ACCESS_KEY_ID \
                 AWS_SESSION_TOKEN"
                    .into(),
            );
        }
    }
    let token_origin = web_identity_origin(
        env,
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        &merged,
        "web_identity_token_file",
    );
    // 2. Assume-role profile. botocore's AssumeRoleProvider takes every profile with role_arn
    //    and no web_identity_token_file (`_has_assume_role_config_vars`), whatever the
    //    environment holds, and requires exactly one of source_profile and credential_source.
    if merged.has("role_arn") && !merged.has("web_identity_token_file") {
        match (
            merged.has("source_profile"),
            merged.has("credential_source"),
        ) {
            (true, true) => chain.push_broken(
                format!("role_arn with both source_profile and credential_source in {profile_ref}"),
                format!(
                    "botocore's assume-role provider raises InvalidConfigError (\"The profile \
                     \"{profile}\" contains both source_profile and credential_source\"): clients \
                     fail instead of moving on to the instance profile."
                ),
                format!("Keep one of source_profile and credential_source in [{profile}]."),
            ),
            (false, false) => {
                let web = if token_origin == Origin::Env {
                    " AWS_WEB_IDENTITY_TOKEN_FILE does not make it web identity: botocore's web \
                     identity provider comes after the assume-role provider and is never reached, \
                     because the profile has no web_identity_token_file."
                } else {
                    ""
                };
                let fix = if token_origin == Origin::Env {
                    format!(
                        "For web identity (IRSA), remove role_arn from [{profile}] and name the \
                         role in AWS_ROLE_ARN, or add web_identity_token_file to [{profile}] too; \
                         to assume the role from the instance profile instead, add \
                         credential_source = Ec2InstanceMetadata to [{profile}]."
                    )
                } else {
                    format!(
                        "Add source_profile (or credential_source = Ec2InstanceMetadata) to \
                         [{profile}], or remove role_arn from it."
                    )
                };
                chain.push_broken(
                    format!(
                        "role_arn without source_profile or credential_source in {profile_ref}"
                    ),
                    format!(
                        "botocore's assume-role provider claims every profile with role_arn and \
                         no web_identity_token_file, and raises PartialCredentialsError \
                         (\"missing: source_profile or credential_source\"): clients fail \
                         instead of moving on to the instance profile.{web}"
                    ),
                    fix,
                );
            }
            _ => {
                let via = match &merged.credential_source {
                    Some(s) => format!("credential_source = {s}"),
                    None if merged.has("credential_source") => "credential_source".into(),
                    None => "source_profile".into(),
                };
                chain.found.push(Found {
                    source: CredentialSource::AssumeRoleProfile,
                    detail: format!("role_arn with {via} in {profile_ref}"),
                });
            }
        }
    }
    // 3. Web identity: each setting from its variable if set (even empty), else the profile.
    //    An empty token file path skips the provider; a token file without a role ARN raises.
    let role_origin = web_identity_origin(env, "AWS_ROLE_ARN", &merged, "role_arn");
    if matches!(token_origin, Origin::Env | Origin::Profile) {
        let token_from = match token_origin {
            Origin::Env => "AWS_WEB_IDENTITY_TOKEN_FILE set".to_string(),
            _ => format!("web_identity_token_file in {profile_ref}"),
        };
        match (token_origin, role_origin) {
            (Origin::Env, Origin::Env) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN set, as EKS IRSA sets them"
                    .into(),
            }),
            (Origin::Profile, Origin::Profile) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("web_identity_token_file and role_arn in {profile_ref}"),
            }),
            (_, Origin::Env) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("{token_from}, AWS_ROLE_ARN set"),
            }),
            (_, Origin::Profile) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("{token_from}, role_arn in {profile_ref}"),
            }),
            (_, role) => {
                let role_arn = if role == Origin::EnvEmpty {
                    "AWS_ROLE_ARN is set but empty, and botocore takes that as the role ARN (it \
                     then never reads role_arn from the profile)"
                        .to_string()
                } else {
                    format!("neither AWS_ROLE_ARN nor role_arn in {profile_ref} names a role")
                };
                chain.push_broken(
                    format!("{token_from}, but no role ARN"),
                    format!(
                        "botocore's web identity provider finds a token file, but {role_arn}: \
                         it raises InvalidConfigError (\"configured to assume role with web \
                         identity but has no role ARN configured\") and clients fail instead of \
                         moving on to the instance profile. EKS IRSA sets both \
                         AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN; one without the other is \
                         usually a partly copied or partly removed IRSA setup."
                    ),
                    "Name the role (on EKS, annotate the service account with \
                     eks.amazonaws.com/role-arn and recreate the pod), or remove the token file \
                     setting where it is set:\n$ export \
                     AWS_ROLE_ARN=arn:aws:iam::<account-id>:role/<role>\n$ unset \
                     AWS_WEB_IDENTITY_TOKEN_FILE"
                        .into(),
                );
            }
        }
    }
    // 4. SSO.
    if merged.has("sso_start_url") || merged.has("sso_session") {
        chain.found.push(Found {
            source: CredentialSource::Sso,
            detail: format!("sso settings in {profile_ref}"),
        });
    }
    // 5. Shared credentials file.
    if creds_section.has("aws_access_key_id") {
        let path = display(creds_path);
        if creds_section.has("aws_secret_access_key") {
            chain.found.push(Found {
                source: CredentialSource::SharedCredentialsFile,
                detail: format!("aws_access_key_id in [{profile}] of {path}"),
            });
        } else {
            chain.push_broken(
                format!("aws_access_key_id without aws_secret_access_key in [{profile}] of {path}"),
                "botocore raises PartialCredentialsError for a profile with an access key id and \
                 no secret key: clients fail instead of moving on to the instance profile."
                    .into(),
                format!("Complete or remove the [{profile}] section of {path}."),
            );
        }
    }
    // 6. credential_process.
    if merged.has("credential_process") {
        chain.found.push(Found {
            source: CredentialSource::CredentialProcess,
            detail: format!("credential_process in {profile_ref}"),
        });
    }
    // 7. Keys in the config file.
    if config_section.has("aws_access_key_id") && config_section.has("aws_secret_access_key") {
        chain.found.push(Found {
            source: CredentialSource::ConfigFile,
            detail: format!(
                "aws_access_key_id in {profile_ref} of {}",
                display(config_path)
            ),
        });
    }
    // 8. Container credentials.
    for var in [
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        if env.get(var).is_some() {
            chain.found.push(Found {
                source: CredentialSource::Container,
                detail: format!("{var} set"),
            });
            break;
        }
    }
    // 9. The instance profile.
    if !imds_disabled {
        chain.found.push(Found {
            source: CredentialSource::InstanceProfile,
            detail: String::new(),
        });
    }
    chain
}

fn credential_source_check(chain: &Chain) -> Check {
    const ID: CheckId = CheckId::SdkCredentialSource;
    let also = |skip: usize| {
        let rest: Vec<String> = chain
            .found
            .iter()
            .skip(skip)
            .map(|f| {
                if f.detail.is_empty() {
                    f.source.describe().to_string()
                } else {
                    format!("{} ({})", f.source.describe(), f.detail)
                }
            })
            .collect();
        if rest.is_empty() {
            String::new()
        } else {
            format!(" Later in the chain: {}.", rest.join("; "))
        }
    };
    let unreadable = if chain.unreadable.is_empty() {
        String::new()
    } else {
        format!(
            " Not readable by this check: {} (an SDK running as another user may read it).",
            chain.unreadable.join(", ")
        )
    };
    let conflict = chain
        .profile_conflict
        .as_ref()
        .map_or(String::new(), |(v, c)| format!(" {v}: {c}"));
    const CONFLICT_FIX: &str = "Keep one of the two variables (or set both to the same \
         profile):\n$ unset AWS_DEFAULT_PROFILE";
    if let Some(first) = chain.blocked() {
        let mut cause = first.cause.clone();
        for b in chain.broken.iter().filter(|b| b.after == 0).skip(1) {
            cause.push_str(&format!(" Also: {}: {}", b.value, b.cause));
        }
        cause.push_str(&conflict);
        return Check::fail(ID, first.value.clone())
            .cause(cause)
            .fix(first.fix.clone());
    }
    let Some(first) = chain.first_source() else {
        return Check::fail(ID, "no credential source at all")
            .cause(format!(
                "Nothing in the chain is configured and AWS_EC2_METADATA_DISABLED=true removes the \
                 instance profile: SDKs raise \"Unable to locate credentials\".{unreadable}{conflict}"
            ))
            .fix("$ unset AWS_EC2_METADATA_DISABLED");
    };
    // Misconfigurations behind a source that answers: botocore never gets that far.
    let unreached: Vec<&str> = chain.broken.iter().map(|b| b.value.as_str()).collect();
    let unreached = if unreached.is_empty() {
        String::new()
    } else {
        format!(
            " Not reached while an earlier source answers, but botocore would raise on it \
             otherwise: {}.",
            unreached.join("; ")
        )
    };
    if first.source == CredentialSource::InstanceProfile {
        if let Some((value, _)) = &chain.profile_conflict {
            return Check::warn(
                ID,
                format!("the instance profile (IMDS) for botocore, but {value}"),
            )
            .cause(format!(
                "Nothing earlier in the chain is configured in profile [{}].{conflict}{unreadable}",
                profile_name(&chain.profile)
            ))
            .fix(CONFLICT_FIX);
        }
        let mut c = Check::ok(
            ID,
            "the instance profile (IMDS): nothing earlier in the chain is configured",
        );
        if !unreadable.is_empty() {
            c.value
                .push_str(&format!(" (unreadable: {})", chain.unreadable.join(", ")));
        }
        return c;
    }
    let mut fix = match first.source {
        CredentialSource::Environment => "If the instance role should be used, remove the keys where they are set (the pod spec, a Secret, the service unit, /etc/environment, a shell profile):\n$ unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN".to_string(),
        CredentialSource::WebIdentity | CredentialSource::Container => "If this is IRSA, EKS Pod Identity or an ECS task role, it is intended: the IMDS results above describe the node, not this process. Otherwise remove the variables from the pod or task definition.".to_string(),
        CredentialSource::SharedCredentialsFile | CredentialSource::ConfigFile => format!("If the instance role should be used, delete the keys from [{}] (or point AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE elsewhere).", profile_name(&chain.profile)),
        _ => format!("If the instance role should be used, remove those settings from [{}], or select another profile with AWS_PROFILE.", profile_name(&chain.profile)),
    };
    if chain.profile_conflict.is_some() {
        fix = format!("{fix}\n{CONFLICT_FIX}");
    }
    Check::warn(
        ID,
        format!(
            "{} ({}): used before the instance profile",
            first.source.describe(),
            first.detail
        ),
    )
    .cause(format!(
        "SDKs take the first source in the chain (environment, assume-role profile, web \
         identity, SSO, shared credentials file, credential_process, config file, container, \
         instance profile) and never look further: applications in this environment do not use \
         the instance role the IMDS checks describe.{}{unreached}{conflict}{unreadable}",
        also(1)
    ))
    .fix(fix)
}

/// A value from the environment cut to a printable length.
fn short(v: &str) -> String {
    let cut: String = v.chars().filter(|c| !c.is_control()).take(120).collect();
    if cut.len() < v.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_endpoint_resolves_like_an_sdk() {
        // (--imds.endpoint, variables, endpoint)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (None, &[], "http://169.254.169.254"),
            (
                Some("http://127.0.0.1:1"),
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://x")],
                "http://127.0.0.1:1",
            ),
            (
                None,
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://x:1")],
                "http://x:1",
            ),
            (
                None,
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")],
                IMDS_IPV6_ENDPOINT,
            ),
            (
                None,
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "")],
                "http://169.254.169.254",
            ),
        ];
        for (flag, env, want) in cases {
            let v = vars(env);
            assert_eq!(
                resolve_imds_endpoint(*flag, &SdkSettings::from_env(&EnvView::new(&v, None))),
                *want,
                "{flag:?} {env:?}"
            );
        }
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
    fn url_user_information_is_redacted() {
        assert_eq!(
            redact_url("http://user:hunter2@proxy:3128"),
            "http://***@proxy:3128"
        );
        assert_eq!(redact_url("proxy:3128"), "proxy:3128");
        assert_eq!(
            redact_url("http://a@b@proxy:3128/x"),
            "http://***@proxy:3128/x"
        );
        assert_eq!(redact_url("http://u:pa/ss@host:80"), "http://***@host:80");
        assert_eq!(redact_url("u:p@127.0.0.1:1338"), "***@127.0.0.1:1338");
        assert_eq!(redact_url("not a url"), "not a url");
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
        // botocore compares "[fd00:ec2::254]", Go "fd00:ec2::254": the fix names both.
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("NO_PROXY=fd00:ec2::254,[fd00:ec2::254],$NO_PROXY"),
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

    #[test]
    fn the_ini_reader_keeps_key_names_only() {
        let text = "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key=wJalr/SECRET\n\
                    # comment\n[profile dev]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Ec2InstanceMetadata\n\
                    s3 =\n  max_concurrent_requests = 10\n[sso-session x]\nsso_start_url = u\n";
        let config = parse_ini(text, true);
        assert!(config["default"].has("aws_access_key_id"));
        assert!(config["dev"].has("role_arn"));
        assert_eq!(
            config["dev"].credential_source.as_deref(),
            Some("Ec2InstanceMetadata")
        );
        assert!(!config["dev"].has("max_concurrent_requests"));
        assert!(!config.contains_key("x") && !config.contains_key("sso-session x"));
        assert!(!format!("{config:?}").contains("SECRET"));
        let creds = parse_ini("[profile dev]\naws_access_key_id=A\n", false);
        assert!(creds.contains_key("profile dev"));
        // The IMDS settings keep their values (empty ones too), split as configparser splits.
        let config = parse_ini(
            "[default]\nMetadata_Service_Timeout: 3\nec2_metadata_service_endpoint = http://h:1\n\
             ec2_metadata_v1_disabled =\naws_secret_access_key: SECRET\n",
            true,
        );
        let d = &config["default"];
        assert_eq!(d.imds["metadata_service_timeout"], "3");
        assert_eq!(d.imds["ec2_metadata_service_endpoint"], "http://h:1");
        assert_eq!(d.imds["ec2_metadata_v1_disabled"], "");
        assert!(d.has("aws_secret_access_key") && !d.has("ec2_metadata_v1_disabled"));
        assert!(!format!("{config:?}").contains("SECRET"));
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
