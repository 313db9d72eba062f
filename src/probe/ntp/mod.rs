//! The NTP probe: the clock offset against the Amazon Time Sync Service (or the servers
//! configured), one SNTP exchange per server per run, written by hand.
//!
//! Owns: its configuration ([`NtpConfig`], which refuses public NTP services), one query with a
//! deadline ([`query`]), the `imds_ntp_*` series, and the scheduled probe ([`NtpProbe`]). The
//! packet format and arithmetic are in [`packet`]. Does not own clock discipline: it never sets
//! the clock. A crate such as rsntp or sntpc was not used: they do not expose the kiss code, the
//! origin check as a classified failure, or root delay/dispersion together.

pub mod packet;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::{GaugeVec, Opts};
use tokio::net::UdpSocket;

pub use self::packet::{NtpError, NtpSample};
use self::packet::{client_request, duration_to_ntp_units, sample_from_reply, system_time_to_ntp};
use super::{Failure, Prober, Schedule};
use crate::config::ConfigError;
use crate::labels::Probe;
use crate::metrics::{Families, Metrics, Recorded, background_help};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The NTP probe's settings (flags `--ntp.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtpConfig {
    /// `host:port` each (see [`NtpConfig::servers_or_default`]); also the `server` label values.
    pub servers: Vec<String>,
    /// Time between runs (before jitter).
    pub interval: Duration,
    /// Deadline of each query.
    pub timeout: Duration,
    /// Allow public NTP pools and services as servers.
    pub allow_public: bool,
}

impl NtpConfig {
    /// The Amazon Time Sync Service, for real EC2 nodes only.
    pub const DEFAULT_SERVER: &str = "169.254.169.123:123";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The servers given, with port 123 added where missing, or the Amazon Time Sync Service.
    pub fn servers_or_default(servers: &[String]) -> Vec<String> {
        if servers.is_empty() {
            vec![Self::DEFAULT_SERVER.to_string()]
        } else {
            servers.iter().map(|s| normalize_server(s)).collect()
        }
    }

    /// Checks what the types cannot; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::interval("ntp.interval", self.interval)?;
        crate::config::timeout("ntp.timeout", self.timeout)?;
        for s in &self.servers {
            validate_server_name(s, self.allow_public)
                .map_err(|e| ConfigError::new("ntp.server", e))?;
        }
        Ok(())
    }

    /// When the probe runs: each server is queried in turn with its own deadline.
    pub fn schedule(&self) -> Schedule {
        let servers = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        Schedule {
            interval: self.interval,
            deadline: (self.timeout.saturating_mul(servers.saturating_add(1))).max(self.interval),
        }
    }
}

impl Default for NtpConfig {
    fn default() -> Self {
        Self {
            servers: vec![Self::DEFAULT_SERVER.to_string()],
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            allow_public: false,
        }
    }
}

/// Adds NTP's port 123 to a server given without one.
pub fn normalize_server(s: &str) -> String {
    let s = s.trim();
    if s.parse::<SocketAddr>().is_ok() {
        return s.to_string();
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{s}]:123");
    }
    if s.starts_with('[') && !s.contains("]:") {
        return format!("{s}:123");
    }
    if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:123")
    }
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

