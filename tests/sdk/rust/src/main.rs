//! One fresh `aws-config` IMDS credentials provider, asked for credentials once.
//!
//! Usage: `imds-sdk-client-rust [ENDPOINT]` (or `IMDS_ENDPOINT`), e.g. `http://127.0.0.1:1338`.
//! Prints one JSON line: `{"sdk": "rust", "available", "wait_seconds", "error", "detail",
//! "access_key_id_prefix", "hung"}`. The secret key and the session token are never printed:
//! only the first four characters of the access key id leave this process.
//!
//! Everything is aws-config's default except the endpoint: `imds::Client::builder()
//! .endpoint(..)` (1 s connect, 1 s read, 4 attempts, the IMDS retry classifier) and
//! `ImdsCredentialsProvider::builder().imds_client(..)`. A hard deadline (`IMDS_CLIENT_DEADLINE`
//! seconds, default 30) turns a provider that never returns into `"hung": true`.
//!
//! The HTTP client is aws-config's default one without its TLS layer ([`plain_http_client`]):
//! the IMDS is plain `http://`, and leaving rustls/aws-lc out saves most of the cold build.
//!
//! Retries wait a random backoff (the standard strategy: before retry *n* of a request,
//! `rand[0,1) × 2^(n-1)` s). So that a test can compare a wait with a model that counts the
//! backoff at its mean, the HTTP client is wrapped in [`Timed`], which only watches: a request
//! with the same method and path as the one before it is a retry, and the time from the end of
//! that one to its start is the backoff drawn. The line then also says `"attempts"`,
//! `"retry_backoff_seconds"` (drawn) and `"retry_backoff_mean_seconds"` (the mean of those
//! draws' distributions).

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::imds::client::error::ImdsError;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::json;

/// What `aws-smithy-runtime`'s `default_https_client` (1.16.2, `client/http.rs`) builds for the
/// latest behavior version, minus `.tls_provider(Rustls(AwsLc))`: the same hyper 1.x connector,
/// given the operation's connector settings (the IMDS client's 1 s connect and read timeouts)
/// and sleep implementation, with the proxy settings from the environment (there are none: the
/// clients run under `env -i`). For an `http://` URI the TLS layer only passes through.
fn plain_http_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn = ConnectorBuilder::default();
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build_http()
    })
}

fn refuse_non_loopback(endpoint: &str) -> Result<(), String> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        format!("endpoint must be http://127.x.x.x:PORT or http://[::1]:PORT, got {endpoint:?}")
    })?;
    let host = rest.split('/').next().unwrap_or("");
    let loopback =
        host.starts_with("127.") || host.starts_with("[::1]") || host.starts_with("localhost");
    if loopback {
        Ok(())
    } else {
        Err(format!("refusing non-loopback IMDS endpoint {endpoint:?}"))
    }
}

/// What [`Timed`] saw.
#[derive(Debug, Default)]
struct Attempts {
    /// Requests sent.
    count: u32,
    /// The last request: its method and path, when its answer's head came (or it failed), and
    /// how many times in a row that request has been sent.
    last: Option<(String, Option<Instant>, u32)>,
    /// The backoffs drawn before retries, and the means of their distributions.
    backoff: f64,
    backoff_mean: f64,
}

/// An HTTP client that only watches the requests of the one it wraps.
#[derive(Debug, Clone)]
struct Timed {
    inner: SharedHttpClient,
    seen: Arc<Mutex<Attempts>>,
}

#[derive(Debug)]
struct TimedConnector {
    inner: SharedHttpConnector,
    seen: Arc<Mutex<Attempts>>,
}

impl HttpClient for Timed {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(TimedConnector {
            inner: self.inner.http_connector(settings, components),
            seen: self.seen.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

impl HttpConnector for TimedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let key = format!("{} {}", request.method(), request.uri());
        let now = Instant::now();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.count += 1;
            let run = match seen.last.take() {
                Some((last, ended, run)) if last == key => {
                    // Retry `run` of this request: its backoff was drawn from [0, 2^(run-1)) s.
                    if let Some(ended) = ended {
                        seen.backoff += now.duration_since(ended).as_secs_f64();
                    }
                    seen.backoff_mean += 0.5 * f64::from(1u32 << (run - 1).min(20));
                    run + 1
                }
                _ => 1,
            };
            seen.last = Some((key, None, run));
        }
        let fut = self.inner.call(request);
        let seen = self.seen.clone();
        HttpConnectorFuture::new(async move {
            let result = fut.await;
            if let Some((_, ended, _)) = seen.lock().unwrap().last.as_mut() {
                *ended = Some(Instant::now());
            }
            result
        })
    }
}

