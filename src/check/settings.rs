//! The SDK settings: what an AWS SDK started in this process reads from its environment variables
//! and shared config files, resolved as botocore resolves them.
//!
//! Owns: [`EnvView`] (the variables and the home directory, given as arguments: nothing here reads
//! the process environment); the profile botocore reads and where it finds the shared config and
//! credentials files (`SharedFiles`); the IMDS settings ([`SdkSettings`]: the endpoint and its
//! mode, the timeout and attempts, the IMDSv1 switch, `AWS_EC2_METADATA_DISABLED`), each with
//! where it came from ([`Setting`]); the endpoint an SDK would use ([`resolve_imds_endpoint`]);
//! and how a value from the environment is shown (cut to length, a URL without its user
//! information, a profile name).
//!
//! Does not own: reading the files (`ini`, which keeps no secret value), judging the settings
//! (`sdk`, `proxy`), or the credential provider chain (`chain`, which reads the same profile and
//! files through `SharedFiles`).
//!
//! The profile is botocore's (`botocore/configprovider.py`, `'profile': (None,
//! ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE'], None, None)`): the first of the two variables that is
//! set at all, even to the empty string, else `default`. The AWS CLI v2 (its bundled botocore
//! lists `AWS_PROFILE` first) and the other SDKs prefer `AWS_PROFILE`; when the two disagree the
//! check says so.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ini::{self, FileState, Section};
const DEFAULT_IMDS_ENDPOINT: &str = crate::probe::imds::ImdsConfig::DEFAULT_ENDPOINT;

/// The SDKs' default IMDS request timeout (botocore, Rust, Java v2: 1 s).
pub const DEFAULT_SDK_TIMEOUT: Duration = crate::thresholds::SLOW_REQUEST;
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
    pub(super) fn raw(&self, name: &str) -> Option<&'a str> {
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
pub(super) const TIMEOUT: (&str, &str) =
    ("AWS_METADATA_SERVICE_TIMEOUT", "metadata_service_timeout");
pub(super) const ATTEMPTS: (&str, &str) = (
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
pub const IMDS_KEYS: [&str; 5] = [
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
    pub(super) fn shadow_note(&self, show: impl Fn(&str) -> String) -> String {
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
    pub(super) fn removal(&self) -> String {
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

/// A numeric setting as botocore reads it: `int(value)`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum IntSetting {
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
    pub(super) timeout_setting: IntSetting,
    pub(super) attempts_setting: IntSetting,
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

/// The shared config and credentials files as botocore finds them, and the profile it reads.
pub(super) struct SharedFiles {
    /// The variable that chose the profile, if one is set (even empty), and its value.
    pub(super) explicit: Option<(&'static str, String)>,
    /// The profile: the explicit one if not empty, else `default`.
    pub(super) profile: String,
    /// The file's path, or what to print for a file there is not.
    pub(super) creds_path: Result<PathBuf, String>,
    pub(super) config_path: Result<PathBuf, String>,
    creds: Option<BTreeMap<String, Section>>,
    config: Option<BTreeMap<String, Section>>,
    /// Files that exist but could not be read.
    pub(super) unreadable: Vec<String>,
}

impl SharedFiles {
    pub(super) fn load(env: &EnvView) -> Self {
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
            Ok(p) => match ini::load(p, config_style, &IMDS_KEYS) {
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

    pub(super) fn in_creds(&self) -> Option<&Section> {
        self.creds.as_ref().and_then(|c| c.get(&self.profile))
    }

    pub(super) fn in_config(&self) -> Option<&Section> {
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

/// A profile name fit to print: `""` for the empty one.
pub(super) fn profile_name(p: &str) -> String {
    if p.is_empty() {
        "\"\"".into()
    } else {
        short(p)
    }
}

/// A value from the environment cut to a printable length, without control or format
/// characters.
pub(super) fn short(v: &str) -> String {
    let cut: String = crate::untrusted::visible(v).chars().take(120).collect();
    if cut.len() < v.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// A URL (a proxy, an IMDS endpoint) fit to print: user information (`user:password@`)
/// replaced by `***@`. Everything after the scheme up to the last `@` goes, so a password with
/// an unescaped `/` or `@` (not a valid URL, but a value someone typed) is not shown either.
pub fn redact_url(value: &str) -> String {
    short(&crate::probe::imds::redacted_endpoint(value))
}

#[cfg(test)]
mod tests {
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
}
