//! The role list: `parse_role_list` never panics and only returns an IAM role name (nothing
//! that could be spliced into the next URL); `role_shape` agrees with it.
#![no_main]

use imds_exporter::probe::credentials::{parse_role_list, role_shape};
use imds_exporter::untrusted::is_role_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let parsed = parse_role_list(body);
    if let Ok(role) = &parsed {
        assert!(is_role_name(role), "{role:?}");
    }
    assert_eq!(role_shape(body).named, parsed.is_ok());
});
