//! The web configuration file (`--web.config.file`, the exporter-toolkit's format): parsing and
//! checking never panic, a refusal names a field of the format (or the file), and an accepted
//! file sets only the allowed headers and absolute certificate paths.
#![no_main]

use std::path::Path;

use imds_exporter::web::config_file::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match check(&text, Path::new("/etc/imds_exporter")) {
        Err(e) => assert!(
            [
                "(file)",
                "tls_server_config",
                "basic_auth_users",
                "http_server_config"
            ]
            .iter()
            .any(|k| e.field.starts_with(k)),
            "{:?}",
            e.field
        ),
        Ok(c) => {
            for (name, _) in &c.headers {
                assert!(
                    [
                        "strict-transport-security",
                        "x-frame-options",
                        "x-content-type-options",
                        "x-xss-protection",
                        "content-security-policy"
                    ]
                    .contains(&name.as_str()),
                    "{name}"
                );
            }
            if let Some(tls) = &c.tls {
                assert!(tls.cert_file.is_absolute() && tls.key_file.is_absolute());
            }
        }
    }
});
