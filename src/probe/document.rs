//! Reading one JSON object from IMDS the way the SDKs read it, keeping only what we name.
//!
//! Owns: the walk over a document's keys: the string value of each key asked for as text, the
//! mere presence of each key asked for as a secret (its value skipped unread by
//! [`IgnoredAny`], never copied), every other value skipped unread. Does not own what the keys
//! mean ([`super::credentials`]).
//!
//! Written by hand rather than derived, because a derived struct disagrees with the SDKs'
//! parsers (Python's `json`, JavaScript's `JSON.parse`, Go's `encoding/json`) on documents they
//! all take: serde's derive accepts a JSON *array* as a struct (`[null, ...]`), refuses a
//! duplicate key (they keep the last), and fails the whole document when a field has another
//! type than expected (they parse the document and fail on the field). Here any JSON object
//! parses, whatever its keys and value types; anything else does not. And the whole document
//! must be UTF-8, as the SDKs decode it before parsing: serde_json skips an ignored string's
//! bytes without looking at them (found by fuzzing: `fuzz/fuzz_targets/credentials.rs`).

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The value of a key read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A JSON string.
    Text(String),
    /// A number, boolean, array or object (skipped unread).
    NotText,
}

/// What one JSON object held under the keys asked for. `null` counts as absent, as the SDKs
/// treat it (Python's `None`, a nil pointer in Go). A key given twice: the last one counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// One per text key asked for, in order.
    pub text: Vec<Option<Field>>,
    /// One per secret key asked for, in order: present with a non-null value.
    pub present: Vec<bool>,
}

