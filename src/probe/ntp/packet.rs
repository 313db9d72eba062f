//! The pure core of SNTPv4 (RFC 4330 / RFC 5905): timestamps, the 48-byte packet, reply
//! validation and its classification into the closed set of NTP failure reasons, and the
//! four-timestamp arithmetic. No I/O: the query is in the parent module, the simulator's answer
//! in `sim::ntp`.
//!
//! Precision: timestamps stay 64-bit NTP values (32.32 fixed point, ~233 ps) and are only
//! subtracted from each other in two's complement, as RFC 5905 does. Absolute times never pass
//! through `f64` (seconds since 1900 as an `f64` would keep only ~0.5 µs), only the small
//! differences do.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::labels::Reason;

/// Seconds from the NTP prime epoch (1900-01-01T00:00:00Z) to the Unix epoch.
pub const NTP_UNIX_OFFSET_SECONDS: u64 = 2_208_988_800;

/// Size of an NTP header without extension fields or MAC.
pub const PACKET_LEN: usize = 48;

pub const MODE_CLIENT: u8 = 3;
pub const MODE_SERVER: u8 = 4;
const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// One second in NTP timestamp units (2^32).
pub const NTP_UNITS_PER_SECOND: f64 = 4_294_967_296.0;

/// What one valid server reply says about our clock and about the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtpSample {
    /// Server time minus local time: positive means the local clock is behind (RFC 5905,
    /// node_exporter's `node_ntp_offset_seconds`).
    pub offset_seconds: f64,
    /// Round-trip delay minus the server's processing time, never negative.
    pub rtt_seconds: f64,
    pub stratum: u8,
    /// Leap indicator 0..=3; 3 means the server itself is not synchronised (reported, not
    /// rejected: the metric is how an operator sees it).
    pub leap: u8,
    pub root_delay_seconds: f64,
    pub root_dispersion_seconds: f64,
    /// For stratum 1, four ASCII characters naming the reference clock; above, the upstream
    /// server's IPv4 address or a hash of its IPv6 address.
    pub reference_id: [u8; 4],
}

/// A failed NTP query, classified into the closed set of `imds_probe_failures_total{probe="ntp"}`
/// reasons by [`NtpError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    #[error("ntp query timed out")]
    Timeout,
    /// Resolving, binding, connecting, sending or receiving failed (a refused port shows up here:
    /// on a connected UDP socket the ICMP port-unreachable arrives as ECONNREFUSED on recv).
    #[error("ntp {op} failed: {source}")]
    Connect {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid ntp response: {0}")]
    InvalidResponse(String),
    /// Stratum 0 with a kiss code in the reference id (RFC 5905 7.4): RATE asks us to slow down,
    /// DENY and RSTR to stop. The probe's fixed interval is far below any rate limit, so a kiss
    /// here means the server is refusing us, which an operator must see.
    #[error("ntp server sent kiss-o'-death {0:?}")]
    KissOfDeath(String),
    /// The reply's origin timestamp is not the transmit timestamp we sent: a stale or duplicated
    /// reply to an earlier request, or a spoofed one.
    #[error("ntp reply origin timestamp does not match our request")]
    OriginMismatch,
    /// Leap indicator 3 ("alarm: clock not synchronised") or stratum 16: the server's own clock
    /// is not synchronised, and RFC 5905 clients do not take its time. Trusting it would let a
    /// server that is starting up or has lost its sources page a clock-skew alert.
    #[error("ntp server is not synchronised (leap indicator {leap}, stratum {stratum})")]
    Unsynchronized { leap: u8, stratum: u8 },
}

