//! The bounded HTTP server: the accept loop and every connection's life, served with hyper
//! directly (`axum::serve` has neither per-connection deadlines nor TLS).
//!
//! What it promises (docs/reliability.md has the figures):
//! - **At most `--web.max-connections` connections**, further capped by the open-files limit
//!   minus [`FD_RESERVE`] descriptors kept for the probes, the process collector and the
//!   configuration reloads, so that no load on the port can make a probe fail with "too many
//!   open files" (a false IMDS outage).
//! - **When full, the peer that holds the most connections pays**: new connections are always
//!   accepted. One from the peer address that already holds the most is closed at once (cheap:
//!   no task, no handshake); one from any other peer takes the place of that peer's
//!   longest-waiting connection (idle, or still sending its request head). A host flooding the
//!   port therefore only ever loses its own connections, and a scraper from another address is
//!   served however many idle or slow connections the flood holds. A connection with a request
//!   in progress is never evicted; when no connection can be, the new one is closed at once: its
//!   client retries, which is better than a queue it cannot see.
//! - **Deadlines**: the request head (and the TLS handshake before it) must arrive within
//!   `--web.read-header-timeout` of the connection or of its first byte; a keep-alive connection
//!   may stay idle for `--web.idle-timeout`; a response the client does not take within
//!   `--web.idle-timeout` is abandoned.
//! - **Shutdown** stops accepting, closes idle and half-sent connections at once, lets requests
//!   in progress finish for up to [`SHUTDOWN_GRACE`], then drops what is left.
//!
//! Everything runs on the exporter's one runtime thread; bcrypt checks go to the blocking pool
//! (`auth`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config_file::Settings;
use super::reload::LiveSettings;

/// Descriptors kept out of the connections' reach: the probes' sockets (IMDS, NTP), the process
/// collector's /proc reads, the ethtool socket, the configuration reloads, the runtime's own.
/// About 15 are open at start; this leaves several times what the rest can use at once.
pub const FD_RESERVE: u64 = 64;

/// How long requests in progress may take to finish once shutdown has begun. Well under the
/// DaemonSet's 10 s grace period and systemd's `TimeoutStopSec=10s`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Largest request head (hyper's read buffer): a scrape's is well under 1 KiB. Bounds the memory a
/// connection can make the exporter hold.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The server's limits, from [`super::WebConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The soft limit of open files, and how many connections it leaves room for after what is open
/// now and [`FD_RESERVE`].
pub fn descriptor_room() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(32);
    (soft, soft.saturating_sub(open + FD_RESERVE))
}

/// What a connection is doing, for its deadlines and for eviction.
struct SlotState {
    accepted: Instant,
    /// A request is being handled or its response written.
    busy: bool,
    /// When the connection last became idle (after a response).
    idle_since: Instant,
    /// The first byte after `idle_since` (or after accepting): the start of a request head.
    first_byte: Option<Instant>,
    requests: u64,
    evicted: bool,
}

struct Slot {
    id: u64,
    peer: IpAddr,
    state: Mutex<SlotState>,
    changed: Notify,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When this connection must be closed if nothing changes (busy: its response's deadline).
    fn deadline(&self, limits: &Limits) -> Instant {
        let s = self.lock();
        if s.busy {
            // `idle_since` is when the request began.
            s.idle_since + limits.idle_timeout
        } else if s.requests == 0 {
            // The TLS handshake and the first request head, from the connection's start.
            s.accepted + limits.read_header_timeout
        } else if let Some(first) = s.first_byte {
            first + limits.read_header_timeout
        } else {
            s.idle_since + limits.idle_timeout
        }
    }

    /// Since when it has waited for a request, if it is not busy: the eviction order.
    fn waiting_since(&self) -> Option<Instant> {
        let s = self.lock();
        (!s.busy && !s.evicted).then(|| {
            if s.requests == 0 {
                s.accepted
            } else {
                s.idle_since
            }
        })
    }

    fn begin_request(&self) {
        let mut s = self.lock();
        s.busy = true;
        s.idle_since = Instant::now();
        s.first_byte = None;
        s.requests += 1;
        drop(s);
        self.changed.notify_one();
    }

    fn end_request(&self) {
        let mut s = self.lock();
        s.busy = false;
        s.idle_since = Instant::now();
        s.first_byte = None;
        drop(s);
        self.changed.notify_one();
    }

    fn saw_bytes(&self) {
        let mut s = self.lock();
        if !s.busy && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    fn evict(&self) {
        self.lock().evicted = true;
        self.changed.notify_one();
    }

    /// Part of a request head is in, and not all of it.
    fn is_half_sent(&self) -> bool {
        let s = self.lock();
        !s.busy && s.first_byte.is_some()
    }

    /// Resolves when the connection has passed its deadline or was evicted.
    async fn expired(&self, limits: &Limits) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().evicted {
                return;
            }
            let deadline = self.deadline(limits);
            if deadline <= Instant::now() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
            }
        }
    }
}

