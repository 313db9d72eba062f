//! NTP replies: decoding never panics and round-trips through `encode`; validation and the
//! sample never panic, and a sample is finite with a non-negative round trip.
#![no_main]

use imds_exporter::probe::ntp::packet::{PACKET_LEN, Packet, sample_from_reply, validate_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first 16 bytes choose our transmit (t1) and receive (t4) timestamps.
    let (times, reply) = input.split_at(input.len().min(16));
    let mut t = [0u8; 16];
    t[..times.len()].copy_from_slice(times);
    let t1 = u64::from_be_bytes(t[..8].try_into().unwrap());
    let t4 = u64::from_be_bytes(t[8..].try_into().unwrap());
    match Packet::decode(reply) {
        Ok(p) => {
            assert_eq!(p.encode()[..], reply[..PACKET_LEN]);
            let _ = validate_reply(&p, t1);
            let _ = validate_reply(&p, p.origin_timestamp);
        }
        Err(_) => assert!(reply.len() < PACKET_LEN),
    }
    for t1 in [
        t1,
        reply
            .get(24..32)
            .map_or(t1, |b| u64::from_be_bytes(b.try_into().unwrap())),
    ] {
        if let Ok(s) = sample_from_reply(reply, t1, t4) {
            assert!(s.offset_seconds.is_finite() && s.rtt_seconds.is_finite());
            assert!(s.rtt_seconds >= 0.0);
        }
    }
});
