//! One request to STS and what its answer means: the client, the SigV4 signature (AWS's own
//! `aws-sigv4` crate, never by hand), the body read into a wiping buffer, and the pure parse of
//! the answer (the `Code` of an error, the `Arn` of a success, the `Date` header).
//!
//! Secrets: [`SigningSecrets`] holds a credentials document's key, secret and session token in
//! wiping buffers, with a redacted `Debug`; it exists only between the STS probe's own fetch and
//! the signature, and is dropped with the request. The signed request's `Authorization` and
//! `X-Amz-Security-Token` headers are never logged. An answer's body (an
//! `AssumeRoleWithWebIdentity` answer carries new credentials) is read into a wiping buffer of at
//! most [`MAX_ANSWER_BYTES`], searched for two elements, and dropped. (The request body and the
//! client's own buffers are reqwest's, which does not wipe them.)

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::labels::{Reason, StsCode};
use crate::probe::credentials::label_value;

/// STS answers are a few hundred bytes; anything much larger is not STS.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The query API's version, for both actions.
pub const API_VERSION: &str = "2011-06-15";

/// Credentials to sign one request with. `Debug` is redacted; the buffers are wiped on drop.
pub struct SigningSecrets {
    pub access_key_id: Zeroizing<String>,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecrets(<redacted>)")
    }
}

#[derive(serde::Deserialize)]
struct RawSecrets<'a> {
    #[serde(rename = "AccessKeyId", borrow)]
    access_key_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "SecretAccessKey", borrow)]
    secret_access_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Token", borrow)]
    token: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "RoleArn", borrow)]
    role_arn: Option<std::borrow::Cow<'a, str>>,
}

/// The secrets of a credentials document (IMDS's or the container endpoint's), read from a
/// body the caller wipes, and the role its `RoleArn` names (ECS), if any. `None`: not a usable
/// document (the probes that keep no secret say why; this one only needs to sign).
pub fn parse_secrets(body: &[u8]) -> Option<(SigningSecrets, Option<String>)> {
    let raw: RawSecrets = serde_json::from_slice(body).ok()?;
    let wipe = |c: std::borrow::Cow<'_, str>| Zeroizing::new(c.into_owned());
    let secrets = SigningSecrets {
        access_key_id: wipe(raw.access_key_id.filter(|k| !k.is_empty())?),
        secret_access_key: wipe(raw.secret_access_key.filter(|k| !k.is_empty())?),
        session_token: raw.token.map(wipe),
    };
    let role = raw.role_arn.as_deref().and_then(role_of_arn);
    Some((secrets, role))
}

/// The role name in an IAM role ARN (`arn:aws:iam::1:role/path/name`) or an assumed-role ARN
/// (`arn:aws:sts::1:assumed-role/name/session`).
pub fn role_of_arn(arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let role = if let Some(rest) = resource.strip_prefix("assumed-role/") {
        rest.split('/').next()?
    } else if let Some(rest) = resource.strip_prefix("role/") {
        rest.rsplit('/').next()?
    } else {
        return None;
    };
    (!role.is_empty()).then(|| label_value(role))
}

/// The text of the first `<name>...</name>` element, unescaped, bounded, printable.
pub fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let text = xml[start..end]
        .trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    Some(label_value(&text))
}

/// What an STS answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// HTTP 200 with the caller's (or the assumed role's) ARN.
    Accepted { arn: String },
    /// An AWS error: the class, the code as sent (for the log), the HTTP status.
    Refused {
        code: StsCode,
        aws_code: String,
        status: u16,
    },
    /// Not an STS answer: a status without an error document, or a 200 without an ARN.
    Unusable { status: u16 },
}

impl Verdict {
    /// The `code` label, for answers that are STS's.
    pub fn code(&self) -> Option<StsCode> {
        match self {
            Verdict::Accepted { .. } => Some(StsCode::Ok),
            Verdict::Refused { code, .. } => Some(*code),
            Verdict::Unusable { .. } => None,
        }
    }

    /// Why the run fails, if it does.
    pub fn failure(&self) -> Option<Reason> {
        match self {
            Verdict::Accepted { .. } => None,
            Verdict::Refused {
                code: StsCode::Throttling,
                ..
            } => Some(Reason::Throttled),
            Verdict::Refused { .. } => Some(Reason::Rejected),
            Verdict::Unusable { status } if *status >= 500 => Some(Reason::ServerError),
            Verdict::Unusable { status: 200 } => Some(Reason::InvalidResponse),
            Verdict::Unusable { .. } => Some(Reason::HttpOther),
        }
    }
}

