//! `imds_exporter check`: a one-shot diagnosis of the credentials an AWS SDK gets on this node
//! (or in this pod), for the on-call engineer who has just seen "Unable to locate credentials"
//! or `ExpiredToken`.
//!
//! Layout:
//! - this file: the vocabulary (check ids, statuses, the verdict and its exit code), the
//!   configuration, and the runner: the only I/O (the IMDS probe run once, a TCP connect, the
//!   NTP queries, `adjtimex`, ethtool), whose observations go to the pure evaluators;
//! - `imds`: IMDS observations to checks (hop-limit signature, role, `Code`, expiry, latency);
//! - `node`: NTP offset, the kernel clock and link-local drops to checks;
//! - the SDK environment (variables, shared config and credentials files) to checks, in five
//!   files that take the variables and the home directory as arguments and never print a secret:
//!   - `settings`: the profile, the shared files' paths and botocore's IMDS settings, each with
//!     where it came from; the endpoint an SDK would use;
//!   - `ini`: the shared files' reader, hand-written so that no secret value is ever kept;
//!   - `sdk`: `evaluate` (every `sdk.*` check, in order) and the checks of the IMDS settings;
//!   - `proxy`: the proxy rules of botocore and Go, `no_proxy` matching, and `sdk.proxy`;
//!   - `chain`: the credential provider chain in botocore's order, and `sdk.credential_source`;
//! - `report`: the human and JSON renderings.
//!
//! Owns nothing the exporter uses: it reuses [`crate::probe::imds::ImdsProber`],
//! [`crate::probe::ntp::query`] and the node readers of [`crate::collector`].

pub mod beyond;
mod chain;
pub mod clients;
pub mod imds;
pub mod ini;
pub mod model;
pub mod node;
mod proxy;
pub mod report;
pub mod sdk;
pub mod settings;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;

pub use self::model::*;
use crate::config::ConfigError;
use crate::probe::imds::{ImdsConfig, ImdsProber};
use crate::probe::ntp::NtpConfig;

/// TTL of the one token the check asks for: it is used for a few seconds and then dropped.
const CHECK_TOKEN_TTL: Duration = Duration::from_secs(60);

/// The configuration of one check run. The environment is an argument, not read from the
/// process, so tests control exactly what the SDK-environment checks see.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// `--imds.endpoint`; `None` resolves as an SDK would (see
    /// [`settings::resolve_imds_endpoint`]).
    pub imds_endpoint: Option<String>,
    /// Deadline of each IMDS request.
    pub imds_timeout: Duration,
    /// `--ntp.server` values; empty means the Amazon Time Sync Service.
    pub ntp_servers: Vec<String>,
    pub ntp_timeout: Duration,
    pub ntp_allow_public: bool,
    /// The SDK families whose clients run here (`--imds.sdk`); the others are skipped.
    pub sdks: Vec<crate::labels::Sdk>,
    /// The environment variables an SDK in this process would see.
    pub env: BTreeMap<String, String>,
    /// The home directory for `~/.aws/credentials` and `~/.aws/config`.
    pub home: Option<PathBuf>,
    pub node: NodeSource,
    /// `--sts.enabled`: a signed `GetCallerIdentity` with the fetched credentials.
    pub sts: Option<crate::probe::sts::StsConfig>,
}

impl CheckConfig {
    /// Longer than the SDKs' 1 s on purpose: a slow answer is measured and compared with the
    /// SDK timeout instead of merely timing out.
    pub const DEFAULT_IMDS_TIMEOUT: Duration = Duration::from_secs(2);

    /// A configuration for the given IMDS endpoint and NTP server with an empty environment,
    /// no home directory, and the host's node views.
    pub fn new(imds_endpoint: impl Into<String>, ntp_server: impl Into<String>) -> Self {
        Self {
            imds_endpoint: Some(imds_endpoint.into()),
            imds_timeout: CheckConfig::DEFAULT_IMDS_TIMEOUT,
            ntp_servers: vec![ntp_server.into()],
            ntp_timeout: NtpConfig::DEFAULT_TIMEOUT,
            ntp_allow_public: false,
            sdks: crate::labels::Sdk::ALL.to_vec(),
            env: BTreeMap::new(),
            home: None,
            node: NodeSource::Host,
            sts: None,
        }
    }

