//! The token answer: `token_text` never panics and only returns a non-empty run of printable
//! ASCII (a valid header value) taken from the body.
#![no_main]

use imds_exporter::probe::imds::protocol::token_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Some(t) = token_text(body) {
        assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
        assert!(t.len() <= body.len());
    }
});
