//! `--web.config.file`: the Prometheus exporter-toolkit's web configuration format, so that the
//! file a user already has for node_exporter serves this exporter too.
//!
//! ```yaml
//! tls_server_config:          # absent or empty: plain HTTP
//!   cert_file: server.crt     # paths relative to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12        # TLS12 (default) or TLS13
//!   max_version: TLS13
//!   cipher_suites: [...]      # Go names; rustls has the ECDHE AES-GCM and ChaCha20 ones
//!   curve_preferences: [...]  # X25519, CurveP256, CurveP384
//! http_server_config:
//!   http2: true               # accepted; the exporter speaks HTTP/1.1 (what Prometheus scrapes with)
//!   headers: {X-Frame-Options: deny}
//! basic_auth_users:
//!   prometheus: $2y$10$...    # bcrypt hashes
//! ```
//!
//! This module owns the format: parsing (unknown fields are errors, as the toolkit's strict
//! unmarshalling makes them), checking every field, and turning a good file into the [`Settings`]
//! the server applies. A setting the toolkit has and this exporter cannot honour
//! (`client_allowed_sans`, TLS 1.0/1.1, CBC suites, `RequestClientCert`) is an error naming the
//! field, never silently ignored: a security setting that does nothing is worse than none.
//! Re-reading the file when it changes is [`super::reload`]'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::auth::BasicAuth;
use super::tls::{ClientAuth, TlsError, TlsFiles, TlsVersion};

/// What is wrong with a web configuration file: the field (as a YAML path) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FileError {
    pub field: String,
    pub problem: String,
}

impl From<TlsError> for FileError {
    fn from(e: TlsError) -> Self {
        Self::new(e.field, e.problem)
    }
}