/// One SNTP exchange with `server` ("host:port"); `timeout` bounds resolve, send and receive
/// together.
///
/// Replies whose origin does not match our request are dropped and we keep waiting, as chrony
/// and ntpd do (a late reply to an earlier request must not be taken for this one). If nothing
/// else arrives before the deadline, the result is [`NtpError::OriginMismatch`] rather than
/// [`NtpError::Timeout`], so the failure says what was seen. Any other invalid reply from the
/// connected peer ends the query at once.
///
/// t1 is wall-clock time (NTP compares wall clocks), but t4 is t1 plus the monotonic time
/// elapsed, so a clock step during the exchange cannot corrupt the sample.
pub async fn query(server: &str, timeout: Duration) -> Result<NtpSample, NtpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let connect_err = |op: &'static str| move |source: io::Error| NtpError::Connect { op, source };

    let mut addrs = tokio::time::timeout_at(deadline, tokio::net::lookup_host(server))
        .await
        .map_err(|_| NtpError::Timeout)?
        .map_err(connect_err("resolve"))?;
    let Some(addr) = addrs.next() else {
        return Err(NtpError::Connect {
            op: "resolve",
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        });
    };
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(connect_err("bind"))?;
    // connect() makes the kernel drop datagrams from any other address and turns an ICMP
    // port-unreachable into ECONNREFUSED on recv.
    socket.connect(addr).await.map_err(connect_err("connect"))?;

    let t1_wall = SystemTime::now();
    let t1_mono = Instant::now();
    let t1 = system_time_to_ntp(t1_wall);
    let request = client_request(t1);
    tokio::time::timeout_at(deadline, socket.send(&request))
        .await
        .map_err(|_| NtpError::Timeout)?
        .map_err(connect_err("send"))?;

    // Room for extension fields and a MAC; only the header is read.
    let mut buf = [0u8; 1024];
    // A datagram that does not answer this request (not a server reply, another version, another
    // origin: a late reply to an earlier request, a stray or a spoofed packet) is set aside and
    // the query waits on, as chrony and ntpd do; if nothing better arrives before the deadline,
    // the failure says what was seen rather than "timeout". A reply to this request is final,
    // valid or not.
    let mut set_aside = None;
    loop {
        let received = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(set_aside.unwrap_or(NtpError::Timeout)),
            Ok(result) => result.map_err(connect_err("recv"))?,
        };
        let t4 = t1.wrapping_add(duration_to_ntp_units(t1_mono.elapsed()));
        match sample_from_reply(&buf[..received], t1, t4) {
            Err(e) if !answers_request(&buf[..received], t1) => set_aside = Some(e),
            other => return other,
        }
    }
}

/// Whether `datagram` is a server's reply to the request whose transmit timestamp was `t1`.
fn answers_request(datagram: &[u8], t1: u64) -> bool {
    packet::Packet::decode(datagram).is_ok_and(|p| {
        p.mode == packet::MODE_SERVER && matches!(p.version, 3 | 4) && p.origin_timestamp == t1
    })
}

// ---------------------------------------------------------------------------------------------
// Server names
// ---------------------------------------------------------------------------------------------

/// Public NTP services a fleet of DaemonSets must not query without an explicit opt-in.
const PUBLIC_SERVICES: &[&str] = &[
    "time.google.com",
    "time1.google.com",
    "time2.google.com",
    "time3.google.com",
    "time4.google.com",
    "time.cloudflare.com",
    "time.aws.com",
    "time.windows.com",
    "time.apple.com",
    "ntp.ubuntu.com",
];

/// Refuses well-known public NTP services (the NTP Pool, the big public time services, NIST)
/// unless `allow_public`: one exporter per node across a fleet, each polling every minute, is
/// exactly the load these services ask people not to send. Accepts "host:port", "[v6]:port" or
/// a bare host. IP literals are not checked (a public server named by its address passes; the
/// flag's documentation says so).
pub fn validate_server_name(server: &str, allow_public: bool) -> Result<(), String> {
    let host = host_part(server).trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("ntp server {server:?} has no host"));
    }
    // The name becomes the `server` label and is logged: no host name has these.
    if server
        .chars()
        .any(|c| crate::untrusted::is_hidden(c) || c.is_whitespace())
    {
        // `{:?}` escapes them.
        return Err(format!(
            "ntp server {server:?} holds a space, control or format character"
        ));
    }
    if !crate::config::is_host(&host) {
        return Err(format!(
            "ntp server {server:?}: {host:?} is neither an IP address nor a host name"
        ));
    }
    if let Some(port) = port_part(server)
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "ntp server {server:?}: the port must be a number from 0 to 65535"
        ));
    }
    if allow_public {
        return Ok(());
    }
    let public = host == "pool.ntp.org"
        || host.ends_with(".pool.ntp.org")
        || host == "nist.gov"
        || host.ends_with(".nist.gov")
        || PUBLIC_SERVICES.contains(&host.as_str());
    if public {
        return Err(format!(
            "ntp server {server:?} is a public NTP service; a fleet of exporters must not poll it. \
             Use the Amazon Time Sync Service (169.254.169.123:123) or pass --ntp.allow-public"
        ));
    }
    Ok(())
}

fn port_part(server: &str) -> Option<&str> {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split_once("]:").map(|(_, p)| p);
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some(port),
        _ => None,
    }
}

fn host_part(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        // More than one ':' without brackets is a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => server,
    }
}

// ---------------------------------------------------------------------------------------------
// Series and the scheduled probe
// ---------------------------------------------------------------------------------------------

