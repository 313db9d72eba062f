//! `iam/info`: `parse_info` never panics; the ARN it keeps is bounded and clean.
#![no_main]

use imds_exporter::probe::credentials::{MAX_ARN_LEN, parse_info};
use imds_exporter::untrusted::is_hidden;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(p) = parse_info(body) {
        assert!(p.arn.chars().count() <= MAX_ARN_LEN);
        assert!(!p.arn.chars().any(is_hidden), "{:?}", p.arn);
    }
});
