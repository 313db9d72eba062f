//! The HTTP side of the exporter: its configuration ([`WebConfig`]), the listener, `/metrics`,
//! a landing page, `/-/healthy` and `/-/ready`.
//!
//! A scrape only encodes what the background probes already recorded, so a hung IMDS can never
//! stall `/metrics`.
//!
//! Layout: this file (the configuration, the routes, the landing page); `server` (the bounded
//! accept loop: connection cap, deadlines, eviction, shutdown); `config_file` (the
//! exporter-toolkit's `--web.config.file` format); `reload` (re-reading it when it changes or on
//! SIGHUP); `tls` (rustls); `auth` (basic auth with bcrypt).

mod auth;
pub mod config_file;
pub mod reload;
pub mod server;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::untrusted::html_text;

/// Where and how the exporter serves (flags `--web.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub listen_address: std::net::SocketAddr,
    pub telemetry_path: String,
    /// The exporter-toolkit web configuration file: TLS, basic auth, headers.
    pub config_file: Option<PathBuf>,
    /// Connections served at once; further capped by the open-files limit.
    pub max_connections: usize,
    /// Deadline of the TLS handshake and the request head, from the connection's start (or from
    /// the first byte of a later request on a kept-alive connection).
    pub read_header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl WebConfig {
    /// Like Go exporters, `:port` means every address (see [`parse_listen_address`]).
    pub const DEFAULT_LISTEN_ADDRESS: &str = ":19254";
    pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
    /// Two Prometheus replicas, the kubelet's probes and a person with curl need a handful; the
    /// rest is headroom. Idle connections make room for new ones when it is reached.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
    pub const MAX_MAX_CONNECTIONS: usize = 65_536;
    /// Prometheus sends its request head at once; 5 s is generous even over TLS on a busy node.
    pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    /// Longer than Prometheus's default scrape interval (1m), so a scraper keeps its connection
    /// (and its TLS session) from one scrape to the next.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_telemetry_path(&self.telemetry_path)
            .map_err(|e| ConfigError::new("web.telemetry-path", e))?;
        if self.max_connections == 0 || self.max_connections > Self::MAX_MAX_CONNECTIONS {
            return Err(ConfigError::new(
                "web.max-connections",
                format!("must be from 1 to {}", Self::MAX_MAX_CONNECTIONS),
            ));
        }
        crate::config::timeout("web.read-header-timeout", self.read_header_timeout)?;
        crate::config::timeout("web.idle-timeout", self.idle_timeout)?;
        if let Some(path) = &self.config_file
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::new("web.config.file", "must not be empty"));
        }
        Ok(())
    }

    /// The connection limits for the server.
    pub fn limits(&self) -> server::Limits {
        server::Limits {
            max_connections: self.max_connections,
            read_header_timeout: self.read_header_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// Reads `--web.config.file` (if any): an error names the file and the field.
    pub fn load_settings(&self) -> Result<reload::LiveSettings, ConfigError> {
        reload::LiveSettings::load(self.config_file.as_deref()).map_err(|e| {
            let path = self
                .config_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            ConfigError::new("web.config.file", format!("{}: {e}", path.display()))
        })
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: parse_listen_address(Self::DEFAULT_LISTEN_ADDRESS)
                .expect("the default address parses"),
            telemetry_path: Self::DEFAULT_TELEMETRY_PATH.into(),
            config_file: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            read_header_timeout: Self::DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Parses `host:port` or `:port`. Like Go exporters, `:port` means every address: `[::]:port`,
/// bound dual-stack (IPv4 too) by [`bind`], which falls back to `0.0.0.0:port` on a node without
/// IPv6.
pub fn parse_listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let full = if let Some(port) = s.strip_prefix(':') {
        format!("[::]:{port}")
    } else {
        s.to_string()
    };
    // Checked before the resolver sees it: a string that is no host name is never looked up.
    let expected = "(expected host:port or :port, e.g. :19254)";
    let (host, port) = full
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port {expected}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{s:?}: the port must be a number from 0 to 65535 {expected}"
        ));
    }
    if !crate::config::is_host(host) {
        return Err(format!(
            "{s:?}: {host:?} is neither an IP address nor a host name {expected}"
        ));
    }
    full.to_socket_addrs()
        .map_err(|e| format!("{e} (expected host:port or :port, e.g. :19254)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// A literal path to serve the metrics on: absolute, made of URL path characters only, no
/// empty, `.` or `..` segment, and not one of ours. `:`, `*`, `{` and `}`, which routers read as
/// patterns, are refused (the router matches the path literally anyway: [`router`]).
pub fn validate_telemetry_path(s: &str) -> Result<(), String> {
    let reserved = ["/", "/-/healthy", "/-/ready"];
    if !s.starts_with('/') || s.len() < 2 {
        return Err("must be a path such as /metrics".into());
    }
    if s.len() > 256 {
        return Err("must be at most 256 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-._~!$&'()+,;=@%".contains(*c)))
    {
        return Err(format!(
            "must be a literal path such as /metrics: {c:?} is not allowed (letters, digits and \
             / - . _ ~ ! $ & ' ( ) + , ; = @ % only)"
        ));
    }
    if s[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must not have empty, . or .. segments".into());
    }
    if reserved.contains(&s) {
        return Err(format!("{s} is served by the exporter itself"));
    }
    Ok(())
}

#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// Cleared when a probe loop dies (a panic unwinds out of it): `/-/healthy` then fails, so a
    /// liveness probe restarts an exporter whose numbers would otherwise freeze.
    pub alive: Arc<AtomicBool>,
    pub landing: Arc<String>,
    pub telemetry_path: Arc<str>,
}

/// Binds the HTTP listener. `[::]:port` (what `:port` parses to) is bound dual-stack, so IPv4
/// scrapes reach it whatever `net.ipv6.bindv6only` says; on a node without IPv6 it falls back
/// to `0.0.0.0:port`.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let listen = |addr: std::net::SocketAddr| -> std::io::Result<tokio::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        tokio::net::TcpListener::from_std(socket.into())
    };
    match listen(addr) {
        Err(e)
            if addr.is_ipv6()
                && addr.ip().is_unspecified()
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                ) =>
        {
            listen(std::net::SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        other => other,
    }
}

