//! The documents IMDS serves, parsed without ever holding a secret, and rotation tracking.
//!
//! Owns: parsing the role list, the credentials document, `iam/info` and the identity document
//! into small typed values; detecting rotation. Everything here is pure (time comes in as an
//! argument) so it is tested with tables. It does not own any I/O (see [`super::imds`]).
//!
//! Secrets: the credentials document's `SecretAccessKey` and `Token` are not fields of any type
//! here: their presence is noted (the SDKs require both) with `IgnoredAny`, which skips a value
//! unread, so they are never copied into our memory as values. The document is parsed as it
//! streams in ([`inspect_credentials`] reads any `io::Read`), so no buffer ever holds all of it. Even `AccessKeyId` (not a secret, but an
//! identifier) is kept only as a keyed hash, enough to notice that it changed.

use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::labels::Reason;
use crate::probe::imds::sdk::{Code, DocShape, RoleShape};

/// Longest label value taken from IMDS data; longer values are cut (a hostile IMDS must not be
/// able to blow up the exposition).
pub const MAX_LABEL_LEN: usize = 128;

/// Longest instance profile ARN kept whole: `arn:aws:iam::<account>:instance-profile/` plus an
/// IAM path (up to 512 characters) and a name (up to 128). Cutting real ARNs at 128 would let two
/// profiles with long paths share a label value.
pub const MAX_ARN_LEN: usize = 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON. Only serde's category and position are kept: its messages can quote input.
    #[error("body is not valid JSON ({category} at line {line} column {column})")]
    NotJson {
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("document has no {0}")]
    MissingField(&'static str),
    #[error("{field} is not an RFC 3339 timestamp")]
    BadTimestamp { field: &'static str },
    #[error("Code is {code:?}, not \"Success\"")]
    CodeNotSuccess { code: String },
    #[error("role list is empty")]
    EmptyRoleList,
    #[error("role name is not a valid IAM role name")]
    BadRoleName,
    #[error("the document could not be read to its end")]
    Unreadable,
}

impl ParseError {
    pub fn reason(&self) -> Reason {
        match self {
            ParseError::CodeNotSuccess { .. } => Reason::CodeNotSuccess,
            _ => Reason::InvalidResponse,
        }
    }
}

fn not_json(e: serde_json::Error) -> ParseError {
    let category = match e.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected type",
        serde_json::error::Category::Eof => "unexpected end of input",
    };
    ParseError::NotJson {
        category,
        line: e.line(),
        column: e.column(),
    }
}

fn parse_timestamp(field: &'static str, value: &str) -> Result<DateTime<Utc>, ParseError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ParseError::BadTimestamp { field })
}

/// Cuts a value from IMDS to a safe label: printable, no control characters, bounded length.
pub fn label_value(raw: &str) -> String {
    bounded_label_value(raw, MAX_LABEL_LEN)
}

fn bounded_label_value(raw: &str, max: usize) -> String {
    raw.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// The role name from `GET /latest/meta-data/iam/security-credentials/`: the first line, as the
/// SDKs take it. IAM role names are `[\w+=,.@-]{1,64}`; anything else (a `/`, a space) would be
/// spliced into the next URL, so it is rejected.
pub fn parse_role_list(body: &[u8]) -> Result<String, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::BadRoleName)?;
    let role = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or(ParseError::EmptyRoleList)?;
    let valid = role.len() <= 64
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if valid {
        Ok(role.to_string())
    } else {
        Err(ParseError::BadRoleName)
    }
}

/// The role list's shape, as the SDKs read it (see `sdk::RoleShape`).
pub fn role_shape(body: &[u8]) -> RoleShape {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    RoleShape {
        named: parse_role_list(body).is_ok(),
        newline: text.contains(['\n', '\r']),
        more_lines: {
            lines.next();
            lines.next().is_some()
        },
    }
}

/// What we keep of a credentials document. Deliberately no secret fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsDoc {
    pub expiration: DateTime<Utc>,
    pub last_updated: Option<DateTime<Utc>>,
    /// Keyed hash of `AccessKeyId`: enough to see it change, useless to anyone else.
    pub key_id_hash: u64,
}

