//! The documents IMDS serves, parsed without ever holding a secret, and rotation tracking.
//!
//! Owns: parsing the role list, the credentials document, `iam/info` and the identity document
//! into small typed values; detecting rotation. Everything here is pure (time comes in as an
//! argument) so it is tested with tables. It does not own any I/O (see [`super::imds`]).
//!
//! Secrets: the credentials document's `SecretAccessKey` and `Token` are not fields of any type
//! here: their presence is noted (the SDKs require both) with `IgnoredAny`, which skips a value
//! unread (in [`super::document`], which reads a JSON object as the SDKs do), so they are never
//! copied into our memory as values. The document is parsed as it
//! streams in ([`inspect_credentials`] reads any `io::Read`), so no buffer ever holds all of it. Even `AccessKeyId` (not a secret, but an
//! identifier) is kept only as a keyed hash, enough to notice that it changed.

use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};

use crate::labels::Reason;
use crate::probe::document::{self, Field};
use crate::probe::imds::sdk::{Code, DocShape, RoleShape};
use crate::untrusted;

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
    #[error("{0} is not a string")]
    NotAString(&'static str),
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
        _ if document::is_not_utf8(&e) => "invalid UTF-8",
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

/// Cuts a value from IMDS to a safe label: no control, format or separator character
/// ([`untrusted::is_hidden`]: a bidi override would make a dashboard show another value),
/// bounded length (in characters).
pub fn label_value(raw: &str) -> String {
    bounded_label_value(raw, MAX_LABEL_LEN)
}

fn bounded_label_value(raw: &str, max: usize) -> String {
    raw.chars()
        .filter(|&c| !untrusted::is_hidden(c))
        .take(max)
        .collect()
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
    if untrusted::is_role_name(role) {
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

/// The keys of a credentials document we read: their string values.
const CODE: usize = 0;
const LAST_UPDATED: usize = 1;
const ACCESS_KEY_ID: usize = 2;
const EXPIRATION: usize = 3;
const CREDENTIALS_TEXT: &[&str] = &["Code", "LastUpdated", "AccessKeyId", "Expiration"];
/// The secrets: whether they are there, never their values.
const CREDENTIALS_SECRETS: &[&str] = &["SecretAccessKey", "Token"];

/// A string field: `Ok(None)` when absent (or `null`), an error when it is not a string.
fn text<'a>(field: &'a Option<Field>, name: &'static str) -> Result<Option<&'a str>, ParseError> {
    match field {
        None => Ok(None),
        Some(Field::Text(s)) => Ok(Some(s)),
        Some(Field::NotText) => Err(ParseError::NotAString(name)),
    }
}

/// IMDS reports errors such as `AssumeRoleUnauthorizedAccess` with HTTP 200 and a `Code`.
fn check_code(field: &Option<Field>) -> Result<(), ParseError> {
    match text(field, "Code")? {
        Some(code) if code != "Success" => Err(ParseError::CodeNotSuccess {
            code: label_value(code),
        }),
        _ => Ok(()),
    }
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
    let raw =
        document::from_reader(reader, CREDENTIALS_TEXT, CREDENTIALS_SECRETS).map_err(not_json)?;
    let expiration = match &raw.text[EXPIRATION] {
        None => None,
        Some(Field::Text(v)) => Some(parse_timestamp("Expiration", v)),
        Some(Field::NotText) => Some(Err(ParseError::NotAString("Expiration"))),
    };
    let has_key_id = matches!(&raw.text[ACCESS_KEY_ID], Some(Field::Text(k)) if !k.is_empty());
    let shape = DocShape {
        json: true,
        complete: has_key_id && raw.present.iter().all(|&p| p) && matches!(expiration, Some(Ok(_))),
        code: match &raw.text[CODE] {
            None => Code::Absent,
            Some(Field::Text(c)) if c.eq_ignore_ascii_case("Success") => Code::Success,
            Some(_) => Code::Other,
        },
    };
    Ok(Inspection {
        document: self::document(&raw, expiration, hasher),
        shape,
    })
}

fn document(
    raw: &document::Object,
    expiration: Option<Result<DateTime<Utc>, ParseError>>,
    hasher: &KeyIdHasher,
) -> Result<CredentialsDoc, ParseError> {
    check_code(&raw.text[CODE])?;
    let key_id = text(&raw.text[ACCESS_KEY_ID], "AccessKeyId")?
        .filter(|k| !k.is_empty())
        .ok_or(ParseError::MissingField("AccessKeyId"))?;
    let expiration = expiration.ok_or(ParseError::MissingField("Expiration"))??;
    let last_updated = match text(&raw.text[LAST_UPDATED], "LastUpdated")? {
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

pub fn parse_info(body: &[u8]) -> Result<InstanceProfile, ParseError> {
    let raw = document::from_slice(body, &["Code", "InstanceProfileArn"], &[]).map_err(not_json)?;
    check_code(&raw.text[0])?;
    let arn = text(&raw.text[1], "InstanceProfileArn")?
        .ok_or(ParseError::MissingField("InstanceProfileArn"))?;
    Ok(InstanceProfile {
        arn: bounded_label_value(arn, MAX_ARN_LEN),
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

const IDENTITY_TEXT: &[&str] = &[
    "instanceId",
    "instanceType",
    "region",
    "availabilityZone",
    "accountId",
    "imageId",
];

/// The identity document's fields as label values; only `instanceId` is required. A field
/// that is not a string reads as empty (the label must exist), except `instanceId`.
pub fn parse_identity(body: &[u8]) -> Result<Identity, ParseError> {
    let raw = document::from_slice(body, IDENTITY_TEXT, &[]).map_err(not_json)?;
    let instance_id =
        text(&raw.text[0], "instanceId")?.ok_or(ParseError::MissingField("instanceId"))?;
    let v = |i: usize| match &raw.text[i] {
        Some(Field::Text(s)) => label_value(s),
        _ => String::new(),
    };
    Ok(Identity {
        instance_id: label_value(instance_id),
        instance_type: v(1),
        region: v(2),
        availability_zone: v(3),
        account_id: v(4),
        image_id: v(5),
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
            // serde's derive took an array for a struct; the SDKs want an object.
            (
                "[null,null,null,null,null,null]",
                Reason::InvalidResponse,
                "unexpected type",
            ),
            (
                r#"{"AccessKeyId":5,"Expiration":"2026-11-22T09:00:00Z"}"#,
                Reason::InvalidResponse,
                "AccessKeyId is not a string",
            ),
            (
                r#"{"Code":["Success"],"AccessKeyId":"A","Expiration":"2026-11-22T09:00:00Z"}"#,
                Reason::InvalidResponse,
                "Code is not a string",
            ),
        ];
        for (body, reason, text) in cases {
            let err = parse_credentials(body.as_bytes(), &KeyIdHasher::default()).unwrap_err();
            assert_eq!(err.reason(), *reason, "{body}");
            assert!(err.to_string().contains(text), "{body}: {err}");
        }
    }

    #[test]
    fn a_duplicate_key_counts_once_the_last_as_in_the_sdks() {
        let body = r#"{"Code":"Failure","Code":"Success","AccessKeyId":"A","Expiration":"x",
                       "Expiration":"2026-11-22T09:00:00Z","SecretAccessKey":"s","Token":"t"}"#;
        let i = inspect_credentials(body.as_bytes(), &KeyIdHasher::default()).unwrap();
        assert_eq!(i.document.unwrap().expiration, ts("2026-11-22T09:00:00Z"));
        assert!(i.shape.complete && i.shape.code == Code::Success);
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
