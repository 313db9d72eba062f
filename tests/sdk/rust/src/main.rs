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

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use aws_config::imds;
use aws_config::imds::client::error::ImdsError;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use serde_json::json;

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

    let start = Instant::now();
    let client = imds::Client::builder()
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
    println!("{line}");
}
