//! The NTP probe against a real NTP server: chronyd on loopback, serving time shifted with
//! faketime, never touching the system clock (`-x`) and with no sources of its own.
//!
//! `scripts/test` installs chrony and faketime and sets IMDS_EXPORTER_REQUIRE_CHRONY=1, so there
//! a missing tool is a failure; a plain `cargo test` elsewhere skips with a message.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imds_exporter::probe::ntp;

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    match (tool("chronyd"), tool("faketime")) {
        (Some(c), Some(f)) => Some((c, f)),
        _ if std::env::var_os("IMDS_EXPORTER_REQUIRE_CHRONY").is_some() => {
            panic!("chronyd and faketime are required (apt-get install chrony faketime)")
        }
        _ => {
            eprintln!("SKIPPED: chronyd or faketime not installed (scripts/test installs them)");
            None
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chronyd under faketime; killed on drop.
struct Chronyd {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        // faketime forks chronyd rather than exec'ing it: stop the whole process group.
        // SAFETY: kill(2) on the group we created for this child.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_chronyd(chronyd: &Path, faketime: &Path, shift: &str) -> Chronyd {
    let dir = std::env::temp_dir().join(format!(
        "imds-chrony-{}-{}",
        std::process::id(),
        free_udp_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let conf = dir.join("chrony.conf");
    // An NTP server on loopback only: no sources, local reference, no command port.
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile {}\ndriftfile {}\n",
            dir.join("chronyd.pid").display(),
            dir.join("drift").display()
        ),
    )
    .unwrap();
    let child = Command::new(faketime)
        .args(["-f", shift])
        .arg(chronyd)
        // -x: never touch the system clock; -d: foreground; -u root: no privilege drop (the pid
        // file lives in our temp dir).
        .args(["-x", "-d", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chronyd starts under faketime");
    Chronyd {
        child,
        port,
        _dir: TempDir(dir),
    }
}

/// The first valid sample, within a generous deadline (chronyd needs a moment to bind).
async fn sample(port: u16) -> ntp::NtpSample {
    let start = Instant::now();
    loop {
        match ntp::query(&format!("127.0.0.1:{port}"), Duration::from_secs(1)).await {
            Ok(s) => return s,
            Err(e) if start.elapsed() > Duration::from_secs(15) => panic!("no NTP answer: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn offset_against_chrony_under_faketime_is_within_10ms() {
    let Some((chronyd, faketime)) = tools() else {
        return;
    };
    for (shift, want) in [("+2.5s", 2.5), ("-1.25s", -1.25)] {
        let server = start_chronyd(&chronyd, &faketime, shift);
        let s = sample(server.port).await;
        // Positive = local clock behind the server: chrony's clock is ahead by +2.5 s.
        assert!(
            (s.offset_seconds - want).abs() < 0.010,
            "faketime {shift}: offset {} (want {want} ± 0.010)",
            s.offset_seconds
        );
        assert!(
            s.rtt_seconds >= 0.0 && s.rtt_seconds < 0.1,
            "rtt {}",
            s.rtt_seconds
        );
        assert_eq!(s.stratum, 8, "chrony's local stratum");
    }
}

#[tokio::test]
async fn the_exporter_reports_chronys_offset() {
    let Some((chronyd, faketime)) = tools() else {
        return;
    };
    for (shift, want) in [("+2.5s", 2.5), ("-1.25s", -1.25)] {
        let server = start_chronyd(&chronyd, &faketime, shift);
        sample(server.port).await; // chronyd is up
        let exporter = imds_exporter::exporter::start(imds_exporter::exporter::ExporterConfig {
            web: imds_exporter::web::WebConfig {
                listen_address: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
            imds: imds_exporter::probe::imds::ImdsConfig {
                // Nothing listens on the discard port: IMDS fails, NTP is what we look at.
                endpoint: "http://127.0.0.1:9".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(200),
                ..Default::default()
            },
            ntp: Some(imds_exporter::probe::ntp::NtpConfig {
                servers: vec![format!("127.0.0.1:{}", server.port)],
                interval: Duration::from_millis(200),
                timeout: Duration::from_secs(1),
                ..Default::default()
            }),
            node: imds_exporter::collector::NodeViewsConfig {
                clock: false,
                ethtool: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let url = format!("http://{}/metrics", exporter.addr);
        let key = format!(
            "imds_ntp_offset_seconds{{server=\"127.0.0.1:{}\"}} ",
            server.port
        );
        // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
        imds_exporter::probe::client_tls::install_provider();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let start = Instant::now();
        let offset = loop {
            let body = http.get(&url).send().await.unwrap().text().await.unwrap();
            if let Some(line) = body.lines().find(|l| l.starts_with(&key)) {
                break line[key.len()..].parse::<f64>().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no offset exported:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            (offset - want).abs() < 0.010,
            "faketime {shift}: exported offset {offset} (want {want} ± 0.010)"
        );
        exporter.shutdown().await;
    }
}