    /// This process's environment and home directory: what the SDKs in it would read.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        self.home = self
            .env
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        self
    }

    /// The NTP servers to query, host:port.
    pub fn ntp_servers(&self) -> Vec<String> {
        NtpConfig::servers_or_default(&self.ntp_servers)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::timeout("imds.timeout", self.imds_timeout)?;
        crate::config::timeout("ntp.timeout", self.ntp_timeout)?;
        if self.sdks.is_empty() {
            return Err(ConfigError::new("imds.sdk", "names no SDK family"));
        }
        Ok(())
    }
}

impl Default for CheckConfig {
    /// The host's view: the default endpoints (or the SDKs' variable), the default deadlines.
    fn default() -> Self {
        Self {
            imds_endpoint: None,
            imds_timeout: CheckConfig::DEFAULT_IMDS_TIMEOUT,
            ntp_servers: Vec::new(),
            ntp_timeout: NtpConfig::DEFAULT_TIMEOUT,
            ntp_allow_public: false,
            sdks: crate::labels::Sdk::ALL.to_vec(),
            env: BTreeMap::new(),
            home: None,
            node: NodeSource::Host,
            sts: None,
        }
    }
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned text for people.
    Human,
    /// JSON (schema in docs/check.md).
    Json,
}

/// How `check` presents its report (flags `--output`, `--strict`, `--no-color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputConfig {
    pub format: OutputFormat,
    /// Treat warnings as failures (exit 1).
    pub strict: bool,
    /// Never colour (colour is used only on a terminal, and never when NO_COLOR is set).
    pub no_color: bool,
}

/// Runs every probe once and evaluates everything. `Err` means the check could not run at all
/// (a bad flag value); everything that goes wrong on the node is a check in the report,
/// including an endpoint from the environment or the profile that this check cannot probe (the
/// IMDS checks are then skipped and `sdk.imds_endpoint` says what SDKs make of it).
pub async fn run(config: &CheckConfig) -> Result<Report, String> {
    config.validate().map_err(|e| e.to_string())?;
    let env_view = settings::EnvView::new(&config.env, config.home.as_deref());
    let flag = config
        .imds_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty());
    // The IMDS settings as botocore resolves them (variables, then the active profile): the
    // endpoint to probe is the one SDKs here would use.
    let sdk = settings::SdkSettings::from_env(&env_view);
    let endpoint = settings::resolve_imds_endpoint(flag, &sdk);
    let prober = ImdsProber::new(ImdsConfig {
        endpoint: endpoint.clone(),
        timeout: config.imds_timeout,
        token_ttl: CHECK_TOKEN_TTL,
        ..ImdsConfig::default()
    });
    let mut prober = match (prober, flag) {
        (Ok(p), _) => Some(p),
        (Err(_), Some(flag)) => {
            return Err(format!(
                "--imds.endpoint {:?} must be an http:// URL without a path, such as {}",
                settings::redact_url(flag),
                ImdsConfig::DEFAULT_ENDPOINT
            ));
        }
        // Without the flag the endpoint came from the endpoint setting (the variable or the
        // profile's key; the defaults are always usable): what SDKs make of it is a finding, not
        // a usage error.
        (Err(_), None) => None,
    };
    let endpoint = prober
        .as_ref()
        .map_or(endpoint, |p| p.config().endpoint.clone());
    // Printed in the header, the IMDS lines and the JSON: never with user information.
    let shown_endpoint = settings::redact_url(&endpoint);
    let servers = config.ntp_servers();
    for s in &servers {
        crate::probe::ntp::validate_server_name(s, config.ntp_allow_public)
            .map_err(|e| format!("--ntp.server: {e}"))?;
    }

    let (imds_obs, ntp_obs) = match &mut prober {
        Some(prober) => {
            let (imds, ntp) = tokio::join!(
                observe_imds(prober, &endpoint, &shown_endpoint, config.imds_timeout),
                observe_ntp(&servers, config.ntp_timeout)
            );
            (Some(imds), ntp)
        }
        None => (None, observe_ntp(&servers, config.ntp_timeout).await),
    };
    let node_reading = match &config.node {
        NodeSource::Host => read_host_node(),
        NodeSource::Fixed(r) => r.clone(),
    };

    let now = Utc::now();
    let offset = node::ntp_offset(&ntp_obs);
    let mut checks = match &imds_obs {
        Some(obs) => imds::evaluate(obs, &sdk, now, offset),
        None => imds::not_probed(&endpoint, &sdk),
    };
    checks.extend(match &imds_obs {
        Some(obs) => clients::evaluate(obs, &config.sdks),
        None => clients::not_probed(),
    });
    checks.push(node::ntp_check(&ntp_obs));
    checks.push(node::kernel_check(&node_reading.kernel_clock));
    checks.push(node::linklocal_check(&node_reading.linklocal));
    checks.extend(sdk::evaluate(
        &env_view,
        flag,
        imds_obs.is_some().then_some(shown_endpoint.as_str()),
        &sdk,
    ));
    debug_assert_eq!(
        checks.iter().map(|c| c.id).collect::<Vec<_>>(),
        CheckId::ALL.to_vec()
    );
    // The providers beyond IMDS, where an SDK here would use them.
    let env = |k: &str| config.env.get(k).cloned();
    let container = beyond::container_config(&env);
    if let Some(container) = container.clone() {
        checks.extend(beyond::container(container, &env, Utc::now()).await);
    }
    if let Some(web_identity) = beyond::web_identity_config(&env) {
        checks.extend(beyond::web_identity(&web_identity, Utc::now()));
    }
    if let Some(sts) = &config.sts {
        let imds = ImdsConfig {
            endpoint: endpoint.clone(),
            timeout: config.imds_timeout,
            token_ttl: CHECK_TOKEN_TTL,
            ..ImdsConfig::default()
        };
        checks.extend(beyond::sts(sts, &imds, container.as_ref()).await);
    }
    let imds_endpoint_setting = imds_obs
        .is_none()
        .then(|| sdk.endpoint.named(&format!("{shown_endpoint:?}")));
    Ok(Report {
        imds_endpoint: shown_endpoint,
        imds_probed: imds_obs.is_some(),
        imds_endpoint_setting,
        ntp_servers: servers,
        checks,
    })
}