/// The open connections: admission, eviction.
struct Connections {
    slots: Mutex<Vec<Arc<Slot>>>,
    max: usize,
    next_id: std::sync::atomic::AtomicU64,
}

/// A connection's place; leaving it (drop) frees the place.
struct Admitted {
    slot: Arc<Slot>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut slots = self.connections.lock();
        if let Some(i) = slots.iter().position(|s| s.id == self.slot.id) {
            slots.swap_remove(i);
        }
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a new connection from `peer`. When full, the longest-waiting connection of
    /// the peer with the most connections is evicted, if that is not `peer` itself; otherwise
    /// (or when none is waiting) `None`: the new connection is refused.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let mut slots = self.lock();
        // Evicted connections still hold their descriptor until their task runs; they count.
        if slots.len() >= self.max {
            if slots.len() >= self.max + 16 {
                return None;
            }
            let mut per_peer: std::collections::HashMap<IpAddr, usize> = Default::default();
            for s in slots.iter().filter(|s| !s.lock().evicted) {
                *per_peer.entry(s.peer).or_default() += 1;
            }
            let mine = per_peer.get(&peer).copied().unwrap_or(0);
            let (holds, _, victim) = slots
                .iter()
                .filter_map(|s| s.waiting_since().map(|t| (per_peer[&s.peer], t, s)))
                // The most connections first, then the longest waiting.
                .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)))?;
            if holds <= mine {
                return None;
            }
            victim.evict();
        }
        let now = Instant::now();
        let slot = Arc::new(Slot {
            id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            peer,
            state: Mutex::new(SlotState {
                accepted: now,
                busy: false,
                idle_since: now,
                first_byte: None,
                requests: 0,
                evicted: false,
            }),
            changed: Notify::new(),
        });
        slots.push(slot.clone());
        Some(Admitted {
            slot,
            connections: self.clone(),
        })
    }
}

/// A connection's byte stream, noting the first byte of each request head for the deadlines.
struct Watched<T> {
    inner: T,
    slot: Arc<Slot>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.slot.saw_bytes();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that marks the end of its request when hyper is done with it.
struct Tracked {
    inner: Body,
    _request: InProgress,
}

struct InProgress(Arc<Slot>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Paths answered without basic auth: the kubelet's probes cannot send credentials, and these
/// say nothing but "alive" and "ready".
const OPEN_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// One request: basic auth (when configured), the router, the configured headers.
async fn handle(app: Router, settings: Arc<Settings>, req: Request<Incoming>) -> Response<Body> {
    if let Some(auth) = &settings.auth
        && !OPEN_PATHS.contains(&req.uri().path())
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !auth.check(given).await {
            let mut resp = Response::new(Body::from("Unauthorized\n"));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"imds_exporter\""),
            );
            return with_headers(resp, &settings);
        }
    }
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let resp = match hyper::service::Service::call(&svc, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    with_headers(resp, &settings)
}

fn with_headers(mut resp: Response<Body>, settings: &Settings) -> Response<Body> {
    for (name, value) in &settings.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// Serves `app` on `listener` until `shutdown` turns true, then winds the connections down (at
/// most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    settings: Arc<LiveSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Connections {
        slots: Mutex::new(Vec::new()),
        max: limits.max_connections,
        next_id: std::sync::atomic::AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE/ENFILE leave the connection in the backlog: wait instead of spinning
                // (Go's net/http backs off the same way).
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(admitted) = connections.admit(peer.ip()) else {
            tracing::debug!(%peer, "no room: closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            settings: settings.current(),
            limits,
            admitted,
            peer,
        };
        tasks.spawn(conn.run(stream, shutdown.clone()));
        // Let the new connection read its request before the next accept can evict it.
        tokio::task::yield_now().await;
    }
    drop(listener);
    let deadline = tokio::time::sleep(SHUTDOWN_GRACE + Duration::from_millis(500));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(left = tasks.len(), "connections still open after the shutdown grace: dropping them");
                tasks.abort_all();
                break;
            }
        }
    }
}