impl NtpError {
    /// The `reason` label value; a closed set.
    pub fn reason(&self) -> Reason {
        match self {
            NtpError::Timeout => Reason::Timeout,
            NtpError::Connect { .. } => Reason::Connect,
            NtpError::InvalidResponse(_) => Reason::InvalidResponse,
            NtpError::KissOfDeath(_) => Reason::KissOfDeath,
            NtpError::OriginMismatch => Reason::OriginMismatch,
            NtpError::Unsynchronized { .. } => Reason::Unsynchronized,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// A wall-clock time as a 64-bit NTP timestamp (32 bits of seconds, 32 bits of fraction).
///
/// The seconds field wraps every 2^32 s: era 0 ends at 2036-02-07T06:28:16Z, where the field
/// restarts at 0 (era 1). The era is not on the wire; [`ntp_to_system_time`] recovers it from a
/// nearby reference time.
pub fn system_time_to_ntp(time: SystemTime) -> u64 {
    let unix_nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let nanos_since_1900 = unix_nanos + i128::from(NTP_UNIX_OFFSET_SECONDS) * NANOS_PER_SECOND;
    // Truncating to 64 bits drops the era number, which is exactly the wire format.
    nanos_to_ntp_units(nanos_since_1900) as u64
}

/// The wall-clock time an NTP timestamp denotes, taking the era (RFC 5905 6) that puts it
/// closest to `pivot`, i.e. within about 68 years of it. With `pivot` = now this decodes
/// timestamps on both sides of the 2036 rollover correctly.
pub fn ntp_to_system_time(timestamp: u64, pivot: SystemTime) -> SystemTime {
    let delta = ntp_difference(timestamp, system_time_to_ntp(pivot));
    let nanos = ntp_units_to_nanos(i128::from(delta));
    let magnitude = Duration::from_nanos(nanos.unsigned_abs() as u64);
    if nanos >= 0 {
        pivot + magnitude
    } else {
        pivot - magnitude
    }
}

/// `later - earlier` in NTP units (2^-32 s), signed. Two's complement subtraction of the raw
/// 64-bit values is right across an era boundary as long as the true difference is below
/// 68 years (RFC 5905 does the same), so no era needs to be known.
pub fn ntp_difference(later: u64, earlier: u64) -> i64 {
    later.wrapping_sub(earlier) as i64
}

/// A span as NTP units (2^-32 s), rounded to the nearest unit.
pub fn duration_to_ntp_units(span: Duration) -> u64 {
    nanos_to_ntp_units(span.as_nanos() as i128) as u64
}

/// Seconds in the NTP short format (16.16 fixed point), used for root delay and dispersion.
pub fn short_format_to_seconds(value: u32) -> f64 {
    f64::from(value) / 65_536.0
}

fn nanos_to_ntp_units(nanos: i128) -> i128 {
    // Round half up; div_euclid keeps it correct for times before the epoch.
    (nanos * (1_i128 << 32) + NANOS_PER_SECOND / 2).div_euclid(NANOS_PER_SECOND)
}

fn ntp_units_to_nanos(units: i128) -> i128 {
    (units * NANOS_PER_SECOND + (1_i128 << 31)) >> 32
}

fn ntp_units_to_seconds(units: i128) -> f64 {
    units as f64 / NTP_UNITS_PER_SECOND
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// The 48-byte NTP header (RFC 5905 7.3), fields as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    /// NTP short format (16.16).
    pub root_delay: u32,
    /// NTP short format (16.16).
    pub root_dispersion: u32,
    pub reference_id: [u8; 4],
    pub reference_timestamp: u64,
    pub origin_timestamp: u64,
    pub receive_timestamp: u64,
    pub transmit_timestamp: u64,
}

impl Packet {
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (self.leap & 0b11) << 6 | (self.version & 0b111) << 3 | (self.mode & 0b111);
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference_timestamp.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin_timestamp.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive_timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit_timestamp.to_be_bytes());
        b
    }

    /// Decodes the header; bytes past 48 (extension fields, MAC) are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Packet, NtpError> {
        let Some(b) = bytes.get(..PACKET_LEN) else {
            return Err(NtpError::InvalidResponse(format!(
                "{} bytes, want at least {PACKET_LEN}",
                bytes.len()
            )));
        };
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) << 32 | u64::from(u32_at(i + 4));
        Ok(Packet {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 0b111,
            mode: b[0] & 0b111,
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference_timestamp: u64_at(16),
            origin_timestamp: u64_at(24),
            receive_timestamp: u64_at(32),
            transmit_timestamp: u64_at(40),
        })
    }
}

