//! `imds_exporter check` against the in-process simulator (IMDS and NTP on 127.0.0.1:0): one
//! test per scenario asserting the verdict and the key advice, the SDK-environment checks with
//! controlled variables and temporary files, a snapshot of the human output, the JSON schema,
//! and the real binary for exit codes. Nothing here leaves loopback: every run names the
//! simulator's IMDS and NTP addresses.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imds_exporter::check::{
    self, CheckConfig, CheckId, KernelReading, LinklocalReading, NodeReading, NodeSource, Report,
    Status, Verdict, sdk, settings,
};
use imds_exporter::collector::clock::KernelClock;
use imds_exporter::sim::config::SimConfig;
use imds_exporter::sim::{self, RunningSim};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sim_options(scenario: &str) -> SimConfig {
    SimConfig {
        ntp_listen: Some("127.0.0.1:0".parse().unwrap()),
        scenario: scenario.into(),
        role: "test-role".into(),
        ..SimConfig::default()
    }
}

async fn start(scenario: &str) -> RunningSim {
    start_with(sim_options(scenario)).await
}

async fn start_with(options: SimConfig) -> RunningSim {
    sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("simulator starts")
}

fn ntp_server(sim: &RunningSim) -> String {
    sim.ntp_addr.expect("the simulator answers NTP").to_string()
}

/// A node reading that does not depend on the machine running the tests: a synchronised kernel
/// clock and one ENA interface without drops.
fn fine_node() -> NodeSource {
    NodeSource::Fixed(NodeReading {
        kernel_clock: KernelReading::Clock(KernelClock {
            synchronized: true,
            max_error_seconds: 0.01,
            estimated_error_seconds: 0.0001,
            status: 0x2001,
            state: 0,
        }),
        linklocal: LinklocalReading::Interfaces(vec![("eth0".into(), 0)]),
    })
}

/// The check against `sim` with an empty environment and a fixed node reading.
fn config(sim: &RunningSim) -> CheckConfig {
    let mut c = CheckConfig::new(sim.endpoint(), ntp_server(sim));
    c.node = fine_node();
    c
}

/// Refuses, before anything is sent, a configuration that would reach a non-loopback address:
/// the IMDS endpoint the check would probe (flag, else the SDK settings, else EC2's address)
/// and every NTP server. Endpoints the check cannot probe (not `http://`) send nothing.
fn assert_loopback_only(config: &CheckConfig) {
    let loopback = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let view = settings::EnvView::new(&config.env, config.home.as_deref());
    let sdk = settings::SdkSettings::from_env(&view);
    let endpoint = settings::resolve_imds_endpoint(config.imds_endpoint.as_deref(), &sdk);
    if let Ok(url) = reqwest::Url::parse(&endpoint)
        && url.scheme() == "http"
        && let Some(host) = url.host_str()
    {
        assert!(loopback(host), "the check would probe {endpoint}");
    }
    // STS: only ever an explicit loopback endpoint (the default is AWS's regional one).
    if let Some(sts) = &config.sts {
        let endpoint = sts.endpoint.as_deref().expect("tests give STS an endpoint");
        let url = reqwest::Url::parse(endpoint).unwrap();
        assert!(
            loopback(url.host_str().unwrap_or("")),
            "the check would ask {endpoint}"
        );
    }
    // The container provider's endpoint as the check resolves it (the relative URI and the
    // token file alone mean 169.254.170.x).
    let env = |k: &str| config.env.get(k).cloned();
    if let Some(container) = check::beyond::container_config(&env) {
        let url = reqwest::Url::parse(&container.endpoint).unwrap();
        assert!(
            loopback(url.host_str().unwrap_or("")),
            "the check would ask {}",
            container.endpoint
        );
    }
    assert!(
        !config.ntp_servers.is_empty(),
        "the default NTP server is EC2's"
    );
    for server in &config.ntp_servers {
        let host = server.rsplit_once(':').map_or(server.as_str(), |(h, _)| h);
        assert!(loopback(host), "the check would query NTP at {server}");
    }
}

async fn run(config: &CheckConfig) -> Report {
    assert_loopback_only(config);
    check::run(config).await.expect("the check runs")
}

async fn run_scenario(scenario: &str) -> Report {
    let sim = start(scenario).await;
    let report = run(&config(&sim)).await;
    sim.shutdown().await;
    report
}

fn get(report: &Report, id: CheckId) -> &check::Check {
    report
        .get(id)
        .unwrap_or_else(|| panic!("{} missing", id.as_str()))
}

/// Asserts a check's status and that its value, cause and fix together contain every needle.
#[track_caller]
fn expect(report: &Report, id: CheckId, status: Status, needles: &[&str]) {
    let c = get(report, id);
    let text = format!(
        "{}\n{}\n{}",
        c.value,
        c.cause.as_deref().unwrap_or(""),
        c.fix.as_deref().unwrap_or("")
    );
    assert_eq!(
        c.status,
        status,
        "{}: {text}\n\n{}",
        id.as_str(),
        check::report::human(report, false, false)
    );
    for n in needles {
        assert!(text.contains(n), "{}: {n:?} not in:\n{text}", id.as_str());
    }
}

/// Every check not named is `ok` (or `skip` where listed).
#[track_caller]
/// Every check but those in `except` is ok. The per-family client checks (`clients.*`) follow the
/// IMDS checks' outcome and are judged by their own tests.
fn others_ok(report: &Report, except: &[CheckId]) {
    for c in &report.checks {
        if !except.contains(&c.id) && !c.id.as_str().starts_with("clients.") {
            assert_eq!(
                c.status,
                Status::Ok,
                "{}: {}\n\n{}",
                c.id.as_str(),
                c.value,
                check::report::human(report, false, false)
            );
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "imds-check-{}-{name}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The SDK-environment checks alone (pure: no network), for the real IMDS address.
fn env_checks(pairs: &[(&str, &str)], home: Option<&Path>) -> Vec<check::Check> {
    let v = vars(pairs);
    let view = settings::EnvView::new(&v, home);
    let sdk = settings::SdkSettings::from_env(&view);
    sdk::evaluate(&view, None, Some("http://169.254.169.254"), &sdk)
}

fn env_check(checks: &[check::Check], id: CheckId) -> &check::Check {
    checks.iter().find(|c| c.id == id).unwrap()
}

// ---------------------------------------------------------------------------------------------
// One test per simulator scenario
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn healthy_warns_only_that_imdsv1_is_enabled() {
    let report = run_scenario("healthy").await;
    assert_eq!(report.verdict(false), Verdict::Warn);
    assert_eq!(report.verdict(true), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsV1,
        Status::Warn,
        &["enabled", "SSRF", "--http-tokens required"],
    );
    expect(&report, CheckId::ImdsRole, Status::Ok, &["test-role"]);
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Ok,
        &["expires in 5h 59m"],
    );
    others_ok(&report, &[CheckId::ImdsV1]);
}

#[tokio::test]
async fn imdsv2_only_is_all_ok() {
    let report = run_scenario("imdsv2-only").await;
    assert_eq!(report.verdict(true), Verdict::Ok);
    expect(
        &report,
        CheckId::ImdsV1,
        Status::Ok,
        &["disabled", "refused"],
    );
    others_ok(&report, &[]);
}

#[tokio::test]
async fn outage_is_a_token_timeout_without_the_hop_limit_signature() {
    let report = run_scenario("outage").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsReachable,
        Status::Ok,
        &["TCP connect"],
    );
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &["no answer to PUT /latest/api/token within 2s", "outage"],
    );
    let token = get(&report, CheckId::ImdsToken);
    assert!(!token.cause.as_ref().unwrap().contains("hop-limit"));
    for id in [
        CheckId::ImdsV1,
        CheckId::ImdsRole,
        CheckId::ImdsCredentials,
        CheckId::ImdsExpiry,
        CheckId::ImdsLatency,
    ] {
        assert_eq!(get(&report, id).status, Status::Skip, "{}", id.as_str());
    }
}

#[tokio::test]
async fn refused_connections_point_at_a_disabled_endpoint_or_a_firewall() {
    let report = run_scenario("refused").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &["reset", "HttpEndpoint=disabled", "iptables-save"],
    );
}

#[tokio::test]
async fn nothing_listening_fails_reachability_once() {
    let sim = start("healthy").await;
    // A TCP port that was just free on loopback: connections are refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut c = config(&sim);
    c.imds_endpoint = Some(endpoint);
    let report = run(&c).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsReachable,
        Status::Fail,
        &[
            "refused",
            "HttpEndpoint=disabled",
            "--http-endpoint enabled",
        ],
    );
    // The one cause is reported once: the later steps are skipped, not failed again.
    assert_eq!(
        report.counts().fail,
        1,
        "{}",
        check::report::human(&report, false, false)
    );
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Skip,
        &["imds.reachable"],
    );
}

#[tokio::test]
async fn throttling_names_the_429_and_how_to_find_the_pollers() {
    let report = run_scenario("throttle").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &["HTTP 429", "no SDK retries", "ss -tnp dst 169.254.169.254"],
    );
}

#[tokio::test]
async fn slow_answers_beyond_the_sdk_timeout_fail_the_latency_check() {
    let started = Instant::now();
    let sim = start("slow?delay=1500ms").await;
    let mut c = config(&sim);
    // Room above the 1.5 s delay even on a loaded machine: the answer must be measured.
    c.imds_timeout = Duration::from_secs(3);
    let report = run(&c).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Fail,
        &[
            "SDK timeout 1s, 1 attempt",
            "give up first",
            "(1 s per attempt, 1 attempt)",
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS=3",
        ],
    );
    let latency = get(&report, CheckId::ImdsLatency);
    let secs = slowest_seconds(&latency.value);
    assert!((1.45..3.0).contains(&secs), "{}", latency.value);
    let suggested = suggested_timeout(latency.fix.as_deref().unwrap());
    assert!(suggested as f64 > secs, "{suggested} <= {secs}");
    // Every request was answered, so the token and credentials themselves are fine.
    expect(&report, CheckId::ImdsToken, Status::Ok, &[]);
    expect(&report, CheckId::ImdsCredentials, Status::Ok, &[]);
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The seconds of a latency value, `slowest answer 1.50 s (...)` or `slowest answer 3.2 ms (...)`.
#[track_caller]
fn slowest_seconds(value: &str) -> f64 {
    let mut words = value
        .strip_prefix("slowest answer ")
        .unwrap_or_else(|| panic!("{value}"))
        .split(' ');
    let n: f64 = words
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{value}"));
    match words.next() {
        Some("s") => n,
        Some("ms") => n / 1000.0,
        _ => panic!("{value}"),
    }
}

/// The `AWS_METADATA_SERVICE_TIMEOUT` a latency fix's command exports.
#[track_caller]
fn suggested_timeout(fix: &str) -> u64 {
    let re = regex_lite::Regex::new(r"(?m)^\$ export AWS_METADATA_SERVICE_TIMEOUT=(\d+)").unwrap();
    re.captures(fix)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no timeout suggested in {fix}"))
}

