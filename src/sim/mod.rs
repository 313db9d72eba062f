//! `imds_exporter simulate`: a fake IMDS (and SNTP server) that can be told to fail.
//!
//! Layout:
//! - `config`: the simulator's settings (`SimConfig`), checked before anything is bound;
//! - `state`: what the handlers share: the scenario in force, tokens, counts, the NTP clock;
//! - `scenario`: the catalogue of failure modes and their parameters;
//! - `credentials`: the rotation schedule and the documents it serves;
//! - `imds`: the IMDS paths, token handling and what each scenario does to a request;
//! - `container`: the container credential endpoint (EKS Pod Identity, ECS) with its own scenario;
//! - `sts`: a stand-in for STS's `GetCallerIdentity` that judges the served credentials;
//! - `control`: the control API under `/_sim/` on the same listener;
//! - `script`: timelines of scenario switches;
//! - `limits`: the bounds on durations and offsets from flags and requests;
//! - `ntp`: the SNTP answerer with a settable clock offset and drift (and its reply builder);
//! - `server`: the accept loop, which can reset a connection (the `refused` scenario).
//!
//! This file only starts and stops them; no submodule uses it.

pub mod config;
pub mod container;
pub mod control;
pub mod credentials;
pub mod imds;
pub mod limits;
pub mod ntp;
pub mod scenario;
pub mod script;
pub mod server;
pub mod state;
pub mod sts;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use self::config::SimConfig;
use self::state::SimState;

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub ntp_addr: Option<SocketAddr>,
    pub state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the listeners and starts serving; returns once they are bound.
/// Every option, the script included, is checked before anything is bound: an error leaves
/// nothing listening.
pub async fn start(listen: SocketAddr, config: SimConfig) -> Result<RunningSim, String> {
    let state = SimState::new(config)?;
    let steps = match &state.config.script {
        Some(path) => {
            let text = crate::config::read_text_file(path)
                .map_err(|e| format!("--script {}: {e}", path.display()))?;
            let steps = script::parse(&text, &state.config.scenario_defaults())
                .map_err(|e| format!("--script {}: {e}", path.display()))?;
            Some(steps)
        }
        None => None,
    };
    let (shutdown, rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut tasks = vec![tokio::spawn(server::serve(
        listener,
        state.clone(),
        rx.clone(),
    ))];
    let mut ntp_addr = None;
    if let Some(ntp_listen) = state.config.ntp_listen {
        let socket = tokio::net::UdpSocket::bind(ntp_listen)
            .await
            .map_err(|e| format!("--ntp-listen {ntp_listen}: {e}"))?;
        ntp_addr = Some(socket.local_addr().map_err(|e| e.to_string())?);
        tasks.push(tokio::spawn(ntp::serve(socket, state.clone(), rx.clone())));
    }
    if let Some(steps) = steps {
        script::play(state.clone(), steps);
    }
    Ok(RunningSim {
        addr,
        ntp_addr,
        state,
        shutdown,
        tasks,
    })
}

/// `imds_exporter simulate`: runs until SIGINT/SIGTERM.
pub async fn run(listen: SocketAddr, config: SimConfig) -> Result<(), String> {
    let stop = crate::signals::shutdown();
    // SIGHUP is ignored (the default action would end the process).
    let _hangups = crate::signals::hangups();
    let sim = start(listen, config).await?;
    tracing::info!(address = %sim.addr, "IMDS simulator listening");
    if let Some(ntp) = sim.ntp_addr {
        tracing::info!(address = %ntp, "SNTP answerer listening");
    }
    println!("IMDS simulator on {}", sim.endpoint());
    if let Some(ntp) = sim.ntp_addr {
        println!("SNTP answerer on {ntp} (udp)");
    }
    println!(
        "Switch scenarios with: curl -X POST {}/_sim/scenario/<name>   (state: curl {}/_sim/state)",
        sim.endpoint(),
        sim.endpoint()
    );
    stop.await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}
