//! The HTTP server under hostile and ordinary load, all on loopback: idle and slowloris
//! connections are closed by the header timeout, kept-alive ones by the idle timeout, a full
//! house still serves a fresh scrape, SIGTERM ends a process with half-sent requests quickly and
//! with 0, SIGHUP never kills, and `--web.config.file` brings TLS, mutual TLS, basic auth and
//! headers, re-read when the files change (a bad edit keeps the last good configuration).
//! curl and a real Prometheus check the same from outside: scripts/test-web.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use imds_exporter::exporter::ExporterConfig;
use imds_exporter::sim::RunningSim;
use imds_exporter::web::WebConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn config(sim: &RunningSim, web: WebConfig) -> ExporterConfig {
    ExporterConfig {
        web: WebConfig {
            listen_address: loopback(),
            ..web
        },
        ..exporter_config(sim)
    }
}

fn timeouts(header_ms: u64, idle_ms: u64) -> WebConfig {
    WebConfig {
        read_header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        ..WebConfig::default()
    }
}

/// Reads until the server closes the connection (EOF or reset); the time it took from `since`.
async fn closed(stream: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still open after {limit:?}"))
}

/// One HTTP/1.1 request on an open connection; the status and the body (Content-Length framed).
async fn request(stream: &mut TcpStream, path: &str) -> (u16, String) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn idle_and_slowloris_connections_are_closed_by_the_header_timeout() {
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(config(&sim, timeouts(500, 60_000))).await;
    let start = Instant::now();
    let mut idle = TcpStream::connect(exporter.addr).await.unwrap();
    let mut slow = TcpStream::connect(exporter.addr).await.unwrap();
    // The slowloris sends a byte every 50 ms and never finishes its head.
    let drip = tokio::spawn(async move {
        for b in
            b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed(&mut slow, start, Duration::from_secs(10)).await
    });
    let idle_after = closed(&mut idle, start, Duration::from_secs(10)).await;
    let slow_after = drip.await.unwrap();
    for (what, after) in [("idle", idle_after), ("slowloris", slow_after)] {
        assert!(
            after >= Duration::from_millis(400) && after < Duration::from_secs(5),
            "{what} closed after {after:?}, expected about 500ms"
        );
    }
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(config(&sim, timeouts(300, 1500))).await;
    let mut conn = TcpStream::connect(exporter.addr).await.unwrap();
    assert_eq!(request(&mut conn, "/-/healthy").await.0, 200);
    // Longer than the header timeout: an idle kept-alive connection is judged by the idle one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(request(&mut conn, "/metrics").await.0, 200);
    let idle_from = Instant::now();
    let after = closed(&mut conn, idle_from, Duration::from_secs(10)).await;
    assert!(
        after >= Duration::from_millis(1200) && after < Duration::from_secs(6),
        "closed {after:?} after the last response, expected about 1.5s"
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_house_makes_room_and_still_serves_a_fresh_scrape() {
    let sim = start_sim(sim_options()).await;
    let web = WebConfig {
        max_connections: 8,
        ..timeouts(60_000, 60_000)
    };
    let exporter = start_exporter(config(&sim, web)).await;
    let before = after_runs(&exporter, 1.0).await;
    // 60 connections from one peer (127.0.0.2) that send nothing, against 8 places and a 60 s
    // header timeout: the peer keeps 8, the rest are refused at once.
    let start = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..60 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(exporter.addr).await.unwrap();
        waiters.push(tokio::spawn(async move {
            closed(&mut s, start, Duration::from_secs(120)).await
        }));
    }
    let closed_count = || waiters.iter().filter(|w| w.is_finished()).count();
    eventually(Duration::from_secs(20), "idle connections evicted", || {
        let n = closed_count();
        async move {
            if n >= 52 {
                Ok(())
            } else {
                Err(format!("{n} closed"))
            }
        }
    })
    .await;
    // A client from another address (127.0.0.1) is served, again and again, while the house
    // stays full of the flood's idle connections (each scrape evicts one of them).
    for _ in 0..5 {
        let t = Instant::now();
        let (status, body) = get(&format!("http://{}/metrics", exporter.addr)).await;
        assert_eq!(status, 200);
        assert!(body.contains("imds_probe_success"));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let after = scrape(&exporter).await;
    let failures = |s: &Samples| -> f64 {
        s.iter()
            .filter(|(k, _)| k.starts_with("imds_probe_failures_total"))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(failures(&before), failures(&after), "no probe failed");
    exporter.shutdown().await;
    sim.shutdown().await;
    for w in waiters {
        w.abort();
    }
}

#[tokio::test]
async fn the_telemetry_path_is_matched_literally() {
    let sim = start_sim(sim_options()).await;
    let web = WebConfig {
        telemetry_path: "/a;b=c/@metrics".into(),
        ..WebConfig::default()
    };
    let exporter = start_exporter(config(&sim, web)).await;
    let base = format!("http://{}", exporter.addr);
    assert_eq!(get(&format!("{base}/a;b=c/@metrics")).await.0, 200);
    for other in ["/a;b=c", "/metrics", "/a;b=c/@metricsx", "/nothing"] {
        assert_eq!(get(&format!("{base}{other}")).await.0, 404, "{other}");
    }
    exporter.shutdown().await;
    sim.shutdown().await;
    for bad in [
        "/:metrics",
        "/*metrics",
        "/{",
        "/{x}",
        "/a//b",
        "/a/../b",
        "/é",
        "/a b",
    ] {
        assert!(
            imds_exporter::web::validate_telemetry_path(bad).is_err(),
            "{bad}"
        );
    }
}

// ------------------------------------------------------------------ the binary: signals

/// A running exporter binary (killed when dropped) and its address, read from its log.
struct Binary {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn exporter_binary(sim: &RunningSim, extra: &[&str]) -> Binary {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"));
    command
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(["--imds.endpoint", &sim.endpoint()])
        .args(["--collector.ntp=false", "--collector.ethtool=false"])
        .args(["--log.level", "info", "--log.format", "logfmt"])
        .args(extra);
    for (name, _) in std::env::vars() {
        if name.starts_with("IMDS_EXPORTER_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no listening line within 20s: {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the exporter exited: {seen:#?}"));
        if line.contains("imds_exporter listening") {
            let a = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("address="))
                .unwrap()
                .trim_matches('"');
            break a.parse().unwrap();
        }
        seen.push(line);
    };
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Binary { child, addr, log }
}

fn signal(child: &tokio::process::Child, sig: libc::c_int) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Waits for a log line containing `needle`.
async fn log_line(b: &mut Binary, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = b.log.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the log ended without {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?} within 20s"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_idle_half_sent_and_unread_clients_exits_0_within_the_grace() {
    let sim = start_sim(sim_options()).await;
    let mut b = exporter_binary(&sim, &[]).await;
    let _idle = TcpStream::connect(b.addr).await.unwrap();
    let mut half = TcpStream::connect(b.addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A client that asks for the metrics many times and reads nothing: responses pile up.
    let mut unread = TcpStream::connect(b.addr).await.unwrap();
    unread
        .write_all(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200))
        .await
        .unwrap();
    let (status, _) = get(&format!("http://{}/-/healthy", b.addr)).await;
    assert_eq!(status, 200);
    let t = Instant::now();
    signal(&b.child, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), b.child.wait())
        .await
        .expect("exits within 10s")
        .unwrap();
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_never_kills_a_long_running_subcommand() {
    let sim = start_sim(sim_options()).await;
    let mut b = exporter_binary(&sim, &[]).await;
    for _ in 0..3 {
        signal(&b.child, libc::SIGHUP);
        log_line(&mut b, "no --web.config.file to re-read").await;
    }
    assert!(b.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(get(&format!("http://{}/-/healthy", b.addr)).await.0, 200);

    let mut simulate = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--log.format",
            "logfmt",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(simulate.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("simulate logs");
        if line.contains("IMDS simulator listening") {
            let a = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("address="))
                .unwrap()
                .trim_matches('"')
                .to_string();
            break a;
        }
    };
    signal(&simulate, libc::SIGHUP);
    // The simulator still answers after the signal has certainly been delivered: a request
    // sent after kill(2) returned is handled after the signal was (both go through the one
    // runtime thread), and the default action would have ended it before either.
    let (status, _) = get(&format!("http://{addr}/_sim/state")).await;
    assert_eq!(status, 200);
    assert!(simulate.try_wait().unwrap().is_none());
    signal(&simulate, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), simulate.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    sim.shutdown().await;
}

// ------------------------------------------------------------------ --web.config.file

/// A test CA and certificates from it, written to a temporary directory.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("imds-web-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "imds_exporter test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(dir.join("ca.crt"), &ca_pem).unwrap();
        Self {
            dir,
            ca: rcgen::Issuer::new(params, key),
            ca_pem,
        }
    }

    /// A leaf certificate (server or client) named `cn`; returns its DER.
    fn issue(&self, file: &str, cn: &str, client: bool) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        // Written whole and renamed into place, as a rotation tool (or Kubernetes) does.
        for (ext, text) in [("crt", cert.pem()), ("key", key.serialize_pem())] {
            let tmp = self.dir.join(format!("{file}.{ext}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.join(format!("{file}.{ext}"))).unwrap();
        }
        cert.der().to_vec()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.path("web.yml");
        let tmp = self.path("web.yml.tmp");
        std::fs::File::create(&tmp)
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a TLS client got: the status (None: the handshake or the request failed) and the
/// certificate the server presented.
struct TlsAnswer {
    status: Option<u16>,
    server_cert: Option<Vec<u8>>,
    error: String,
}

async fn tls_get(
    addr: SocketAddr,
    pki: &Pki,
    client: Option<&str>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> TlsAnswer {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(pki.path(&format!("{name}.crt")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut answer = TlsAnswer {
        status: None,
        server_cert: None,
        error: String::new(),
    };
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => {
            answer.error = e.to_string();
            return answer;
        }
    };
    answer.server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let authorization = auth
        .map(|(u, p)| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b64}\r\n")
        })
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{authorization}\r\n"
    );
    if let Err(e) = tls.write_all(req.as_bytes()).await {
        answer.error = e.to_string();
        return answer;
    }
    let mut out = Vec::new();
    match tls.read_to_end(&mut out).await {
        Ok(_) => {
            let text = String::from_utf8_lossy(&out);
            answer.status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            answer.error = text.lines().next().unwrap_or("").to_string();
        }
        Err(e) => answer.error = e.to_string(),
    }
    answer
}

fn with_file(sim: &RunningSim, file: &Path) -> ExporterConfig {
    config(
        sim,
        WebConfig {
            config_file: Some(file.to_path_buf()),
            ..WebConfig::default()
        },
    )
}

#[tokio::test]
async fn tls_serves_the_certificate_on_disk_and_a_swap_reaches_the_next_connection() {
    let pki = Pki::new("swap");
    let first = pki.issue("server", "first", false);
    let file = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    );
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(with_file(&sim, &file)).await;
    let a = tls_get(exporter.addr, &pki, None, "/metrics", None).await;
    assert_eq!(a.status, Some(200), "{}", a.error);
    assert_eq!(a.server_cert.as_deref(), Some(&first[..]));
    // Plain HTTP to a TLS port gets nothing useful.
    let mut plain = TcpStream::connect(exporter.addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("imds_probe"));

    let second = pki.issue("server", "second", false);
    let b = tls_get(exporter.addr, &pki, None, "/metrics", None).await;
    assert_eq!(b.status, Some(200), "{}", b.error);
    assert_eq!(
        b.server_cert.as_deref(),
        Some(&second[..]),
        "the next connection has the new certificate"
    );

    // A bad edit (a key that does not fit) is refused; the last good pair stays in force.
    std::fs::write(
        pki.path("server.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let c = tls_get(exporter.addr, &pki, None, "/metrics", None).await;
    assert_eq!(c.status, Some(200), "{}", c.error);
    assert_eq!(c.server_cert.as_deref(), Some(&second[..]));
    pki.write_config("tls_server_config: {cert_file: server.crt, key_fil: server.key}\n");
    let d = tls_get(exporter.addr, &pki, None, "/metrics", None).await;
    assert_eq!(
        d.status,
        Some(200),
        "a broken file keeps the last good configuration: {}",
        d.error
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_the_ca() {
    let pki = Pki::new("mtls");
    pki.issue("server", "server", false);
    pki.issue("client", "prometheus", true);
    let file = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(with_file(&sim, &file)).await;
    let ok = tls_get(exporter.addr, &pki, Some("client"), "/metrics", None).await;
    assert_eq!(ok.status, Some(200), "{}", ok.error);
    let none = tls_get(exporter.addr, &pki, None, "/metrics", None).await;
    assert_eq!(none.status, None, "no client certificate: {}", none.error);
    // A certificate from another CA.
    let other = Pki::new("mtls-other");
    other.issue("client", "intruder", true);
    std::fs::copy(other.path("client.crt"), pki.path("intruder.crt")).unwrap();
    std::fs::copy(other.path("client.key"), pki.path("intruder.key")).unwrap();
    let intruder = tls_get(exporter.addr, &pki, Some("intruder"), "/metrics", None).await;
    assert_eq!(intruder.status, None, "{}", intruder.error);
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_auth_answers_401_to_a_wrong_password_and_leaves_health_open() {
    let pki = Pki::new("auth");
    pki.issue("server", "server", false);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let file = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let sim = start_sim(sim_options()).await;
    let exporter = start_exporter(with_file(&sim, &file)).await;
    let addr = exporter.addr;
    let status = |path: &'static str, auth: Option<(&'static str, &'static str)>| {
        let pki = &pki;
        async move { tls_get(addr, pki, None, path, auth).await.status }
    };
    assert_eq!(
        status("/metrics", Some(("prometheus", "s3cret"))).await,
        Some(200)
    );
    assert_eq!(
        status("/metrics", Some(("prometheus", "wrong"))).await,
        Some(401)
    );
    assert_eq!(
        status("/metrics", Some(("nobody", "s3cret"))).await,
        Some(401)
    );
    assert_eq!(status("/metrics", None).await, Some(401));
    assert_eq!(status("/", None).await, Some(401));
    assert_eq!(status("/-/healthy", None).await, Some(200));
    assert_eq!(
        status("/-/ready", None).await.map(|s| s == 200 || s == 503),
        Some(true)
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

#[test]
fn a_bad_web_config_file_stops_start_up_naming_the_field() {
    let pki = Pki::new("bad");
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n",
            "tls_server_config.key_file",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n",
            "basic_auth_users.prometheus",
        ),
        ("tls_server_config: [\n", "tls_server_config"),
        (
            "tls_server_config: {cert_file: a\n",
            "did not find expected",
        ),
        (
            "http_server_config:\n  headers:\n    Location: /x\n",
            "http_server_config.headers.Location",
        ),
    ];
    for (yaml, field) in cases {
        let file = pki.write_config(yaml);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--imds.endpoint",
                "http://127.0.0.1:9",
            ])
            .args(["--collector.ntp=false", "--web.config.file"])
            .arg(&file)
            .env_remove("IMDS_EXPORTER_WEB_CONFIG_FILE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains("--web.config.file") && stderr.contains(field),
            "{yaml}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_the_web_config_file_and_a_bad_one_is_logged_and_kept_out() {
    let pki = Pki::new("hup");
    pki.issue("server", "server", false);
    let file =
        pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let sim = start_sim(sim_options()).await;
    let mut b = exporter_binary(&sim, &["--web.config.file", file.to_str().unwrap()]).await;
    signal(&b.child, libc::SIGHUP);
    let line = log_line(&mut b, "web configuration").await;
    assert!(
        line.contains("reloaded") && line.contains("https"),
        "{line}"
    );
    pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n");
    signal(&b.child, libc::SIGHUP);
    let line = log_line(&mut b, "web configuration").await;
    assert!(
        line.contains("not reloaded") && line.contains("tls_server_config.min_version"),
        "{line}"
    );
    let a = tls_get(b.addr, &pki, None, "/-/healthy", None).await;
    assert_eq!(a.status, Some(200), "{}", a.error);
    assert!(b.child.try_wait().unwrap().is_none());
    sim.shutdown().await;
}
