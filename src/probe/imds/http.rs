//! The one HTTP exchange with IMDS, used by the exporter's probe and by `check`, so both measure
//! the same way: reqwest (the design's client) set up as a careful SDK is.
//!
//! Deliberate differences from a general HTTP client, all of them what a careful SDK does: no
//! proxy (IMDS is link-local; `HTTP_PROXY` would send it to the proxy), no redirects (a redirect
//! from 169.254.169.254 is an attack or a misconfigured interceptor), no retries, and a fresh
//! connection per request (no pooling), so that every run measures connection set-up as a new
//! SDK client does and a stuck connection cannot carry over between runs. One deadline covers
//! connect, request and the whole body. Besides the answer, every exchange reports how it went
//! ([`Exchange`]: time to the response head, how the body ended), which the SDK verdicts need.
//!
//! Bodies: small documents are read into a buffer capped at [`MAX_BODY_BYTES`] and wiped when
//! dropped. The credentials document is parsed as it streams in ([`ImdsHttp::send_document`]),
//! in constant memory whatever its size: the SDKs set no size limit, so neither may the probe,
//! and its secrets are skipped unread rather than buffered.
//!
//! Earlier versions drove hyper's connection API by hand: 195 µs of CPU per probe run against
//! 295 µs through reqwest (BENCHMARKS.md, the same machine and run). At the default 30 s interval
//! that is 3 µs of CPU per second, which buys nothing that matters, so the well-kept client wins.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, Url};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::sdk::{BodyEnd, Exchange};
use crate::labels::Reason;
use crate::probe::credentials::{self, Inspection, KeyIdHasher};

/// Bodies of the small documents (token, role list, info, identity) larger than this are
/// refused: the largest real one is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The credentials document is parsed as it arrives; past this size it is refused (a bound on
/// the time a hostile answer can take, not on memory).
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A body that received nothing for this long before the deadline was silent, not flowing.
const SILENT: Duration = Duration::from_millis(500);
/// After refusing a body as too large, this much more of it is read (and dropped) to learn how
/// it ends, which is what the SDKs, who set no limit, would see; beyond it, it counts as flowing.
const DRAIN_BYTES: u64 = 1024 * 1024;
/// The parser is handed the document in pieces of this size: each hand-off wakes a thread.
const HANDOFF_BYTES: usize = 64 * 1024;
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// Why one request failed. Carries context for the log line; never body text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(u64),
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
            RequestError::BodyTooLarge(_) | RequestError::Invalid(_) => Reason::InvalidResponse,
            RequestError::Parse(e) => e.reason(),
        }
    }
}

const USER_AGENT: &str = concat!("imds_exporter/", env!("CARGO_PKG_VERSION"));

/// A response (any status) whose body is wiped when it is dropped.
pub struct Answer {
    pub status: u16,
    /// The token answer's TTL header parses as a number of seconds.
    pub ttl_header: bool,
    pub body: Zeroizing<Vec<u8>>,
}

/// A credentials document's answer: its status and, for a 200, what the parse found.
pub struct DocumentAnswer {
    pub status: u16,
    pub inspection: Option<Result<Inspection, credentials::ParseError>>,
}

/// An HTTP client for one IMDS endpoint.
#[derive(Debug, Clone)]
pub struct ImdsHttp {
    client: reqwest::Client,
    base: Url,
    timeout: Duration,
}

/// How a body is consumed while it arrives.
enum Sink {
    Buffer(Zeroizing<Vec<u8>>),
    Document {
        tx: tokio::sync::mpsc::Sender<Bytes>,
        parse: Parse,
        /// Chunks gathered until there is enough to wake the parser for.
        pending: bytes::BytesMut,
    },
    /// Refused as too large: read and dropped, to see how it ends.
    Drain,
}

/// The parse of a credentials document, running on a blocking thread as the body arrives.
type Parse = tokio::task::JoinHandle<Result<Inspection, credentials::ParseError>>;