#[tokio::test]
async fn the_sdk_attempts_from_the_environment_shape_the_latency_verdict_and_advice() {
    let sim = start("slow?delay=1200ms").await;
    let mut c = config(&sim);
    c.imds_timeout = Duration::from_secs(3);
    c.env = vars(&[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")]);
    let report = run(&c).await;
    sim.shutdown().await;
    // Three attempts of 1 s each still give up on answers that all take 1.2 s.
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Fail,
        &[
            "SDK timeout 1s, 3 attempts",
            "(1 s per attempt, 3 attempts; set by AWS_METADATA_SERVICE_NUM_ATTEMPTS=3)",
            "further attempts help only if a later answer comes sooner",
            "with 3 attempts it already retries",
        ],
    );
    let latency = get(&report, CheckId::ImdsLatency);
    let fix = latency.fix.as_deref().unwrap();
    let command = fix.lines().find(|l| l.starts_with("$ ")).unwrap();
    // Only the timeout is worth raising: the attempts are already there.
    assert!(!command.contains("NUM_ATTEMPTS"), "{fix}");
    assert!(suggested_timeout(fix) as f64 > slowest_seconds(&latency.value));
    expect(
        &report,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &["AWS_METADATA_SERVICE_NUM_ATTEMPTS=3", "3 attempts"],
    );
}

#[tokio::test]
async fn server_errors_name_the_attempts_botocore_makes() {
    let sim = start("server-error").await;
    let mut c = config(&sim);
    c.env = vars(&[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "2")]);
    let report = run(&c).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &[
            "HTTP 50",
            "makes 2 attempts (AWS_METADATA_SERVICE_NUM_ATTEMPTS=2)",
        ],
    );
    let cause = get(&report, CheckId::ImdsToken).cause.clone().unwrap();
    assert!(!cause.contains("one attempt"), "{cause}");
}

#[tokio::test]
async fn an_sdk_timeout_from_the_environment_moves_the_latency_limit() {
    let sim = start("slow?delay=1200ms").await;
    let mut c = config(&sim);
    c.env = vars(&[("AWS_METADATA_SERVICE_TIMEOUT", "2")]);
    let report = run(&c).await;
    sim.shutdown().await;
    // Within botocore's 2 s, beyond the Go SDK's 500 ms.
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Warn,
        &["SDK timeout 2s", "Go SDK v2"],
    );
    expect(
        &report,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &["AWS_METADATA_SERVICE_TIMEOUT=2", "waits 2 s"],
    );
}

#[tokio::test]
async fn server_errors_fail_with_a_retry_advice() {
    let report = run_scenario("server-error").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &[
            "HTTP 50",
            "server error",
            "one attempt (AWS_METADATA_SERVICE_NUM_ATTEMPTS not set, nor metadata_service_num_attempts in profile [default])",
            "stop and start",
        ],
    );
}

#[tokio::test]
async fn hop_limit_is_recognised_and_the_fix_names_the_instance() {
    let started = Instant::now();
    let report = run_scenario("hop-limit").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &[
            "while a token-less GET was answered (HTTP 200)",
            "hop-limit signature",
            "fall back",
            "aws ec2 modify-instance-metadata-options --instance-id i-0123456789abcdef0 --http-put-response-hop-limit 2",
            "hostNetwork: true",
        ],
    );
    expect(
        &report,
        CheckId::ImdsV1,
        Status::Warn,
        &["Fix the hop limit first"],
    );
    // One token timeout (2 s) and quick GETs: the whole run stays well under the bound.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn hop_limit_with_imdsv2_required_means_no_credentials_at_all() {
    let report = run_scenario("hop-limit-v2-only").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &[
            "(HTTP 401)",
            "hop-limit signature",
            "no credentials at all",
            "--http-put-response-hop-limit 2",
        ],
    );
    expect(&report, CheckId::ImdsV1, Status::Ok, &["disabled"]);
}

#[tokio::test]
async fn hop_limit_with_the_v1_fallback_forbidden_says_so() {
    let sim = start("hop-limit").await;
    let mut c = config(&sim);
    c.env = vars(&[("AWS_EC2_METADATA_V1_DISABLED", "true")]);
    let report = run(&c).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &["AWS_EC2_METADATA_V1_DISABLED=true forbids"],
    );
}

#[tokio::test]
async fn no_role_asks_for_an_instance_profile() {
    let report = run_scenario("no-role").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsRole,
        Status::Fail,
        &[
            "HTTP 404",
            "No IAM role is attached",
            "associate-iam-instance-profile",
        ],
    );
    expect(&report, CheckId::ImdsCredentials, Status::Skip, &[]);
    expect(
        &report,
        CheckId::ImdsIdentity,
        Status::Ok,
        &["i-0123456789abcdef0"],
    );
}

#[tokio::test]
async fn code_error_explains_the_trust_policy() {
    let report = run_scenario("code-error").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsCredentials,
        Status::Fail,
        &[
            "Code AssumeRoleUnauthorizedAccess",
            "trust policy",
            "ec2.amazonaws.com",
            "aws iam get-role --role-name test-role --query",
        ],
    );
    // The role list was read before the document failed: its name is kept, not "a role".
    expect(&report, CheckId::ImdsRole, Status::Ok, &["test-role (in "]);
    let fix = get(&report, CheckId::ImdsCredentials).fix.clone().unwrap();
    assert!(!fix.contains("<role>"), "{fix}");
}

#[tokio::test]
async fn expired_credentials_fail_with_expired_token() {
    let report = run_scenario("expired").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Fail,
        &[
            "expired 1m",
            "ExpiredToken",
            "replace-iam-instance-profile-association",
        ],
    );
}

#[tokio::test]
async fn expiring_credentials_fail_inside_botocores_refresh_window() {
    let report = run_scenario("expiring").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Fail,
        &["expires in 3m", "15 minutes", "advisory and mandatory"],
    );
}

#[tokio::test]
async fn credentials_that_expire_soon_by_a_corrected_clock_fail() {
    // 20 minutes left by the local clock, but the local clock is 10 minutes behind.
    let sim = start("expiring?in=20m").await;
    sim.state.set_clock_offset(600.0);
    let report = run(&config(&sim)).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Fail,
        &[
            "by the NTP clock it expires in 9m",
            "behind",
            "fix the clock",
        ],
    );
    expect(
        &report,
        CheckId::ClockNtp,
        Status::Fail,
        &["600.0 s behind"],
    );
}

#[tokio::test]
async fn stale_credentials_warn_once_under_an_hour_is_left() {
    // A one-shot check sees a stopped rotation only through the remaining lifetime: with a
    // 50-minute lifetime the frozen credentials are already under the hour.
    let mut options = sim_options("stale");
    options.rotate_every = Duration::from_secs(40 * 60);
    options.lifetime = Duration::from_secs(50 * 60);
    let sim = start_with(options).await;
    let report = run(&config(&sim)).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Warn,
        &["expires in 49m", "rotation may have stopped"],
    );
}

#[tokio::test]
async fn malformed_documents_fail_the_credentials_check() {
    let report = run_scenario("malformed").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsCredentials,
        Status::Fail,
        &[
            "GET /latest/meta-data/iam/security-credentials/test-role: ",
            "not valid JSON",
            "cannot use",
        ],
    );
    expect(&report, CheckId::ImdsRole, Status::Ok, &["test-role (in "]);
}

#[tokio::test]
async fn truncated_documents_fail_the_credentials_check() {
    let report = run_scenario("truncated").await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsCredentials,
        Status::Fail,
        &["unexpected end of input", "truncated"],
    );
}

/// The SDKs set no size limit: a 4 MiB document with the fields they need gives credentials, so
/// the check does not fail it either.
#[tokio::test]
async fn huge_documents_are_read_as_the_sdks_read_them() {
    let report = run_scenario("huge").await;
    let c = report.get(CheckId::ImdsCredentials).unwrap();
    assert_eq!(c.status, Status::Ok, "{c:?}");
}

/// How many requests of a path group (`token`, `role`, `credentials`, `info`, `identity`) the
/// simulator answered with `status`, or with anything when `status` is `None`.
fn sim_requests(sim: &RunningSim, group: &str, status: Option<&str>) -> u64 {
    let state = sim.state.state_json();
    let counts = &state["requests"][group];
    match status {
        Some(s) => counts[s].as_u64().unwrap_or(0),
        None => counts
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum()),
    }
}

#[tokio::test]
async fn throttle_partial_fails_exactly_where_the_simulator_throttled() {
    // Which requests get the 429 is chance; what the check makes of it is not: every run is
    // held against the simulator's own record of the statuses it sent. The ends of the ratio
    // are throttle (every request) and healthy (none).
    use Status as S;
    for (ratio, runs) in [("1", 1), ("0", 1), ("0.5", 12)] {
        for _ in 0..runs {
            let sim = start(&format!("throttle-partial?ratio={ratio}")).await;
            let report = run(&config(&sim)).await;
            let throttled = |group| sim_requests(&sim, group, Some("429")) > 0;
            let token = throttled("token");
            // The role group holds the role GET (with a token), then the token-less GET; the
            // credentials are asked for only when the role GET was answered.
            let role = !token && sim_requests(&sim, "credentials", None) == 0;
            let creds = throttled("credentials");
            let v1 = sim_requests(&sim, "role", Some("429")) - u64::from(role) == 1;
            let (info, identity) = (throttled("info"), throttled("identity"));
            sim.shutdown().await;
            if ratio == "1" {
                assert!(token && v1, "ratio 1 throttles every request");
            }
            if ratio == "0" {
                assert!(!(token || role || creds || v1 || info || identity));
            }
            let creds_ok = !token && !role && !creds;
            let pick = |cond: bool, yes: S, no: S| if cond { yes } else { no };
            let want = [
                (CheckId::ImdsToken, pick(token, S::Fail, S::Ok)),
                (CheckId::ImdsV1, pick(v1, S::Skip, S::Warn)),
                (
                    CheckId::ImdsRole,
                    pick(token, S::Skip, pick(role, S::Fail, S::Ok)),
                ),
                (
                    CheckId::ImdsCredentials,
                    pick(token || role, S::Skip, pick(creds, S::Fail, S::Ok)),
                ),
                (CheckId::ImdsExpiry, pick(creds_ok, S::Ok, S::Skip)),
                (
                    CheckId::ImdsInfo,
                    pick(creds_ok, pick(info, S::Warn, S::Ok), S::Skip),
                ),
                (
                    CheckId::ImdsIdentity,
                    pick(token, S::Skip, pick(identity, S::Warn, S::Ok)),
                ),
            ];
            for (id, status) in want {
                let needles: &[&str] = match (id, status) {
                    (CheckId::ImdsV1, S::Skip) => &["HTTP status 429"],
                    (_, S::Fail | S::Warn) if id != CheckId::ImdsV1 => &["HTTP 429"],
                    _ => &[],
                };
                expect(&report, id, status, needles);
            }
            let ids: Vec<CheckId> = want.iter().map(|w| w.0).collect();
            others_ok(&report, &ids);
            let want_verdict = if want.iter().any(|w| w.1 == S::Fail) {
                Verdict::Fail
            } else if want.iter().any(|w| w.1 == S::Warn) {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            assert_eq!(report.verdict(false), want_verdict, "ratio {ratio}");
        }
    }
}

#[tokio::test]
async fn jitter_far_below_the_go_timeout_is_ok() {
    // Log-normal delays, median 5 ms, p99 10 ms (sigma 0.30). The simulator's normal draws
    // (Box-Muller on fastrand's 63-bit uniform) never pass 9.4 standard deviations but with
    // probability 2^-63, so no answer is delayed beyond 5 ms * e^(0.30 * 9.4) = 82 ms.
    let report = run_scenario("jitter?p50=5ms&p99=10ms").await;
    assert_eq!(report.verdict(false), Verdict::Warn);
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Ok,
        &["slowest answer"],
    );
    let secs = slowest_seconds(&get(&report, CheckId::ImdsLatency).value);
    assert!(secs < 0.5, "{secs}");
    // Like healthy: only IMDSv1 warns.
    others_ok(&report, &[CheckId::ImdsV1]);
}