struct Conn {
    app: Router,
    settings: Arc<Settings>,
    limits: Limits,
    admitted: Admitted,
    peer: SocketAddr,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<Watched<TcpStream>>>),
}

impl Conn {
    async fn run(self, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let slot = self.admitted.slot.clone();
        let limits = self.limits;
        let io = match &self.settings.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let watched = Watched {
                    inner: stream,
                    slot: slot.clone(),
                };
                tokio::select! {
                    r = acceptor.accept(watched) => match r {
                        Ok(s) => Stream::Tls(Box::new(s)),
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    },
                    _ = slot.expired(&limits) => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        };
        let (app, settings) = (self.app.clone(), self.settings.clone());
        let svc_slot = slot.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (app, settings, slot) = (app.clone(), settings.clone(), svc_slot.clone());
            async move {
                slot.begin_request();
                let request = InProgress(slot);
                let resp = handle(app, settings, req).await;
                Ok::<_, Infallible>(resp.map(|inner| Tracked {
                    inner,
                    _request: request,
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Our own deadlines (Slot::deadline) replace hyper's header timeout, which also cuts
        // keep-alive connections at the same limit.
        builder
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(64);
        match io {
            Stream::Plain(s) => {
                let io = Watched {
                    inner: s,
                    slot: slot.clone(),
                };
                drive(
                    builder.serve_connection(TokioIo::new(io), service),
                    &slot,
                    limits,
                    shutdown,
                )
                .await
            }
            Stream::Tls(s) => {
                drive(
                    builder.serve_connection(TokioIo::new(s), service),
                    &slot,
                    limits,
                    shutdown,
                )
                .await
            }
        }
        drop(self.admitted);
    }
}

/// Runs a connection until it ends, expires, or shutdown has let its request finish.
async fn drive<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    slot: &Slot,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Tracked>,
{
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = slot.expired(&limits) => return,
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    // Shutting down: a half-sent request head is dropped now; hyper closes an idle connection at
    // once, and lets a response in progress (or still in its write buffer) finish within the
    // grace.
    if slot.is_half_sent() {
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 2,
            read_header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn connections(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            slots: Mutex::new(Vec::new()),
            max,
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn a_full_house_evicts_the_longest_waiting_connection_never_a_busy_one() {
        let c = connections(2);
        let a = c.admit(ONE).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = c.admit(ONE).unwrap();
        assert!(
            c.admit(ONE).is_none(),
            "the biggest holder's new one is refused"
        );
        let third = c.admit(TWO).unwrap();
        assert!(a.slot.lock().evicted, "the oldest waiting one goes");
        assert!(!b.slot.lock().evicted);
        drop(a);
        b.slot.begin_request();
        assert!(
            c.admit(TWO).is_none(),
            "the only one left to evict is busy: the new one is refused"
        );
        b.slot.end_request();
        third.slot.begin_request();
        assert!(c.admit(TWO).is_none(), "one each: nobody holds more");
        let _fourth = c.admit("127.0.0.3".parse().unwrap()).unwrap();
        assert!(b.slot.lock().evicted);
    }

    #[tokio::test(start_paused = true)]
    async fn the_peer_with_the_most_connections_makes_room() {
        let c = connections(3);
        let scraper = c.admit(ONE).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let flood: Vec<_> = (0..2).map(|_| c.admit(TWO).unwrap()).collect();
        // The flood's next one is refused; the scraper's connection, though it waited longest,
        // stays: its peer holds one of three.
        assert!(c.admit(TWO).is_none());
        assert!(!scraper.slot.lock().evicted);
        let _another_client = c.admit("127.0.0.3".parse().unwrap()).unwrap();
        assert!(flood[0].slot.lock().evicted && !scraper.slot.lock().evicted);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection_state() {
        let l = limits();
        let c = connections(2);
        let a = c.admit(ONE).unwrap();
        let start = Instant::now();
        assert_eq!(a.slot.deadline(&l), start + l.read_header_timeout);
        a.slot.begin_request();
        a.slot.end_request();
        assert_eq!(
            a.slot.deadline(&l),
            start + l.idle_timeout,
            "keep-alive idle"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        a.slot.saw_bytes();
        assert_eq!(
            a.slot.deadline(&l),
            start + Duration::from_secs(30) + l.read_header_timeout,
            "a new head has the header timeout from its first byte"
        );
        let expired = a.slot.expired(&l);
        tokio::time::timeout(Duration::from_secs(6), expired)
            .await
            .expect("expires at the header deadline");
    }
}
