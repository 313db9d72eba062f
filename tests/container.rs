//! The container credential probe against the simulator's container endpoint (`/v1/credentials`,
//! the EKS Pod Identity agent's path): every scenario that applies to it, classified as botocore
//! experiences it (3 attempts, 1 s apart; tests/botocore proves the simulator's side), the
//! token rules, the shared credential series with `probe="container"`; and, the other way
//! round, that an exporter started without the container, web identity and STS variables and
//! flags has none of their series and asks none of their endpoints.

mod common;

use std::time::Duration;

use common::{loopback, post, scrape, start_exporter, start_sim, value};
use imds_exporter::labels::Reason;
use imds_exporter::probe::container::{ContainerConfig, ContainerProber, TokenSource};
use imds_exporter::sim::RunningSim;
use imds_exporter::sim::config::SimConfig;

const TOKEN: &str = SimConfig::DEFAULT_CONTAINER_TOKEN;

fn token_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("imds-exporter-container-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn config(sim: &RunningSim, token: Option<TokenSource>) -> ContainerConfig {
    ContainerConfig {
        endpoint: format!("{}/v1/credentials", sim.endpoint()),
        token,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(300),
        attempts: ContainerConfig::DEFAULT_ATTEMPTS,
    }
}

async fn container_scenario(sim: &RunningSim, scenario: &str) {
    let (status, body) = post(
        &format!("{}/_sim/container/scenario/{scenario}", sim.endpoint()),
        "",
    )
    .await;
    assert_eq!(status, 200, "{scenario}: {body}");
}