/// A body once it has been read.
enum Body {
    Buffer(Zeroizing<Vec<u8>>),
    Document(Parse),
}

impl ImdsHttp {
    /// `base` is a checked `http://host[:port]/` URL (IMDS), or the container endpoint's full
    /// URL, which the container probe requests with the path `""` (the URL itself).
    pub fn new(base: Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = crate::probe::client_tls::for_url(reqwest::Client::builder(), &base)
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

    /// One request with its own deadline; any status is an answer, a transport failure or an
    /// unusable body an error. The body is buffered (at most [`MAX_BODY_BYTES`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Result<Answer, RequestError>, Exchange) {
        let (result, exchange) = self.exchange(method, path, headers, None).await;
        let result = result.map(|(status, ttl_header, body)| Answer {
            status,
            ttl_header,
            body: match body {
                Body::Buffer(b) => b,
                Body::Document(_) => Zeroizing::new(Vec::new()),
            },
        });
        (result, exchange)
    }

    /// A GET of the credentials document, parsed as it streams in when the status is 200.
    pub async fn send_document(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        hasher: &KeyIdHasher,
    ) -> (Result<DocumentAnswer, RequestError>, Exchange) {
        let (result, exchange) = self
            .exchange(Method::GET, path, headers, Some(hasher))
            .await;
        let result = match result {
            Ok((status, _, Body::Document(parse))) => {
                let inspection = match parse.await {
                    Ok(r) => r,
                    Err(_) => Err(credentials::ParseError::Unreadable),
                };
                Ok(DocumentAnswer {
                    status,
                    inspection: Some(inspection),
                })
            }
            Ok((status, _, Body::Buffer(_))) => Ok(DocumentAnswer {
                status,
                inspection: None,
            }),
            Err(e) => Err(e),
        };
        (result, exchange)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        document: Option<&KeyIdHasher>,
    ) -> (Result<(u16, bool, Body), RequestError>, Exchange) {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut trace = Trace::default();
        let result = match tokio::time::timeout_at(
            deadline,
            self.run(method, path, headers, document, &mut trace),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(RequestError::Timeout(self.timeout)),
        };
        let end = Instant::now();
        // A body refused as too large was drained, not read: it stays refused, however the
        // drain ended.
        let result = match result {
            Err(RequestError::Timeout(_)) if trace.too_large.is_some() => Err(
                RequestError::BodyTooLarge(trace.too_large.unwrap_or_default()),
            ),
            other => other,
        };
        let stalled = |flowing| BodyEnd::Stalled {
            limit: self.timeout,
            flowing,
        };
        let exchange = match (&trace.head, &result) {
            (None, Err(RequestError::Timeout(_))) => Exchange::NoHeaders {
                limit: self.timeout,
            },
            (None, _) => Exchange::Transport { took: end - start },
            (Some((status, headers)), result) => Exchange::Answered {
                status: *status,
                headers: *headers,
                body: match result {
                    _ if trace.drained_past_limit => stalled(true),
                    Err(RequestError::BodyTooLarge(_)) if !trace.ended => stalled(
                        trace
                            .last_data
                            .is_some_and(|at| end.duration_since(at) < SILENT),
                    ),
                    Ok(_) | Err(RequestError::BodyTooLarge(_)) => {
                        BodyEnd::Complete { took: end - start }
                    }
                    Err(RequestError::Timeout(_)) => stalled(
                        trace
                            .last_data
                            .is_some_and(|at| end.duration_since(at) < SILENT),
                    ),
                    Err(_) => BodyEnd::Cut { took: end - start },
                },
            },
        };
        (result, exchange)
    }

