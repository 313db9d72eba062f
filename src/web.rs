//! The HTTP side of the exporter: `/metrics`, a landing page, `/-/healthy` and `/-/ready`.
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

use crate::metrics::Metrics;

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