/// A client request (version 4, mode 3) whose transmit timestamp is `transmit`, our send time.
/// The server copies it into the reply's origin field, which is how we match the reply.
pub fn client_request(transmit: u64) -> [u8; PACKET_LEN] {
    Packet {
        version: 4,
        mode: MODE_CLIENT,
        transmit_timestamp: transmit,
        ..Packet::default()
    }
    .encode()
}

/// Checks a server reply to the request whose transmit timestamp was `sent_transmit`.
///
/// Order matters: the origin is checked before the kiss code so that only a reply to *our*
/// request can make us report a kiss-o'-death (RFC 5905 7.4: an unauthenticated KoD must match).
pub fn validate_reply(packet: &Packet, sent_transmit: u64) -> Result<(), NtpError> {
    if packet.mode != MODE_SERVER {
        return Err(NtpError::InvalidResponse(format!(
            "mode {}, want {MODE_SERVER} (server)",
            packet.mode
        )));
    }
    if !matches!(packet.version, 3 | 4) {
        return Err(NtpError::InvalidResponse(format!(
            "version {}, want 3 or 4",
            packet.version
        )));
    }
    if packet.origin_timestamp != sent_transmit {
        return Err(NtpError::OriginMismatch);
    }
    if packet.stratum == 0 {
        return Err(NtpError::KissOfDeath(kiss_code(packet.reference_id)));
    }
    if packet.leap == 3 || packet.stratum == 16 {
        // RFC 5905 "unsynchronised"; servers starting up send both.
        return Err(NtpError::Unsynchronized {
            leap: packet.leap,
            stratum: packet.stratum,
        });
    }
    if packet.stratum > 16 {
        return Err(NtpError::InvalidResponse(format!(
            "stratum {}, want 1..=15",
            packet.stratum
        )));
    }
    if packet.transmit_timestamp == 0 {
        return Err(NtpError::InvalidResponse("zero transmit timestamp".into()));
    }
    if packet.receive_timestamp == 0 {
        // Not in RFC 4330's list, but the offset would be off by decades.
        return Err(NtpError::InvalidResponse("zero receive timestamp".into()));
    }
    Ok(())
}

