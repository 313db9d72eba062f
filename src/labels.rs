//! The closed sets of label values: `probe`, `phase`, `reason`, `sdk`, and the STS probe's
//! `source` and `code`.
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
    /// The container credential provider's endpoint (EKS Pod Identity, ECS): off unless its
    /// variables or flags are set.
    Container,
    /// The IRSA web identity token (and, opt-in, its exchange at STS): off unless set.
    WebIdentity,
    /// A signed `GetCallerIdentity` with the fetched credentials: opt-in.
    Sts,
}

impl Probe {
    pub const ALL: [Probe; 5] = [
        Probe::Imds,
        Probe::Ntp,
        Probe::Container,
        Probe::WebIdentity,
        Probe::Sts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Imds => "imds",
            Probe::Ntp => "ntp",
            Probe::Container => "container",
            Probe::WebIdentity => "web_identity",
            Probe::Sts => "sts",
        }
    }

    /// The failure reasons this probe can report; only these `reason` series are created.
    pub fn reasons(self) -> &'static [Reason] {
        match self {
            Probe::Imds => &Reason::IMDS,
            Probe::Ntp => &Reason::NTP,
            Probe::Container => &Reason::CONTAINER,
            Probe::WebIdentity => &Reason::WEB_IDENTITY,
            Probe::Sts => &Reason::STS,
        }
    }

    /// The failure reasons whose `imds_request_failures_total` series exist from start-up for
    /// this probe's `phase`: the pairs the endpoint can produce (issue 18: each is a series on
    /// every node). A pair outside this table is created at its first occurrence (a hostile or
    /// broken peer, a proxy), so its first increment is not seen by `rate()`; the alerts read
    /// only pairs inside it. For IMDS, from the documented answers (FIELD-NOTES: 400 on a bad
    /// PUT, 401 token, 403 disabled, 404 no such item, 429) and the network:
    ///
    /// | phase | reasons |
    /// |---|---|
    /// | `token` (PUT) | timeout, connect, throttled, forbidden (IMDS disabled), http_other (400) |
    /// | `role` | timeout, connect, throttled, unauthorized, forbidden, not_found (no role) |
    /// | `credentials` | those of `role`, invalid_response, code_not_success |
    /// | `imdsv1` | timeout, connect, throttled (401 and 403 are the answer "IMDSv1 off") |
    /// | `info`, `identity` | none: best effort, hourly |
    ///
    /// The container probe (off by default) keeps every pair of its reasons.
    pub fn expected_failures(self, phase: Phase) -> &'static [Reason] {
        use Reason::*;
        match (self, phase) {
            (Probe::Imds, Phase::Token) => &[Timeout, Connect, Throttled, Forbidden, HttpOther],
            (Probe::Imds, Phase::Role) => &[
                Timeout,
                Connect,
                Throttled,
                Unauthorized,
                Forbidden,
                NotFound,
            ],
            (Probe::Imds, Phase::Credentials) => &[
                Timeout,
                Connect,
                Throttled,
                Unauthorized,
                Forbidden,
                NotFound,
                InvalidResponse,
                CodeNotSuccess,
            ],
            (Probe::Imds, Phase::ImdsV1) => &[Timeout, Connect, Throttled],
            (Probe::Container, Phase::AuthToken) => &[TokenFile],
            // Every container reason but the token file's, which is last.
            (Probe::Container, Phase::Credentials) => {
                &Reason::CONTAINER[..Reason::CONTAINER.len() - 1]
            }
            _ => &[],
        }
    }

    /// The `phase` values of this probe's requests in the shared credential families.
    pub fn phases(self) -> &'static [Phase] {
        match self {
            Probe::Imds => &Phase::ALL_IMDS,
            Probe::Container => &[Phase::AuthToken, Phase::Credentials],
            _ => &[],
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
    /// Container probe: reading the authorization token (the file, at every run, or the
    /// variable). Not a request: its failures are counted, no duration is observed.
    AuthToken,
}

impl Phase {
    /// The IMDS probe's phases (the container probe's are `auth_token` and `credentials`).
    pub const ALL_IMDS: [Phase; 6] = [
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
            Phase::AuthToken => "auth_token",
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
    /// A token file (the container authorization token, the web identity token) that cannot be
    /// read, or whose content the SDKs refuse (a line break in a header value, an empty file).
    TokenFile,
    /// Already expired: the web identity token's `exp` (the exchange would fail), or the
    /// container endpoint's credentials (botocore refuses them).
    Expired,
    /// STS answered with an error code that refuses the request (`ExpiredToken`,
    /// `SignatureDoesNotMatch`, `InvalidClientTokenId`, ...: the `code` label says which).
    Rejected,
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

    /// The container probe: IMDS's HTTP reasons, expired credentials (which botocore's container
    /// provider refuses), and, last, the authorization token file: all but the last are the
    /// credentials request's reasons ([`Probe::expected_failures`]).
    pub const CONTAINER: [Reason; 12] = [
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
        Reason::Expired,
        Reason::TokenFile,
    ];

    /// The web identity probe: the token file, its expiry, and (opt-in) the exchange.
    pub const WEB_IDENTITY: [Reason; 9] = [
        Reason::TokenFile,
        Reason::InvalidResponse,
        Reason::Expired,
        Reason::Timeout,
        Reason::Connect,
        Reason::Throttled,
        Reason::ServerError,
        Reason::HttpOther,
        Reason::Rejected,
    ];

    /// The STS probe: fetching the credentials (IMDS's and the container's reasons), then STS.
    pub const STS: [Reason; 12] = [
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
        Reason::TokenFile,
        Reason::Rejected,
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
            Reason::TokenFile => "token_file",
            Reason::Expired => "expired",
            Reason::Rejected => "rejected",
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

/// Whose credentials an STS request carried (`source` label of the `imds_sts_*` families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The instance profile's, from IMDS (signed `GetCallerIdentity`).
    Imds,
    /// The container endpoint's (signed `GetCallerIdentity`).
    Container,
    /// The web identity token (`AssumeRoleWithWebIdentity`, unsigned).
    WebIdentity,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Imds => "imds",
            Source::Container => "container",
            Source::WebIdentity => "web_identity",
        }
    }
}

