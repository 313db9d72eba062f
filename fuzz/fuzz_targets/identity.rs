//! The instance identity document: `parse_identity` never panics, and every field it keeps is a
//! bounded label value without control or format characters.
#![no_main]

use imds_exporter::probe::credentials::{MAX_LABEL_LEN, parse_identity};
use imds_exporter::untrusted::is_hidden;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(id) = parse_identity(body) {
        for v in [
            &id.instance_id,
            &id.instance_type,
            &id.region,
            &id.availability_zone,
            &id.account_id,
            &id.image_id,
        ] {
            assert!(v.chars().count() <= MAX_LABEL_LEN, "{v:?}");
            assert!(!v.chars().any(is_hidden), "{v:?}");
        }
    }
});
