//! The one HTTP exchange with IMDS, used by the exporter's probe and by `check`, so both measure
//! the same way: reqwest (the design's client) set up as a careful SDK is.
//!
//! Deliberate differences from a general HTTP client, all of them what a careful SDK does: no
//! proxy (IMDS is link-local; `HTTP_PROXY` would send it to the proxy), no redirects (a redirect
//! from 169.254.169.254 is an attack or a misconfigured interceptor), no retries, a body cap, and
//! a fresh connection per request (no pooling), so that every run measures connection set-up as
//! a new SDK client does and a stuck connection cannot carry over between runs. One deadline
//! covers connect, request and the whole body, as an SDK's timeout does.
//!
//! Earlier versions drove hyper's connection API by hand: 379 µs of CPU per probe run against
//! 511 µs through reqwest (BENCHMARKS.md). At the default 30 s interval that is 4 µs of CPU per
//! second, which buys nothing that matters, so the well-kept client wins.

use std::time::Duration;

use reqwest::{Method, Url};
use zeroize::Zeroizing;

use crate::labels::Reason;
use crate::probe::credentials;

/// Bodies larger than this are refused: the largest real IMDS document is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How often the slow-moving metadata (`iam/info`, the identity document) is fetched again.
/// Why one request failed. Carries context for the log line; never body text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Parse(#[from] credentials::ParseError),
}

impl RequestError {
    pub fn reason(&self) -> Reason {
        match self {
            RequestError::Timeout(_) => Reason::Timeout,
            RequestError::Connect(_) => Reason::Connect,
            RequestError::Status(s) => Reason::from_status(*s),
            RequestError::BodyTooLarge | RequestError::Invalid(_) => Reason::InvalidResponse,
            RequestError::Parse(e) => e.reason(),
        }
    }
}

const USER_AGENT: &str = concat!("imds_exporter/", env!("CARGO_PKG_VERSION"));

/// A response whose body is wiped when it is dropped.
pub struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// An HTTP client for one IMDS endpoint.
#[derive(Debug, Clone)]
pub struct ImdsHttp {
    client: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl ImdsHttp {
    /// `base` is a checked `http://host[:port]/` URL.
    pub fn new(base: Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .pool_max_idle_per_host(0)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            client,
            base,
            timeout,
        })
    }

    /// One request with its own deadline (connect to the end of the body); any status is an
    /// answer, a transport failure or an unusable body is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, RequestError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, headers)).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, RequestError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| RequestError::Invalid(format!("cannot build the request: {e}")))?;
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let declared = response.content_length();
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(RequestError::BodyTooLarge);
        }
        // Sized once, so that growing it never frees an unwiped copy of a credentials document:
        // the declared length when there is one, else the cap. (The client's own read buffers
        // and the chunks it hands over are not ours to wipe.)
        let capacity = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > capacity {
                // Longer than declared (or than the cap): not a body we accept.
                return Err(RequestError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }
}

/// Classifies a failed exchange. The innermost cause says what happened ("connection refused",
/// "connection reset"); the outer layers would add the URL, which is not needed. An answer that
/// is not HTTP at all (garbage from an interceptor) is a bad response, not a bad connection.
fn transport_error(e: reqwest::Error) -> RequestError {
    let mut not_http = false;
    let mut cause: &(dyn std::error::Error + 'static) = &e;
    loop {
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            not_http |= h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    if not_http {
        RequestError::Invalid(format!("not an HTTP response: {cause}"))
    } else {
        RequestError::Connect(cause.to_string())
    }
}
