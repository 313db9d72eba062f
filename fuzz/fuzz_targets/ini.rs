//! The AWS config and credentials files: the INI reader never panics, in either style, and
//! keeps no value but those of the IMDS settings (at most 512 characters each) and a
//! `credential_source` of one short alphanumeric word.
#![no_main]

use imds_exporter::check::ini::parse_ini;
use imds_exporter::check::settings::IMDS_KEYS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&style, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    for section in parse_ini(&text, style & 1 == 1, &IMDS_KEYS).values() {
        for (key, value) in &section.imds {
            assert!(IMDS_KEYS.contains(&key.as_str()), "{key:?}");
            assert!(value.chars().count() <= 512);
        }
        if let Some(source) = &section.credential_source {
            assert!(source.len() <= 32 && source.chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }
});
