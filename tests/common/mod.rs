//! Shared by the integration tests: a simulator and an exporter on 127.0.0.1:0, scraping, and
//! a small parser for the text exposition format.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use imds_exporter::collector::NodeViewsConfig;
use imds_exporter::exporter::{self, ExporterConfig, RunningExporter};
use imds_exporter::probe::imds::ImdsConfig;
use imds_exporter::probe::ntp::NtpConfig;
use imds_exporter::sim::config::SimConfig;
use imds_exporter::sim::{self, RunningSim};
use imds_exporter::web::WebConfig;

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn sim_options() -> SimConfig {
    SimConfig {
        ntp_listen: Some(loopback()),
        role: "test-role".into(),
        ..SimConfig::default()
    }
}

pub async fn start_sim(options: SimConfig) -> RunningSim {
    sim::start(loopback(), options)
        .await
        .expect("simulator starts")
}

/// An exporter against `sim` with a short interval and a short request timeout, so a test
/// sees several runs per second and timeouts cost little.
pub fn exporter_config(sim: &RunningSim) -> ExporterConfig {
    ExporterConfig {
        web: WebConfig {
            listen_address: loopback(),
            ..WebConfig::default()
        },
        imds: ImdsConfig {
            endpoint: sim.endpoint(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            ..ImdsConfig::default()
        },
        ntp: sim.ntp_addr.map(|a| NtpConfig {
            servers: vec![a.to_string()],
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(500),
            ..NtpConfig::default()
        }),
        node: NodeViewsConfig {
            ethtool: false,
            ..NodeViewsConfig::default()
        },
        container: None,
        web_identity: None,
        sts: None,
    }
}

pub async fn start_exporter(config: ExporterConfig) -> RunningExporter {
    exporter::start(config).await.expect("exporter starts")
}

pub async fn get(url: &str) -> (u16, String) {
    // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
    imds_exporter::probe::client_tls::install_provider();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

pub async fn post(url: &str, body: &str) -> (u16, String) {
    // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
    imds_exporter::probe::client_tls::install_provider();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

pub async fn switch(sim: &RunningSim, scenario: &str) {
    let (status, body) = post(&format!("{}/_sim/scenario/{scenario}", sim.endpoint()), "").await;
    assert_eq!(status, 200, "switching to {scenario}: {body}");
}

/// Samples by `name{labels}` (labels sorted, as the encoder writes them).
pub type Samples = BTreeMap<String, f64>;

pub fn parse(exposition: &str) -> Samples {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_string(), value.parse::<f64>().expect("sample value"))
        })
        .collect()
}

pub async fn scrape(exporter: &RunningExporter) -> Samples {
    let (status, body) = get(&format!("http://{}/metrics", exporter.addr)).await;
    assert_eq!(status, 200);
    parse(&body)
}

pub fn value(samples: &Samples, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

/// Polls `check` until it returns `Some`, or panics after `limit` with the last state.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > limit => {
                panic!("{what}: not true after {limit:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the exporter has completed `n` more IMDS runs, and returns the scrape.
pub async fn after_runs(exporter: &RunningExporter, n: f64) -> Samples {
    let runs = |s: &Samples| value(s, "imds_probe_runs_total{probe=\"imds\"}");
    let start = runs(&scrape(exporter).await);
    eventually(Duration::from_secs(20), "probe runs", || async {
        let s = scrape(exporter).await;
        if runs(&s) >= start + n {
            Ok(s)
        } else {
            Err(format!("runs {}", runs(&s)))
        }
    })
    .await
}

/// The credentials document the simulator serves now, fetched with IMDSv2 as an SDK would, so
/// a test can search for its secrets where they must not be.
pub async fn sim_credentials_document(endpoint: &str) -> serde_json::Value {
    // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
    imds_exporter::probe::client_tls::install_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = http
        .put(format!("{endpoint}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let get = |url: String| {
        http.get(url)
            .header("x-aws-ec2-metadata-token", &token)
            .send()
    };
    let role = get(path.clone()).await.unwrap().text().await.unwrap();
    let body = get(format!("{path}{}", role.trim()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}
