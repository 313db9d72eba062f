//! The closed sets of label values: `probe`, `phase` and `reason`.
//!
//! Every label value the exporter emits for them comes from the enums here, so the set of series
//! is known at start-up and can be initialised to zero (a failure then shows as a counter moving,
//! never as a series appearing). The probes classify into these; the metrics render them. Owns
//! no metric names and no I/O: a leaf that every layer may use.

/// Which background probe a `probe`-labelled series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    Imds,
    Ntp,
}

impl Probe {
    pub const ALL: [Probe; 2] = [Probe::Imds, Probe::Ntp];

    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Imds => "imds",
            Probe::Ntp => "ntp",
        }
    }

    /// The failure reasons this probe can report; only these `reason` series are created.
    pub fn reasons(self) -> &'static [Reason] {
        match self {
            Probe::Imds => &Reason::IMDS,
            Probe::Ntp => &Reason::NTP,
        }
    }
}

/// One IMDS request of a probe run, in the order an SDK makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `PUT /latest/api/token`: the IMDSv2 session token.
    Token,
    /// `GET /latest/meta-data/iam/security-credentials/`: the role name.
    Role,
    /// `GET /latest/meta-data/iam/security-credentials/<role>`: the credentials document.
    Credentials,
    /// `GET /latest/meta-data/iam/info`: the instance profile (best effort, hourly).
    Info,
    /// `GET /latest/dynamic/instance-identity/document` (best effort, hourly).
    Identity,
    /// The token-less `GET` of the role list: does IMDSv1 still answer? A 401 here is the
    /// answer "no", not a failure.
    ImdsV1,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Token,
        Phase::Role,
        Phase::Credentials,
        Phase::Info,
        Phase::Identity,
        Phase::ImdsV1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Token => "token",
            Phase::Role => "role",
            Phase::Credentials => "credentials",
            Phase::Info => "info",
            Phase::Identity => "identity",
            Phase::ImdsV1 => "imdsv1",
        }
    }
}

/// Why a request or a probe run failed. A closed set: never an error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No complete answer within the deadline (what an SDK with a 1 s timeout sees).
    Timeout,
    /// The connection could not be made, or was refused or reset before an answer.
    Connect,
    /// HTTP 429: IMDS throttles per instance; no SDK retries it by default.
    Throttled,
    /// HTTP 401: missing, invalid or expired token (or IMDSv1 refused).
    Unauthorized,
    /// HTTP 403: IMDS disabled, or a request IMDS rejects outright.
    Forbidden,
    /// HTTP 404: no such item, typically no role attached.
    NotFound,
    /// HTTP 5xx.
    ServerError,
    /// Any other unexpected status, redirects included (they are never followed).
    HttpOther,
    /// A body that cannot be used: not JSON, missing fields, bad timestamps, too large, empty.
    InvalidResponse,
    /// A credentials document with HTTP 200 whose `Code` is not `Success`.
    CodeNotSuccess,
    /// NTP: a stratum-0 "kiss-o'-death" reply (the server asks us to back off or go away).
    KissOfDeath,
    /// NTP: the reply's origin timestamp is not the one we sent.
    OriginMismatch,
    /// NTP: the server says it is not synchronised itself (leap indicator 3, or stratum 16):
    /// RFC 5905 says not to use its time.
    Unsynchronized,
}

impl Reason {
    pub const IMDS: [Reason; 10] = [
        Reason::Timeout,
        Reason::Connect,
        Reason::Throttled,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::ServerError,
        Reason::HttpOther,
        Reason::InvalidResponse,
        Reason::CodeNotSuccess,
    ];

    pub const NTP: [Reason; 6] = [
        Reason::Timeout,
        Reason::Connect,
        Reason::InvalidResponse,
        Reason::KissOfDeath,
        Reason::OriginMismatch,
        Reason::Unsynchronized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Throttled => "throttled",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::ServerError => "server_error",
            Reason::HttpOther => "http_other",
            Reason::InvalidResponse => "invalid_response",
            Reason::CodeNotSuccess => "code_not_success",
            Reason::KissOfDeath => "kiss_of_death",
            Reason::OriginMismatch => "origin_mismatch",
            Reason::Unsynchronized => "unsynchronized",
        }
    }

    /// The reason for an HTTP status that is not the success the caller expected.
    pub fn from_status(status: u16) -> Reason {
        match status {
            429 => Reason::Throttled,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            500..=599 => Reason::ServerError,
            _ => Reason::HttpOther,
        }
    }
}

/// An AWS SDK family whose clients the IMDS probe's verdicts speak for (`sdk` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sdk {
    /// botocore, under boto3 and the AWS CLI.
    Python,
    /// The AWS SDK for JavaScript v3.
    Javascript,
    /// aws-config, the AWS SDK for Rust.
    Rust,
    /// aws-sdk-go-v2.
    Go,
}

impl Sdk {
    pub const ALL: [Sdk; 4] = [Sdk::Python, Sdk::Javascript, Sdk::Rust, Sdk::Go];

    pub fn as_str(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::Javascript => "javascript",
            Sdk::Rust => "rust",
            Sdk::Go => "go",
        }
    }

    /// The family named `s` (a label value).
    pub fn parse(s: &str) -> Option<Sdk> {
        Sdk::ALL.into_iter().find(|sdk| sdk.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_the_documented_reasons() {
        let cases = [
            (429, "throttled"),
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (500, "server_error"),
            (503, "server_error"),
            (301, "http_other"),
            (302, "http_other"),
            (400, "http_other"),
            (405, "http_other"),
        ];
        for (status, want) in cases {
            assert_eq!(
                Reason::from_status(status).as_str(),
                want,
                "status {status}"
            );
        }
    }

    #[test]
    fn label_values_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for p in Phase::ALL {
            assert!(seen.insert(p.as_str()));
        }
        for r in Reason::IMDS.iter().chain(Reason::NTP.iter()) {
            let s = r.as_str();
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
        }
    }
}