/// `imds_exporter check`: runs, prints, and returns the verdict's exit code.
pub async fn run_and_print(config: CheckConfig, output: OutputConfig) -> Result<ExitCode, String> {
    let report = run(&config).await?;
    let verdict = report.verdict(output.strict);
    let text = match output.format {
        OutputFormat::Json => report::json(&report, output.strict),
        OutputFormat::Human => {
            // https://no-color.org: any non-empty NO_COLOR turns colour off.
            let no_color_env = config.env.get("NO_COLOR").is_some_and(|v| !v.is_empty());
            let colour = !output.no_color && !no_color_env && std::io::stdout().is_terminal();
            report::human(&report, output.strict, colour)
        }
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(ExitCode::from(verdict.exit_code()))
}

async fn observe_imds(
    prober: &mut ImdsProber,
    endpoint: &str,
    shown_endpoint: &str,
    deadline: Duration,
) -> ImdsObservation {
    let connect = tcp_connect(endpoint, deadline).await;
    let run = prober.run().await;
    let mut instance_id = run.identity.as_ref().map(|i| i.instance_id.clone());
    if instance_id.is_none() && run.v1_enabled == Some(true) {
        instance_id = instance_id_without_token(prober).await;
    }
    ImdsObservation {
        endpoint: shown_endpoint.to_string(),
        deadline,
        connect,
        run,
        role: prober.listed_role().map(str::to_string),
        instance_id,
    }
}

async fn tcp_connect(endpoint: &str, deadline: Duration) -> Result<Duration, ConnectFailure> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| ConnectFailure::Failed(e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| ConnectFailure::Failed("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    // host_str keeps an IPv6 literal's brackets, which is what "host:port" needs.
    let target = format!("{host}:{port}");
    let addr = tokio::time::timeout(deadline, tokio::net::lookup_host(target))
        .await
        .map_err(|_| ConnectFailure::Timeout(deadline))?
        .map_err(|e| ConnectFailure::Failed(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| ConnectFailure::Failed(format!("{host} resolves to no address")))?;
    let start = Instant::now();
    match tokio::time::timeout(deadline, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(ConnectFailure::Failed(e.to_string())),
        Err(_) => Err(ConnectFailure::Timeout(deadline)),
    }
}

/// `GET /latest/meta-data/instance-id` without a token; only used when IMDSv1 answers and the
/// identity document could not be had, so that a fix can name the instance.
/// Made through the probe's own client: no proxy, no redirect, the same deadline and body cap.
async fn instance_id_without_token(prober: &ImdsProber) -> Option<String> {
    let answer = prober
        .http()
        .send(reqwest::Method::GET, "/latest/meta-data/instance-id", &[])
        .await
        .0
        .ok()?;
    if answer.status != 200 {
        return None;
    }
    let text = std::str::from_utf8(&answer.body).ok()?;
    let id = text.trim();
    crate::untrusted::is_instance_id(id).then(|| id.to_string())
}

async fn observe_ntp(servers: &[String], timeout: Duration) -> Vec<NtpObservation> {
    futures_util::future::join_all(servers.iter().map(|server| async move {
        NtpObservation {
            server: server.clone(),
            result: crate::probe::ntp::query(server, timeout)
                .await
                .map_err(|e| e.to_string()),
        }
    }))
    .await
}

fn read_host_node() -> NodeReading {
    use crate::collector::{clock, ethtool};
    let kernel_clock = match clock::read() {
        Ok(c) => KernelReading::Clock(c),
        Err(clock::ClockError::NotPermitted) => KernelReading::NotPermitted,
        Err(e) => KernelReading::Error(e.to_string()),
    };
    let linklocal = match ethtool::list_interfaces() {
        Ok(names) => LinklocalReading::Interfaces(
            names
                .into_iter()
                .filter_map(|name| {
                    let stats = ethtool::read_stats(&name).ok()?;
                    let linklocal = ethtool::allowance_counters(&stats).linklocal?;
                    Some((name, linklocal))
                })
                .collect(),
        ),
        Err(e) => LinklocalReading::Unavailable(format!("cannot list interfaces: {e}")),
    };
    NodeReading {
        kernel_clock,
        linklocal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_grouped() {
        let mut seen = std::collections::HashSet::new();
        for id in CheckId::ALL.into_iter().chain(CheckId::OPTIONAL) {
            assert!(seen.insert(id.as_str()), "{}", id.as_str());
            let (group, name) = id.as_str().split_once('.').expect("group.name");
            assert!(
                [
                    "imds",
                    "clients",
                    "clock",
                    "network",
                    "sdk",
                    "container",
                    "web_identity",
                    "sts"
                ]
                .contains(&group)
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{name}"
            );
        }
    }

    fn report(statuses: &[Status]) -> Report {
        Report {
            imds_endpoint: String::new(),
            imds_probed: true,
            imds_endpoint_setting: None,
            ntp_servers: vec![],
            checks: statuses
                .iter()
                .zip(CheckId::ALL)
                .map(|(s, id)| Check::new(id, *s, ""))
                .collect(),
        }
    }

    #[test]
    fn the_verdict_is_the_worst_status_and_strict_promotes_warnings() {
        use Status::*;
        let cases: &[(&[Status], bool, Verdict, u8)] = &[
            (&[Ok, Ok, Skip], false, Verdict::Ok, 0),
            (&[Ok, Warn, Skip], false, Verdict::Warn, 0),
            (&[Ok, Warn, Skip], true, Verdict::Fail, 1),
            (&[Ok, Skip], true, Verdict::Ok, 0),
            (&[Fail, Warn], false, Verdict::Fail, 1),
            (&[Skip, Skip], false, Verdict::Ok, 0),
        ];
        for (statuses, strict, want, code) in cases {
            let v = report(statuses).verdict(*strict);
            assert_eq!(v, *want, "{statuses:?} strict={strict}");
            assert_eq!(v.exit_code(), *code);
        }
    }

    #[test]
    fn durations_are_formatted_for_people() {
        assert_eq!(fmt_latency(Duration::from_micros(210)), "0.21 ms");
        assert_eq!(fmt_latency(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(fmt_latency(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(fmt_span(6 * 3600 - 60), "5h 59m");
        assert_eq!(fmt_span(14 * 60 + 3), "14m 3s");
        assert_eq!(fmt_span(-45), "45s");
        assert_eq!(fmt_offset(400.0), "400.0 s behind");
        assert_eq!(fmt_offset(-0.0123), "12.3 ms ahead");
        assert_eq!(fmt_deadline(Duration::from_secs(2)), "2s");
    }
}