#[derive(Deserialize)]
struct RawCredentials {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "LastUpdated")]
    last_updated: Option<String>,
    #[serde(rename = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: Option<String>,
    // Present or not; the value is skipped unread, never stored.
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Option<IgnoredAny>,
    #[serde(rename = "Token")]
    token: Option<IgnoredAny>,
}

/// A credentials document as the exporter reads it, and its shape as the SDKs would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The exporter's own reading: the document, or why it is not usable.
    pub document: Result<CredentialsDoc, ParseError>,
    pub shape: DocShape,
}

/// Hashes an `AccessKeyId` with a per-process random key.
#[derive(Clone, Default)]
pub struct KeyIdHasher(RandomState);

impl KeyIdHasher {
    pub fn hash(&self, key_id: &str) -> u64 {
        self.0.hash_one(key_id)
    }
}

/// Parses `GET .../security-credentials/<role>` from a body already read.
pub fn parse_credentials(body: &[u8], hasher: &KeyIdHasher) -> Result<CredentialsDoc, ParseError> {
    inspect_credentials(body, hasher)?.document
}

/// Parses a credentials document as it is read from `reader`, in constant memory (fields other
/// than the four kept are skipped unread, however long). `Err` only when it is not a JSON object.
///
/// IMDS reports errors such as `AssumeRoleUnauthorizedAccess` with HTTP 200 and a `Code`, so the
/// `Code` is checked first. `Code`, `LastUpdated` and `Type` are optional (some emulators omit
/// them, and botocore does not need them); `Expiration` and `AccessKeyId` are required.
pub fn inspect_credentials(
    reader: impl std::io::Read,
    hasher: &KeyIdHasher,
) -> Result<Inspection, ParseError> {
    let raw: RawCredentials = serde_json::from_reader(reader).map_err(not_json)?;
    let expiration = raw
        .expiration
        .as_deref()
        .map(|v| parse_timestamp("Expiration", v));
    let shape = DocShape {
        json: true,
        complete: raw.access_key_id.as_deref().is_some_and(|k| !k.is_empty())
            && raw.secret_access_key.is_some()
            && raw.token.is_some()
            && matches!(expiration, Some(Ok(_))),
        code: match raw.code.as_deref() {
            None => Code::Absent,
            Some(c) if c.eq_ignore_ascii_case("Success") => Code::Success,
            Some(_) => Code::Other,
        },
    };
    Ok(Inspection {
        document: document(&raw, expiration, hasher),
        shape,
    })
}

fn document(
    raw: &RawCredentials,
    expiration: Option<Result<DateTime<Utc>, ParseError>>,
    hasher: &KeyIdHasher,
) -> Result<CredentialsDoc, ParseError> {
    if let Some(code) = raw.code.as_deref()
        && code != "Success"
    {
        return Err(ParseError::CodeNotSuccess {
            code: label_value(code),
        });
    }
    let key_id = raw
        .access_key_id
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(ParseError::MissingField("AccessKeyId"))?;
    let expiration = expiration.ok_or(ParseError::MissingField("Expiration"))??;
    let last_updated = match raw.last_updated.as_deref() {
        Some(v) => Some(parse_timestamp("LastUpdated", v)?),
        None => None,
    };
    Ok(CredentialsDoc {
        expiration,
        last_updated,
        key_id_hash: hasher.hash(key_id),
    })
}

/// `GET /latest/meta-data/iam/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProfile {
    pub arn: String,
}

#[derive(Deserialize)]
struct RawInfo {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "InstanceProfileArn")]
    instance_profile_arn: Option<String>,
}

pub fn parse_info(body: &[u8]) -> Result<InstanceProfile, ParseError> {
    let raw: RawInfo = serde_json::from_slice(body).map_err(not_json)?;
    if let Some(code) = raw.code.as_deref()
        && code != "Success"
    {
        return Err(ParseError::CodeNotSuccess {
            code: label_value(code),
        });
    }
    let arn = raw
        .instance_profile_arn
        .ok_or(ParseError::MissingField("InstanceProfileArn"))?;
    Ok(InstanceProfile {
        arn: bounded_label_value(&arn, MAX_ARN_LEN),
    })
}

/// The fields of the instance identity document that become `imds_instance_info` labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    pub account_id: String,
    pub image_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIdentity {
    instance_id: Option<String>,
    instance_type: Option<String>,
    region: Option<String>,
    availability_zone: Option<String>,
    account_id: Option<String>,
    image_id: Option<String>,
}