#[tokio::test]
async fn jitter_entirely_above_the_sdk_timeout_fails_the_latency_check() {
    // Median 1.3 s, p99 1.35 s (sigma 0.016): within 9.4 standard deviations every delay lies
    // between 1.12 s and 1.52 s, beyond the SDKs' 1 s and inside this check's 3 s.
    let sim = start("jitter?p50=1300ms&p99=1350ms").await;
    let mut c = config(&sim);
    c.imds_timeout = Duration::from_secs(3);
    let report = run(&c).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Fail,
        &["SDK timeout 1s, 1 attempt", "give up first"],
    );
    let secs = slowest_seconds(&get(&report, CheckId::ImdsLatency).value);
    assert!((1.1..3.0).contains(&secs), "{secs}");
    // Slow, but every request was answered.
    for id in [
        CheckId::ImdsToken,
        CheckId::ImdsRole,
        CheckId::ImdsCredentials,
        CheckId::ImdsExpiry,
    ] {
        expect(&report, id, Status::Ok, &[]);
    }
}

#[tokio::test]
async fn rotate_late_is_judged_by_the_time_left_until_the_late_issue() {
    // Right after the switch the credentials have their whole lifetime: a one-shot check sees
    // what healthy gives (it cannot see rotation, only the time left).
    let report = run_scenario("rotate-late").await;
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Ok,
        &["expires in 5h 59m"],
    );

    // Credentials 10 minutes from expiry, and new ones only 2 minutes before it: inside
    // botocore's refresh window with nothing newer to fetch.
    let sim = start("expiring?in=10m").await;
    common::switch(&sim, "rotate-late?lead=2m").await;
    let report = run(&config(&sim)).await;
    let generation =
        |sim: &RunningSim| sim.state.state_json()["credentials"]["generation"].as_u64();
    assert_eq!(generation(&sim), Some(0), "not reissued yet");
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Fail,
        &["expires in 9m", "Less than 15 minutes"],
    );
    // With a lead longer than the 10 minutes left the late issue is due: fresh credentials.
    common::switch(&sim, "rotate-late?lead=12m").await;
    let report = run(&config(&sim)).await;
    assert_eq!(generation(&sim), Some(1), "reissued");
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Ok,
        &["expires in 5h 5", "issued 2m"],
    );
}

#[tokio::test]
async fn a_clock_400_seconds_off_fails_for_sigv4() {
    let sim = start("imdsv2-only").await;
    sim.state.set_clock_offset(400.0);
    let report = run(&config(&sim)).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Fail);
    expect(
        &report,
        CheckId::ClockNtp,
        Status::Fail,
        &[
            "400.0 s behind",
            "5 minutes",
            "RequestTimeTooSkewed",
            "chronyc makestep",
        ],
    );
    // Six hours minus 400 s is still far from expiry.
    expect(
        &report,
        CheckId::ImdsExpiry,
        Status::Ok,
        &["by the NTP clock"],
    );
}

#[tokio::test]
async fn a_clock_a_few_seconds_off_warns() {
    let sim = start("imdsv2-only").await;
    sim.state.set_clock_offset(-3.0);
    let report = run(&config(&sim)).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Warn);
    expect(
        &report,
        CheckId::ClockNtp,
        Status::Warn,
        &["ahead", "disciplines"],
    );
}

#[tokio::test]
async fn a_silent_ntp_server_is_a_warning_not_a_failure() {
    let sim = start("imdsv2-only").await;
    // A UDP port that was just free: the query is refused or times out, on loopback.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    drop(silent);
    let mut c = config(&sim);
    c.ntp_servers = vec![addr.clone()];
    c.ntp_timeout = Duration::from_millis(500);
    let report = run(&c).await;
    sim.shutdown().await;
    assert_eq!(report.verdict(false), Verdict::Warn);
    expect(
        &report,
        CheckId::ClockNtp,
        Status::Warn,
        &["no answer", &addr],
    );
}

#[tokio::test]
async fn the_kernel_clock_and_link_local_drops_come_from_the_node_reading() {
    let sim = start("imdsv2-only").await;
    let mut c = config(&sim);
    c.node = NodeSource::Fixed(NodeReading {
        kernel_clock: KernelReading::Clock(KernelClock {
            synchronized: false,
            max_error_seconds: 16.0,
            estimated_error_seconds: 16.0,
            status: 0x40,
            state: 5,
        }),
        linklocal: LinklocalReading::Interfaces(vec![("ens5".into(), 1234)]),
    });
    let report = run(&c).await;
    expect(
        &report,
        CheckId::ClockKernel,
        Status::Warn,
        &[
            "not synchronised",
            "SigV4",
            "credential expiry",
            "ExpiredToken",
            "chronyd",
        ],
    );
    expect(
        &report,
        CheckId::NetworkLinklocal,
        Status::Warn,
        &["1234 packets dropped", "1024 packets/s", "ethtool -S ens5"],
    );
    c.node = NodeSource::Fixed(NodeReading {
        kernel_clock: KernelReading::NotPermitted,
        linklocal: LinklocalReading::Interfaces(vec![]),
    });
    let report = run(&c).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ClockKernel,
        Status::Skip,
        &["CAP_SYS_TIME"],
    );
    expect(
        &report,
        CheckId::NetworkLinklocal,
        Status::Skip,
        &["no ENA interface"],
    );
    assert_eq!(report.verdict(true), Verdict::Ok);
}

#[tokio::test]
async fn the_host_node_reading_is_this_machines_own() {
    // NodeSource::Host reads this machine, whatever its clock and NICs are: each node check
    // follows a reading taken here independently (the two cannot fail by design: they warn or
    // skip), and the rest of the report stays the simulator's.
    use imds_exporter::collector::{clock, ethtool};
    let sim = start("imdsv2-only").await;
    let mut c = config(&sim);
    c.node = NodeSource::Host;
    let report = run(&c).await;
    sim.shutdown().await;
    let (status, needle) = match clock::read() {
        Ok(k) if k.synchronized => (Status::Ok, "synchronised (max error "),
        Ok(_) => (Status::Warn, "not synchronised (adjtimex state "),
        Err(clock::ClockError::NotPermitted) => (Status::Skip, "CAP_SYS_TIME"),
        Err(_) => (Status::Skip, "not readable: "),
    };
    expect(&report, CheckId::ClockKernel, status, &[needle]);
    let counters: Option<Vec<(String, u64)>> = ethtool::list_interfaces().ok().map(|names| {
        names
            .into_iter()
            .filter_map(|name| {
                let stats = ethtool::read_stats(&name).ok()?;
                let linklocal = ethtool::allowance_counters(&stats).linklocal?;
                Some((name, linklocal))
            })
            .collect()
    });
    match counters {
        None => expect(
            &report,
            CheckId::NetworkLinklocal,
            Status::Skip,
            &["not available"],
        ),
        Some(ifaces) if ifaces.is_empty() => expect(
            &report,
            CheckId::NetworkLinklocal,
            Status::Skip,
            &["no ENA interface"],
        ),
        Some(ifaces) => {
            let names: Vec<String> = ifaces.iter().map(|(i, _)| format!("{i}: ")).collect();
            let needles: Vec<&str> = names.iter().map(String::as_str).collect();
            let dropped = ifaces.iter().any(|(_, n)| *n > 0);
            let status = if dropped { Status::Warn } else { Status::Ok };
            expect(&report, CheckId::NetworkLinklocal, status, &needles);
        }
    }
    others_ok(&report, &[CheckId::ClockKernel, CheckId::NetworkLinklocal]);
}

// ---------------------------------------------------------------------------------------------
// The SDK environment, with controlled variables and files
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_endpoint_variable_is_probed_when_no_flag_is_given() {
    let sim = start("imdsv2-only").await;
    let mut c = config(&sim);
    c.imds_endpoint = None;
    c.env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &sim.endpoint())]);
    let report = run(&c).await;
    let endpoint = sim.endpoint();
    sim.shutdown().await;
    assert_eq!(report.imds_endpoint, endpoint);
    expect(&report, CheckId::ImdsCredentials, Status::Ok, &[]);
    expect(
        &report,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:",
            "leftover",
        ],
    );
}

#[tokio::test]
async fn an_endpoint_variable_the_check_cannot_probe_skips_the_imds_checks() {
    // The simulator only answers NTP here: no IMDS request is made at all.
    let sim = start("imdsv2-only").await;
    for (value, endpoint_status, why, verdict) in [
        ("not a url", Status::Fail, "it is not a URL", Verdict::Fail),
        (
            "https://127.0.0.1:9",
            Status::Warn,
            "plain http:// only",
            Verdict::Warn,
        ),
        (
            "http://127.0.0.1:9/latest",
            Status::Warn,
            "without a path",
            Verdict::Warn,
        ),
    ] {
        let mut c = config(&sim);
        c.imds_endpoint = None;
        c.env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", value)]);
        assert_loopback_only(&c);
        let report = check::run(&c)
            .await
            .unwrap_or_else(|e| panic!("{value:?}: a finding, not a usage error: {e}"));
        assert!(!report.imds_probed, "{value:?}");
        let imds: Vec<CheckId> = CheckId::ALL
            .into_iter()
            .filter(|id| id.as_str().starts_with("imds."))
            .collect();
        for &id in &imds {
            expect(
                &report,
                id,
                Status::Skip,
                &["not probed: AWS_EC2_METADATA_SERVICE_ENDPOINT"],
            );
        }
        expect(&report, CheckId::ImdsReachable, Status::Skip, &[why]);
        let needle = if endpoint_status == Status::Fail {
            "InvalidIMDSEndpointError"
        } else {
            "not probed"
        };
        expect(
            &report,
            CheckId::SdkImdsEndpoint,
            endpoint_status,
            &[needle],
        );
        let mut except = imds;
        except.push(CheckId::SdkImdsEndpoint);
        others_ok(&report, &except);
        assert_eq!(report.verdict(false), verdict, "{value:?}");
        let human = check::report::human(&report, false, false);
        assert!(
            human.starts_with(
                "imds_exporter check: IMDS not probed (AWS_EC2_METADATA_SERVICE_ENDPOINT="
            ),
            "{human}"
        );
    }
    // The same value given as the flag is a usage error (exit 2).
    let mut c = config(&sim);
    c.imds_endpoint = Some("not a url".into());
    assert_loopback_only(&c);
    let err = check::run(&c).await.unwrap_err();
    sim.shutdown().await;
    assert!(err.starts_with("--imds.endpoint \"not a url\""), "{err}");
}

