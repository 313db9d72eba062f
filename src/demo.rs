//! `imds_exporter demo`: the simulator and the exporter in one process, on loopback.
//!
//! The embedded default that runs anywhere: no EC2 instance, no configuration, nothing leaves
//! 127.0.0.1. It prints where the metrics are and how to switch the simulator's scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::{DemoArgs, SimOptions};
use crate::exporter::ExporterConfig;
use crate::probe::imds::ImdsConfig;

pub async fn run(args: DemoArgs) -> crate::CliResult {
    crate::logging::init(args.log.level, args.log.format);
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let options = SimOptions {
        ntp_listen: Some(loopback),
        rotate_every: args.rotate_every,
        lifetime: args.lifetime,
        clock_offset: 0.0,
        clock_drift: 0.0,
        slow_delay: Duration::from_secs(2),
        scenario: args.scenario.clone(),
        script: args.script.clone(),
        role: "imds-exporter-demo-role".into(),
    };
    if args.interval.is_zero() {
        return Err("--imds.interval must be greater than 0".into());
    }
    options.validate()?;
    let stop = crate::shutdown_signal();
    let sim = crate::sim::start(loopback, options).await?;
    let exporter = crate::exporter::start(ExporterConfig {
        listen: args.listen_address,
        telemetry_path: "/metrics".into(),
        imds: ImdsConfig {
            endpoint: sim.endpoint(),
            timeout: Duration::from_secs(1),
            token_ttl_seconds: 21600,
        },
        imds_interval: args.interval,
        ntp: sim.ntp_addr.map(|a| crate::exporter::NtpConfig {
            servers: vec![a.to_string()],
            interval: args.interval,
            timeout: Duration::from_secs(1),
        }),
        clock: true,
        ethtool: Some(regex_lite::Regex::new(".*").expect("valid regex")),
    })
    .await?;
    let metrics = format!("http://{}/metrics", exporter.addr);
    let sim_url = sim.endpoint();
    println!("imds_exporter demo: the exporter probes an embedded IMDS simulator on loopback.");
    println!();
    println!("  Metrics:     {metrics}");
    println!("  Simulator:   {sim_url}   (state: {sim_url}/_sim/state)");
    if let Some(ntp) = sim.ntp_addr {
        println!("  NTP:         {ntp} (udp)");
    }
    println!();
    println!("Try a failure, then watch the metrics move:");
    println!("  curl -X POST {sim_url}/_sim/scenario/outage");
    println!("  curl -s {metrics} | grep -E '^imds_(probe_success|request_failures_total)'");
    println!("  curl -X POST {sim_url}/_sim/scenario/healthy");
    println!("Or skew the clock the NTP probe sees (seconds; positive = this node is behind):");
    println!("  curl -X POST {sim_url}/_sim/clock-offset/2.5");
    println!("  curl -s {metrics} | grep -E '^imds_(ntp|clock)_'");
    println!("Scenarios: {}", crate::sim::scenario::NAMES.join(", "));
    println!("Press Ctrl-C to stop.");
    stop.await;
    exporter.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