/// Reads one JSON object from `de`, keeping the values of `text` keys and the presence of
/// `secret` keys. The caller checks the end of input (`Deserializer::end`).
pub fn read<'de, D: Deserializer<'de>>(
    de: D,
    text: &[&'static str],
    secret: &[&'static str],
) -> Result<Object, D::Error> {
    de.deserialize_map(ObjectVisitor { text, secret })
}

/// Reads a whole slice as one JSON object (trailing whitespace only).
pub fn from_slice(
    body: &[u8],
    text: &[&'static str],
    secret: &[&'static str],
) -> Result<Object, serde_json::Error> {
    let body = std::str::from_utf8(body).map_err(|_| serde_json::Error::io(not_utf8()))?;
    let mut de = serde_json::Deserializer::from_str(body);
    let object = read(&mut de, text, secret)?;
    de.end()?;
    Ok(object)
}

/// Reads a whole stream as one JSON object, a byte at a time as it arrives (constant memory
/// but for the text values kept).
pub fn from_reader(
    reader: impl std::io::Read,
    text: &[&'static str],
    secret: &[&'static str],
) -> Result<Object, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(Utf8Checked::new(reader));
    let object = read(&mut de, text, secret)?;
    de.end()?;
    Ok(object)
}

fn not_utf8() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")
}

/// Whether a parse failed because the document is not UTF-8.
pub fn is_not_utf8(e: &serde_json::Error) -> bool {
    e.io_error_kind() == Some(std::io::ErrorKind::InvalidData)
}

/// A reader that passes on only bytes of complete, valid UTF-8 characters, and fails (with
/// [`std::io::ErrorKind::InvalidData`]) when the next byte starts an invalid or unfinished
/// sequence. It holds back at most the 3 bytes of a character still arriving, so the failure
/// comes at the same point of the document however the input is cut into reads.
pub struct Utf8Checked<R> {
    inner: R,
    pending: Vec<u8>,
    /// `pending[pos..ready]` is valid UTF-8 not yet handed out.
    pos: usize,
    ready: usize,
    /// `pending[ready..]` starts with an invalid sequence (or ends the input unfinished).
    bad: bool,
}

impl<R> Utf8Checked<R> {
    pub fn new(inner: R) -> Self {
        Utf8Checked {
            inner,
            pending: Vec::new(),
            pos: 0,
            ready: 0,
            bad: false,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Utf8Checked<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.ready || out.is_empty() {
                let n = out.len().min(self.ready - self.pos);
                out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.bad {
                return Err(not_utf8());
            }
            // Keep the unfinished character (at most 3 bytes), read more after it.
            self.pending.drain(..self.pos);
            self.pos = 0;
            let held = self.pending.len();
            self.pending.resize(held + 512, 0);
            let n = match self.inner.read(&mut self.pending[held..]) {
                Ok(n) => n,
                Err(e) => {
                    self.pending.truncate(held);
                    return Err(e);
                }
            };
            self.pending.truncate(held + n);
            match std::str::from_utf8(&self.pending) {
                Ok(_) => self.ready = self.pending.len(),
                Err(e) => {
                    self.ready = e.valid_up_to();
                    // Invalid, or unfinished at the end of the input.
                    self.bad = e.error_len().is_some() || n == 0;
                }
            }
            if n == 0 && self.ready == 0 && !self.bad {
                return Ok(0);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct ObjectVisitor<'a> {
    text: &'a [&'static str],
    secret: &'a [&'static str],
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut object = Object {
            text: vec![None; self.text.len()],
            present: vec![false; self.secret.len()],
        };
        while let Some(key) = map.next_key_seed(KeySeed(self))? {
            match key {
                Key::Text(i) => object.text[i] = map.next_value::<Option<Field>>()?,
                Key::Secret(i) => {
                    object.present[i] = map.next_value::<Option<IgnoredAny>>()?.is_some();
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(object)
    }
}

enum Key {
    Text(usize),
    Secret(usize),
    Other,
}

/// Matches a key against the names asked for without keeping it (a key may be long).
struct KeySeed<'a>(ObjectVisitor<'a>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        let ObjectVisitor { text, secret } = self.0;
        Ok(if let Some(i) = text.iter().position(|k| *k == v) {
            Key::Text(i)
        } else if let Some(i) = secret.iter().position(|k| *k == v) {
            Key::Secret(i)
        } else {
            Key::Other
        })
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Text(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Field, E> {
        Ok(Field::Text(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
        Ok(Field::NotText)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field, E> {
        Ok(Field::NotText)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field, E> {
        Ok(Field::NotText)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field, E> {
        Ok(Field::NotText)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::NotText)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::NotText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[&str] = &["Code", "Expiration"];
    const SECRET: &[&str] = &["Token"];

    fn read(body: &str) -> Result<Object, serde_json::Error> {
        from_slice(body.as_bytes(), TEXT, SECRET)
    }

    #[test]
    fn any_object_parses_and_nothing_else_does() {
        let o = read(r#"{"Code":"Success","Expiration":5,"Token":"t","Other":[1,{"a":null}]}"#)
            .unwrap();
        assert_eq!(
            o.text,
            [Some(Field::Text("Success".into())), Some(Field::NotText)]
        );
        assert_eq!(o.present, [true]);
        for not_object in [
            "[]",
            "[null,null,null,null,null,null]",
            "\"x\"",
            "1",
            "null",
            "{",
            "{} x",
        ] {
            assert!(read(not_object).is_err(), "{not_object}");
        }
    }

    #[test]
    fn null_is_absent_and_the_last_duplicate_wins() {
        let o = read(r#"{"Code":"A","Code":"B","Expiration":null,"Token":null}"#).unwrap();
        assert_eq!(o.text, [Some(Field::Text("B".into())), None]);
        assert_eq!(o.present, [false]);
        let o = read(r#"{"Token":"t","Token":null}"#).unwrap();
        assert_eq!(o.present, [false]);
    }

    /// Hands out its chunks one read at a time.
    struct Chunks<'a>(std::collections::VecDeque<&'a [u8]>);

    impl std::io::Read for Chunks<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some(chunk) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = chunk.len().min(out.len());
            out[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(&chunk[n..]);
            }
            Ok(n)
        }
    }

    #[test]
    fn a_document_must_be_utf8_even_where_it_is_not_read() {
        // Found by fuzzing: serde_json skips an ignored value's bytes unchecked.
        let body = b"{\"Message\":\"EC2 cannot assume th\xff\xffe role\",\"Code\":\"X\"}";
        assert!(from_slice(body, TEXT, SECRET).is_err_and(|e| is_not_utf8(&e)));
        assert!(from_reader(&body[..], TEXT, SECRET).is_err_and(|e| is_not_utf8(&e)));
        // Cut inside a character: still valid, however it is read.
        let body = "{\"Code\":\"\u{e9}\u{4e2d}\u{1F600}\"}".as_bytes();
        for size in 1..=4 {
            let reader = Chunks(body.chunks(size).collect());
            assert_eq!(
                from_reader(reader, TEXT, SECRET).unwrap(),
                from_slice(body, TEXT, SECRET).unwrap()
            );
        }
        // Unfinished at the end.
        assert!(
            from_reader(&b"{\"Code\":\"\xe4\xb8"[..], TEXT, SECRET).is_err_and(|e| is_not_utf8(&e))
        );
    }

    #[test]
    fn the_stream_and_the_slice_read_the_same() {
        let body = br#"{"Code" : "Su\u0063cess", "Token": {"deep": [1, 2]}, "x": 1e3}"#;
        assert_eq!(
            from_reader(&body[..], TEXT, SECRET).unwrap(),
            from_slice(body, TEXT, SECRET).unwrap()
        );
    }
}