#[tokio::test]
async fn endpoint_user_information_is_never_printed() {
    const SECRET: &str = "EndpointPw123";
    let sim = start("imdsv2-only").await;
    let with_user = format!("http://imdsuser:{SECRET}@{}", sim.addr);
    // As the flag: probed (the prober ignores user information), shown as ***@.
    let mut c = config(&sim);
    c.imds_endpoint = Some(with_user.clone());
    let flagged = run(&c).await;
    // As the variable: probed too.
    c.imds_endpoint = None;
    c.env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &with_user)]);
    let from_env = run(&c).await;
    // As a variable the check cannot probe.
    let https = format!("https://imdsuser:{SECRET}@{}", sim.addr);
    c.env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &https)]);
    let unprobed = run(&c).await;
    // As a flag the check refuses: the error message.
    c.imds_endpoint = Some(https);
    assert_loopback_only(&c);
    let err = check::run(&c).await.unwrap_err();
    sim.shutdown().await;

    expect(
        &flagged,
        CheckId::ImdsReachable,
        Status::Ok,
        &["TCP connect to http://***@127.0.0.1:"],
    );
    expect(&from_env, CheckId::ImdsCredentials, Status::Ok, &[]);
    expect(
        &from_env,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &["AWS_EC2_METADATA_SERVICE_ENDPOINT=http://***@127.0.0.1:"],
    );
    expect(
        &unprobed,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            "AWS_EC2_METADATA_SERVICE_ENDPOINT=https://***@127.0.0.1:",
            "not probed",
        ],
    );
    for report in [&flagged, &from_env, &unprobed] {
        let human = check::report::human(report, false, false);
        let json = check::report::json(report, false);
        assert!(human.contains("***@127.0.0.1:"), "{human}");
        for text in [&human, &json] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("imdsuser"), "{text}");
        }
    }
    assert!(err.contains("https://***@127.0.0.1:"), "{err}");
    assert!(!err.contains(SECRET) && !err.contains("imdsuser"), "{err}");
}

#[test]
fn imds_switches_and_endpoint_overrides() {
    let c = env_checks(&[("AWS_EC2_METADATA_DISABLED", "TRUE")], None);
    let disabled = env_check(&c, CheckId::SdkImdsDisabled);
    assert_eq!(disabled.status, Status::Fail);
    assert!(
        disabled
            .cause
            .as_ref()
            .unwrap()
            .contains("Unable to locate credentials")
    );
    assert_eq!(
        env_check(&c, CheckId::SdkCredentialSource).status,
        Status::Fail
    );

    // Disabled on purpose next to IRSA: fine, and said.
    let c = env_checks(
        &[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/app"),
        ],
        None,
    );
    let disabled = env_check(&c, CheckId::SdkImdsDisabled);
    assert_eq!(disabled.status, Status::Ok);
    assert!(
        disabled.value.contains("web identity"),
        "{}",
        disabled.value
    );

    let c = env_checks(&[("AWS_EC2_METADATA_DISABLED", "yes")], None);
    assert_eq!(env_check(&c, CheckId::SdkImdsDisabled).status, Status::Ok);

    let c = env_checks(&[("AWS_EC2_METADATA_V1_DISABLED", "true")], None);
    let v1 = env_check(&c, CheckId::SdkImdsV1Disabled);
    assert!(v1.value.contains("never fall back"), "{}", v1.value);

    for (pairs, status, needle) in [
        (vec![], Status::Ok, "no override"),
        (
            vec![(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://169.254.169.254/",
            )],
            Status::Ok,
            "standard",
        ),
        (
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://10.0.0.1:8080")],
            Status::Warn,
            "SDKs send IMDS requests there",
        ),
        (
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", "not a url")],
            Status::Fail,
            "InvalidIMDSEndpointError",
        ),
        (
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")],
            Status::Warn,
            "fd00:ec2::254",
        ),
        (
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv5")],
            Status::Fail,
            "InvalidIMDSEndpointModeError",
        ),
    ] {
        let c = env_checks(&pairs, None);
        let e = env_check(&c, CheckId::SdkImdsEndpoint);
        let text = format!("{} {}", e.value, e.cause.as_deref().unwrap_or(""));
        assert_eq!(e.status, status, "{pairs:?}: {text}");
        assert!(text.contains(needle), "{pairs:?}: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The IMDS settings in the shared config file: botocore 1.44 (`configprovider.py`,
// `BOTOCORE_DEFAUT_SESSION_VARIABLES`) reads each as the variable if set at all (even empty),
// else the active profile's key (the credentials file's over the config file's), else the
// default. The resolutions asserted below were checked with the real botocore
// (`Session().get_config_variable(...)`, `utils.resolve_imds_endpoint_mode`).
// ---------------------------------------------------------------------------------------------

/// The text of a check: value, cause and fix.
fn all_text(c: &check::Check) -> String {
    format!(
        "{}\n{}\n{}",
        c.value,
        c.cause.as_deref().unwrap_or(""),
        c.fix.as_deref().unwrap_or("")
    )
}

#[track_caller]
fn expect_env(checks: &[check::Check], id: CheckId, status: Status, needles: &[&str]) {
    let c = env_check(checks, id);
    let text = all_text(c);
    assert_eq!(c.status, status, "{}: {text}", id.as_str());
    for n in needles {
        assert!(text.contains(n), "{}: {n:?} not in:\n{text}", id.as_str());
    }
}

#[tokio::test]
async fn the_sdk_timeout_and_attempts_from_the_profile_shape_the_latency_verdict() {
    let sim = start("slow?delay=1200ms").await;
    let home = TempDir::new("profile-timeout");
    // configparser's `:` delimiter and any key case are botocore's too.
    let file = home.write(
        ".aws/config",
        "[default]\nmetadata_service_timeout = 1\nmetadata_service_num_attempts = 2\n\n\
         [profile patient]\nmetadata_service_timeout: 2\nMetadata_Service_Num_Attempts = 3\n",
    );
    let at = |p: &str| format!("from profile [{p}] in {}", file.display());
    let mut c = config(&sim);
    // Room above the 1.2 s answers: they must be measured.
    c.imds_timeout = Duration::from_secs(3);
    c.home = Some(home.path().to_path_buf());

    // The default profile: 1 s and 2 attempts, both from the file; every answer takes 1.2 s.
    let report = run(&c).await;
    let both = format!(
        "metadata_service_timeout=1 and metadata_service_num_attempts=2 {}",
        at("default")
    );
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Fail,
        &[
            "SDK timeout 1s, 2 attempts",
            &format!("(1 s per attempt, 2 attempts; set by {both})"),
            "further attempts help only if a later answer comes sooner",
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS=3",
            &format!(
                "The variables take precedence over metadata_service_timeout and \
                 metadata_service_num_attempts {}",
                at("default")
            ),
        ],
    );
    let latency = get(&report, CheckId::ImdsLatency);
    assert!(
        suggested_timeout(latency.fix.as_deref().unwrap()) as f64 > slowest_seconds(&latency.value)
    );
    expect(
        &report,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &[&format!(
            "metadata_service_timeout=1, metadata_service_num_attempts=2 {}: botocore waits 1 s \
             per IMDS request, 2 attempts",
            at("default")
        )],
    );

    // The profile AWS_PROFILE selects: 2 s, within botocore's wait, beyond Go's 500 ms.
    c.env = vars(&[("AWS_PROFILE", "patient")]);
    let report = run(&c).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsLatency,
        Status::Warn,
        &["SDK timeout 2s, 3 attempts", "Go SDK v2"],
    );
    expect(
        &report,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &[&format!(
            "metadata_service_timeout=2, metadata_service_num_attempts=3 {}: botocore waits 2 s \
             per IMDS request, 3 attempts",
            at("patient")
        )],
    );
}

#[tokio::test]
async fn the_endpoint_from_the_profile_is_probed_and_judged() {
    const SECRET: &str = "ProfileEndpointPw";
    let sim = start("imdsv2-only").await;
    let home = TempDir::new("profile-endpoint");
    let file = home.write(
        ".aws/config",
        &format!(
            "[default]\nec2_metadata_service_endpoint = http://imdsuser:{SECRET}@{}\n",
            sim.addr
        ),
    );
    let at = format!("from profile [default] in {}", file.display());
    let mut c = config(&sim);
    c.imds_endpoint = None;
    c.home = Some(home.path().to_path_buf());

    // What SDKs here use is what the check probes.
    let report = run(&c).await;
    assert!(report.imds_probed);
    expect(
        &report,
        CheckId::ImdsReachable,
        Status::Ok,
        &[&format!("TCP connect to http://***@{}", sim.addr)],
    );
    expect(&report, CheckId::ImdsCredentials, Status::Ok, &[]);
    expect(
        &report,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            &format!(
                "ec2_metadata_service_endpoint=http://***@{} {at}: SDKs send IMDS requests there",
                sim.addr
            ),
            "The profile setting replaces 169.254.169.254 for every SDK that reads profile [default]",
            &format!("If it is not intended, delete ec2_metadata_service_endpoint {at}."),
        ],
    );
    for text in [
        check::report::human(&report, false, false),
        check::report::json(&report, false),
    ] {
        assert!(
            !text.contains(SECRET) && !text.contains("imdsuser"),
            "{text}"
        );
    }

    // One the check cannot probe: skipped, naming the profile's key.
    home.write(
        ".aws/config",
        "[default]\nec2_metadata_service_endpoint = https://127.0.0.1:9\n",
    );
    let report = run(&c).await;
    assert!(!report.imds_probed);
    expect(
        &report,
        CheckId::ImdsReachable,
        Status::Skip,
        &[&format!(
            "not probed: ec2_metadata_service_endpoint=\"https://127.0.0.1:9\" {at}: this check \
             speaks plain http:// only"
        )],
    );
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Skip,
        &[&format!(
            "not probed: ec2_metadata_service_endpoint {at} is not an endpoint this check can probe"
        )],
    );
    expect(
        &report,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            "https://127.0.0.1:9",
            "not probed: this check speaks plain http:// only",
        ],
    );
    let human = check::report::human(&report, false, false);
    assert!(
        human.starts_with(&format!(
            "imds_exporter check: IMDS not probed (ec2_metadata_service_endpoint=\"https://127.0.0.1:9\" {at}), NTP "
        )),
        "{human}"
    );

    // The variable overrides the profile: probed, and the profile's value is named.
    c.env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &sim.endpoint())]);
    let report = run(&c).await;
    let endpoint = sim.endpoint();
    sim.shutdown().await;
    assert!(report.imds_probed);
    assert_eq!(report.imds_endpoint, endpoint);
    expect(&report, CheckId::ImdsCredentials, Status::Ok, &[]);
    expect(
        &report,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            &format!("AWS_EC2_METADATA_SERVICE_ENDPOINT={endpoint}: SDKs send IMDS requests there"),
            &format!("(overrides ec2_metadata_service_endpoint=https://127.0.0.1:9 {at})"),
            "$ unset AWS_EC2_METADATA_SERVICE_ENDPOINT",
        ],
    );
}

