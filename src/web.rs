//! The HTTP side of the exporter: its configuration ([`WebConfig`]), the listener, `/metrics`,
//! a landing page, `/-/healthy` and `/-/ready`.
//!
//! A scrape only encodes what the background probes already recorded, so a hung IMDS can never
//! stall `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// Where and what the exporter serves (flags `--web.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub listen_address: std::net::SocketAddr,
    pub telemetry_path: String,
}

impl WebConfig {
    /// Like Go exporters, `:port` means every address (see [`parse_listen_address`]).
    pub const DEFAULT_LISTEN_ADDRESS: &str = ":19254";
    pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_telemetry_path(&self.telemetry_path)
            .map_err(|e| ConfigError::new("web.telemetry-path", e))
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: parse_listen_address(Self::DEFAULT_LISTEN_ADDRESS)
                .expect("the default address parses"),
            telemetry_path: Self::DEFAULT_TELEMETRY_PATH.into(),
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
    full.to_socket_addrs()
        .map_err(|e| format!("{e} (expected host:port or :port, e.g. :19254)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// A path the router can serve the metrics on: absolute, no whitespace, not one of ours.
pub fn validate_telemetry_path(s: &str) -> Result<(), String> {
    let reserved = ["/", "/-/healthy", "/-/ready"];
    if !s.starts_with('/') || s.len() < 2 || s.contains(char::is_whitespace) {
        return Err("must be a path such as /metrics".into());
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

pub fn router(state: WebState, telemetry_path: &str) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(telemetry_path, get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(state)
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

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The landing page: links, and the configuration in force.
pub fn landing_page(telemetry_path: &str, config: &[(&str, String)]) -> String {
    let rows: String = config
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>\n",
                escape(k),
                escape(v)
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
        path = escape(telemetry_path),
        version = crate::metrics::BUILD_INFO.version,
        revision = crate::metrics::BUILD_INFO.revision,
    )
}