/// Kiss codes are four ASCII characters; anything else is shown as '?' so that a hostile server
/// cannot put control characters into our logs.
fn kiss_code(reference_id: [u8; 4]) -> String {
    reference_id
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| {
            if c.is_ascii_graphic() {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// Clock offset and round-trip delay from the four timestamps, in seconds:
/// t1 client send, t2 server receive, t3 server send, t4 client receive.
///
/// offset = ((t2 - t1) + (t3 - t4)) / 2, positive when the local clock is behind;
/// delay = (t4 - t1) - (t3 - t2), clamped at 0 (a server whose clock runs fast between
/// receive and send can make it slightly negative).
pub fn offset_and_delay(t1: u64, t2: u64, t3: u64, t4: u64) -> (f64, f64) {
    let d21 = i128::from(ntp_difference(t2, t1));
    let d34 = i128::from(ntp_difference(t3, t4));
    let offset = (d21 + d34) / 2;
    let delay = i128::from(ntp_difference(t4, t1)) - i128::from(ntp_difference(t3, t2));
    (
        ntp_units_to_seconds(offset),
        ntp_units_to_seconds(delay.max(0)),
    )
}

/// The pure core of a query: validate `reply` against our transmit timestamp `t1` and compute
/// the sample with our receive timestamp `t4`.
pub fn sample_from_reply(reply: &[u8], t1: u64, t4: u64) -> Result<NtpSample, NtpError> {
    let packet = Packet::decode(reply)?;
    validate_reply(&packet, t1)?;
    let (offset_seconds, rtt_seconds) =
        offset_and_delay(t1, packet.receive_timestamp, packet.transmit_timestamp, t4);
    Ok(NtpSample {
        offset_seconds,
        rtt_seconds,
        stratum: packet.stratum,
        leap: packet.leap,
        root_delay_seconds: short_format_to_seconds(packet.root_delay),
        root_dispersion_seconds: short_format_to_seconds(packet.root_dispersion),
        reference_id: packet.reference_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERA1_START_UNIX: u64 = (1 << 32) - NTP_UNIX_OFFSET_SECONDS; // 2036-02-07T06:28:16Z

    fn unix(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn ntp(secs: u32, frac: u32) -> u64 {
        u64::from(secs) << 32 | u64::from(frac)
    }

    #[test]
    fn system_time_converts_to_ntp_with_era_wrap() {
        let cases = [
            ("unix epoch", unix(0, 0), ntp(2_208_988_800, 0)),
            (
                "half second",
                unix(0, 500_000_000),
                ntp(2_208_988_800, 1 << 31),
            ),
            ("2000-01-01", unix(946_684_800, 0), ntp(3_155_673_600, 0)),
            (
                "last second of era 0",
                unix(ERA1_START_UNIX - 1, 0),
                ntp(u32::MAX, 0),
            ),
            ("first second of era 1", unix(ERA1_START_UNIX, 0), ntp(0, 0)),
            (
                "era 1 plus 1.25 s",
                unix(ERA1_START_UNIX + 1, 250_000_000),
                ntp(1, 1 << 30),
            ),
            (
                "before the unix epoch",
                UNIX_EPOCH - Duration::from_secs(1),
                ntp(2_208_988_799, 0),
            ),
        ];
        for (name, time, want) in cases {
            assert_eq!(system_time_to_ntp(time), want, "{name}");
        }
    }

    #[test]
    fn ntp_converts_to_system_time_in_the_era_nearest_the_pivot() {
        let y2020 = unix(1_577_836_800, 0);
        let y2036 = unix(ERA1_START_UNIX, 0);
        let cases = [
            ("era 0 near 2020", ntp(3_786_825_600, 0), y2020, y2020),
            (
                "era 1 timestamp read just before the rollover",
                ntp(5, 0),
                unix(ERA1_START_UNIX - 10, 0),
                unix(ERA1_START_UNIX + 5, 0),
            ),
            (
                "era 0 timestamp read just after the rollover",
                ntp(u32::MAX, 0),
                unix(ERA1_START_UNIX + 10, 0),
                unix(ERA1_START_UNIX - 1, 0),
            ),
            (
                "zero seconds is 2036, not 1900, near 2020",
                ntp(0, 0),
                y2020,
                y2036,
            ),
            (
                "1968 stays 1968 near 2020",
                ntp(1 << 31, 0),
                y2020,
                UNIX_EPOCH - Duration::from_secs(NTP_UNIX_OFFSET_SECONDS - (1 << 31)),
            ),
        ];
        for (name, ts, pivot, want) in cases {
            assert_eq!(ntp_to_system_time(ts, pivot), want, "{name}");
        }
    }

    #[test]
    fn conversion_round_trips_to_the_nanosecond() {
        let pivot = unix(1_700_000_000, 0);
        for time in [
            unix(1_700_000_000, 1),
            unix(1_700_000_123, 999_999_999),
            unix(ERA1_START_UNIX + 3, 123_456_789),
            unix(1_000_000_000, 500_000_000),
        ] {
            let back = ntp_to_system_time(system_time_to_ntp(time), pivot);
            assert_eq!(back, time);
        }
    }

    #[test]
    fn short_format_is_sixteen_dot_sixteen_seconds() {
        let cases = [
            (0x0000_0000, 0.0),
            (0x0001_0000, 1.0),
            (0x0000_8000, 0.5),
            (0x0002_4000, 2.25),
            (0x0000_0001, 1.0 / 65536.0),
        ];
        for (raw, want) in cases {
            assert_eq!(short_format_to_seconds(raw), want, "{raw:#x}");
        }
    }

    #[test]
    fn offset_and_delay_follow_rfc5905_sign_convention() {
        let base = ntp(3_900_000_000, 0);
        let ms = |m: i64| base.wrapping_add_signed(m * (1_i64 << 32) / 1000);
        // (name, t1, t2, t3, t4, offset, delay)
        let cases = [
            ("clocks agree", ms(0), ms(5), ms(6), ms(11), 0.0, 0.010),
            (
                "local clock behind by 2.5 s",
                ms(0),
                ms(2505),
                ms(2506),
                ms(11),
                2.5,
                0.010,
            ),
            (
                "local clock ahead by 1.25 s",
                ms(0),
                ms(-1245),
                ms(-1244),
                ms(11),
                -1.25,
                0.010,
            ),
            (
                "asymmetric path",
                ms(0),
                ms(8),
                ms(8),
                ms(10),
                3.0e-3,
                0.010,
            ),
            (
                "negative delay clamps to zero",
                ms(0),
                ms(0),
                ms(20),
                ms(10),
                5.0e-3,
                0.0,
            ),
        ];
        for (name, t1, t2, t3, t4, offset, delay) in cases {
            let (got_offset, got_delay) = offset_and_delay(t1, t2, t3, t4);
            assert!(
                (got_offset - offset).abs() < 1e-9,
                "{name}: offset {got_offset}"
            );
            assert!(
                (got_delay - delay).abs() < 1e-9,
                "{name}: delay {got_delay}"
            );
        }
    }

    #[test]
    fn offset_is_exact_across_the_era_rollover() {
        // t1 just before the 2036 rollover, server 2 s ahead and already in era 1.
        let t1 = ntp(u32::MAX, 0);
        let t2 = ntp(1, 0); // t1 + 2 s
        let t3 = ntp(1, 0);
        let t4 = ntp(u32::MAX, 0);
        let (offset, delay) = offset_and_delay(t1, t2, t3, t4);
        assert_eq!(offset, 2.0);
        assert_eq!(delay, 0.0);
    }

    #[test]
    fn offset_keeps_sub_microsecond_precision() {
        let t1 = ntp(3_900_000_000, 0);
        let hundred_ns = duration_to_ntp_units(Duration::from_nanos(100));
        let (offset, _) = offset_and_delay(t1, t1 + hundred_ns, t1 + hundred_ns, t1);
        assert!((offset - 100e-9).abs() < 1e-9, "offset {offset}");
    }

    #[test]
    fn client_request_is_version_4_mode_3_with_our_transmit_time() {
        let bytes = client_request(0x0123_4567_89ab_cdef);
        assert_eq!(bytes[0], 0x23);
        assert!(bytes[1..40].iter().all(|&b| b == 0));
        let p = Packet::decode(&bytes).expect("decode");
        assert_eq!((p.leap, p.version, p.mode), (0, 4, 3));
        assert_eq!(p.transmit_timestamp, 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn packet_encode_decode_round_trips() {
        let p = Packet {
            leap: 3,
            version: 4,
            mode: 4,
            stratum: 2,
            poll: 6,
            precision: -23,
            root_delay: 0x0001_8000,
            root_dispersion: 0x0000_0041,
            reference_id: *b"GPS\0",
            reference_timestamp: 1,
            origin_timestamp: 2,
            receive_timestamp: 3,
            transmit_timestamp: 4,
        };
        assert_eq!(Packet::decode(&p.encode()).expect("decode"), p);
    }

    fn good_reply(t1: u64) -> Packet {
        Packet {
            leap: 0,
            version: 4,
            mode: 4,
            stratum: 1,
            root_delay: 0x0000_8000,
            root_dispersion: 0x0000_4000,
            reference_id: *b"GPS\0",
            origin_timestamp: t1,
            receive_timestamp: t1 + (1 << 32),
            transmit_timestamp: t1 + (1 << 32),
            ..Packet::default()
        }
    }

    #[test]
    fn valid_reply_yields_a_sample() {
        let t1 = ntp(3_900_000_000, 0);
        let sample = sample_from_reply(&good_reply(t1).encode(), t1, t1).expect("valid");
        assert_eq!(sample.offset_seconds, 1.0);
        assert_eq!(sample.rtt_seconds, 0.0);
        assert_eq!(sample.stratum, 1);
        assert_eq!(sample.root_delay_seconds, 0.5);
        assert_eq!(sample.root_dispersion_seconds, 0.25);
        assert_eq!(&sample.reference_id, b"GPS\0");
    }

    #[test]
    fn invalid_replies_are_classified() {
        let t1 = ntp(3_900_000_000, 7);
        let with = |f: fn(&mut Packet)| {
            let mut p = good_reply(t1);
            f(&mut p);
            p.encode().to_vec()
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("short packet", vec![0x24; 47], "invalid_response"),
            ("client mode", with(|p| p.mode = 3), "invalid_response"),
            ("broadcast mode", with(|p| p.mode = 5), "invalid_response"),
            ("version 2", with(|p| p.version = 2), "invalid_response"),
            ("version 5", with(|p| p.version = 5), "invalid_response"),
            (
                "zero transmit",
                with(|p| p.transmit_timestamp = 0),
                "invalid_response",
            ),
            (
                "zero receive",
                with(|p| p.receive_timestamp = 0),
                "invalid_response",
            ),
            ("stratum 16", with(|p| p.stratum = 16), "unsynchronized"),
            ("stratum 17", with(|p| p.stratum = 17), "invalid_response"),
            (
                "stratum 0 is a kiss",
                with(|p| p.stratum = 0),
                "kiss_of_death",
            ),
            (
                "origin differs",
                with(|p| p.origin_timestamp += 1),
                "origin_mismatch",
            ),
            (
                "kiss with wrong origin is only a mismatch",
                with(|p| {
                    p.stratum = 0;
                    p.origin_timestamp = 0;
                }),
                "origin_mismatch",
            ),
        ];
        for (name, bytes, want) in cases {
            let err = sample_from_reply(&bytes, t1, t1).expect_err(name);
            assert_eq!(err.reason().as_str(), want, "{name}: {err}");
        }
    }

    #[test]
    fn kiss_of_death_carries_the_code() {
        let t1 = ntp(3_900_000_000, 0);
        let cases = [
            (*b"RATE", "RATE"),
            (*b"DENY", "DENY"),
            (*b"RST\0", "RST"),
            (*b"A\nB\x01", "A?B?"),
        ];
        for (id, want) in cases {
            let mut p = good_reply(t1);
            p.stratum = 0;
            p.reference_id = id;
            match sample_from_reply(&p.encode(), t1, t1) {
                Err(NtpError::KissOfDeath(code)) => assert_eq!(code, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unsynchronised_server_is_refused_with_its_own_reason() {
        let t1 = ntp(3_900_000_000, 0);
        for (leap, stratum) in [(3, 2), (3, 16), (0, 16)] {
            let mut p = good_reply(t1);
            p.leap = leap;
            p.stratum = stratum;
            let err = sample_from_reply(&p.encode(), t1, t1).unwrap_err();
            assert_eq!(
                err.reason(),
                Reason::Unsynchronized,
                "leap {leap} stratum {stratum}"
            );
        }
        // Leap 1 and 2 announce a leap second: the time is good.
        let mut p = good_reply(t1);
        p.leap = 1;
        assert_eq!(sample_from_reply(&p.encode(), t1, t1).unwrap().leap, 1);
    }

    #[test]
    fn version_3_replies_are_accepted() {
        let t1 = ntp(3_900_000_000, 0);
        let mut p = good_reply(t1);
        p.version = 3;
        assert!(sample_from_reply(&p.encode(), t1, t1).is_ok());
    }

    #[test]
    fn reply_bytes_past_the_header_are_ignored() {
        let t1 = ntp(3_900_000_000, 0);
        let mut bytes = good_reply(t1).encode().to_vec();
        bytes.extend_from_slice(&[0xAA; 20]);
        assert!(sample_from_reply(&bytes, t1, t1).is_ok());
    }

    #[test]
    fn reasons_are_the_closed_label_set() {
        let cases = [
            (NtpError::Timeout, "timeout"),
            (
                NtpError::Connect {
                    op: "recv",
                    source: io::Error::from(io::ErrorKind::ConnectionRefused),
                },
                "connect",
            ),
            (NtpError::InvalidResponse("x".into()), "invalid_response"),
            (NtpError::KissOfDeath("RATE".into()), "kiss_of_death"),
            (NtpError::OriginMismatch, "origin_mismatch"),
        ];
        for (err, want) in cases {
            assert_eq!(err.reason().as_str(), want);
        }
    }
}