/// The kind of a credentials error: the `CredentialsError` variant.
fn kind(err: &CredentialsError) -> &'static str {
    match err {
        CredentialsError::CredentialsNotLoaded(_) => "CredentialsNotLoaded",
        CredentialsError::ProviderTimedOut(_) => "ProviderTimedOut",
        CredentialsError::InvalidConfiguration(_) => "InvalidConfiguration",
        CredentialsError::ProviderError(_) => "ProviderError",
        CredentialsError::Unhandled(_) => "Unhandled",
        _ => "CredentialsError(other)",
    }
}

/// The error's chain of causes, each by its own `Display`, except an IMDS error response (whose
/// `Display` dumps the whole HTTP response): that one says only its status.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        match e.downcast_ref::<ImdsError>() {
            Some(ImdsError::ErrorResponse(r)) => parts.push(format!(
                "IMDS error response (status {})",
                r.response().status().as_u16()
            )),
            _ => parts.push(e.to_string()),
        }
        next = e.source();
    }
    let mut s = parts.join(": ");
    s.truncate(400);
    s
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("IMDS_ENDPOINT").ok())
        .unwrap_or_default();
    if let Err(e) = refuse_non_loopback(&endpoint) {
        eprintln!("imds-sdk-client-rust: {e}");
        std::process::exit(2);
    }
    let deadline = std::env::var("IMDS_CLIENT_DEADLINE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(30.0);

    let seen = Arc::new(Mutex::new(Attempts::default()));
    let http = Timed {
        inner: plain_http_client(),
        seen: seen.clone(),
    };
    let start = Instant::now();
    let client = imds::Client::builder()
        .configure(&ProviderConfig::without_region().with_http_client(http))
        .endpoint(&endpoint)
        .expect("endpoint parses")
        .build();
    let provider = ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    // On a task of its own, so that a panic inside aws-config (it panics on a role name that is
    // not a valid URI path, e.g. one with a newline: imds/client.rs, `.expect("valid request")`)
    // is reported as a result rather than ending this process without a line.
    let task = tokio::spawn(async move { provider.provide_credentials().await });
    let result = tokio::time::timeout(Duration::from_secs_f64(deadline), task).await;
    let wait = start.elapsed().as_secs_f64();

    let line = match result {
        Ok(Err(join_error)) => json!({
            "sdk": "rust",
            "available": false,
            "wait_seconds": wait,
            "error": "panic",
            "detail": join_error
                .try_into_panic()
                .ok()
                .and_then(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())))
                .map(|mut s| { s.truncate(300); s }),
            "access_key_id_prefix": null,
            "hung": false,
        }),
        Ok(Ok(Ok(creds))) => json!({
            "sdk": "rust",
            "available": true,
            "wait_seconds": wait,
            "error": null,
            "access_key_id_prefix": creds.access_key_id().chars().take(4).collect::<String>(),
            "hung": false,
            "expiry_in_seconds": creds.expiry().and_then(|e| {
                e.duration_since(std::time::SystemTime::now()).ok().map(|d| d.as_secs_f64())
            }),
        }),
        Ok(Ok(Err(err))) => json!({
            "sdk": "rust",
            "available": false,
            "wait_seconds": wait,
            "error": kind(&err),
            "detail": err.source().map(chain),
            "access_key_id_prefix": null,
            "hung": false,
        }),
        Err(_) => json!({
            "sdk": "rust",
            "available": false,
            "wait_seconds": wait,
            "error": "deadline",
            "access_key_id_prefix": null,
            "hung": true,
        }),
    };
    let mut line = line;
    {
        let seen = seen.lock().unwrap();
        line["attempts"] = json!(seen.count);
        line["retry_backoff_seconds"] = json!(seen.backoff);
        line["retry_backoff_mean_seconds"] = json!(seen.backoff_mean);
    }
    println!("{line}");
}