/// (scenario, the run's failure reason, attempts made). Timeouts are the test's 1 s (the
/// scenarios run at once, on two cores: a 4 MiB body needs more than IMDS's 300 ms there).
const CLASSIFICATION: &[(&str, Option<Reason>, usize)] = &[
    ("healthy", None, 1),
    ("outage", Some(Reason::Timeout), 3),
    ("refused", Some(Reason::Connect), 3),
    ("throttle", Some(Reason::Throttled), 3),
    ("throttle-partial?ratio=1", Some(Reason::Throttled), 3),
    ("slow?delay=1500ms", Some(Reason::Timeout), 3),
    ("slow?delay=20ms", None, 1),
    ("jitter?p50=5ms&p99=20ms", None, 1),
    ("server-error", Some(Reason::ServerError), 3),
    ("no-role", Some(Reason::NotFound), 3),
    ("token-rejected", Some(Reason::Unauthorized), 3),
    // botocore refuses an expired container document (it extends IMDS's, not these).
    ("expired", Some(Reason::Expired), 1),
    // A valid document: the alerts judge the time.
    ("expiring", None, 1),
    ("stale", None, 1),
    ("rotate-late", None, 1),
    // botocore retries a body that is not JSON ("Unable to parse JSON").
    ("malformed", Some(Reason::InvalidResponse), 3),
    ("truncated", Some(Reason::InvalidResponse), 3),
    ("truncated?mode=transfer", Some(Reason::Connect), 3),
    ("huge", None, 1),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_is_classified_as_botocore_experiences_it() {
    let file = token_file("token", TOKEN);
    let runs = CLASSIFICATION.iter().map(|(scenario, want, attempts)| {
        let file = file.clone();
        async move {
            let sim = start_sim(SimConfig::default()).await;
            container_scenario(&sim, scenario).await;
            let mut prober = ContainerProber::new(ContainerConfig {
                timeout: Duration::from_secs(1),
                ..config(&sim, Some(TokenSource::File(file)))
            })
            .unwrap();
            let run = prober.run().await;
            sim.shutdown().await;
            let got = (run.failure_reason(), run.attempts.len());
            // A success may have needed a retry on a loaded machine (botocore retries too);
            // a failure is every attempt failing the same way.
            let ok = match want {
                None => got.0.is_none(),
                Some(_) => got == (*want, *attempts),
            };
            ok.then_some(()).ok_or(format!(
                "{scenario}: got {got:?}, want {:?}",
                (want, attempts)
            ))
        }
    });
    let errors: Vec<String> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn the_token_is_checked_read_at_every_run_and_never_shown() {
    let sim = start_sim(SimConfig::default()).await;
    // No token, a wrong one: the agent refuses (401) every attempt.
    for token in [
        None,
        Some(TokenSource::File(token_file("wrong", "not-the-token"))),
    ] {
        let run = ContainerProber::new(config(&sim, token))
            .unwrap()
            .run()
            .await;
        assert_eq!(run.failure_reason(), Some(Reason::Unauthorized));
    }
    // A missing file, and one that ends in a newline (botocore refuses it): no request at all.
    for token in [
        TokenSource::File(token_file("dir-only", "x").with_file_name("missing")),
        TokenSource::File(token_file("newline", &format!("{TOKEN}\n"))),
    ] {
        let run = ContainerProber::new(config(&sim, Some(token)))
            .unwrap()
            .run()
            .await;
        assert_eq!(run.failure_reason(), Some(Reason::TokenFile));
        assert!(run.attempts.is_empty());
        let shown = format!("{:?}", run.token_error);
        assert!(!shown.contains(TOKEN), "{shown}");
    }
    // The file is read at every run: a rotated token is used at once.
    let path = token_file("rotating", "old-token");
    let mut prober =
        ContainerProber::new(config(&sim, Some(TokenSource::File(path.clone())))).unwrap();
    assert_eq!(
        prober.run().await.failure_reason(),
        Some(Reason::Unauthorized)
    );
    std::fs::write(&path, TOKEN).unwrap();
    assert_eq!(prober.run().await.failure_reason(), None);
    // The variable's value works the same way.
    let value = TokenSource::Value(zeroize::Zeroizing::new(TOKEN.to_string()));
    let run = ContainerProber::new(config(&sim, Some(value)))
        .unwrap()
        .run()
        .await;
    assert_eq!(run.failure_reason(), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_agent_down_shows_beside_a_healthy_imds() {
    let sim = start_sim(SimConfig::default()).await;
    let mut config = common::exporter_config(&sim);
    config.container = Some(ContainerConfig {
        attempts: 1,
        ..self::config(&sim, Some(TokenSource::File(token_file("exporter", TOKEN))))
    });
    let exporter = start_exporter(config).await;
    let runs = |s: &common::Samples| value(s, "imds_probe_runs_total{probe=\"container\"}");
    let wait_runs = |n: f64| {
        let exporter = &exporter;
        async move {
            let start = runs(&scrape(exporter).await);
            common::eventually(Duration::from_secs(20), "container runs", || async {
                let s = scrape(exporter).await;
                if runs(&s) >= start + n {
                    Ok(s)
                } else {
                    Err(format!("{}", runs(&s)))
                }
            })
            .await
        }
    };
    let s = wait_runs(2.0).await;
    assert_eq!(value(&s, "imds_probe_success{probe=\"container\"}"), 1.0);
    assert!(
        value(
            &s,
            "imds_credentials_expiration_timestamp_seconds{probe=\"container\"}"
        ) > 0.0
    );
    assert!(
        value(
            &s,
            "imds_request_duration_seconds_count{phase=\"credentials\",probe=\"container\"}"
        ) >= 2.0
    );
    container_scenario(&sim, "outage").await;
    let s = wait_runs(2.0).await;
    assert_eq!(value(&s, "imds_probe_success{probe=\"container\"}"), 0.0);
    assert_eq!(value(&s, "imds_probe_success{probe=\"imds\"}"), 1.0);
    assert!(
        value(
            &s,
            "imds_request_failures_total{phase=\"credentials\",probe=\"container\",reason=\"timeout\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "imds_probe_failures_total{probe=\"container\",reason=\"timeout\"}"
        ) >= 1.0
    );
    exporter.shutdown().await;
    sim.shutdown().await;
}

/// The binary, started with a clean environment and only loopback flags: no series of the
/// container, web identity or STS probes, and no request to their endpoints.
#[tokio::test]
async fn without_variables_or_flags_the_new_probes_do_not_exist() {
    let sim = start_sim(SimConfig::default()).await;
    let port = std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .env_clear()
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--imds.endpoint",
            &sim.endpoint(),
            "--imds.interval",
            "200ms",
            "--imds.timeout",
            "300ms",
            "--collector.ntp=false",
            "--collector.ethtool=false",
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = common::eventually(Duration::from_secs(20), "three IMDS runs", || async {
        // reqwest's TLS needs a rustls provider in the process (probe::client_tls).
        imds_exporter::probe::client_tls::install_provider();
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        let body = match resp {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => return Err(e.to_string()),
        };
        let s = common::parse(&body);
        match s.get("imds_probe_runs_total{probe=\"imds\"}") {
            Some(n) if *n >= 3.0 => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for absent in [
        "probe=\"container\"",
        "probe=\"sts\"",
        "probe=\"web_identity\"",
        "imds_sts_",
        "imds_web_identity_",
        "source=",
    ] {
        assert!(!body.contains(absent), "{absent} in:\n{body}");
    }
    let state = common::get(&format!("{}/_sim/state", sim.endpoint()))
        .await
        .1;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(state["requests"].get("container").is_none(), "{state}");
    assert!(state["requests"].get("sts").is_none(), "{state}");
    child.kill().await.unwrap();
    sim.shutdown().await;
}