#[test]
fn variables_override_the_profile_and_the_profile_overrides_the_defaults() {
    let home = TempDir::new("profile-precedence");
    let file = home.write(
        ".aws/config",
        "[default]\nmetadata_service_timeout = 5\nmetadata_service_num_attempts = 4\n\
         ec2_metadata_service_endpoint = http://imds.internal:8080\nec2_metadata_v1_disabled = true\n\n\
         [profile v6]\nec2_metadata_service_endpoint_mode = IPv6\n\n\
         [profile badmode]\nec2_metadata_service_endpoint = http://169.254.169.254\n\
         ec2_metadata_service_endpoint_mode = ipv5\n",
    );
    let h = Some(home.path());
    let at = |p: &str| format!("from profile [{p}] in {}", file.display());
    let settings = |pairs: &[(&str, &str)]| {
        let v = vars(pairs);
        settings::SdkSettings::from_env(&settings::EnvView::new(&v, h))
    };

    // Nothing in the environment: every setting from the profile.
    let s = settings(&[]);
    assert_eq!(
        (s.timeout, s.attempts, s.v1_disabled),
        (Duration::from_secs(5), 4, true)
    );
    assert_eq!(
        settings::resolve_imds_endpoint(None, &s),
        "http://imds.internal:8080"
    );
    let c = env_checks(&[], h);
    expect_env(
        &c,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &[&format!(
            "metadata_service_timeout=5, metadata_service_num_attempts=4 {}: botocore waits 5 s \
             per IMDS request, 4 attempts",
            at("default")
        )],
    );
    expect_env(
        &c,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[&format!(
            "ec2_metadata_service_endpoint=http://imds.internal:8080 {}: SDKs send IMDS requests there",
            at("default")
        )],
    );
    expect_env(
        &c,
        CheckId::SdkImdsV1Disabled,
        Status::Ok,
        &[&format!(
            "ec2_metadata_v1_disabled=true {}: SDKs never fall back",
            at("default")
        )],
    );
    // The proxy check judges the host SDKs use: the profile's.
    let c = env_checks(
        &[
            ("HTTP_PROXY", "http://proxy:3128"),
            ("NO_PROXY", "169.254.169.254"),
        ],
        h,
    );
    expect_env(
        &c,
        CheckId::SdkProxy,
        Status::Warn,
        &["NO_PROXY=imds.internal,"],
    );

    // The variables win, each over its key; the rest still comes from the profile.
    let pairs = [
        ("AWS_METADATA_SERVICE_TIMEOUT", "2"),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://169.254.169.254",
        ),
        ("AWS_EC2_METADATA_V1_DISABLED", "false"),
    ];
    let s = settings(&pairs);
    assert_eq!(
        (s.timeout, s.attempts, s.v1_disabled),
        (Duration::from_secs(2), 4, false)
    );
    assert_eq!(
        settings::resolve_imds_endpoint(None, &s),
        "http://169.254.169.254"
    );
    let c = env_checks(&pairs, h);
    expect_env(
        &c,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &[&format!(
            "AWS_METADATA_SERVICE_TIMEOUT=2 (overrides metadata_service_timeout=5 {}), \
             metadata_service_num_attempts=4 {}: botocore waits 2 s per IMDS request, 4 attempts",
            at("default"),
            at("default")
        )],
    );
    expect_env(
        &c,
        CheckId::SdkImdsEndpoint,
        Status::Ok,
        &[&format!(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://169.254.169.254: the standard endpoint \
             (overrides ec2_metadata_service_endpoint=http://imds.internal:8080 {})",
            at("default")
        )],
    );
    expect_env(
        &c,
        CheckId::SdkImdsV1Disabled,
        Status::Ok,
        &[&format!(
            "AWS_EC2_METADATA_V1_DISABLED=\"false\": not \"true\"; SDKs fall back to IMDSv1 when \
             the token request fails (overrides ec2_metadata_v1_disabled=true {})",
            at("default")
        )],
    );

    // Set but empty still counts for botocore (`name in os.environ`) and hides the profile.
    let pairs = [
        ("AWS_METADATA_SERVICE_TIMEOUT", ""),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", ""),
        ("AWS_EC2_METADATA_V1_DISABLED", ""),
    ];
    let s = settings(&pairs);
    assert!(!s.v1_disabled);
    assert_eq!(
        settings::resolve_imds_endpoint(None, &s),
        "http://169.254.169.254"
    );
    let c = env_checks(&pairs, h);
    let ignores = |key: &str, v: &str| {
        format!(
            "(set but empty: botocore still takes it and ignores {key}={v} {}",
            at("default")
        )
    };
    expect_env(
        &c,
        CheckId::SdkImdsTimeout,
        Status::Fail,
        &[
            &format!(
                "AWS_METADATA_SERVICE_TIMEOUT=\"\" {}",
                ignores("metadata_service_timeout", "5")
            ),
            "AWS_METADATA_SERVICE_TIMEOUT is set but empty",
            "ValueError",
            "$ export AWS_METADATA_SERVICE_TIMEOUT=2",
        ],
    );
    expect_env(
        &c,
        CheckId::SdkImdsEndpoint,
        Status::Ok,
        &[
            &format!(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT=\"\" {}",
                ignores("ec2_metadata_service_endpoint", "http://imds.internal:8080")
            ),
            "; SDKs use http://169.254.169.254",
        ],
    );
    expect_env(
        &c,
        CheckId::SdkImdsV1Disabled,
        Status::Ok,
        &[
            "AWS_EC2_METADATA_V1_DISABLED=\"\": not \"true\"",
            &ignores("ec2_metadata_v1_disabled", "true"),
        ],
    );

    // The profile is botocore's: AWS_DEFAULT_PROFILE before AWS_PROFILE.
    let c = env_checks(
        &[("AWS_DEFAULT_PROFILE", "v6"), ("AWS_PROFILE", "default")],
        h,
    );
    expect_env(
        &c,
        CheckId::SdkImdsEndpoint,
        Status::Warn,
        &[
            &format!(
                "ec2_metadata_service_endpoint_mode=IPv6 {}: SDKs use http://[fd00:ec2::254]",
                at("v6")
            ),
            &format!("Delete ec2_metadata_service_endpoint_mode {}.", at("v6")),
        ],
    );
    expect_env(
        &c,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &["not set, nor in profile [v6]: botocore waits 1 s per IMDS request, 1 attempt"],
    );
    // botocore validates the mode even next to an endpoint.
    let c = env_checks(&[("AWS_PROFILE", "badmode")], h);
    expect_env(
        &c,
        CheckId::SdkImdsEndpoint,
        Status::Fail,
        &[
            &format!(
                "ec2_metadata_service_endpoint_mode=\"ipv5\" {}",
                at("badmode")
            ),
            "InvalidIMDSEndpointModeError",
            "with or without an endpoint override",
        ],
    );
    // An empty AWS_CONFIG_FILE names no file: botocore does not fall back to ~/.aws/config.
    let s = settings(&[("AWS_CONFIG_FILE", "")]);
    assert_eq!(s, settings::SdkSettings::default());

    // The credentials file's value wins over the config file's (`Session.full_config`).
    let creds = home.write(
        ".aws/credentials",
        "[default]\nmetadata_service_timeout = 7\n",
    );
    let c = env_checks(&[], h);
    expect_env(
        &c,
        CheckId::SdkImdsTimeout,
        Status::Ok,
        &[
            &format!(
                "metadata_service_timeout=7 from profile [default] in {}",
                creds.display()
            ),
            "botocore waits 7 s per IMDS request, 4 attempts",
        ],
    );
}

#[tokio::test]
async fn ec2_metadata_v1_disabled_from_the_profile_forbids_the_fallback_at_the_hop_limit() {
    let sim = start("hop-limit").await;
    let home = TempDir::new("profile-v1");
    let file = home.write(
        ".aws/config",
        "[default]\nec2_metadata_v1_disabled = True\n",
    );
    let by = format!(
        "ec2_metadata_v1_disabled=True from profile [default] in {}",
        file.display()
    );
    let mut c = config(&sim);
    c.home = Some(home.path().to_path_buf());
    let report = run(&c).await;
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &[
            "hop-limit signature",
            &format!(
                "IMDSv1 still answers, but {by} forbids SDKs to fall back to it: they get no credentials"
            ),
        ],
    );
    expect(
        &report,
        CheckId::ImdsV1,
        Status::Warn,
        &[
            &format!("SDKs in this environment never use it ({by})"),
            &format!(
                "Fix the hop limit first (see imds.token): with {by}, SDKs here get no credentials until then"
            ),
        ],
    );
    expect(
        &report,
        CheckId::SdkImdsV1Disabled,
        Status::Ok,
        &[&format!("{by}: SDKs never fall back")],
    );

    // The variable overrides the profile: the fallback is back.
    c.env = vars(&[("AWS_EC2_METADATA_V1_DISABLED", "false")]);
    let report = run(&c).await;
    sim.shutdown().await;
    expect(
        &report,
        CheckId::ImdsToken,
        Status::Fail,
        &["so SDKs fall back to it after their token timeout"],
    );
    assert!(!all_text(get(&report, CheckId::ImdsToken)).contains("forbids"));
    expect(
        &report,
        CheckId::ImdsV1,
        Status::Warn,
        &["SDKs here depend on the IMDSv1 fallback until then"],
    );
    assert!(!all_text(get(&report, CheckId::ImdsV1)).contains("never use it"));
    expect(
        &report,
        CheckId::SdkImdsV1Disabled,
        Status::Ok,
        &[&format!(
            "AWS_EC2_METADATA_V1_DISABLED=\"false\": not \"true\"; SDKs fall back to IMDSv1 when \
             the token request fails (overrides ec2_metadata_v1_disabled=True from profile \
             [default] in {})",
            file.display()
        )],
    );
}

#[test]
fn proxies_catch_imds_traffic_unless_no_proxy_covers_it() {
    for (pairs, status, needle) in [
        (vec![], Status::Ok, "no http proxy"),
        (
            vec![("HTTPS_PROXY", "http://proxy:3128")],
            Status::Ok,
            "does not apply",
        ),
        (
            vec![("HTTP_PROXY", "http://proxy:3128")],
            Status::Warn,
            "botocore (boto3, the AWS CLI) and Go SDK clients",
        ),
        (
            vec![
                ("http_proxy", "http://proxy:3128"),
                ("no_proxy", "localhost,169.254.169.254"),
            ],
            Status::Ok,
            "covers 169.254.169.254",
        ),
        (
            vec![
                ("HTTP_PROXY", "http://proxy:3128"),
                ("NO_PROXY", "169.254.0.0/16"),
            ],
            Status::Warn,
            "does not match",
        ),
    ] {
        let c = env_checks(&pairs, None);
        let p = env_check(&c, CheckId::SdkProxy);
        let text = format!("{} {}", p.value, p.cause.as_deref().unwrap_or(""));
        assert_eq!(p.status, status, "{pairs:?}: {text}");
        assert!(text.contains(needle), "{pairs:?}: {text}");
        if status == Status::Warn {
            assert!(p.fix.as_ref().unwrap().contains("NO_PROXY=169.254.169.254"));
        }
    }
}

