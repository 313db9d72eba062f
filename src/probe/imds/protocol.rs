//! The IMDS protocol as the probe speaks it: the paths and headers, the session token (redacted
//! in `Debug`, wiped on drop), and what makes a token answer usable. No I/O.

use std::fmt;

use zeroize::Zeroizing;

pub const TOKEN_PATH: &str = "/latest/api/token";
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const ROLE_LIST_PATH: &str = "/latest/meta-data/iam/security-credentials/";
pub const INFO_PATH: &str = "/latest/meta-data/iam/info";
pub const IDENTITY_PATH: &str = "/latest/dynamic/instance-identity/document";

/// The IMDSv2 session token. Redacted in `Debug`, wiped on drop.
pub struct SessionToken(pub(super) Zeroizing<String>);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The token in an answer's body: trimmed, non-empty, printable ASCII (valid as a header).
pub fn token_text(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}