/// The verdict of an answer: `element` name of the ARN in a success (`Arn` for
/// `GetCallerIdentity`; `AssumedRoleUser`'s `Arn` for the web identity exchange, which is the
/// first `Arn` in its document too).
pub fn verdict(status: u16, body: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(body);
    if status == 200 {
        return match element(&text, "Arn") {
            Some(arn) if !arn.is_empty() => Verdict::Accepted { arn },
            _ => Verdict::Unusable { status },
        };
    }
    match element(&text, "Code") {
        Some(aws_code) if !aws_code.is_empty() => Verdict::Refused {
            code: StsCode::from_aws(&aws_code),
            aws_code,
            status,
        },
        _ => Verdict::Unusable { status },
    }
}

/// STS's clock minus ours, from an answer's `Date` header (RFC 1123, whole seconds): the server
/// wrote it between `sent` and `received`, at some time in `[Date, Date + 1 s)`; the estimate is
/// the middle of that second minus the middle of the exchange, good to ±(0.5 s + half the round
/// trip). Positive: the local clock is behind (NTP's sign).
pub fn clock_skew(date: &str, sent: DateTime<Utc>, received: DateTime<Utc>) -> Option<f64> {
    let server = DateTime::parse_from_rfc2822(date.trim())
        .ok()?
        .with_timezone(&Utc);
    let middle = sent + (received - sent) / 2;
    Some((server - middle).num_milliseconds() as f64 / 1000.0 + 0.5)
}

/// An answer, read: the status, the `Date` header, the body (wiped on drop).
pub struct Answer {
    pub status: u16,
    pub date: Option<String>,
    pub body: Zeroizing<Vec<u8>>,
    pub sent: DateTime<Utc>,
    pub received: DateTime<Utc>,
}

/// Why a request got no answer. Never holds a header or a body.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("cannot sign the request: {0}")]
    Signing(String),
}

impl SendError {
    pub fn reason(&self) -> Reason {
        match self {
            SendError::Timeout(_) => Reason::Timeout,
            SendError::Connect(_) => Reason::Connect,
            SendError::TooLarge | SendError::Signing(_) => Reason::InvalidResponse,
        }
    }
}

/// An HTTP client for STS: HTTPS (rustls, *ring*), proxies from the environment as the SDKs
/// honour them, no redirects, no retries, one deadline per request.
#[derive(Clone)]
pub struct StsHttp {
    client: reqwest::Client,
    timeout: Duration,
}

