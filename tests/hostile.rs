//! A hostile or broken IMDS: garbage, huge bodies, hangs, redirects, wrong codes. Each must end
//! as a classified failure within the request deadline, never as a crash or a stall.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use imds_exporter::labels::Phase;
use imds_exporter::probe::imds::{ImdsConfig, ImdsProber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Garbage,
    Redirect(u16),
    HeadersThenHang,
    EndlessChunkedBody,
    HugeContentLength,
    CloseAtOnce,
    Teapot,
}

/// Reads a request's head; `None` if the client went away first.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

async fn answer(mut stream: TcpStream, behaviour: Behaviour) {
    read_request(&mut stream).await;
    let head = |s: &str| s.replace('\n', "\r\n");
    match behaviour {
        Behaviour::Garbage => {
            let _ = stream
                .write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
                .await;
        }
        Behaviour::Redirect(port) => {
            let _ = stream
                .write_all(head(&format!("HTTP/1.1 302 Found\nLocation: http://127.0.0.1:{port}/latest/api/token\nContent-Length: 0\n\n")).as_bytes())
                .await;
        }
        Behaviour::HeadersThenHang => {
            let _ = stream
                .write_all(head("HTTP/1.1 200 OK\nContent-Length: 100\n\n").as_bytes())
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Behaviour::EndlessChunkedBody => {
            let _ = stream
                .write_all(head("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n").as_bytes())
                .await;
            let chunk = format!("2000\r\n{}\r\n", "x".repeat(0x2000));
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::HugeContentLength => {
            let _ = stream
                .write_all(head("HTTP/1.1 200 OK\nContent-Length: 3000000000\n\n").as_bytes())
                .await;
            let _ = stream.write_all(&[b'x'; 4096]).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Behaviour::CloseAtOnce => {}
        Behaviour::Teapot => {
            let _ = stream
                .write_all(head("HTTP/1.1 418 I'm a teapot\nContent-Length: 0\n\n").as_bytes())
                .await;
        }
    }
}

async fn hostile_server(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, behaviour));
        }
    });
    format!("http://{addr}")
}