impl FileError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The file, as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    #[serde(default)]
    pub tls_server_config: Option<TlsSection>,
    #[serde(default)]
    pub http_server_config: Option<HttpSection>,
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for WebConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password hashes stay out of logs and panics.
        f.debug_struct("WebConfigFile")
            .field("tls_server_config", &self.tls_server_config)
            .field("http_server_config", &self.http_server_config)
            .field(
                "basic_auth_users",
                &self
                    .basic_auth_users
                    .as_ref()
                    .map(|u| u.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Inline PEM (newer exporter-toolkit): refused with a message, the file forms are supported.
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_ca: Option<String>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub http2: Option<bool>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// A checked, loaded file: what the server applies to the next connection.
#[derive(Clone)]
pub struct Settings {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Every file it was made from (the configuration file first): a change to any of them is a
    /// reason to read it again.
    pub inputs: Vec<PathBuf>,
}

impl Settings {
    /// Plain HTTP, no authentication, no extra headers: no `--web.config.file`.
    pub fn plain() -> Self {
        Self {
            tls: None,
            auth: None,
            headers: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// A one-line summary for logs and the landing page (no secret).
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.tls.is_some() { "https" } else { "http" }.to_string()];
        if let Some(auth) = &self.auth {
            parts.push(format!("basic auth ({} users)", auth.users()));
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} headers", self.headers.len()));
        }
        parts.join(", ")
    }
}

/// Headers the toolkit allows in `http_server_config.headers` and the values it accepts. Other
/// headers are refused: the exporter sets its own `Content-Type`, and a `Set-Cookie` or
/// `Location` from a config file has no business on `/metrics`.
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// A file parsed and checked, before anything it names is read.
pub struct Checked {
    pub tls: Option<TlsFiles>,
    pub users: Option<BTreeMap<String, String>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Parses and checks a file's text; reads nothing (paths are resolved against `base`). The one
/// place outside text becomes settings: `load` uses it, the property tests and the fuzz target
/// drive it directly.
pub fn check(text: &str, base: &Path) -> Result<Checked, FileError> {
    let file = parse(text)?;
    let tls = check_tls(file.tls_server_config.as_ref(), base)?;
    let users = match &file.basic_auth_users {
        Some(users) if !users.is_empty() => Some(check_users(users)?),
        _ => None,
    };
    let headers = check_headers(file.http_server_config.as_ref())?;
    Ok(Checked {
        tls,
        users,
        headers,
    })
}

/// Reads, parses and checks the file, and loads what it names (certificates, keys, CAs).
pub fn load(path: &Path) -> Result<Settings, FileError> {
    let text = crate::config::read_text_file(path)
        .map_err(|e| FileError::new("(file)", format!("cannot read {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let checked = check(&text, base)?;
    let mut inputs = vec![path.to_path_buf()];
    let tls = match checked.tls {
        Some(files) => {
            inputs.push(files.cert_file.clone());
            inputs.push(files.key_file.clone());
            inputs.extend(files.client_ca_file.clone());
            Some(super::tls::server_config(&files)?)
        }
        None => None,
    };
    let auth = checked.users.map(|users| Arc::new(BasicAuth::new(users)));
    Ok(Settings {
        tls,
        auth,
        headers: checked.headers,
        inputs,
    })
}

/// The YAML, strictly: unknown fields and wrong types are errors naming the field.
pub fn parse(text: &str) -> Result<WebConfigFile, FileError> {
    if text.trim().is_empty() {
        return Ok(WebConfigFile::default());
    }
    serde_yaml_ng::from_str::<Option<WebConfigFile>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            // serde_yaml_ng says "tls_server_config: unknown field `cert_fle`, expected ... at
            // line 2 column 3": the path comes first when it has one.
            let message = e.to_string();
            match message.split_once(": ") {
                Some((field, rest))
                    if !field.contains(' ') && field.chars().any(|c| c.is_alphabetic()) =>
                {
                    FileError::new(field, rest)
                }
                _ => FileError::new("(file)", message),
            }
        })
}

fn resolve(base: &Path, field: &str, value: &str) -> Result<PathBuf, FileError> {
    if value.trim().is_empty() {
        return Err(FileError::new(field, "must not be empty"));
    }
    if value.contains('\0') {
        return Err(FileError::new(field, "must not contain NUL"));
    }
    let p = Path::new(value);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

fn version(field: &str, value: &str) -> Result<TlsVersion, FileError> {
    match value {
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => Err(FileError::new(
            field,
            format!("{value} is not supported (rustls speaks TLS 1.2 and 1.3): use TLS12 or TLS13"),
        )),
        other => Err(FileError::new(
            field,
            format!("unknown version {other:?} (expected TLS12 or TLS13)"),
        )),
    }
}

/// The TLS section checked; `None` for plain HTTP (no section, or one without a certificate,
/// which the toolkit also reads as plain HTTP).
pub fn check_tls(section: Option<&TlsSection>, base: &Path) -> Result<Option<TlsFiles>, FileError> {
    let Some(t) = section else { return Ok(None) };
    let f = |name: &str| format!("tls_server_config.{name}");
    for (name, set) in [
        ("cert", t.cert.is_some()),
        ("key", t.key.is_some()),
        ("client_ca", t.client_ca.is_some()),
    ] {
        if set {
            return Err(FileError::new(
                f(name),
                format!("inline PEM is not supported: put it in a file and use {name}_file"),
            ));
        }
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(FileError::new(
            f("client_allowed_sans"),
            "is not supported: issue client certificates from a CA that only signs allowed clients",
        ));
    }
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("") | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(FileError::new(
                f("client_auth_type"),
                format!(
                    "{other} (a client certificate nobody verifies) is not supported: use \
                     RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
                ),
            ));
        }
        Some(other) => {
            return Err(FileError::new(
                f("client_auth_type"),
                format!(
                    "unknown value {other:?} (expected NoClientCert, VerifyClientCertIfGiven or \
                     RequireAndVerifyClientCert)"
                ),
            ));
        }
    };
    let client_ca_file = t
        .client_ca_file
        .as_deref()
        .map(|v| resolve(base, &f("client_ca_file"), v))
        .transpose()?;
    match (client_auth, &client_ca_file) {
        (ClientAuth::None, Some(_)) => {
            return Err(FileError::new(
                f("client_ca_file"),
                "is set but client_auth_type is NoClientCert: set client_auth_type to \
                 RequireAndVerifyClientCert (or VerifyClientCertIfGiven)",
            ));
        }
        (ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify, None) => {
            return Err(FileError::new(
                f("client_ca_file"),
                "is required to verify client certificates",
            ));
        }
        _ => {}
    }
    let min_version = match t.min_version.as_deref() {
        None | Some("") => TlsVersion::Tls12,
        Some(v) => version(&f("min_version"), v)?,
    };
    let max_version = match t.max_version.as_deref() {
        None | Some("") => TlsVersion::Tls13,
        Some(v) => version(&f("max_version"), v)?,
    };
    if max_version < min_version {
        return Err(FileError::new(
            f("max_version"),
            "is lower than min_version",
        ));
    }
    let cipher_suites = t.cipher_suites.clone().unwrap_or_default();
    for name in &cipher_suites {
        if super::tls::cipher_suite(name).is_none() {
            return Err(FileError::new(
                f("cipher_suites"),
                format!(
                    "{name:?} is not supported (rustls offers only ECDHE with AES-GCM or \
                     ChaCha20-Poly1305: {})",
                    super::tls::CIPHER_SUITE_NAMES.join(", ")
                ),
            ));
        }
    }
    let curves = t.curve_preferences.clone().unwrap_or_default();
    for name in &curves {
        if super::tls::kx_group(name).is_none() {
            return Err(FileError::new(
                f("curve_preferences"),
                format!(
                    "{name:?} is not supported (expected {})",
                    super::tls::CURVE_NAMES.join(", ")
                ),
            ));
        }
    }
    let (cert, key) = (t.cert_file.as_deref(), t.key_file.as_deref());
    let (cert_file, key_file) = match (cert, key) {
        (None, None) if client_auth == ClientAuth::None => return Ok(None),
        (None, _) => return Err(FileError::new(f("cert_file"), "is required for TLS")),
        (_, None) => return Err(FileError::new(f("key_file"), "is required for TLS")),
        (Some(c), Some(k)) => (
            resolve(base, &f("cert_file"), c)?,
            resolve(base, &f("key_file"), k)?,
        ),
    };
    Ok(Some(TlsFiles {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        min_version,
        max_version,
        cipher_suites,
        curves,
    }))
}

/// Users and their bcrypt hashes, each hash checked for form (not for strength).
fn check_users(users: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, FileError> {
    for (user, hash) in users {
        let field = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
            return Err(FileError::new(
                field,
                "a user name must be non-empty, without ':' or control characters",
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(FileError::new(
                field,
                "is not a bcrypt hash (e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
    }
    Ok(users.clone())
}

fn check_headers(
    section: Option<&HttpSection>,
) -> Result<Vec<(HeaderName, HeaderValue)>, FileError> {
    let Some(headers) = section.and_then(|s| s.headers.as_ref()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, value) in headers {
        let field = format!("http_server_config.headers.{name}");
        let Some(canonical) = ALLOWED_HEADERS
            .iter()
            .find(|allowed| allowed.eq_ignore_ascii_case(name))
        else {
            return Err(FileError::new(
                field,
                format!("is not allowed (allowed: {})", ALLOWED_HEADERS.join(", ")),
            ));
        };
        let lower = value.to_ascii_lowercase();
        let ok = match *canonical {
            "X-Content-Type-Options" => lower == "nosniff",
            "X-Frame-Options" => lower == "deny" || lower == "sameorigin",
            _ => !value.is_empty(),
        };
        if !ok {
            return Err(FileError::new(field, format!("unexpected value {value:?}")));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| FileError::new(&field, "is not a valid header value"))?;
        out.push((HeaderName::from_static(static_lower(canonical)), value));
    }
    Ok(out)
}

/// `HeaderName::from_static` wants lower case.
fn static_lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> Result<Option<TlsFiles>, FileError> {
        let file = parse(yaml)?;
        check_tls(file.tls_server_config.as_ref(), Path::new("/etc/x"))
    }

    #[test]
    fn an_empty_file_is_plain_http() {
        assert!(parse("").unwrap().tls_server_config.is_none());
        assert!(parse("# nothing\n").unwrap().basic_auth_users.is_none());
        assert_eq!(tls("tls_server_config: {}\n").unwrap(), None);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let cases = [
            ("tls_server_config:\n  cert_fle: a\n", "tls_server_config"),
            ("tls_sever_config: {}\n", "(file)"),
            (
                "tls_server_config: {cert_file: a}\n",
                "tls_server_config.key_file",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, min_version: TLS10}\n",
                "tls_server_config.min_version",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}\n",
                "tls_server_config.max_version",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}\n",
                "tls_server_config.client_ca_file",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
                "tls_server_config.client_ca_file",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}\n",
                "tls_server_config.client_auth_type",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]}\n",
                "tls_server_config.cipher_suites",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [CurveP521]}\n",
                "tls_server_config.curve_preferences",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
                "tls_server_config.client_allowed_sans",
            ),
            (
                "tls_server_config: {cert: inline, key_file: b}\n",
                "tls_server_config.cert",
            ),
        ];
        for (yaml, field) in cases {
            let err = tls(yaml).expect_err(yaml);
            assert_eq!(err.field, field, "{yaml}: {err}");
        }
    }

    #[test]
    fn paths_are_relative_to_the_file() {
        let t = tls(
            "tls_server_config:\n  cert_file: s.crt\n  key_file: /abs/s.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/x/s.crt"));
        assert_eq!(t.key_file, Path::new("/abs/s.key"));
        assert_eq!(
            t.client_ca_file.as_deref(),
            Some(Path::new("/etc/x/ca.crt"))
        );
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerify);
        assert_eq!(
            (t.min_version, t.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
    }

    #[test]
    fn users_need_bcrypt_hashes_and_headers_come_from_a_short_list() {
        let users = BTreeMap::from([("alice".to_string(), "secret".to_string())]);
        assert_eq!(
            check_users(&users).unwrap_err().field,
            "basic_auth_users.alice"
        );
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = BTreeMap::from([("alice".to_string(), hash)]);
        assert!(check_users(&users).is_ok());

        let file = parse("http_server_config:\n  headers:\n    Set-Cookie: a=b\n").unwrap();
        let err = check_headers(file.http_server_config.as_ref()).unwrap_err();
        assert_eq!(err.field, "http_server_config.headers.Set-Cookie");
        let file = parse("http_server_config:\n  headers:\n    x-frame-options: allow\n").unwrap();
        assert!(check_headers(file.http_server_config.as_ref()).is_err());
        let file =
            parse("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n")
                .unwrap();
        let h = check_headers(file.http_server_config.as_ref()).unwrap();
        assert_eq!(h[0].0, "x-frame-options");
    }

    #[test]
    fn the_hashes_stay_out_of_debug() {
        let file = parse("basic_auth_users:\n  alice: $2y$10$abcdefghijklmnopqrstuv\n").unwrap();
        let shown = format!("{file:?}");
        assert!(
            shown.contains("alice") && !shown.contains("$2y$"),
            "{shown}"
        );
    }
}
