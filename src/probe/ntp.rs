//! Placeholder until the SNTP client lands.

#[derive(Debug, Clone, PartialEq)]
pub struct NtpSample {
    pub offset_seconds: f64,
    pub rtt_seconds: f64,
    pub stratum: u8,
    pub leap: u8,
    pub root_delay_seconds: f64,
    pub root_dispersion_seconds: f64,
    pub reference_id: [u8; 4],
}

pub fn server_reply(
    _request: &[u8],
    _now: std::time::SystemTime,
    _offset_seconds: f64,
    _stratum: u8,
) -> Option<[u8; 48]> {
    None
}