async fn token_phase_reason(endpoint: String) -> (&'static str, Duration) {
    let mut prober = ImdsProber::new(ImdsConfig {
        endpoint,
        timeout: Duration::from_millis(500),
        ..ImdsConfig::default()
    })
    .unwrap();
    let start = Instant::now();
    let run = prober.run().await;
    let elapsed = start.elapsed();
    let token = run.phases.iter().find(|p| p.phase == Phase::Token).unwrap();
    let reason = token
        .error
        .as_ref()
        .expect("the token phase fails")
        .reason();
    assert_eq!(run.failure_reason(), Some(reason));
    (reason.as_str(), elapsed)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_answers_are_classified_within_the_deadline() {
    // A listener that must never be contacted: redirects are not followed.
    let decoy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_port = decoy.local_addr().unwrap().port();
    let decoy_hits = Arc::new(AtomicUsize::new(0));
    let hits = decoy_hits.clone();
    tokio::spawn(async move {
        while decoy.accept().await.is_ok() {
            hits.fetch_add(1, Ordering::SeqCst);
        }
    });

    let cases = [
        (Behaviour::Garbage, "invalid_response"),
        (Behaviour::Redirect(decoy_port), "http_other"),
        (Behaviour::HeadersThenHang, "timeout"),
        (Behaviour::EndlessChunkedBody, "invalid_response"),
        (Behaviour::HugeContentLength, "invalid_response"),
        (Behaviour::CloseAtOnce, "connect"),
        (Behaviour::Teapot, "http_other"),
    ];
    for (behaviour, want) in cases {
        let (reason, elapsed) = token_phase_reason(hostile_server(behaviour).await).await;
        assert_eq!(reason, want, "{behaviour:?}");
        // Two requests at most (token, then the IMDSv1 check), each bounded by 500 ms.
        assert!(
            elapsed < Duration::from_millis(1500),
            "{behaviour:?} took {elapsed:?}"
        );
    }
    assert_eq!(
        decoy_hits.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (reason, _) = token_phase_reason(format!("http://{addr}")).await;
    assert_eq!(reason, "connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_keeps_serving_metrics_while_imds_streams_garbage() {
    let endpoint = hostile_server(Behaviour::EndlessChunkedBody).await;
    let exporter = common::start_exporter(imds_exporter::exporter::ExporterConfig {
        web: imds_exporter::web::WebConfig {
            listen_address: common::loopback(),
            ..Default::default()
        },
        imds: ImdsConfig {
            endpoint,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            ..ImdsConfig::default()
        },
        ntp: None,
        node: imds_exporter::collector::NodeViewsConfig {
            clock: false,
            ethtool: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let s = common::after_runs(&exporter, 3.0).await;
    assert_eq!(common::value(&s, "imds_probe_success{probe=\"imds\"}"), 0.0);
    assert!(
        common::value(
            &s,
            "imds_probe_failures_total{probe=\"imds\",reason=\"invalid_response\"}"
        ) >= 3.0
    );
    exporter.shutdown().await;
}

/// The least an IMDS look-alike may answer and still be used, as botocore would: a token
/// without the TTL header, a credentials document with only `AccessKeyId` and `Expiration`,
/// and 500 on the best-effort metadata paths (`iam/info`, the identity document).
async fn minimal_imds() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_request(&mut stream).await else {
                    return;
                };
                let head = head.to_ascii_lowercase();
                let tokened = head.contains("x-aws-ec2-metadata-token: minimal-token");
                let line = head.lines().next().unwrap_or_default().to_string();
                let (status, body) = if line.starts_with("put /latest/api/token ") {
                    ("200 OK", "minimal-token".to_string())
                } else if !tokened {
                    ("401 Unauthorized", String::new())
                } else if line.starts_with("get /latest/meta-data/iam/security-credentials/ ") {
                    ("200 OK", "minimal-role".to_string())
                } else if line
                    .starts_with("get /latest/meta-data/iam/security-credentials/minimal-role ")
                {
                    let doc = serde_json::json!({
                        "AccessKeyId": "ASIAMINIMALEXAMPLE01",
                        "Expiration": (chrono::Utc::now() + chrono::Duration::hours(6))
                            .format("%Y-%m-%dT%H:%M:%SZ")
                            .to_string(),
                    });
                    ("200 OK", doc.to_string())
                } else {
                    ("500 Internal Server Error", String::new())
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minimal_look_alike_succeeds_and_metadata_failures_do_not_fail_the_probe() {
    let mut prober = ImdsProber::new(ImdsConfig {
        endpoint: minimal_imds().await,
        timeout: Duration::from_millis(500),
        ..ImdsConfig::default()
    })
    .unwrap();
    let run = prober.run().await;
    let failed = |phase: Phase| {
        run.phases
            .iter()
            .find(|p| p.phase == phase)
            .unwrap_or_else(|| panic!("no {phase:?} request in {run:?}"))
            .error
            .as_ref()
            .map(|e| e.reason().as_str())
    };
    // The token came without X-aws-ec2-metadata-token-ttl-seconds, and the document without
    // Code, LastUpdated and Type: both accepted.
    assert_eq!(failed(Phase::Token), None);
    assert_eq!(failed(Phase::Credentials), None);
    assert!(run.success(), "{run:?}");
    assert_eq!(run.failure_reason(), None);
    // iam/info and the identity document fail in their own phase, not the probe.
    assert_eq!(failed(Phase::Info), Some("server_error"));
    assert_eq!(failed(Phase::Identity), Some("server_error"));
    assert_eq!(run.v1_enabled, Some(false));
}

/// A token answer of 200 with a TTL header and an empty body: every SDK sends the empty token
/// (a valid header value), so the run asks the role list with it, as they do, and records the
/// answer for their verdicts (tests/sdk: Rust and Go retry its 401 for 3.5 s and 2 s). The
/// run's own outcome stays the token's failure.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_token_is_tried_as_the_sdks_send_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let empty_token_gets = Arc::new(AtomicUsize::new(0));
    let seen = empty_token_gets.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_request(&mut stream).await else {
                    return;
                };
                let head = head.to_ascii_lowercase();
                let answer = if head.starts_with("put /latest/api/token ") {
                    "HTTP/1.1 200 OK\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    if head.contains("\r\nx-aws-ec2-metadata-token: \r\n") {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let mut prober = ImdsProber::new(ImdsConfig {
        endpoint: format!("http://{addr}"),
        timeout: Duration::from_millis(500),
        ..ImdsConfig::default()
    })
    .unwrap();
    let run = prober.run().await;
    assert_eq!(
        run.failure_reason().map(|r| r.as_str()),
        Some("invalid_response")
    );
    let token = run.evidence.token.expect("the token answer is recorded");
    assert!(token.shape.empty && !token.shape.usable && token.shape.ttl_header);
    // The role list with the empty token, and its repeat (Rust and Go retry a 401).
    let role = run
        .evidence
        .role
        .expect("the role list was asked with the empty token");
    assert_eq!(role.exchange_status(), Some(401));
    assert_eq!(
        run.evidence.role_retry.map(|r| r.exchange_status()),
        Some(Some(401))
    );
    assert_eq!(empty_token_gets.load(Ordering::SeqCst), 2);
}
