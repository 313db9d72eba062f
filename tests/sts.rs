//! The STS probe and the web identity exchange against real STS peers on loopback.
//!
//! moto's server (PyPI moto[server], `scripts/moto-venv`; `IMDS_EXPORTER_MOTO_SERVER` names its
//! `moto_server`) is the real peer: started with authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=1`:
//! the test's own first request, an `AssumeRole`, goes through unsigned), it verifies the SigV4
//! signature aws-sigv4 made, so a GetCallerIdentity signed with the keys it issued (served by
//! the simulator's IMDS, `/_sim/credentials`) succeeds with the assumed role's ARN, one with a
//! wrong secret gets `SignatureDoesNotMatch`, and the simulator's own keys `InvalidClientTokenId`.
//! moto does not check that a session token has expired, so `ExpiredToken` (and the `Date` skew)
//! comes from the simulator's STS stand-in (`/_sts`), which judges the credentials it serves.
//! Without moto the moto tests skip, with a message, unless `IMDS_EXPORTER_REQUIRE_MOTO` is set
//! (as `scripts/test` sets it).

mod common;

use std::time::Duration;

use base64::Engine;
use common::{post, start_sim};
use imds_exporter::labels::{Reason, StsCode};
use imds_exporter::probe::container::{ContainerConfig, TokenSource};
use imds_exporter::probe::imds::ImdsConfig;
use imds_exporter::probe::sts::request::{SigningSecrets, Verdict, sign};
use imds_exporter::probe::sts::{StsConfig, StsProber};
use imds_exporter::probe::web_identity::{WebIdentityConfig, WebIdentityProber};
use imds_exporter::sim::RunningSim;
use imds_exporter::sim::config::SimConfig;

const ROLE: &str = SimConfig::DEFAULT_ROLE;

/// moto_server on a free loopback port, killed when dropped.
struct Moto {
    url: String,
    _child: tokio::process::Child,
}

