//! The credentials document: `inspect_credentials` never panics; it parses exactly the inputs
//! serde_json reads as a JSON object; the streaming parse (fed in chunks of the sizes the first
//! bytes choose) gives the same result as the slice parse; a `Code` shown is a clean label.
#![no_main]

use imds_exporter::probe::credentials::{
    KeyIdHasher, MAX_LABEL_LEN, ParseError, inspect_credentials, parse_credentials,
};
use imds_exporter::untrusted::is_hidden;
use libfuzzer_sys::fuzz_target;

/// A reader that hands out `data` in chunks of the given sizes (0 means 1), cycling.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self
            .sizes
            .get(self.next % self.sizes.len().max(1))
            .map_or(1, |&s| usize::from(s).max(1));
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Where serde_json's `Value` refuses valid JSON that the SDKs' parsers take (and a reader that
/// skips the value unread does too): numbers beyond `f64`, escaped lone surrogates ("lone
/// leading surrogate", "unexpected end of hex escape", "invalid unicode code point").
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

fuzz_target!(|input: &[u8]| {
    let (sizes, body) = input.split_at(input.len().min(4));
    let hasher = KeyIdHasher::default();
    let whole = inspect_credentials(body, &hasher);
    let streamed = inspect_credentials(
        Chunked {
            data: body,
            sizes,
            next: 0,
        },
        &hasher,
    );
    assert_eq!(whole, streamed);
    let value = serde_json::from_slice::<serde_json::Value>(body);
    if !value.as_ref().is_err_and(value_limit) {
        assert_eq!(
            whole.is_ok(),
            matches!(value, Ok(serde_json::Value::Object(_))),
            "{whole:?}"
        );
    }
    if let Err(ParseError::CodeNotSuccess { code }) = parse_credentials(body, &hasher) {
        assert!(code.chars().count() <= MAX_LABEL_LEN && !code.chars().any(is_hidden));
    }
});
