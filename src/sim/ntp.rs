//! The simulator's SNTP answerer: replies to client requests with the local clock moved by the
//! configured offset (plus the drift accumulated since the drift was set), so clock-skew alerts
//! can be rehearsed without touching the real clock.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::state::SimState;
use crate::probe::ntp::packet::{
    MODE_CLIENT, MODE_SERVER, NTP_UNITS_PER_SECOND, PACKET_LEN, Packet, system_time_to_ntp,
};

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
        let reply = server_reply(&buf[..n], SystemTime::now(), state.ntp_offset(), STRATUM);
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

/// The reply a server whose clock reads `now + offset_seconds` gives to `request`, for the
/// simulator's NTP answerer; `None` if `request` is not a client request (mode 3, version 1..=4)
/// of at least 48 bytes. The version is echoed as RFC 4330 5 asks, so NTPv2/v3 clients (Python's
/// ntplib defaults to version 2) get an answer they accept. A `stratum` of 0 is passed through
/// as is; a test that wants a kiss-o'-death sets the reference id itself.
pub fn server_reply(
    request: &[u8],
    now: SystemTime,
    offset_seconds: f64,
    stratum: u8,
) -> Option<[u8; PACKET_LEN]> {
    let req = Packet::decode(request).ok()?;
    if req.mode != MODE_CLIENT || !(1..=4).contains(&req.version) {
        return None;
    }
    let offset_units = (offset_seconds * NTP_UNITS_PER_SECOND).round() as i64;
    let server_now = system_time_to_ntp(now).wrapping_add_signed(offset_units);
    Some(
        Packet {
            leap: 0,
            version: req.version,
            mode: MODE_SERVER,
            stratum,
            poll: req.poll,
            precision: -20, // ~1 µs
            root_delay: 0,
            root_dispersion: 0x0000_0041, // 65/65536 s, ~1 ms
            reference_id: *b"LOCL",
            reference_timestamp: server_now,
            origin_timestamp: req.transmit_timestamp,
            receive_timestamp: server_now,
            transmit_timestamp: server_now,
        }
        .encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ntp::packet::{client_request, ntp_difference, sample_from_reply};
    use std::time::{Duration, UNIX_EPOCH};

    fn unix(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn server_reply_answers_client_requests_only() {
        let now = unix(1_700_000_000, 0);
        let t1 = system_time_to_ntp(now);
        let reply = server_reply(&client_request(t1), now, 2.5, 3).expect("reply");
        let p = Packet::decode(&reply).expect("decode");
        assert_eq!((p.leap, p.version, p.mode, p.stratum), (0, 4, 4, 3));
        assert_eq!(p.origin_timestamp, t1);
        assert_eq!(&p.reference_id, b"LOCL");
        assert_eq!(ntp_difference(p.receive_timestamp, t1), 5 << 31);
        let sample = sample_from_reply(&reply, t1, t1).expect("our client accepts it");
        assert_eq!(sample.offset_seconds, 2.5);

        let mut v2 = client_request(t1);
        v2[0] = 0x13; // version 2, mode 3, as ntplib sends by default
        let p = Packet::decode(&server_reply(&v2, now, 0.0, 1).expect("v2 reply")).expect("decode");
        assert_eq!(p.version, 2);

        let mut server_mode = client_request(t1);
        server_mode[0] = 0x24;
        assert_eq!(
            server_reply(&server_mode, now, 0.0, 1),
            None,
            "mode 4 request"
        );
        assert_eq!(
            server_reply(&client_request(t1)[..47], now, 0.0, 1),
            None,
            "short"
        );
        let mut v0 = client_request(t1);
        v0[0] = 0x03;
        assert_eq!(server_reply(&v0, now, 0.0, 1), None, "version 0");
    }

    #[test]
    fn server_reply_applies_negative_offsets() {
        let now = unix(1_700_000_000, 0);
        let t1 = system_time_to_ntp(now);
        let reply = server_reply(&client_request(t1), now, -1.25, 2).expect("reply");
        let sample = sample_from_reply(&reply, t1, t1).expect("valid");
        assert_eq!(sample.offset_seconds, -1.25);
    }
}