async fn moto() -> Option<Moto> {
    let binary = std::env::var("IMDS_EXPORTER_MOTO_SERVER").ok().or_else(|| {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/moto/bin/moto_server");
        std::path::Path::new(local)
            .exists()
            .then(|| local.to_string())
    });
    let Some(binary) = binary else {
        assert!(
            std::env::var_os("IMDS_EXPORTER_REQUIRE_MOTO").is_none(),
            "IMDS_EXPORTER_REQUIRE_MOTO is set but no moto_server (scripts/moto-venv)"
        );
        eprintln!(
            "skipped: no moto_server (run scripts/moto-venv, or set IMDS_EXPORTER_MOTO_SERVER)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://127.0.0.1:{port}/");
    common::eventually(Duration::from_secs(30), "moto_server listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    Some(Moto { url, _child: child })
}

/// Keys for `ROLE` from moto's AssumeRole (its one unauthenticated request), as XML elements.
async fn assume_role(moto: &Moto) -> (String, String, String) {
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2F{ROLE}&RoleSessionName=i-0123456789abcdef0&DurationSeconds=3600"
    );
    // moto routes a request by the service in its signature's scope: signed (with keys moto does
    // not check for this first request) for sts.
    let anyone = SigningSecrets {
        access_key_id: zeroize::Zeroizing::new("AKIAIOSFODNN7EXAMPLE".into()),
        secret_access_key: zeroize::Zeroizing::new("unchecked".into()),
        session_token: None,
    };
    let headers = sign(
        &moto.url,
        "us-east-1",
        &anyone,
        body.as_bytes(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    imds_exporter::probe::client_tls::install_provider();
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(&moto.url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        );
    for (k, v) in &headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let xml = response.text().await.unwrap();
    assert_eq!(status, 200, "{xml}");
    // Not `element`, which bounds a value to a label's length: a session token is longer.
    let get = |name: &str| {
        let start = xml
            .find(&format!("<{name}>"))
            .unwrap_or_else(|| panic!("{name} in {xml}"))
            + name.len()
            + 2;
        let end = start + xml[start..].find(&format!("</{name}>")).unwrap();
        xml[start..end].to_string()
    };
    (
        get("AccessKeyId"),
        get("SecretAccessKey"),
        get("SessionToken"),
    )
}

async fn serve_keys(sim: &RunningSim, keys: (&str, &str, &str)) {
    let body =
        serde_json::json!({"AccessKeyId": keys.0, "SecretAccessKey": keys.1, "Token": keys.2});
    let (status, text) = post(
        &format!("{}/_sim/credentials", sim.endpoint()),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

fn imds(sim: &RunningSim) -> ImdsConfig {
    ImdsConfig {
        endpoint: sim.endpoint(),
        timeout: Duration::from_secs(2),
        ..ImdsConfig::default()
    }
}

fn sts(endpoint: &str) -> StsConfig {
    StsConfig {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        timeout: Duration::from_secs(10),
        ..StsConfig::default()
    }
}

#[tokio::test]
async fn moto_verifies_the_aws_sigv4_signature_and_names_the_imds_role() {
    let Some(moto) = moto().await else { return };
    let sim = start_sim(SimConfig::default()).await;
    let (key, secret, token) = assume_role(&moto).await;
    let mut prober = StsProber::new(sts(&moto.url), &imds(&sim), None).unwrap();

    serve_keys(&sim, (&key, &secret, &token)).await;
    let run = prober.run().await;
    let check = &run.checks[0];
    assert_eq!(check.failure(), None, "{check:?}");
    assert!(
        matches!(&check.answer, Some(Ok(Verdict::Accepted { arn })) if arn.contains(&format!("assumed-role/{ROLE}/"))),
        "{check:?}"
    );
    assert_eq!(check.role_match, Some(true));
    // moto's Date header: this machine's clock, to its second.
    let skew = check.skew.expect("a Date header");
    assert!(skew.abs() <= 2.0, "skew {skew}");

    // A wrong secret: the signature does not match.
    serve_keys(&sim, (&key, "not-the-secret-moto-issued", &token)).await;
    let run = prober.run().await;
    let check = &run.checks[0];
    assert_eq!(check.failure(), Some(Reason::Rejected));
    assert_eq!(
        check.answer.as_ref().unwrap().as_ref().unwrap().code(),
        Some(StsCode::SignatureDoesNotMatch)
    );

    // The simulator's own keys: unknown to AWS (moto).
    let (status, _) = post(&format!("{}/_sim/credentials", sim.endpoint()), "{}").await;
    assert_eq!(status, 200);
    let run = prober.run().await;
    let check = &run.checks[0];
    assert_eq!(
        check.answer.as_ref().unwrap().as_ref().unwrap().code(),
        Some(StsCode::InvalidClientTokenId)
    );
    sim.shutdown().await;
}

fn jwt(exp: i64) -> String {
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b(r#"{"alg":"RS256","kid":"test"}"#),
        b(&format!(
            r#"{{"aud":["sts.amazonaws.com"],"exp":{exp},"iss":"https://oidc.eks.us-east-1.amazonaws.com/id/TEST","sub":"system:serviceaccount:imds-exporter:imds-exporter"}}"#
        ))
    )
}

fn web_identity(file: &std::path::Path, exchange: Option<StsConfig>) -> WebIdentityConfig {
    WebIdentityConfig {
        token_file: file.to_path_buf(),
        role_arn: Some(format!("arn:aws:iam::123456789012:role/{ROLE}")),
        session_name: "imds-exporter".into(),
        interval: Duration::from_secs(60),
        exchange,
    }
}

#[tokio::test]
async fn moto_exchanges_the_web_identity_token() {
    let Some(moto) = moto().await else { return };
    let dir = std::env::temp_dir().join(format!("imds-exporter-sts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    let exp = chrono::Utc::now().timestamp() + 86400;
    std::fs::write(&file, jwt(exp)).unwrap();
    let mut prober = WebIdentityProber::new(web_identity(&file, Some(sts(&moto.url)))).unwrap();
    let run = prober.run().await;
    assert_eq!(run.failure(), None, "{run:?}");
    assert_eq!(run.expires.unwrap().timestamp(), exp);
    assert_eq!(run.role_match, Some(true), "{run:?}");
    assert!(
        matches!(
            &run.exchange,
            Some((_, Ok(Verdict::Accepted { .. }), Some(_)))
        ),
        "{run:?}"
    );
}

#[tokio::test]
async fn the_web_identity_token_is_judged_without_sts() {
    let dir = std::env::temp_dir().join(format!("imds-exporter-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    for (content, want) in [
        (jwt(chrono::Utc::now().timestamp() + 3600), None),
        (
            jwt(chrono::Utc::now().timestamp() - 10),
            Some(Reason::Expired),
        ),
        ("not a jwt".to_string(), Some(Reason::InvalidResponse)),
    ] {
        std::fs::write(&file, &content).unwrap();
        let run = WebIdentityProber::new(web_identity(&file, None))
            .unwrap()
            .run()
            .await;
        assert_eq!(run.failure(), want, "{content}");
        assert!(run.exchange.is_none());
    }
    let run = WebIdentityProber::new(web_identity(&dir.join("missing"), None))
        .unwrap()
        .run()
        .await;
    assert_eq!(run.failure(), Some(Reason::TokenFile));
}

#[tokio::test]
async fn the_stand_in_answers_expired_token_and_shows_the_skew() {
    let sim = start_sim(SimConfig::default()).await;
    let stand_in = format!("{}/_sts", sim.endpoint());
    let container = ContainerConfig {
        endpoint: format!("{}/v1/credentials", sim.endpoint()),
        token: Some(TokenSource::Value(zeroize::Zeroizing::new(
            SimConfig::DEFAULT_CONTAINER_TOKEN.into(),
        ))),
        ..ContainerConfig::default()
    };
    let mut prober = StsProber::new(sts(&stand_in), &imds(&sim), Some(&container)).unwrap();
    let run = prober.run().await;
    let codes: Vec<_> = run
        .checks
        .iter()
        .map(|c| c.answer.as_ref().unwrap().as_ref().unwrap().code())
        .collect();
    assert_eq!(codes, [Some(StsCode::Ok), Some(StsCode::Ok)], "{run:?}");
    assert_eq!(run.checks[0].role_match, Some(true));
    // The Pod Identity document names no role: unknown, not a mismatch.
    assert_eq!(run.checks[1].role_match, None);

    // IMDS serves expired credentials: AWS answers ExpiredToken; the container's are still good.
    common::switch(&sim, "expired").await;
    let run = prober.run().await;
    let imds_check = &run.checks[0];
    assert_eq!(imds_check.failure(), Some(Reason::Rejected));
    assert_eq!(
        imds_check.answer.as_ref().unwrap().as_ref().unwrap().code(),
        Some(StsCode::ExpiredToken)
    );
    assert_eq!(run.checks[1].failure(), None);

    // STS's clock 400 s ahead: the skew from its Date header, to the second.
    common::switch(&sim, "healthy").await;
    let (status, _) = post(&format!("{}/_sim/clock-offset/400", sim.endpoint()), "").await;
    assert_eq!(status, 200);
    let run = prober.run().await;
    let skew = run.checks[0].skew.unwrap();
    assert!((skew - 400.0).abs() <= 2.0, "skew {skew}");

    // Throttling is not a verdict on the credentials.
    let (status, _) = post(&format!("{}/_sim/sts/code/Throttling", sim.endpoint()), "").await;
    assert_eq!(status, 200);
    let run = prober.run().await;
    assert_eq!(run.checks[0].failure(), Some(Reason::Throttled));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_exporter_records_the_sts_verdicts() {
    let sim = start_sim(SimConfig::default()).await;
    let mut config = common::exporter_config(&sim);
    config.sts = Some(StsConfig {
        interval: Duration::from_millis(300),
        ..sts(&format!("{}/_sts", sim.endpoint()))
    });
    let exporter = common::start_exporter(config).await;
    let ok = "imds_sts_last_response{code=\"ok\",source=\"imds\"}";
    let expired = "imds_sts_last_response{code=\"expired_token\",source=\"imds\"}";
    let s = common::eventually(Duration::from_secs(20), "STS said ok", || async {
        let s = common::scrape(&exporter).await;
        if s.get(ok) == Some(&1.0) {
            Ok(s)
        } else {
            Err(format!("{:?}", s.get(ok)))
        }
    })
    .await;
    assert_eq!(s.get(expired), Some(&0.0));
    assert_eq!(s.get("imds_sts_role_match{source=\"imds\"}"), Some(&1.0));
    assert!(s.contains_key("imds_sts_clock_skew_seconds"));
    assert_eq!(s.get("imds_probe_success{probe=\"sts\"}"), Some(&1.0));
    common::switch(&sim, "expired").await;
    let s = common::eventually(Duration::from_secs(20), "STS said ExpiredToken", || async {
        let s = common::scrape(&exporter).await;
        if s.get(expired) == Some(&1.0) {
            Ok(s)
        } else {
            Err(format!("{:?}", s.get(expired)))
        }
    })
    .await;
    assert_eq!(s.get(ok), Some(&0.0));
    assert_eq!(s.get("imds_probe_success{probe=\"sts\"}"), Some(&0.0));
    assert!(s["imds_probe_failures_total{probe=\"sts\",reason=\"rejected\"}"] >= 1.0);
    assert!(s["imds_sts_requests_total{code=\"expired_token\",source=\"imds\"}"] >= 1.0);
    exporter.shutdown().await;
    sim.shutdown().await;
}