    async fn run(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        document: Option<&KeyIdHasher>,
        trace: &mut Trace,
    ) -> Result<(u16, bool, Body), RequestError> {
        let start = Instant::now();
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
        trace.head = Some((status, start.elapsed()));
        let ttl_header = response
            .headers()
            .get(TOKEN_TTL_HEADER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some();
        let declared = response.content_length();
        let mut sink = match document {
            Some(_) if status == 200 && declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES) => {
                trace.too_large = Some(MAX_DOCUMENT_BYTES);
                Sink::Drain
            }
            Some(hasher) if status == 200 => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                let hasher = hasher.clone();
                let parse = tokio::task::spawn_blocking(move || {
                    // serde_json reads a byte at a time: a buffer in between saves a call per byte.
                    let reader = std::io::BufReader::with_capacity(16 * 1024, ChunkReader::new(rx));
                    credentials::inspect_credentials(reader, &hasher)
                });
                Sink::Document {
                    tx,
                    parse,
                    pending: bytes::BytesMut::new(),
                }
            }
            _ if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) => {
                trace.too_large = Some(MAX_BODY_BYTES as u64);
                Sink::Drain
            }
            _ => {
                // Sized once, so that growing it never frees an unwiped copy of a document: the
                // declared length when there is one, else the cap. (The client's own read buffers
                // and the chunks it hands over are not ours to wipe.)
                let capacity = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
                Sink::Buffer(Zeroizing::new(Vec::with_capacity(capacity)))
            }
        };
        let mut received: u64 = 0;
        let mut drained: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            trace.last_data = Some(Instant::now());
            received += chunk.len() as u64;
            match &mut sink {
                Sink::Buffer(body) if body.len() + chunk.len() > body.capacity() => {
                    // Longer than declared (or than the cap): not a body we accept. The rest
                    // is drained to see how it ends.
                    trace.too_large = Some(MAX_BODY_BYTES as u64);
                    sink = Sink::Drain;
                }
                Sink::Buffer(body) => body.extend_from_slice(&chunk),
                Sink::Document { .. } if received > MAX_DOCUMENT_BYTES => {
                    trace.too_large = Some(MAX_DOCUMENT_BYTES);
                    sink = Sink::Drain;
                }
                // The parser may have stopped early (the document ended or is invalid); the
                // rest of the body is still read, as an SDK reads it.
                Sink::Document { tx, pending, .. } => {
                    pending.extend_from_slice(&chunk);
                    if pending.len() >= HANDOFF_BYTES {
                        let _ = tx.send(pending.split().freeze()).await;
                    }
                }
                Sink::Drain => {
                    drained += chunk.len() as u64;
                    if drained > DRAIN_BYTES {
                        trace.drained_past_limit = true;
                        break;
                    }
                }
            }
        }
        trace.ended = true;
        if let Some(limit) = trace.too_large {
            return Err(RequestError::BodyTooLarge(limit));
        }
        let body = match sink {
            Sink::Buffer(b) => Body::Buffer(b),
            // Dropping the sender tells the parser that the body ended.
            Sink::Document {
                tx, parse, pending, ..
            } => {
                if !pending.is_empty() {
                    let _ = tx.send(pending.freeze()).await;
                }
                Body::Document(parse)
            }
            // (A drained body is refused above.)
            Sink::Drain => return Err(RequestError::BodyTooLarge(MAX_BODY_BYTES as u64)),
        };
        Ok((status, ttl_header, body))
    }
}

/// What the deadline needs to know about a request in flight.
#[derive(Default)]
struct Trace {
    /// Status and time from the start to the response head.
    head: Option<(u16, Duration)>,
    /// When the last piece of body arrived.
    last_data: Option<Instant>,
    /// The body was refused as larger than this.
    too_large: Option<u64>,
    /// The refused body went on past [`DRAIN_BYTES`].
    drained_past_limit: bool,
    /// The body ended (as opposed to the deadline ending the request).
    ended: bool,
}

/// The body as a blocking reader for the JSON parser, fed chunk by chunk by the request.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                // The sender is gone: the body ended (or the request failed).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
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