/// The `imds_ntp_*` series, by `server`. A server whose query failed has none: a stale offset
/// must not keep a skew alert firing (or quiet).
pub struct NtpFamilies {
    offset: GaugeVec,
    rtt: GaugeVec,
    stratum: GaugeVec,
    leap: GaugeVec,
    root_delay: GaugeVec,
    root_dispersion: GaugeVec,
}

impl NtpFamilies {
    pub fn new() -> Self {
        let gauge = |name: &str, text: &str| {
            GaugeVec::new(Opts::new(name, background_help(text)), &["server"])
                .expect("valid metric")
        };
        Self {
            offset: gauge(
                "imds_ntp_offset_seconds",
                "Clock offset against the NTP server in seconds: server time minus local time, so positive means the local clock is behind.",
            ),
            rtt: gauge(
                "imds_ntp_rtt_seconds",
                "Round-trip time of the last NTP exchange in seconds, server processing time excluded.",
            ),
            stratum: gauge("imds_ntp_stratum", "Stratum reported by the NTP server."),
            leap: gauge(
                "imds_ntp_leap",
                "Leap indicator reported by the NTP server: 0 none, 1 insert, 2 delete, 3 server unsynchronised.",
            ),
            root_delay: gauge(
                "imds_ntp_root_delay_seconds",
                "Root delay reported by the NTP server, in seconds.",
            ),
            root_dispersion: gauge(
                "imds_ntp_root_dispersion_seconds",
                "Root dispersion reported by the NTP server, in seconds.",
            ),
        }
    }

    fn all(&self) -> [&GaugeVec; 6] {
        [
            &self.offset,
            &self.rtt,
            &self.stratum,
            &self.leap,
            &self.root_delay,
            &self.root_dispersion,
        ]
    }

    /// Records one server's sample.
    pub fn record_sample(&self, server: &str, sample: &NtpSample) {
        let l = &[server];
        self.offset.with_label_values(l).set(sample.offset_seconds);
        self.rtt.with_label_values(l).set(sample.rtt_seconds);
        self.stratum
            .with_label_values(l)
            .set(f64::from(sample.stratum));
        self.leap.with_label_values(l).set(f64::from(sample.leap));
        self.root_delay
            .with_label_values(l)
            .set(sample.root_delay_seconds);
        self.root_dispersion
            .with_label_values(l)
            .set(sample.root_dispersion_seconds);
    }

    /// Removes a server's series after a failed query.
    pub fn forget(&self, server: &str) {
        for g in self.all() {
            let _ = g.remove_label_values(&[server]);
        }
    }
}

impl Default for NtpFamilies {
    fn default() -> Self {
        Self::new()
    }
}

impl Families for NtpFamilies {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        self.all()
            .into_iter()
            .map(|g| Box::new(g.clone()) as Box<dyn Collector>)
            .collect()
    }
}

/// The NTP probe as the exporter schedules it: every server once per run; the run succeeds when
/// all of them answered validly.
pub struct NtpProbe {
    config: NtpConfig,
    families: Recorded<NtpFamilies>,
}

impl NtpProbe {
    pub fn new(config: NtpConfig, metrics: &Metrics) -> Self {
        Self {
            config,
            families: metrics.register(NtpFamilies::new()),
        }
    }
}

impl Prober for NtpProbe {
    const PROBE: Option<Probe> = Some(Probe::Ntp);
    const FAILING: &'static str = "NTP probe failing: the clock offset is not being measured";
    const RECOVERED: &'static str = "NTP probe succeeding again";
    /// Each server with its sample or its error.
    type Report = Vec<(String, Result<NtpSample, NtpError>)>;

    fn run(&mut self) -> impl std::future::Future<Output = Self::Report> + Send {
        let servers = self.config.servers.clone();
        let timeout = self.config.timeout;
        async move {
            let mut out = Vec::with_capacity(servers.len());
            for server in servers {
                let result = query(&server, timeout).await;
                out.push((server, result));
            }
            out
        }
    }

    fn cut_off(&mut self, _deadline: Duration) -> Self::Report {
        self.config
            .servers
            .iter()
            .map(|s| (s.clone(), Err(NtpError::Timeout)))
            .collect()
    }