impl StsHttp {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::probe::client_tls::install_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .user_agent(concat!("imds_exporter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, timeout })
    }

    /// `GetCallerIdentity`, signed with `secrets` for `region` (service `sts`).
    pub async fn caller_identity(
        &self,
        url: &str,
        region: &str,
        secrets: &SigningSecrets,
    ) -> Result<Answer, SendError> {
        let body = format!("Action=GetCallerIdentity&Version={API_VERSION}");
        let signed = sign(url, region, secrets, body.as_bytes(), SystemTime::now())?;
        self.post(url, signed, body.into_bytes()).await
    }

    /// `AssumeRoleWithWebIdentity`: unsigned; the token is in the (wiped) form body.
    pub async fn assume_role_with_web_identity(
        &self,
        url: &str,
        role_arn: &str,
        session_name: &str,
        token: &str,
    ) -> Result<Answer, SendError> {
        let token = Zeroizing::new(form_encode(token));
        let body = Zeroizing::new(format!(
            "Action=AssumeRoleWithWebIdentity&Version={API_VERSION}&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
            form_encode(role_arn),
            form_encode(session_name),
            token.as_str()
        ));
        self.post(url, Vec::new(), body.as_bytes().to_vec()).await
    }

    async fn post(
        &self,
        url: &str,
        headers: Vec<(String, Zeroizing<String>)>,
        body: Vec<u8>,
    ) -> Result<Answer, SendError> {
        let sent = Utc::now();
        let mut request = self
            .client
            .post(url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header("accept", "text/xml");
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let exchange = async {
            let mut response = request.body(body).send().await.map_err(transport)?;
            let status = response.status().as_u16();
            let date = response
                .headers()
                .get("date")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let received = Utc::now();
            let mut buf = Zeroizing::new(Vec::with_capacity(4096));
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(SendError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                date,
                body: buf,
                sent,
                received,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }
}

/// `application/x-www-form-urlencoded` for a value: everything but the unreserved characters
/// percent-encoded (the token and the ARN hold `:`, `/`, `.`, `-`, `_`).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The innermost cause, without the URL the outer layers add.
fn transport(e: reqwest::Error) -> SendError {
    let mut cause: &(dyn std::error::Error + 'static) = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    SendError::Connect(cause.to_string())
}

/// The headers that sign a POST of `body` to `url` (with `content-type` as [`StsHttp`] sends
/// it), by `aws-sigv4`: `authorization`, `x-amz-date`, `x-amz-security-token` when there is a
/// session token. Their values are wiped when dropped.
pub fn sign(
    url: &str,
    region: &str,
    secrets: &SigningSecrets,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, Zeroizing<String>)>, SendError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let signing = |e: &dyn fmt::Display| SendError::Signing(e.to_string());
    let credentials = aws_credential_types::Credentials::new(
        secrets.access_key_id.as_str(),
        secrets.secret_access_key.as_str(),
        secrets.session_token.as_ref().map(|t| t.to_string()),
        None,
        "imds_exporter",
    );
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .ok_or_else(|| SendError::Signing("the STS URL has no host".into()))?;
    let headers = [
        ("host", host.as_str()),
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
    ];
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| signing(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing(&e))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>ExpiredToken</Code>
    <Message>The security token included in the request is expired</Message>
  </Error>
  <RequestId>4b8d2f3a</RequestId>
</ErrorResponse>"#;

    const IDENTITY: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/web-role/i-0abc</Arn>
    <UserId>AROAEXAMPLE:i-0abc</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
</GetCallerIdentityResponse>"#;

    #[test]
    fn answers_are_classified_by_their_code() {
        let cases: &[(u16, &str, Option<StsCode>, Option<Reason>)] = &[
            (200, IDENTITY, Some(StsCode::Ok), None),
            (
                400,
                EXPIRED,
                Some(StsCode::ExpiredToken),
                Some(Reason::Rejected),
            ),
            (
                400,
                "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>",
                Some(StsCode::Throttling),
                Some(Reason::Throttled),
            ),
            (
                403,
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>",
                Some(StsCode::SignatureDoesNotMatch),
                Some(Reason::Rejected),
            ),
            (
                403,
                "<ErrorResponse><Error><Code>NewCodeNobodyKnows</Code></Error></ErrorResponse>",
                Some(StsCode::Other),
                Some(Reason::Rejected),
            ),
            (503, "<html>busy</html>", None, Some(Reason::ServerError)),
            (404, "", None, Some(Reason::HttpOther)),
            (200, "<Nothing/>", None, Some(Reason::InvalidResponse)),
        ];
        for (status, body, code, reason) in cases {
            let v = verdict(*status, body.as_bytes());
            assert_eq!(v.code(), *code, "{status} {body}");
            assert_eq!(v.failure(), *reason, "{status} {body}");
        }
        assert_eq!(
            verdict(200, IDENTITY.as_bytes()),
            Verdict::Accepted {
                arn: "arn:aws:sts::123456789012:assumed-role/web-role/i-0abc".into()
            }
        );
    }

    #[test]
    fn roles_are_read_from_arns() {
        for (arn, role) in [
            (
                "arn:aws:sts::123456789012:assumed-role/web-role/i-0abc",
                Some("web-role"),
            ),
            (
                "arn:aws:iam::123456789012:role/path/to/app-role",
                Some("app-role"),
            ),
            ("arn:aws:iam::123456789012:role/app-role", Some("app-role")),
            ("arn:aws:sts::123456789012:user/moto", None),
            ("nonsense", None),
        ] {
            assert_eq!(role_of_arn(arn).as_deref(), role, "{arn}");
        }
    }

    #[test]
    fn the_skew_is_read_from_the_date_header_to_the_second() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let sent = t("2026-12-05T06:00:00.100Z");
        let received = t("2026-12-05T06:00:00.300Z");
        // STS 10 s ahead: it wrote 06:00:10 somewhere in the exchange.
        let skew = clock_skew("Sat, 05 Dec 2026 06:00:10 GMT", sent, received).unwrap();
        assert!((skew - 10.3).abs() < 0.001, "{skew}");
        // In step: within the second's resolution.
        let skew = clock_skew("Sat, 05 Dec 2026 06:00:00 GMT", sent, received).unwrap();
        assert!(skew.abs() <= 0.5, "{skew}");
        assert_eq!(clock_skew("yesterday", sent, received), None);
    }

    #[test]
    fn secrets_are_parsed_into_redacted_wiping_buffers() {
        let (s, role) = parse_secrets(
            br#"{"AccessKeyId":"ASIAX","SecretAccessKey":"very-secret","Token":"tok","RoleArn":"arn:aws:iam::1:role/task"}"#,
        )
        .unwrap();
        assert_eq!(s.secret_access_key.as_str(), "very-secret");
        assert_eq!(role.as_deref(), Some("task"));
        assert_eq!(format!("{s:?}"), "SigningSecrets(<redacted>)");
        assert!(parse_secrets(br#"{"AccessKeyId":"A"}"#).is_none());
        assert!(parse_secrets(b"not json").is_none());
    }

    #[test]
    fn the_signature_is_aws_sigv4s_and_carries_the_session_token() {
        let secrets = SigningSecrets {
            access_key_id: Zeroizing::new("AKIDEXAMPLE".into()),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: Some(Zeroizing::new("session-token-value".into())),
        };
        let headers = sign(
            "https://sts.eu-west-1.amazonaws.com/",
            "eu-west-1",
            &secrets,
            b"Action=GetCallerIdentity&Version=2011-06-15",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let auth = get("authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20270115/eu-west-1/sts/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(get("x-amz-security-token"), "session-token-value");
        assert_eq!(get("x-amz-date"), "20270115T080000Z");
    }
}