#[test]
fn the_credential_chain_reports_the_first_source_an_sdk_would_use() {
    let home = TempDir::new("chain");
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAFILEKEY\naws_secret_access_key = file-secret\n\n[other]\naws_access_key_id = AKIAOTHER\n",
    );
    home.write(
        ".aws/config",
        "[default]\nregion = us-east-1\n\n[profile assume]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Ec2InstanceMetadata\n\n[profile sso]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = Admin\n\n[profile proc]\ncredential_process = /usr/bin/get-creds\n",
    );
    let h = Some(home.path());
    let empty = TempDir::new("empty");
    let e = Some(empty.path());
    let env_keys = [
        ("AWS_ACCESS_KEY_ID", "AKIAENVKEY"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ];
    // (variables, home directory, status, text the value or cause contains)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a Path>, Status, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], e, Status::Ok, "the instance profile (IMDS)"),
        (
            env_keys.to_vec(),
            h,
            Status::Warn,
            "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN set)",
        ),
        (vec![], h, Status::Warn, "the shared credentials file"),
        (
            vec![("AWS_PROFILE", "assume")],
            h,
            Status::Warn,
            "credential_source = Ec2InstanceMetadata",
        ),
        (
            vec![("AWS_PROFILE", "sso")],
            h,
            Status::Warn,
            "an SSO profile",
        ),
        (
            vec![("AWS_PROFILE", "proc")],
            h,
            Status::Warn,
            "a credential_process",
        ),
        (
            vec![("AWS_PROFILE", "missing")],
            h,
            Status::Fail,
            "ProfileNotFound",
        ),
        (
            vec![("AWS_PROFILE", "other")],
            h,
            Status::Fail,
            "PartialCredentialsError",
        ),
        (
            vec![("AWS_ACCESS_KEY_ID", "AKIAENVKEY")],
            e,
            Status::Fail,
            "PartialCredentialsError",
        ),
        (
            vec![
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token"),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/app"),
            ],
            e,
            Status::Warn,
            "web identity (IRSA)",
        ),
        (
            vec![(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            )],
            e,
            Status::Warn,
            "EKS Pod Identity",
        ),
        // An explicit credentials file path wins over ~/.aws/credentials.
        (
            vec![("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")],
            h,
            Status::Ok,
            "the instance profile",
        ),
    ];
    for (pairs, home, status, needle) in cases {
        let c = env_checks(&pairs, home);
        let s = env_check(&c, CheckId::SdkCredentialSource);
        let text = format!("{}\n{}", s.value, s.cause.as_deref().unwrap_or(""));
        assert_eq!(s.status, status, "{pairs:?}: {text}");
        assert!(text.contains(needle), "{pairs:?}: {needle:?} not in {text}");
    }
    // The chain is reported in order: env first, the file and the instance profile later.
    let c = env_checks(&env_keys, h);
    let cause = env_check(&c, CheckId::SdkCredentialSource)
        .cause
        .clone()
        .unwrap();
    let later = cause.find("Later in the chain").expect(&cause);
    assert!(cause[later..].find("shared credentials") < cause[later..].find("instance profile"));
}

/// The `sdk.credential_source` check alone, with its value, cause and fix as one text.
#[track_caller]
fn credential_source(pairs: &[(&str, &str)], home: Option<&Path>) -> (Status, String) {
    let c = env_checks(pairs, home);
    let s = env_check(&c, CheckId::SdkCredentialSource);
    let text = format!(
        "{}\n{}\n{}",
        s.value,
        s.cause.as_deref().unwrap_or(""),
        s.fix.as_deref().unwrap_or("")
    );
    (s.status, text)
}

#[track_caller]
fn expect_source(pairs: &[(&str, &str)], home: Option<&Path>, status: Status, needles: &[&str]) {
    let (got, text) = credential_source(pairs, home);
    assert_eq!(got, status, "{pairs:?}: {text}");
    for n in needles {
        assert!(text.contains(n), "{pairs:?}: {n:?} not in:\n{text}");
    }
}

/// botocore 1.44 (`credentials.py`): the assume-role provider runs before web identity and
/// claims any profile with `role_arn` and no `web_identity_token_file`;
/// `AssumeRoleWithWebIdentityProvider._get_config` reads each setting from its variable when set
/// (even empty), else from the profile; a token file without a role ARN raises
/// InvalidConfigError. Each case below was run against the real botocore.
#[test]
fn web_identity_is_detected_setting_by_setting_as_botocore_reads_it() {
    const TOKEN: (&str, &str) = ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token");
    const ROLE: (&str, &str) = ("AWS_ROLE_ARN", "arn:aws:iam::1:role/app");
    let home = TempDir::new("web-identity");
    home.write(
        ".aws/config",
        "[default]\nrole_arn = arn:aws:iam::1:role/x\n\n\
         [profile both]\nweb_identity_token_file = /var/run/token\nrole_arn = arn:aws:iam::1:role/x\n\n\
         [profile token]\nweb_identity_token_file = /var/run/token\n\n\
         [profile plain]\nregion = us-east-1\n",
    );
    let h = Some(home.path());
    let empty = TempDir::new("web-identity-empty");
    let e = Some(empty.path());

    // EKS IRSA: both variables.
    expect_source(
        &[TOKEN, ROLE],
        e,
        Status::Warn,
        &[
            "web identity (IRSA) (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN set, as EKS IRSA sets them)",
        ],
    );
    // Both in the profile.
    expect_source(
        &[("AWS_PROFILE", "both")],
        h,
        Status::Warn,
        &["web identity (IRSA) (web_identity_token_file and role_arn in profile [both])"],
    );
    // A token file from the environment, the role ARN from the profile: the assume-role provider
    // takes the profile first (it has no web_identity_token_file) and raises.
    expect_source(
        &[TOKEN],
        h,
        Status::Fail,
        &[
            "role_arn without source_profile or credential_source in profile [default]",
            "PartialCredentialsError",
            "AWS_WEB_IDENTITY_TOKEN_FILE does not make it web identity",
            "add web_identity_token_file to [default]",
        ],
    );
    // ...even with AWS_ROLE_ARN set too: IRSA variables next to such a profile break it.
    expect_source(
        &[TOKEN, ROLE],
        h,
        Status::Fail,
        &["PartialCredentialsError"],
    );
    // With web_identity_token_file in the profile the environment's token file overrides it and
    // the profile's role_arn is used.
    expect_source(
        &[("AWS_PROFILE", "both"), TOKEN],
        h,
        Status::Warn,
        &["(AWS_WEB_IDENTITY_TOKEN_FILE set, role_arn in profile [both])"],
    );
    // The token file from the profile, the role ARN from the environment.
    expect_source(
        &[("AWS_PROFILE", "token"), ROLE],
        h,
        Status::Warn,
        &["(web_identity_token_file in profile [token], AWS_ROLE_ARN set)"],
    );
    // A token file and no role ARN anywhere: InvalidConfigError, clients fail.
    for (pairs, home, needle) in [
        (
            vec![TOKEN],
            e,
            "AWS_WEB_IDENTITY_TOKEN_FILE set, but no role ARN",
        ),
        (
            vec![TOKEN, ("AWS_PROFILE", "plain")],
            h,
            "AWS_WEB_IDENTITY_TOKEN_FILE set, but no role ARN",
        ),
        (
            vec![("AWS_PROFILE", "token")],
            h,
            "web_identity_token_file in profile [token], but no role ARN",
        ),
        // An empty AWS_ROLE_ARN is the role ARN for botocore: the profile's is not read.
        (
            vec![("AWS_PROFILE", "both"), ("AWS_ROLE_ARN", "")],
            h,
            "AWS_ROLE_ARN is set but empty",
        ),
    ] {
        expect_source(
            &pairs,
            home,
            Status::Fail,
            &[
                needle,
                "InvalidConfigError",
                "EKS IRSA sets both",
                "eks.amazonaws.com/role-arn",
            ],
        );
    }
    // Not reached behind keys in the environment: they win, and the cause says what is wrong.
    expect_source(
        &[
            TOKEN,
            ("AWS_ACCESS_KEY_ID", "AKIAENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ],
        e,
        Status::Warn,
        &[
            "environment variables",
            "Not reached while an earlier source answers",
            "AWS_WEB_IDENTITY_TOKEN_FILE set, but no role ARN",
        ],
    );
    // An empty token file variable switches the provider off, the profile's token file too.
    expect_source(
        &[("AWS_PROFILE", "both"), ("AWS_WEB_IDENTITY_TOKEN_FILE", "")],
        h,
        Status::Ok,
        &["the instance profile (IMDS)"],
    );
    // A role ARN alone is not web identity.
    expect_source(&[ROLE], e, Status::Ok, &["the instance profile (IMDS)"]);
}

#[test]
fn assume_role_profiles_need_exactly_one_source() {
    let home = TempDir::new("assume-role");
    home.write(
        ".aws/config",
        "[profile bare]\nrole_arn = arn:aws:iam::1:role/x\n\n\
         [profile twice]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = base\ncredential_source = Ec2InstanceMetadata\n\n\
         [profile base]\nregion = us-east-1\n",
    );
    let h = Some(home.path());
    expect_source(
        &[("AWS_PROFILE", "bare")],
        h,
        Status::Fail,
        &[
            "PartialCredentialsError",
            "credential_source = Ec2InstanceMetadata",
        ],
    );
    expect_source(
        &[("AWS_PROFILE", "twice")],
        h,
        Status::Fail,
        &[
            "InvalidConfigError",
            "both source_profile and credential_source",
        ],
    );
}

/// botocore 1.44 (`configprovider.py`): `'profile': (None, ['AWS_DEFAULT_PROFILE',
/// 'AWS_PROFILE'], None, None)`, read by `EnvironmentProvider` (`name in os.environ`). Each case
/// below was run against the real botocore.
#[test]
fn the_profile_is_chosen_as_botocore_chooses_it() {
    let home = TempDir::new("profiles");
    home.write(
        ".aws/credentials",
        "[d]\naws_access_key_id = AKIAFILEKEY\naws_secret_access_key = file-secret\n",
    );
    home.write(".aws/config", "[profile p]\nregion = us-west-2\n");
    let h = Some(home.path());
    // AWS_DEFAULT_PROFILE wins for botocore; the disagreement is said either way.
    expect_source(
        &[("AWS_DEFAULT_PROFILE", "d"), ("AWS_PROFILE", "p")],
        h,
        Status::Warn,
        &[
            "the shared credentials file (aws_access_key_id in [d] of ",
            "AWS_DEFAULT_PROFILE=d and AWS_PROFILE=p disagree",
            "botocore (boto3, the AWS CLI v1) reads AWS_DEFAULT_PROFILE first",
            "the AWS CLI v2 and the other SDKs prefer AWS_PROFILE and use profile p",
            "$ unset AWS_DEFAULT_PROFILE",
        ],
    );
    // The other way round, botocore lands on the instance profile: still a warning.
    expect_source(
        &[("AWS_DEFAULT_PROFILE", "p"), ("AWS_PROFILE", "d")],
        h,
        Status::Warn,
        &[
            "the instance profile (IMDS) for botocore, but AWS_DEFAULT_PROFILE=p and AWS_PROFILE=d disagree",
            "use profile d",
        ],
    );
    // Agreeing, or only one set: no warning about it.
    for pairs in [
        vec![("AWS_DEFAULT_PROFILE", "p"), ("AWS_PROFILE", "p")],
        vec![("AWS_DEFAULT_PROFILE", "p")],
        vec![("AWS_PROFILE", "p")],
    ] {
        let (status, text) = credential_source(&pairs, h);
        assert_eq!(status, Status::Ok, "{pairs:?}: {text}");
        assert!(!text.contains("disagree"), "{pairs:?}: {text}");
    }
    expect_source(
        &[("AWS_DEFAULT_PROFILE", "d")],
        h,
        Status::Warn,
        &["aws_access_key_id in [d] of "],
    );
    // botocore looks up the profile AWS_DEFAULT_PROFILE names, even if AWS_PROFILE's exists.
    expect_source(
        &[("AWS_DEFAULT_PROFILE", "nope"), ("AWS_PROFILE", "p")],
        h,
        Status::Fail,
        &[
            "AWS_DEFAULT_PROFILE=nope, but no such profile",
            "ProfileNotFound",
            "$ unset AWS_DEFAULT_PROFILE",
            "use profile p",
        ],
    );
    // A set but empty variable is a profile named "" to botocore.
    for pairs in [
        vec![("AWS_PROFILE", "")],
        vec![("AWS_DEFAULT_PROFILE", ""), ("AWS_PROFILE", "p")],
    ] {
        let var = pairs[0].0;
        expect_source(
            &pairs,
            h,
            Status::Fail,
            &[
                &format!("{var} is set but empty"),
                "ProfileNotFound",
                &format!("$ unset {var}"),
            ],
        );
    }
}

#[tokio::test]
async fn secrets_never_appear_in_either_output() {
    let sim = start("healthy").await;
    let (sim_key_id, sim_secret, sim_token) = sim_credentials(&sim).await;
    let home = TempDir::new("secrets");
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAFILESECRETID\naws_secret_access_key = FileSecretValue123\naws_session_token = FileTokenValue456\n",
    );
    let mut c = config(&sim);
    c.home = Some(home.path().to_path_buf());
    c.env = vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENVSECRETID"),
        ("AWS_SECRET_ACCESS_KEY", "EnvSecretValue789"),
        ("AWS_SESSION_TOKEN", "EnvTokenValue012"),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ContainerAuthToken345"),
        (
            "HTTP_PROXY",
            "http://proxyuser:ProxyPassword678@proxy.internal:3128",
        ),
    ]);
    let report = run(&c).await;
    sim.shutdown().await;
    let human = check::report::human(&report, false, false);
    let json = check::report::json(&report, false);
    // The findings are there...
    assert!(human.contains("AWS_SECRET_ACCESS_KEY"), "{human}");
    assert!(human.contains("http://***@proxy.internal:3128"), "{human}");
    // ...the values are not.
    for secret in [
        sim_key_id.as_str(),
        sim_secret.as_str(),
        sim_token.as_str(),
        "AKIAFILESECRETID",
        "FileSecretValue123",
        "FileTokenValue456",
        "AKIAENVSECRETID",
        "EnvSecretValue789",
        "EnvTokenValue012",
        "ContainerAuthToken345",
        "ProxyPassword678",
        "proxyuser",
    ] {
        assert!(!human.contains(secret), "{secret} in the human output");
        assert!(!json.contains(secret), "{secret} in the JSON output");
    }
}