pub fn parse_identity(body: &[u8]) -> Result<Identity, ParseError> {
    let raw: RawIdentity = serde_json::from_slice(body).map_err(not_json)?;
    let instance_id = raw
        .instance_id
        .ok_or(ParseError::MissingField("instanceId"))?;
    let v = |o: Option<String>| label_value(o.as_deref().unwrap_or(""));
    Ok(Identity {
        instance_id: label_value(&instance_id),
        instance_type: v(raw.instance_type),
        region: v(raw.region),
        availability_zone: v(raw.availability_zone),
        account_id: v(raw.account_id),
        image_id: v(raw.image_id),
    })
}

/// A rotation: the `AccessKeyId` changed between two successful fetches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    pub at: DateTime<Utc>,
    /// How long the old credentials still had to live when the new ones were first seen.
    /// AWS promises at least five minutes; negative means they had already expired.
    pub lead_seconds: f64,
}

/// Remembers the last credentials seen (as a hash and an expiry) to detect rotation.
#[derive(Debug, Default)]
pub struct RotationTracker {
    last: Option<(u64, DateTime<Utc>)>,
}

impl RotationTracker {
    /// Records a successful fetch at `now`; returns the rotation if the key changed. The first
    /// document seen is not a rotation: we do not know when it appeared.
    pub fn observe(&mut self, doc: &CredentialsDoc, now: DateTime<Utc>) -> Option<Rotation> {
        let previous = self.last.replace((doc.key_id_hash, doc.expiration));
        match previous {
            Some((hash, old_expiration)) if hash != doc.key_id_hash => Some(Rotation {
                at: now,
                lead_seconds: (old_expiration - now).num_milliseconds() as f64 / 1000.0,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Reason;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const GOOD: &str = r#"{
  "Code" : "Success",
  "LastUpdated" : "2026-11-22T03:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAEXAMPLEEXAMPLE01",
  "SecretAccessKey" : "very-secret-value",
  "Token" : "very-secret-token",
  "Expiration" : "2026-11-22T09:00:00Z"
}"#;

    #[test]
    fn a_complete_document_parses() {
        let doc = parse_credentials(GOOD.as_bytes(), &KeyIdHasher::default()).unwrap();
        assert_eq!(doc.expiration, ts("2026-11-22T09:00:00Z"));
        assert_eq!(doc.last_updated, Some(ts("2026-11-22T03:00:00Z")));
    }

    #[test]
    fn code_last_updated_and_type_are_optional() {
        let body = r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2026-11-22T09:00:00Z"}"#;
        let doc = parse_credentials(body.as_bytes(), &KeyIdHasher::default()).unwrap();
        assert_eq!(doc.last_updated, None);
    }

    #[test]
    fn invalid_documents_are_classified() {
        let cases: &[(&str, Reason, &str)] = &[
            ("not json", Reason::InvalidResponse, "not valid JSON"),
            (
                r#"{"AccessKeyId":"A","Expir"#,
                Reason::InvalidResponse,
                "end of input",
            ),
            (
                r#"{"AccessKeyId":"A"}"#,
                Reason::InvalidResponse,
                "no Expiration",
            ),
            (
                r#"{"Expiration":"2026-11-22T09:00:00Z"}"#,
                Reason::InvalidResponse,
                "no AccessKeyId",
            ),
            (
                r#"{"AccessKeyId":"A","Expiration":"tomorrow"}"#,
                Reason::InvalidResponse,
                "Expiration is not",
            ),
            (
                r#"{"AccessKeyId":"A","Expiration":"2026-11-22T09:00:00Z","LastUpdated":"x"}"#,
                Reason::InvalidResponse,
                "LastUpdated is not",
            ),
            (
                r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"EC2 cannot assume the role"}"#,
                Reason::CodeNotSuccess,
                "AssumeRoleUnauthorizedAccess",
            ),
            ("[]", Reason::InvalidResponse, "unexpected type"),
        ];
        for (body, reason, text) in cases {
            let err = parse_credentials(body.as_bytes(), &KeyIdHasher::default()).unwrap_err();
            assert_eq!(err.reason(), *reason, "{body}");
            assert!(err.to_string().contains(text), "{body}: {err}");
        }
    }

    #[test]
    fn parse_errors_never_quote_the_secrets() {
        // A document where the secret sits right before the error position.
        let body =
            r#"{"SecretAccessKey":"very-secret-value","Token":"very-secret-token","Expiration":42"#;
        let err = parse_credentials(body.as_bytes(), &KeyIdHasher::default()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        let doc = parse_credentials(GOOD.as_bytes(), &KeyIdHasher::default()).unwrap();
        let shown = format!("{doc:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("ASIAEXAMPLE"),
            "{shown}"
        );
    }

    #[test]
    fn role_list_takes_the_first_line_and_rejects_path_characters() {
        assert_eq!(parse_role_list(b"my-role\nother\n").unwrap(), "my-role");
        assert_eq!(
            parse_role_list(b"\n  role.with+chars=,@_-  \n").unwrap(),
            "role.with+chars=,@_-"
        );
        assert_eq!(parse_role_list(b"\n\n"), Err(ParseError::EmptyRoleList));
        assert_eq!(parse_role_list(b"../../etc"), Err(ParseError::BadRoleName));
        assert_eq!(parse_role_list(b"a b"), Err(ParseError::BadRoleName));
        assert_eq!(parse_role_list(&[0xff, 0xfe]), Err(ParseError::BadRoleName));
    }

    #[test]
    fn identity_and_info_documents_parse() {
        let id = parse_identity(
            br#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1a",
                "imageId":"ami-1","instanceId":"i-0abc","instanceType":"m7g.large","region":"eu-west-1"}"#,
        )
        .unwrap();
        assert_eq!(id.instance_id, "i-0abc");
        assert_eq!(id.availability_zone, "eu-west-1a");
        assert!(parse_identity(b"{}").is_err());
        let info = parse_info(
            br#"{"Code":"Success","LastUpdated":"2026-11-22T03:00:00Z",
                "InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/web","InstanceProfileId":"AIPA"}"#,
        )
        .unwrap();
        assert_eq!(info.arn, "arn:aws:iam::123456789012:instance-profile/web");
    }

    #[test]
    fn label_values_are_bounded_and_printable() {
        let long = "x".repeat(1000);
        assert_eq!(label_value(&long).len(), MAX_LABEL_LEN);
        assert_eq!(label_value("a\nb\u{0}c"), "abc");
        // A real ARN with a long IAM path is kept whole; a hostile one is still bounded.
        let path = "p/".repeat(250);
        let arn = format!("arn:aws:iam::123456789012:instance-profile/{path}name");
        assert_eq!(bounded_label_value(&arn, MAX_ARN_LEN), arn);
        assert_eq!(
            bounded_label_value(&"x".repeat(5000), MAX_ARN_LEN).len(),
            MAX_ARN_LEN
        );
    }

    #[test]
    fn rotation_is_the_key_changing_and_lead_is_the_old_remaining_life() {
        let hasher = KeyIdHasher::default();
        let doc = |key: &str, exp: &str| CredentialsDoc {
            expiration: ts(exp),
            last_updated: None,
            key_id_hash: hasher.hash(key),
        };
        let mut t = RotationTracker::default();
        assert_eq!(
            t.observe(
                &doc("A", "2026-11-22T09:00:00Z"),
                ts("2026-11-22T03:00:00Z")
            ),
            None
        );
        assert_eq!(
            t.observe(
                &doc("A", "2026-11-22T09:00:00Z"),
                ts("2026-11-22T03:30:00Z")
            ),
            None
        );
        let r = t
            .observe(
                &doc("B", "2026-11-22T10:00:00Z"),
                ts("2026-11-22T04:00:00Z"),
            )
            .unwrap();
        assert_eq!(r.lead_seconds, 5.0 * 3600.0);
        assert_eq!(r.at, ts("2026-11-22T04:00:00Z"));
        // Late: the new key shows up two minutes before the old one expires.
        let r = t
            .observe(
                &doc("C", "2026-11-22T16:00:00Z"),
                ts("2026-11-22T09:58:00Z"),
            )
            .unwrap();
        assert_eq!(r.lead_seconds, 120.0);
        // Too late: already expired.
        let r = t
            .observe(
                &doc("D", "2026-11-22T22:00:00Z"),
                ts("2026-11-22T16:01:00Z"),
            )
            .unwrap();
        assert_eq!(r.lead_seconds, -60.0);
    }
}
