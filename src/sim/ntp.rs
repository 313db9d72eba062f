//! The simulator's SNTP answerer: replies to client requests with the local clock moved by the
//! configured offset (plus the drift accumulated since the drift was set), so clock-skew alerts
//! can be rehearsed without touching the real clock.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::SimState;

/// Stratum the answerer claims: one below a GPS-fed server, like a well-synchronised service.
const STRATUM: u8 = 1;

pub async fn serve(socket: UdpSocket, state: Arc<SimState>, mut shutdown: watch::Receiver<bool>) {
    let mut buf = [0u8; 512];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "NTP receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let reply = crate::probe::ntp::server_reply(
            &buf[..n],
            SystemTime::now(),
            state.ntp_offset(),
            STRATUM,
        );
        match reply {
            Some(packet) => {
                state.count("ntp", "reply");
                if let Err(e) = socket.send_to(&packet, peer).await {
                    tracing::debug!(error = %e, "NTP send failed");
                }
            }
            None => state.count("ntp", "ignored"),
        }
    }
}