/// Reads the credentials the simulator serves, as an SDK would, to search for them later.
async fn sim_credentials(sim: &RunningSim) -> (String, String, String) {
    let doc = common::sim_credentials_document(&sim.endpoint()).await;
    let field = |k: &str| doc[k].as_str().unwrap().to_string();
    (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("Token"),
    )
}

// ---------------------------------------------------------------------------------------------
// Output: the snapshot and the JSON schema
// ---------------------------------------------------------------------------------------------

/// Replaces what changes between runs (ports, timings, times, the offset's sign, which request
/// was slowest) with placeholders.
fn normalise(text: &str) -> String {
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
        (r"\d+(\.\d+)? m?s (behind|ahead)", "<offset>"),
        (r"\d+h \d+m", "<span>"),
        (r"issued (\d+m )?\d+s ago", "issued <age> ago"),
        // Measured durations only: the kernel clock's errors come from the fixed node reading
        // and stay exact.
        (r"\b(in|rtt|answer) \d+(\.\d+)? m?s\b", "${1} <latency>"),
        // Which request was slowest is chance when all take a millisecond.
        (
            r"slowest answer <latency> \(\w+\)",
            "slowest answer <latency> (<phase>)",
        ),
    ];
    let mut out = text.to_string();
    for (pattern, with) in rules {
        out = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&out, with)
            .into_owned();
    }
    out
}

#[tokio::test]
async fn the_healthy_human_output_matches_the_snapshot() {
    let report = run_scenario("healthy").await;
    let text = normalise(&check::report::human(&report, false, false));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check-healthy.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .expect("tests/fixtures/check-healthy.txt (regenerate with UPDATE_SNAPSHOTS=1)");
    assert_eq!(
        text, want,
        "the human output changed; if intended, regenerate with UPDATE_SNAPSHOTS=1 cargo test --test check"
    );
    assert!(!text.contains('\x1b'));
}