/// The routes. The metrics path is matched literally in a fallback rather than registered as a
/// route, so that no value of `--web.telemetry-path` can be read as a pattern or make the router
/// panic.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(telemetry_or_not_found)
        .with_state(state)
}

async fn telemetry_or_not_found(State(s): State<WebState>, req: Request) -> Response {
    if req.uri().path() != &*s.telemetry_path {
        return (StatusCode::NOT_FOUND, "Not found.\n").into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    metrics(State(s)).await
}

async fn metrics(State(s): State<WebState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        s.metrics.encode(),
    )
        .into_response()
}

async fn healthy(State(s): State<WebState>) -> Response {
    if s.alive.load(Ordering::Acquire) {
        (StatusCode::OK, "Healthy.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unhealthy: a probe loop has died (see the log); restart the exporter.\n",
        )
            .into_response()
    }
}

async fn ready(State(s): State<WebState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: the first probe run has not finished.\n",
        )
            .into_response()
    }
}

async fn landing(State(s): State<WebState>) -> Html<String> {
    Html(s.landing.as_str().to_owned())
}

/// The landing page: links, and the configuration in force. Every value (flags, environment) goes
/// through `untrusted::html_text`: escaped for HTML, hidden characters removed.
pub fn landing_page(telemetry_path: &str, config: &[(&str, String)]) -> String {
    let rows: String = config
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>\n",
                html_text(k),
                html_text(v)
            )
        })
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imds_exporter</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}td{{padding:.2em 1em .2em 0}}</style>
</head><body>
<h1>imds_exporter</h1>
<p>Probes the EC2 Instance Metadata Service the way an AWS SDK does, in the background, and tells you when instance credentials are in trouble.</p>
<ul>
<li><a href="{path}">{path}</a>: metrics</li>
<li><a href="/-/healthy">/-/healthy</a>: liveness</li>
<li><a href="/-/ready">/-/ready</a>: readiness (after the first probe run)</li>
</ul>
<h2>Configuration</h2>
<table>
{rows}</table>
<p>Version {version}, revision {revision}.</p>
</body></html>
"#,
        path = html_text(telemetry_path),
        version = crate::metrics::BUILD_INFO.version,
        revision = crate::metrics::BUILD_INFO.revision,
    )
}

#[cfg(test)]
mod tests {
    use super::landing_page;

    #[test]
    fn the_landing_page_escapes_every_value_and_drops_hidden_characters() {
        let page = landing_page(
            "/m<x>",
            &[("imds.endpoint", "http://a\"b'c&d<script>\u{202e}e".into())],
        );
        assert!(page.contains("http://a&quot;b&#39;c&amp;d&lt;script&gt;e"));
        assert!(page.contains("href=\"/m&lt;x&gt;\""));
        assert!(!page.contains("<script>"));
        assert!(!page.contains('\u{202e}'));
    }
}
