//! Property tests of every parser of outside input (issue 15): the IMDS documents (credentials,
//! identity, `iam/info`), the role list, the token answer, NTP packets, the AWS config and
//! credentials files, the simulator's scripts; and of the functions that make outside text safe
//! (label values, shell words, HTML).
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256) on inputs built to reach
//! the parsers' corners: JSON documents with the keys the parser reads, values of every type,
//! duplicate keys, control and format characters, then cut or with a byte flipped; and plain
//! arbitrary bytes. `PROPTEST_CASES=100000 cargo test --release --test properties` searches
//! deeper; `scripts/fuzz` (docs/fuzzing.md) searches with coverage guidance. Failures are not
//! persisted: a failing input becomes a named regression test below.

use std::collections::VecDeque;
use std::io::Read;

use proptest::collection::vec;
use proptest::prelude::*;

use imds_exporter::check::ini::parse_ini;
use imds_exporter::check::settings::IMDS_KEYS;
use imds_exporter::probe::credentials::{
    self, KeyIdHasher, MAX_ARN_LEN, MAX_LABEL_LEN, ParseError, inspect_credentials,
    parse_credentials, parse_identity, parse_info, parse_role_list, role_shape,
};
use imds_exporter::probe::imds::protocol::token_text;
use imds_exporter::probe::ntp::packet::{PACKET_LEN, Packet, sample_from_reply, validate_reply};
use imds_exporter::sim::config::SimConfig;
use imds_exporter::sim::limits::MAX_SCRIPT_AT;
use imds_exporter::sim::script;
use imds_exporter::untrusted::{self, is_hidden};
use imds_exporter::web::config_file::check;
use std::path::Path;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Characters that matter to a parser or a reader: printable ASCII most of the time, then C0
/// and C1 controls, format characters (bidi, zero-width, tags), separators, non-ASCII.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\0', '\x1f'),
        2 => prop::sample::select(vec![
            '\u{7f}', '\u{85}', '\u{9b}', '\u{ad}', '\u{61c}', '\u{200b}', '\u{200e}',
            '\u{200f}', '\u{202a}', '\u{202e}', '\u{2028}', '\u{2029}', '\u{2066}', '\u{2069}',
            '\u{feff}', '\u{fff9}', '\u{e0001}', '\u{e007f}', '\u{1d173}', 'é', '中', '😀',
        ]),
        1 => any::<char>(),
    ]
}

fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    vec(nasty_char(), 0..max).prop_map(|c| c.into_iter().collect())
}

/// A JSON string literal, mostly well escaped, sometimes with raw escapes of its own (lone
/// surrogates, bad escapes).
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => nasty_string(24).prop_map(|s| serde_json::to_string(&s).unwrap()),
        2 => Just("\"Success\"".to_string()),
        2 => Just("\"2026-11-22T09:00:00Z\"".to_string()),
        1 => prop::sample::select(vec!["\"\\ud800\"", "\"\\udc00x\"", "\"\\ud83d\\ude00\"", "\"\\x\"", "\"\\u12\""])
            .prop_map(str::to_string),
    ]
}

/// JSON value text: scalars of every type (numbers past `f64` too), arrays and objects.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        Just("1e400".to_string()),
        json_string(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            vec((json_string(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A JSON object with `keys` (and other keys), values of any type, duplicates allowed.
fn json_object(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => prop::sample::select(keys).prop_map(|k| format!("\"{k}\"")),
        1 => json_string(),
    ];
    (
        vec((key, json_value()), 0..8),
        prop::sample::select(vec!["", " ", "\n  "]),
    )
        .prop_map(|(entries, ws)| {
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{ws}{k}{ws}:{ws}{v}"))
                .collect();
            format!("{{{}{ws}}}", body.join(","))
        })
}

/// What a document may turn into on the way: cut short, a byte changed or inserted.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Cut(usize),
    Set(usize, u8),
    Insert(usize, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Cut),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
    ]
}

fn damaged(text: String, damage: Damage) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match damage {
        Damage::None => {}
        Damage::Cut(i) => bytes.truncate(at(i, bytes.len())),
        Damage::Set(i, b) => {
            let i = at(i, bytes.len());
            if let Some(x) = bytes.get_mut(i) {
                *x = b;
            }
        }
        Damage::Insert(i, b) => {
            let i = at(i, bytes.len() + 1);
            bytes.insert(i, b);
        }
    }
    bytes
}