#[tokio::test]
async fn the_json_output_follows_the_documented_schema() {
    for (scenario, strict) in [("healthy", false), ("hop-limit", true)] {
        let report = run_scenario(scenario).await;
        let text = check::report::json(&report, strict);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let obj = doc.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want = vec![
            "checks",
            "counts",
            "imds_endpoint",
            "imds_probed",
            "ntp_servers",
            "strict",
            "verdict",
            "version",
        ];
        want.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(keys_sorted, want);
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["strict"], strict);
        assert_eq!(doc["imds_probed"], true);
        assert_eq!(doc["verdict"], report.verdict(strict).as_str());
        assert!(
            doc["imds_endpoint"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
        assert_eq!(doc["ntp_servers"].as_array().unwrap().len(), 1);
        let checks = doc["checks"].as_array().unwrap();
        let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
        let all: Vec<&str> = CheckId::ALL.iter().map(|i| i.as_str()).collect();
        assert_eq!(ids, all, "every check, in the documented order");
        let mut counts = BTreeMap::<String, u64>::new();
        for c in checks {
            let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["cause", "fix", "id", "name", "status", "value"]);
            let status = c["status"].as_str().unwrap();
            assert!(["ok", "warn", "fail", "skip"].contains(&status), "{c}");
            assert!(!c["name"].as_str().unwrap().is_empty());
            assert!(!c["value"].as_str().unwrap().is_empty(), "{c}");
            match status {
                "warn" | "fail" => assert!(c["cause"].is_string() && c["fix"].is_string(), "{c}"),
                _ => assert!(c["cause"].is_null() && c["fix"].is_null(), "{c}"),
            }
            *counts.entry(status.to_string()).or_default() += 1;
        }
        for s in ["ok", "warn", "fail", "skip"] {
            assert_eq!(
                doc["counts"][s].as_u64().unwrap(),
                counts.get(s).copied().unwrap_or(0),
                "{s}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary: exit codes, colour, secrets
// ---------------------------------------------------------------------------------------------

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `imds_exporter check ARGS` with only the given environment (plus HOME).
async fn binary(args: &[&str], env: &[(&str, &str)], home: &Path) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imds_exporter"))
        .arg("check")
        .args(args)
        .env_clear()
        .env("HOME", home)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("check finishes")
        .expect("binary runs");
    Output {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn loopback_args(sim: &RunningSim) -> Vec<String> {
    vec![
        "--imds.endpoint".into(),
        sim.endpoint(),
        "--ntp.server".into(),
        ntp_server(sim),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_0_with_warnings_and_1_under_strict() {
    let sim = start("healthy").await;
    let home = TempDir::new("bin-healthy");
    let mut args = loopback_args(&sim);
    args.extend(["--output".into(), "json".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = binary(&a, &[], home.path()).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    // IMDSv1 is on in the healthy scenario; this host's clock may add a warning, never a failure.
    assert_eq!(doc["verdict"], "warn");

    let mut strict = a.clone();
    strict.push("--strict");
    let out = binary(&strict, &[], home.path()).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_0_when_all_is_well() {
    let sim = start("imdsv2-only").await;
    let home = TempDir::new("bin-ok");
    let args = loopback_args(&sim);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = binary(&a, &[], home.path()).await;
    sim.shutdown().await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("verdict: "), "{}", out.stdout);
    // Not a terminal: no colour.
    assert!(!out.stdout.contains('\x1b'));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_1_on_the_hop_limit_and_prints_the_fix() {
    let sim = start("hop-limit-v2-only").await;
    let home = TempDir::new("bin-hop");
    let mut args = loopback_args(&sim);
    args.extend(["--imds.timeout".into(), "1s".into(), "--no-color".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = binary(&a, &[], home.path()).await;
    sim.shutdown().await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("hop-limit signature"), "{}", out.stdout);
    assert!(out.stdout.contains("--http-put-response-hop-limit 2"));
    assert!(out.stdout.contains("exit code 1"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_1_when_sdks_are_told_not_to_use_imds() {
    let sim = start("imdsv2-only").await;
    let home = TempDir::new("bin-disabled");
    let args = loopback_args(&sim);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = binary(&a, &[("AWS_EC2_METADATA_DISABLED", "true")], home.path()).await;
    sim.shutdown().await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("AWS_EC2_METADATA_DISABLED=true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_1_not_2_for_an_endpoint_variable_it_cannot_probe() {
    // No --imds.endpoint and an unusable variable: nothing is probed, NTP goes to the simulator.
    let sim = start("imdsv2-only").await;
    let home = TempDir::new("bin-env-endpoint");
    let ntp = ntp_server(&sim);
    let env = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", "not a url")];
    let json = binary(
        &["--ntp.server", &ntp, "--output", "json"],
        &env,
        home.path(),
    )
    .await;
    let human = binary(&["--ntp.server", &ntp, "--no-color"], &env, home.path()).await;
    sim.shutdown().await;
    for out in [&json, &human] {
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(!out.stderr.contains("--imds.endpoint"), "{}", out.stderr);
    }
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect(&json.stdout);
    assert_eq!(doc["verdict"], "fail");
    assert_eq!(doc["imds_probed"], false);
    for c in doc["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let value = c["value"].as_str().unwrap();
        if id.starts_with("imds.") {
            assert_eq!(c["status"], "skip", "{c}");
            assert!(value.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "{c}");
        }
        if id == "sdk.imds_endpoint" {
            assert_eq!(c["status"], "fail", "{c}");
            assert_eq!(value, "AWS_EC2_METADATA_SERVICE_ENDPOINT=\"not a url\"");
            assert!(
                c["cause"]
                    .as_str()
                    .unwrap()
                    .contains("InvalidIMDSEndpointError")
            );
        }
    }
    assert!(
        human.stdout.starts_with(
            "imds_exporter check: IMDS not probed (AWS_EC2_METADATA_SERVICE_ENDPOINT=\"not a url\")"
        ),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("exit code 1"), "{}", human.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_2_when_it_cannot_run() {
    let home = TempDir::new("bin-bad");
    // None of these reaches the network: flags are checked first.
    let cases: &[&[&str]] = &[
        &["--output", "xml"],
        &["--imds.timeout", "soon"],
        &[
            "--imds.endpoint",
            "http://127.0.0.1:9",
            "--ntp.server",
            "127.0.0.1:9",
            "--imds.timeout",
            "0s",
        ],
        &[
            "--imds.endpoint",
            "https://127.0.0.1:9",
            "--ntp.server",
            "127.0.0.1:9",
        ],
        &[
            "--imds.endpoint",
            "http://127.0.0.1:9",
            "--ntp.server",
            "0.pool.ntp.org",
        ],
    ];
    for args in cases {
        let out = binary(args, &[], home.path()).await;
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(!out.stderr.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_never_prints_secrets() {
    let sim = start("healthy").await;
    let (sim_key_id, sim_secret, sim_token) = sim_credentials(&sim).await;
    let home = TempDir::new("bin-secrets");
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id=AKIABINFILE\naws_secret_access_key=BinFileSecret\n",
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIABINENV"),
        ("AWS_SECRET_ACCESS_KEY", "BinEnvSecret"),
        ("AWS_SESSION_TOKEN", "BinEnvToken"),
        ("HTTP_PROXY", "http://u:BinProxyPassword@proxy:3128"),
    ];
    let args = loopback_args(&sim);
    for format in ["human", "json"] {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--output", format]);
        let out = binary(&a, &env, home.path()).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("AWS_SECRET_ACCESS_KEY"),
            "{}",
            out.stdout
        );
        for secret in [
            sim_key_id.as_str(),
            sim_secret.as_str(),
            sim_token.as_str(),
            "AKIABINFILE",
            "BinFileSecret",
            "AKIABINENV",
            "BinEnvSecret",
            "BinEnvToken",
            "BinProxyPassword",
        ] {
            assert!(!out.stdout.contains(secret), "{format}: {secret} printed");
            assert!(!out.stderr.contains(secret), "{format}: {secret} logged");
        }
    }
    sim.shutdown().await;
}

/// Behind a hop limit with IMDSv1 on, the check says which families are affected and how: the
/// ones that fall back wait, Rust (IMDSv2 only) gets nothing.
#[tokio::test]
async fn the_hop_limit_signature_names_the_families_it_affects() {
    let report = run_scenario("hop-limit").await;
    expect(
        &report,
        CheckId::ClientsPython,
        Status::Warn,
        &["after 1.0 s", "IMDSv1"],
    );
    expect(
        &report,
        CheckId::ClientsJavascript,
        Status::Warn,
        &["after 1.0 s"],
    );
    expect(
        &report,
        CheckId::ClientsRust,
        Status::Fail,
        &["gets no credentials", "no IMDSv1 fallback"],
    );
    expect(&report, CheckId::ClientsGo, Status::Warn, &["after 3.5 s"]);
}

/// An outage: every family fails, each with what it would have waited.
#[tokio::test]
async fn an_outage_fails_every_family() {
    let report = run_scenario("outage").await;
    expect(
        &report,
        CheckId::ClientsPython,
        Status::Fail,
        &["after 2.0 s"],
    );
    expect(
        &report,
        CheckId::ClientsRust,
        Status::Fail,
        &["after 1.0 s"],
    );
    expect(&report, CheckId::ClientsGo, Status::Fail, &["after 5.0 s"]);
}

/// `--imds.sdk` says which families run here; the others are skipped, not judged.
#[tokio::test]
async fn families_not_in_use_are_skipped() {
    let sim = start("hop-limit").await;
    let mut c = config(&sim);
    c.sdks = vec![
        imds_exporter::labels::Sdk::Python,
        imds_exporter::labels::Sdk::Javascript,
    ];
    let report = run(&c).await;
    sim.shutdown().await;
    expect(&report, CheckId::ClientsRust, Status::Skip, &["--imds.sdk"]);
    expect(&report, CheckId::ClientsGo, Status::Skip, &["--imds.sdk"]);
    expect(&report, CheckId::ClientsPython, Status::Warn, &[]);
}

// ---------------------------------------------------------------------------------------------
// Beyond IMDS: the container credential provider and web identity
// ---------------------------------------------------------------------------------------------

/// The simulator's default `--container-token`.
const CONTAINER_TOKEN: &str = "simulated-pod-identity-token";

/// A JWT whose payload has this `exp` (the signature is not checked by anyone here).
fn jwt(exp: i64) -> String {
    use base64::Engine;
    let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk",
        part(r#"{"alg":"RS256","typ":"JWT"}"#),
        part(&format!(
            r#"{{"aud":["sts.amazonaws.com"],"exp":{exp},"sub":"system:serviceaccount:ns:sa"}}"#
        ))
    )
}

/// Both renderings, which must never contain the authorization token or the JWT.
fn assert_no_secret(report: &Report, secrets: &[&str]) {
    let human = check::report::human(report, false, false);
    let json = check::report::json(report, false);
    for secret in secrets {
        assert!(!human.contains(secret), "{secret} in:\n{human}");
        assert!(!json.contains(secret), "{secret} in:\n{json}");
    }
}

#[tokio::test]
async fn without_container_or_web_identity_variables_their_sections_are_absent() {
    let sim = start("healthy").await;
    let report = run(&config(&sim)).await;
    for id in CheckId::OPTIONAL {
        assert!(report.get(id).is_none(), "{}", id.as_str());
    }
    let state: serde_json::Value = serde_json::from_str(
        &common::get(&format!("{}/_sim/state", sim.endpoint()))
            .await
            .1,
    )
    .unwrap();
    assert!(state["requests"].get("container").is_none(), "{state}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_pod_identity_agent_serving_credentials_is_ok_and_the_token_never_shown() {
    let sim = start("healthy").await;
    let dir = TempDir::new("container-ok");
    let token = dir.write("eks-pod-identity-token", CONTAINER_TOKEN);
    let mut c = config(&sim);
    c.env = vars(&[
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/v1/credentials", sim.endpoint()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token.to_str().unwrap(),
        ),
    ]);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::ContainerEndpoint,
        Status::Ok,
        &["/v1/credentials", "AWS_CONTAINER_CREDENTIALS_FULL_URI"],
    );
    expect(&report, CheckId::ContainerToken, Status::Ok, &["readable"]);
    expect(
        &report,
        CheckId::ContainerCredentials,
        Status::Ok,
        &["served, expire in"],
    );
    let ids: Vec<CheckId> = report.checks.iter().map(|c| c.id).collect();
    assert_eq!(
        &ids[CheckId::ALL.len()..],
        &CheckId::OPTIONAL[..3],
        "the container section after the others"
    );
    assert_no_secret(&report, &[CONTAINER_TOKEN]);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_agent_down_fails_with_the_reason_and_the_agents_daemonset() {
    let sim = start("healthy").await;
    let (status, body) = common::post(
        &format!("{}/_sim/container/scenario/refused", sim.endpoint()),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let dir = TempDir::new("container-down");
    let token = dir.write("token", CONTAINER_TOKEN);
    let mut c = config(&sim);
    c.env = vars(&[
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/v1/credentials", sim.endpoint()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token.to_str().unwrap(),
        ),
    ]);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::ContainerCredentials,
        Status::Fail,
        &[
            "3 attempts",
            "connect",
            "eks-pod-identity-agent",
            "$ kubectl",
        ],
    );
    assert_eq!(report.verdict(false), Verdict::Fail);
    assert_no_secret(&report, &[CONTAINER_TOKEN]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_and_a_missing_token_file_are_told_apart() {
    let sim = start("healthy").await;
    let dir = TempDir::new("container-token");
    let wrong = dir.write("wrong", "not-the-agents-token");
    let endpoint = format!("{}/v1/credentials", sim.endpoint());
    let mut c = config(&sim);
    c.env = vars(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            wrong.to_str().unwrap(),
        ),
    ]);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::ContainerCredentials,
        Status::Fail,
        &["unauthorized", "create-pod-identity-association"],
    );
    assert_no_secret(&report, &["not-the-agents-token"]);

    // A path with a quote and a space: shown, and quoted in the suggested command.
    let missing = dir.path().join("it's missing");
    c.env = vars(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            missing.to_str().unwrap(),
        ),
    ]);
    let report = run(&c).await;
    let quoted = imds_exporter::untrusted::shell_word(missing.to_str().unwrap());
    expect(
        &report,
        CheckId::ContainerToken,
        Status::Fail,
        &[
            "unusable",
            "projected token volume",
            &format!("$ ls -l {quoted}"),
        ],
    );
    expect(
        &report,
        CheckId::ContainerCredentials,
        Status::Skip,
        &["no usable authorization token"],
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn web_identity_reports_the_token_expiry_and_the_role_never_the_token() {
    let sim = start("healthy").await;
    let dir = TempDir::new("web-identity");
    let now = chrono::Utc::now().timestamp();
    let valid = jwt(now + 86_400);
    let path = dir.write("token", &valid);
    let role = "arn:aws:iam::123456789012:role/irsa-role";
    let mut c = config(&sim);
    c.env = vars(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", path.to_str().unwrap()),
        ("AWS_ROLE_ARN", role),
    ]);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::WebIdentityToken,
        Status::Ok,
        &["expires in 23h"],
    );
    expect(&report, CheckId::WebIdentityRoleArn, Status::Ok, &[role]);
    assert!(report.get(CheckId::ContainerEndpoint).is_none());
    assert_no_secret(&report, &[&valid, valid.split('.').nth(1).unwrap()]);

    // Expiring, expired, not a JWT, no role.
    let soon = jwt(now + 300);
    dir.write("token", &soon);
    c.env = vars(&[("AWS_WEB_IDENTITY_TOKEN_FILE", path.to_str().unwrap())]);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::WebIdentityToken,
        Status::Warn,
        &["kubelet"],
    );
    expect(
        &report,
        CheckId::WebIdentityRoleArn,
        Status::Fail,
        &["AWS_ROLE_ARN unset", "skip web identity"],
    );
    dir.write("token", &jwt(now - 60));
    let report = run(&c).await;
    expect(
        &report,
        CheckId::WebIdentityToken,
        Status::Fail,
        &["expired", "ExpiredTokenException"],
    );
    dir.write("token", "garbage");
    let report = run(&c).await;
    expect(
        &report,
        CheckId::WebIdentityToken,
        Status::Fail,
        &["not a JWT", "InvalidIdentityToken"],
    );
    assert_no_secret(&report, &["garbage"]);
    sim.shutdown().await;
}

/// `--sts.enabled`: the instance credentials signed into a GetCallerIdentity at the simulator's
/// STS stand-in; accepted with the role's ARN, then refused with ExpiredToken; the secret key
/// and session token never printed. Without the flag, no STS section.
#[tokio::test]
async fn sts_accepts_the_instance_credentials_then_refuses_an_expired_token() {
    let sim = start("healthy").await;
    let mut c = config(&sim);
    let report = run(&c).await;
    assert!(
        report.get(CheckId::StsImds).is_none(),
        "no STS section without --sts.enabled"
    );
    c.sts = Some(imds_exporter::probe::sts::StsConfig {
        endpoint: Some(format!("{}/_sts", sim.endpoint())),
        region: Some("eu-west-1".into()),
        ..Default::default()
    });
    let report = run(&c).await;
    expect(
        &report,
        CheckId::StsImds,
        Status::Ok,
        &["arn:aws:sts::", ":assumed-role/"],
    );
    assert!(report.get(CheckId::StsContainer).is_none());
    let doc = common::sim_credentials_document(&sim.endpoint()).await;
    let secrets = [
        doc["SecretAccessKey"].as_str().unwrap().to_string(),
        doc["Token"].as_str().unwrap().to_string(),
    ];
    assert_no_secret(&report, &[&secrets[0], &secrets[1]]);

    let (status, _) = common::post(
        &format!("{}/_sim/sts/code/ExpiredToken", sim.endpoint()),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let report = run(&c).await;
    expect(
        &report,
        CheckId::StsImds,
        Status::Fail,
        &["refused: expired_token", "not rotated in time"],
    );
    sim.shutdown().await;
}