/// What STS answered (`code` label): success, or the AWS error code, classified into a closed
/// set. Codes outside it are `other` (the log line names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StsCode {
    Ok,
    /// `ExpiredToken` (signed requests), `ExpiredTokenException` (a web identity token).
    ExpiredToken,
    /// `SignatureDoesNotMatch`: a wrong secret, or (STS's words: "Signature expired") a clock
    /// more than 5 minutes off.
    SignatureDoesNotMatch,
    /// `RequestTimeTooSkewed`, `RequestExpired`: the request's time is too far from AWS's.
    RequestTimeTooSkewed,
    /// `InvalidClientTokenId`: the access key or session token is not known to AWS.
    InvalidClientTokenId,
    /// `InvalidIdentityToken`: the web identity token was refused (issuer, audience, signature).
    InvalidIdentityToken,
    /// `AccessDenied`, `AccessDeniedException`.
    AccessDenied,
    /// `Throttling`, `ThrottlingException`, `RequestLimitExceeded`.
    Throttling,
    /// Any other code, or an error body without one.
    Other,
}

impl StsCode {
    pub const ALL: [StsCode; 9] = [
        StsCode::Ok,
        StsCode::ExpiredToken,
        StsCode::SignatureDoesNotMatch,
        StsCode::RequestTimeTooSkewed,
        StsCode::InvalidClientTokenId,
        StsCode::InvalidIdentityToken,
        StsCode::AccessDenied,
        StsCode::Throttling,
        StsCode::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StsCode::Ok => "ok",
            StsCode::ExpiredToken => "expired_token",
            StsCode::SignatureDoesNotMatch => "signature_does_not_match",
            StsCode::RequestTimeTooSkewed => "request_time_too_skewed",
            StsCode::InvalidClientTokenId => "invalid_client_token_id",
            StsCode::InvalidIdentityToken => "invalid_identity_token",
            StsCode::AccessDenied => "access_denied",
            StsCode::Throttling => "throttling",
            StsCode::Other => "other",
        }
    }

    /// The class of an AWS error `Code` element's text.
    pub fn from_aws(code: &str) -> StsCode {
        match code.trim() {
            "ExpiredToken" | "ExpiredTokenException" => StsCode::ExpiredToken,
            "SignatureDoesNotMatch" => StsCode::SignatureDoesNotMatch,
            "RequestTimeTooSkewed" | "RequestExpired" => StsCode::RequestTimeTooSkewed,
            "InvalidClientTokenId" => StsCode::InvalidClientTokenId,
            "InvalidIdentityToken" => StsCode::InvalidIdentityToken,
            "AccessDenied" | "AccessDeniedException" => StsCode::AccessDenied,
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => StsCode::Throttling,
            _ => StsCode::Other,
        }
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
        for p in Phase::ALL_IMDS.iter().chain(&[Phase::AuthToken]) {
            assert!(seen.insert(p.as_str()));
        }
        let all = [
            &Reason::IMDS[..],
            &Reason::NTP,
            &Reason::CONTAINER,
            &Reason::WEB_IDENTITY,
            &Reason::STS,
        ];
        for c in StsCode::ALL {
            assert!(seen.insert(c.as_str()), "{}", c.as_str());
        }
        for r in all.into_iter().flatten() {
            let s = r.as_str();
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn aws_error_codes_are_classified() {
        for (code, want) in [
            ("ExpiredToken", "expired_token"),
            ("ExpiredTokenException", "expired_token"),
            ("SignatureDoesNotMatch", "signature_does_not_match"),
            ("RequestTimeTooSkewed", "request_time_too_skewed"),
            ("RequestExpired", "request_time_too_skewed"),
            ("InvalidClientTokenId", "invalid_client_token_id"),
            ("InvalidIdentityToken", "invalid_identity_token"),
            ("AccessDenied", "access_denied"),
            ("Throttling", "throttling"),
            ("IDPCommunicationError", "other"),
            ("", "other"),
        ] {
            assert_eq!(StsCode::from_aws(code).as_str(), want, "{code}");
        }
    }
}