/// A body as IMDS might send it: a damaged JSON object with `keys`, or any bytes at all.
fn body(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (json_object(keys), damage()).prop_map(|(t, d)| damaged(t, d)),
        1 => vec(any::<u8>(), 0..256),
    ]
}

const CREDENTIALS_KEYS: &[&str] = &[
    "Code",
    "LastUpdated",
    "Type",
    "AccessKeyId",
    "SecretAccessKey",
    "Token",
    "Expiration",
];
const IDENTITY_KEYS: &[&str] = &[
    "instanceId",
    "instanceType",
    "region",
    "availabilityZone",
    "accountId",
    "imageId",
];
const INFO_KEYS: &[&str] = &["Code", "InstanceProfileArn", "LastUpdated"];

/// Hands out a body in chunks of the given sizes, cycling through them.
struct Chunked {
    data: VecDeque<u8>,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        for (slot, byte) in buf.iter_mut().zip(self.data.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

/// Where serde_json's `Value` refuses valid JSON that the SDKs' parsers take, as does a reader
/// that skips the value unread: numbers beyond `f64`, escaped lone surrogates ("lone leading
/// surrogate", "unexpected end of hex escape", "invalid unicode code point").
fn value_limit(e: &serde_json::Error) -> bool {
    let e = e.to_string();
    [
        "number out of range",
        "surrogate",
        "hex escape",
        "invalid unicode code point",
    ]
    .iter()
    .any(|m| e.contains(m))
}

#[track_caller]
fn assert_label(v: &str, max: usize) {
    assert!(v.chars().count() <= max, "{v:?}");
    assert!(!v.chars().any(is_hidden), "{v:?}");
}

// ---------------------------------------------------------------------------------------------
// IMDS documents
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// The credentials document: never a panic; parsed exactly when serde_json reads a JSON
    /// object; the same reading however the stream is cut; `parse_credentials` is the
    /// inspection's document; a `Code` kept is a clean label.
    #[test]
    fn credentials_parse_like_serde_json_whatever_the_chunking(
        body in body(CREDENTIALS_KEYS),
        sizes in vec(1usize..24, 1..6),
    ) {
        let hasher = KeyIdHasher::default();
        let whole = inspect_credentials(&body[..], &hasher);
        let streamed = inspect_credentials(
            Chunked { data: body.iter().copied().collect(), sizes, next: 0 },
            &hasher,
        );
        prop_assert_eq!(&whole, &streamed);
        let value = serde_json::from_slice::<serde_json::Value>(&body);
        if !value.as_ref().is_err_and(value_limit) {
            prop_assert_eq!(
                whole.is_ok(),
                matches!(value, Ok(serde_json::Value::Object(_))),
                "{:?} {:?}", whole, value
            );
        }
        let doc = parse_credentials(&body, &hasher);
        prop_assert_eq!(&doc, &whole.clone().and_then(|i| i.document));
        if let Err(ParseError::CodeNotSuccess { code }) = &doc {
            assert_label(code, MAX_LABEL_LEN);
        }
        if let Ok(i) = &whole {
            prop_assert!(i.shape.json);
        }
    }

    /// The identity document: never a panic; every field a bounded, clean label.
    #[test]
    fn identity_fields_are_clean_bounded_labels(body in body(IDENTITY_KEYS)) {
        if let Ok(id) = parse_identity(&body) {
            for v in [&id.instance_id, &id.instance_type, &id.region, &id.availability_zone,
                      &id.account_id, &id.image_id] {
                assert_label(v, MAX_LABEL_LEN);
            }
        }
    }

    /// An `instanceId` comes out as its label value: hidden characters gone, at most 128.
    #[test]
    fn the_instance_id_is_kept_as_its_label_value(id in nasty_string(200)) {
        let body = serde_json::json!({ "instanceId": id, "region": 7 }).to_string();
        let parsed = parse_identity(body.as_bytes()).unwrap();
        prop_assert_eq!(&parsed.instance_id, &credentials::label_value(&id));
        prop_assert_eq!(parsed.region, "");
    }

    /// `iam/info`: never a panic; the ARN bounded and clean.
    #[test]
    fn the_instance_profile_arn_is_bounded_and_clean(body in body(INFO_KEYS)) {
        if let Ok(p) = parse_info(&body) {
            assert_label(&p.arn, MAX_ARN_LEN);
        }
    }

    /// Label values: no control, format or separator character, at most 128 characters, the
    /// visible characters in order.
    #[test]
    fn label_values_are_the_visible_prefix(raw in nasty_string(300)) {
        let v = credentials::label_value(&raw);
        assert_label(&v, MAX_LABEL_LEN);
        let want: String = untrusted::visible(&raw).chars().take(MAX_LABEL_LEN).collect();
        prop_assert_eq!(v, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Role list, token
// ---------------------------------------------------------------------------------------------

fn role_list() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        3 => "[A-Za-z0-9_+=,.@-]{1,70}",
        1 => nasty_string(20),
        1 => Just(String::new()),
        1 => Just("  \t".to_string()),
    ];
    prop_oneof![
        4 => (vec(line, 0..4), prop::sample::select(vec!["\n", "\r\n", "\r"]))
            .prop_map(|(lines, eol)| lines.join(eol).into_bytes()),
        1 => vec(any::<u8>(), 0..128),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// The role list: a role comes out only as an IAM role name (nothing to splice into the
    /// next URL), the first non-blank line; `role_shape` agrees.
    #[test]
    fn the_role_is_an_iam_name_from_the_first_line(body in role_list()) {
        let parsed = parse_role_list(&body);
        if let Ok(role) = &parsed {
            prop_assert!(untrusted::is_role_name(role), "{:?}", role);
            let text = std::str::from_utf8(&body).unwrap();
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            prop_assert_eq!(Some(role.as_str()), first);
        }
        let shape = role_shape(&body);
        prop_assert_eq!(shape.named, parsed.is_ok());
    }

    /// The token answer: a token is a non-empty run of printable ASCII (a valid header value),
    /// the body trimmed.
    #[test]
    fn a_token_is_printable_ascii_from_the_body(body in prop_oneof![
        vec(any::<u8>(), 0..64),
        "[ \t\r\n]{0,2}[!-~]{0,40}[ \t\r\n]{0,2}".prop_map(String::into_bytes),
    ]) {
        if let Some(t) = token_text(&body) {
            prop_assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(t, std::str::from_utf8(&body).unwrap().trim());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NTP
// ---------------------------------------------------------------------------------------------

fn packet() -> impl Strategy<Value = Packet> {
    (
        (
            0u8..4,
            0u8..8,
            0u8..8,
            any::<u8>(),
            any::<i8>(),
            any::<i8>(),
        ),
        (any::<u32>(), any::<u32>(), any::<[u8; 4]>()),
        any::<[u64; 4]>(),
    )
        .prop_map(
            |(
                (leap, version, mode, stratum, poll, precision),
                (root_delay, root_dispersion, reference_id),
                [reference, origin, receive, transmit],
            )| Packet {
                leap,
                version,
                mode,
                stratum,
                poll,
                precision,
                root_delay,
                root_dispersion,
                reference_id,
                reference_timestamp: reference,
                origin_timestamp: origin,
                receive_timestamp: receive,
                transmit_timestamp: transmit,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    /// Any 48 bytes or more decode, and encode back to the same 48; fewer are refused.
    #[test]
    fn ntp_bytes_round_trip(bytes in vec(any::<u8>(), 0..80)) {
        match Packet::decode(&bytes) {
            Ok(p) => prop_assert_eq!(&p.encode()[..], &bytes[..PACKET_LEN]),
            Err(_) => prop_assert!(bytes.len() < PACKET_LEN),
        }
    }

    /// Any packet encodes and decodes to itself.
    #[test]
    fn ntp_packets_round_trip(p in packet()) {
        prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
    }

    /// A reply to our request (its origin our transmit time, most of the time) is validated
    /// without a panic; when accepted, the sample is finite with a non-negative round trip,
    /// and it is accepted exactly when it is a synchronised version 3 or 4 server reply with
    /// both timestamps set.
    #[test]
    fn ntp_replies_validate_and_give_finite_samples(
        mut p in packet(),
        t1 in any::<u64>(),
        t4 in any::<u64>(),
        ours in any::<bool>(),
        server in any::<bool>(),
    ) {
        if ours {
            p.origin_timestamp = t1;
        }
        if server {
            p.mode = 4;
            p.version = 4;
        }
        let valid = validate_reply(&p, t1).is_ok();
        prop_assert_eq!(
            valid,
            p.mode == 4
                && matches!(p.version, 3 | 4)
                && p.origin_timestamp == t1
                && (1..16).contains(&p.stratum)
                && p.leap != 3
                && p.transmit_timestamp != 0
                && p.receive_timestamp != 0
        );
        match sample_from_reply(&p.encode(), t1, t4) {
            Ok(s) => {
                prop_assert!(valid);
                prop_assert!(s.offset_seconds.is_finite() && s.rtt_seconds.is_finite());
                prop_assert!(s.rtt_seconds >= 0.0);
                prop_assert!(s.root_delay_seconds >= 0.0 && s.root_dispersion_seconds >= 0.0);
            }
            Err(_) => prop_assert!(!valid),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AWS config and credentials files
// ---------------------------------------------------------------------------------------------

/// A secret no kept value may contain.
const SECRET: &str = "SeCrEt0";

fn ini_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        2 => prop::sample::select(vec![
            "[default]", "[profile dev]", "[ profile  x ]", "[dev]", "[sso-session s]", "[",
            "# comment", "; comment", "", "  indented = 1",
        ])
        .prop_map(str::to_string),
        3 => (
            prop_oneof![
                prop::sample::select(IMDS_KEYS.to_vec()).prop_map(str::to_string),
                prop::sample::select(vec!["aws_secret_access_key", "aws_session_token",
                    "credential_process", "credential_source", "region", "Metadata_Service_Timeout"])
                    .prop_map(str::to_string),
                nasty_string(10),
            ],
            prop::sample::select(vec![" = ", "=", ": ", " : "]),
            prop_oneof![nasty_string(40), Just(String::new()), Just("Ec2InstanceMetadata".into())],
        )
            .prop_map(|(k, sep, v)| format!("{k}{sep}{v}")),
        1 => nasty_string(30),
    ];
    (vec(line, 0..12), prop::sample::select(vec!["\n", "\r\n"]))
        .prop_map(|(lines, eol)| lines.join(eol))
}

proptest! {
    #![proptest_config(config())]

    /// The INI reader: never a panic, in either style; keeps the values of the IMDS settings
    /// only (at most 512 characters), a `credential_source` of one short word, and no secret.
    #[test]
    fn the_ini_reader_keeps_no_value_but_the_imds_settings(
        text in ini_text(),
        config_style in any::<bool>(),
    ) {
        let secret_line = format!("aws_secret_access_key = {SECRET}\ncredential_process = /bin/{SECRET}");
        let text = format!("[default]\n{secret_line}\n{text}\n{secret_line}\n");
        let sections = parse_ini(&text, config_style, &IMDS_KEYS);
        for section in sections.values() {
            for (key, value) in &section.imds {
                prop_assert!(IMDS_KEYS.contains(&key.as_str()), "{:?}", key);
                prop_assert!(value.chars().count() <= 512);
            }
            if let Some(source) = &section.credential_source {
                prop_assert!(source.len() <= 32 && source.chars().all(|c| c.is_ascii_alphanumeric()));
            }
        }
        let shown = format!("{sections:?}");
        prop_assert!(!shown.contains(SECRET), "{}", shown);
    }
}

// ---------------------------------------------------------------------------------------------
// Simulator scripts
// ---------------------------------------------------------------------------------------------

fn script_text() -> impl Strategy<Value = String> {
    let at = prop_oneof![
        "[0-9]{1,4}(ms|s|m|h|d)",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("1e400".to_string()),
        nasty_string(8).prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let scenario = prop_oneof![
        4 => prop::sample::select(vec![
            "healthy", "outage", "slow", "slow?delay=2s", "throttle", "throttle-partial",
            "hop-limit", "rotate-late", "slow?delay=-1s", "slow?delay=1e9h", "nope",
        ])
        .prop_map(str::to_string),
        1 => nasty_string(12),
    ];
    let params = prop_oneof![
        Just(String::new()),
        (
            prop::sample::select(vec!["delay", "lead", "x"]),
            json_value()
        )
            .prop_map(|(k, v)| format!(", \"params\": {{\"{k}\": {v}}}")),
    ];
    let step = (at, scenario, params).prop_map(|(at, scenario, params)| {
        format!(
            "{{\"at\": {at}, \"scenario\": {}{params}}}",
            serde_json::to_string(&scenario).unwrap()
        )
    });
    prop_oneof![
        // JSON, and the same list as YAML flow (JSON is YAML too, read by the YAML parser).
        3 => (vec(step, 0..5), any::<bool>()).prop_map(|(steps, yaml)| {
            let list = format!("[{}]", steps.join(", "));
            if yaml { format!("- {}\n", steps.join("\n- ")) } else { list }
        }),
        1 => nasty_string(60),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// The simulator's scripts: never a panic; steps in time order, none past the bound.
    #[test]
    fn scripts_parse_into_bounded_ordered_steps(text in script_text()) {
        let defaults = SimConfig::default().scenario_defaults();
        if let Ok(steps) = script::parse(&text, &defaults) {
            prop_assert!(!steps.is_empty());
            prop_assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
            prop_assert!(steps.iter().all(|s| s.at <= MAX_SCRIPT_AT));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quoting
// ---------------------------------------------------------------------------------------------

/// Reads one POSIX shell word made of unquoted safe characters and single-quoted parts (the
/// `'\''` idiom included); `None` if anything else is in it.
fn read_shell_word(word: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '\\' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            c if c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(config())]

    /// A shell word reads back, as a shell reads it, as the value without hidden characters;
    /// nothing in it is special to a shell outside single quotes.
    #[test]
    fn shell_words_read_back_as_the_visible_value(v in nasty_string(40)) {
        let word = untrusted::shell_word(&v);
        prop_assert!(!word.chars().any(is_hidden), "{:?}", word);
        prop_assert_eq!(read_shell_word(&word), Some(untrusted::visible(&v).into_owned()));
    }

    /// Valid AWS identifiers need no quoting.
    #[test]
    fn instance_ids_are_plain_shell_words(hex in "[0-9a-f]{17}|[0-9a-f]{8}") {
        let id = format!("i-{hex}");
        prop_assert!(untrusted::is_instance_id(&id));
        prop_assert_eq!(untrusted::shell_word(&id), id);
    }

    /// HTML text has no markup character and no hidden character left.
    #[test]
    fn html_text_has_no_markup(v in nasty_string(40)) {
        let html = untrusted::html_text(&v);
        prop_assert!(!html.contains(['<', '>', '"', '\'']), "{}", html);
        prop_assert!(!html.chars().any(is_hidden));
        prop_assert!(html.split('&').skip(1).all(|e| ["amp;", "lt;", "gt;", "quot;", "#39;"]
            .iter().any(|x| e.starts_with(x))));
    }
}

// ---------------------------------------------------------------------------------------------
// The web configuration file (--web.config.file)
// ---------------------------------------------------------------------------------------------

/// A value for a field of the web configuration: a valid one most of the time, else nasty text.
fn web_value(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(valid).prop_map(str::to_owned),
        1 => nasty_string(30),
    ]
}

/// A bcrypt hash, or something else long enough to be recognised if an error repeated it.
fn web_hash() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\$2[aby]\\$1[0-2]\\$[./A-Za-z0-9]{53}",
        nasty_string(30).prop_map(|s| format!("HASH-{s}")),
    ]
}

/// A web configuration file in the exporter-toolkit's format: some of its fields, each a JSON
/// string (valid YAML), sometimes with an unknown field, then perhaps cut or with a byte flipped.
/// Returns the text and the hashes it holds.
fn web_config() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    const TLS: &[(&str, &[&str])] = &[
        ("cert_file", &["server.crt", "/etc/tls/tls.crt", ""]),
        ("key_file", &["server.key", "/etc/tls/tls.key"]),
        (
            "client_auth_type",
            &[
                "NoClientCert",
                "RequireAndVerifyClientCert",
                "VerifyClientCertIfGiven",
                "RequestClientCert",
            ],
        ),
        ("client_ca_file", &["ca.crt"]),
        ("min_version", &["TLS12", "TLS13", "TLS10"]),
        ("max_version", &["TLS12", "TLS13"]),
        ("cert", &["-----BEGIN CERTIFICATE-----"]),
    ];
    const HEADERS: &[&str] = &[
        "Strict-Transport-Security",
        "x-frame-options",
        "X-Content-Type-Options",
        "Set-Cookie",
    ];
    let tls = vec(
        (
            prop::sample::select(TLS),
            any::<prop::sample::Index>(),
            nasty_string(20),
            any::<bool>(),
        ),
        0..5,
    );
    let users = vec((web_value(&["prometheus", "a:b", ""]), web_hash()), 0..3);
    let headers = vec(
        (
            web_value(HEADERS),
            web_value(&["nosniff", "DENY", "max-age=31536000"]),
        ),
        0..3,
    );
    (tls, users, headers, any::<bool>(), damage()).prop_map(|(tls, users, headers, unknown, d)| {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let mut text = String::new();
        if !tls.is_empty() {
            text.push_str("tls_server_config:\n");
            for ((key, valid), i, nasty, use_valid) in &tls {
                let v = if *use_valid {
                    i.get(valid).to_string()
                } else {
                    nasty.clone()
                };
                text.push_str(&format!("  {key}: {}\n", q(&v)));
            }
        }
        if !users.is_empty() {
            text.push_str("basic_auth_users:\n");
            for (user, hash) in &users {
                text.push_str(&format!("  {}: {}\n", q(user), q(hash)));
            }
        }
        if !headers.is_empty() {
            text.push_str("http_server_config:\n  headers:\n");
            for (name, value) in &headers {
                text.push_str(&format!("    {}: {}\n", q(name), q(value)));
            }
        }
        if unknown {
            text.push_str("web_listen_address: \":9101\"\n");
        }
        let hashes = users.into_iter().map(|(_, h)| h).collect();
        (damaged(text, d), hashes)
    })
}

proptest! {
    #![proptest_config(config())]

    /// The web configuration file is parsed and checked without a panic; a refusal names a field
    /// of the format (or the file) and never repeats a password hash; an accepted file sets only
    /// the allowed headers.
    #[test]
    fn web_config_files_are_checked_without_panic_or_leak((bytes, hashes) in web_config()) {
        let text = String::from_utf8_lossy(&bytes);
        match check(&text, Path::new("/etc/imds_exporter")) {
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(
                    ["(file)", "tls_server_config", "basic_auth_users", "http_server_config"]
                        .iter().any(|k| e.field.starts_with(k)),
                    "{:?}", e.field
                );
                for h in &hashes {
                    prop_assert!(!shown.contains(h.as_str()), "the error repeats a hash: {}", shown);
                }
            }
            Ok(c) => {
                for (name, _) in &c.headers {
                    prop_assert!(["strict-transport-security", "x-frame-options",
                        "x-content-type-options", "x-xss-protection", "content-security-policy"]
                        .contains(&name.as_str()), "{}", name);
                }
                if let Some(tls) = &c.tls {
                    prop_assert!(tls.cert_file.is_absolute() && tls.key_file.is_absolute());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the fuzzers and these properties found
// ---------------------------------------------------------------------------------------------

/// Found by `scripts/fuzz credentials`: an ignored value with bytes that are not UTF-8. serde_json
/// skips an ignored string unchecked, so the document was accepted where every SDK refuses it.
#[test]
fn a_credentials_document_that_is_not_utf8_is_not_json() {
    let body =
        b"{\"Codssage\":\"EC2 cannot assume the role\",\"LastUpdated\":\"2026-11-thorizedAccess\",\
                 \"Message\":\"EC2 cannot assume th\xff\xff\xff\xff\xff\xff\xff\xffe role\",\
                 \"LastUpdated\":\"2026-11-22T03:00:00Z\"}";
    let err = inspect_credentials(&body[..], &KeyIdHasher::default()).unwrap_err();
    assert!(err.to_string().contains("invalid UTF-8"), "{err}");
}