    fn record(&mut self, report: &Self::Report, _now: DateTime<Utc>) -> Option<Failure> {
        let families = self.families.update();
        let mut first = None;
        for (server, result) in report {
            match result {
                Ok(sample) => {
                    tracing::debug!(server = %server, offset_seconds = sample.offset_seconds, rtt_seconds = sample.rtt_seconds, "NTP sample");
                    families.record_sample(server, sample);
                }
                Err(e) => {
                    families.forget(server);
                    first.get_or_insert_with(|| Failure {
                        reason: e.reason(),
                        detail: format!("{server}: {e}"),
                    });
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::ntp::server_reply;

    #[test]
    fn server_names_with_hidden_characters_or_spaces_are_refused() {
        for server in [
            "127.0.0.1\u{202E}:123",
            "ntp\u{200B}.internal",
            "a b:123",
            "x\n:1",
        ] {
            let err = validate_server_name(server, true).unwrap_err();
            assert!(!err.chars().any(crate::untrusted::is_hidden), "{err:?}");
            assert!(err.contains("format character"), "{err}");
        }
        assert!(validate_server_name("169.254.169.123:123", false).is_ok());
    }

    #[test]
    fn public_servers_are_refused_unless_allowed() {
        let refused = [
            "pool.ntp.org:123",
            "0.pool.ntp.org:123",
            "2.amazon.pool.ntp.org:123",
            "0.AMAZON.POOL.NTP.ORG.:123",
            "time.google.com:123",
            "time1.google.com:123",
            "time4.google.com",
            "time.cloudflare.com:123",
            "time.aws.com:123",
            "time.windows.com:123",
            "time.apple.com:123",
            "time.nist.gov:123",
            "time-a-g.nist.gov:123",
            "ntp.ubuntu.com:123",
        ];
        for server in refused {
            let err = validate_server_name(server, false).expect_err(server);
            assert!(err.contains(server), "{err}");
            assert!(err.contains("--ntp.allow-public"), "{err}");
            assert_eq!(
                validate_server_name(server, true),
                Ok(()),
                "{server} allowed"
            );
        }
    }

    #[test]
    fn private_and_link_local_servers_are_accepted() {
        let accepted = [
            "169.254.169.123:123",
            "[fd00:ec2::123]:123",
            "fd00:ec2::123",
            "127.0.0.1:12345",
            "localhost:123",
            "ntp.internal.example.com:123",
            "time5.google.com.example:123",
            "chrony.kube-system.svc:123",
            // Not the NTP Pool: only the domain and its subdomains are.
            "mypool.ntp.org:123",
        ];
        for server in accepted {
            assert_eq!(validate_server_name(server, false), Ok(()), "{server}");
        }
    }

    #[test]
    fn empty_server_is_refused() {
        for server in [
            "",
            ":123",
            "[]:123",
            "%s:123",
            "ü:123",
            "a b:123",
            "127.0.0.1:99999",
            "127.0.0.1:-1",
            "host:",
        ] {
            assert!(validate_server_name(server, true).is_err(), "{server:?}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Against real UDP servers on loopback
    // -----------------------------------------------------------------------------------------

    /// A loopback NTP server that answers each request with `respond(request)` (if Some).
    async fn spawn_server<F>(respond: F) -> (String, tokio::task::JoinHandle<()>)
    where
        F: Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                for reply in respond(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        (addr, task)
    }

    fn answer(offset: f64) -> impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static {
        move |req| {
            server_reply(req, SystemTime::now(), offset, 2)
                .map(|r| r.to_vec())
                .into_iter()
                .collect()
        }
    }

    #[tokio::test]
    async fn query_measures_the_simulated_offset_within_10ms() {
        for offset in [2.5, -1.25] {
            let (addr, task) = spawn_server(answer(offset)).await;
            let sample = query(&addr, Duration::from_secs(2)).await.expect("sample");
            assert!(
                (sample.offset_seconds - offset).abs() < 0.010,
                "want {offset}, got {}",
                sample.offset_seconds
            );
            assert!(sample.rtt_seconds >= 0.0 && sample.rtt_seconds < 0.5);
            assert_eq!(sample.stratum, 2);
            assert_eq!(sample.leap, 0);
            assert_eq!(&sample.reference_id, b"LOCL");
            task.abort();
        }
    }

    #[tokio::test]
    async fn kiss_of_death_reply_is_classified_with_its_code() {
        let (addr, task) = spawn_server(|req| {
            let Some(reply) = server_reply(req, SystemTime::now(), 0.0, 0) else {
                return vec![];
            };
            let mut reply = reply.to_vec();
            reply[12..16].copy_from_slice(b"RATE");
            vec![reply]
        })
        .await;
        let err = query(&addr, Duration::from_secs(2))
            .await
            .expect_err("kiss");
        assert_eq!(err.reason().as_str(), "kiss_of_death");
        assert!(
            matches!(&err, NtpError::KissOfDeath(code) if code == "RATE"),
            "{err:?}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn silent_server_times_out_at_the_deadline() {
        let (addr, task) = spawn_server(|_| vec![]).await;
        let started = Instant::now();
        let err = query(&addr, Duration::from_millis(200))
            .await
            .expect_err("timeout");
        let elapsed = started.elapsed();
        assert_eq!(err.reason().as_str(), "timeout", "{err}");
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn wrong_origin_reply_is_classified_as_origin_mismatch() {
        let (addr, task) = spawn_server(|req| {
            let Some(reply) = server_reply(req, SystemTime::now(), 0.0, 2) else {
                return vec![];
            };
            let mut reply = reply.to_vec();
            reply[31] ^= 0xff; // low byte of the origin timestamp
            vec![reply]
        })
        .await;
        let started = Instant::now();
        let err = query(&addr, Duration::from_millis(300))
            .await
            .expect_err("mismatch");
        assert_eq!(err.reason().as_str(), "origin_mismatch", "{err}");
        // It waited for a matching reply until the deadline.
        assert!(started.elapsed() >= Duration::from_millis(250));
        task.abort();
    }

    #[tokio::test]
    async fn stale_reply_is_skipped_when_the_real_one_follows() {
        let (addr, task) = spawn_server(|req| {
            let Some(good) = server_reply(req, SystemTime::now(), 0.5, 2) else {
                return vec![];
            };
            let mut stale = good.to_vec();
            stale[31] ^= 0xff;
            vec![stale, good.to_vec()]
        })
        .await;
        let sample = query(&addr, Duration::from_secs(2)).await.expect("sample");
        assert!((sample.offset_seconds - 0.5).abs() < 0.010, "{sample:?}");
        task.abort();
    }

    #[tokio::test]
    async fn malformed_datagrams_before_the_reply_are_ignored() {
        let (addr, task) = spawn_server(|req| {
            let Some(good) = server_reply(req, SystemTime::now(), 0.5, 2) else {
                return vec![];
            };
            let mut client_mode = good.to_vec();
            client_mode[0] = (client_mode[0] & !0b111) | 3;
            vec![
                b"garbage".to_vec(),
                vec![0u8; 48],
                client_mode,
                good.to_vec(),
            ]
        })
        .await;
        let sample = query(&addr, Duration::from_secs(2)).await.expect("sample");
        assert!((sample.offset_seconds - 0.5).abs() < 0.010, "{sample:?}");
        task.abort();
    }

    #[tokio::test]
    async fn only_malformed_datagrams_end_as_what_was_seen_at_the_deadline() {
        let (addr, task) = spawn_server(|_| vec![b"garbage".to_vec()]).await;
        let started = std::time::Instant::now();
        let err = query(&addr, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(
            err.reason(),
            crate::labels::Reason::InvalidResponse,
            "{err}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(280),
            "waited for the deadline"
        );
        task.abort();
    }

    #[tokio::test]
    async fn an_unsynchronised_server_fails_the_query_with_its_own_reason() {
        let (addr, task) = spawn_server(|req| {
            let Some(mut reply) = server_reply(req, SystemTime::now(), 1000.0, 2) else {
                return vec![];
            };
            reply[0] |= 0b1100_0000; // leap indicator 3
            vec![reply.to_vec()]
        })
        .await;
        let err = query(&addr, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.reason(), crate::labels::Reason::Unsynchronized, "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn closed_port_is_classified_as_connect() {
        // Take a free port and release it; nothing listens there afterwards.
        let addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .to_string();
        let err = query(&addr, Duration::from_secs(2))
            .await
            .expect_err("refused");
        assert_eq!(err.reason().as_str(), "connect", "{err}");
    }

    #[tokio::test]
    async fn server_without_port_is_classified_as_connect() {
        let err = query("127.0.0.1", Duration::from_secs(1))
            .await
            .expect_err("no port");
        assert!(
            matches!(err, NtpError::Connect { op: "resolve", .. }),
            "{err:?}"
        );
    }
}
