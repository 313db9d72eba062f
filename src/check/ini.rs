//! The reader of the AWS shared config and credentials files: INI text to profile sections.
//!
//! Owns: the file format as botocore's `configparser` sees it (`[default]` and `[profile NAME]`
//! in the config file, `[NAME]` in the credentials file, a key split from its value at the first
//! `=` or `:`, comments; indented lines, nested settings, are skipped), and what a section keeps.
//! Does not own: where the files are or which profile is read (`settings`), nor what the keys
//! mean (`settings`, `chain`).
//!
//! Hand-written on purpose, not a general INI crate: this reader keeps no secret value. A crate
//! returns every key with its value, so `aws_secret_access_key`, `aws_session_token` and the
//! command line of a `credential_process` would sit in our maps (and in their `Debug`). Here a
//! line's value is dropped as the line is read, unless its key is one the caller names (the five
//! IMDS settings, `settings::IMDS_KEYS`, none meant as a secret; an endpoint's user information
//! is redacted whenever it is shown) or `credential_source` with a value of one short alphanumeric word. Of every other
//! key at most the name is kept: that `aws_secret_access_key` is present is what the credential
//! chain needs, its value is not. A malformed line is not special-cased: whatever precedes its
//! first `=` or `:` becomes a name, as configparser would take it; names are only looked up, never
//! printed. The file's text is dropped once it is parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One profile section: key names with a non-empty value, `credential_source` (a closed set of
/// words, safe to print), and the values of the keys the caller keeps (the IMDS settings, none a secret;
/// kept even when empty, as configparser returns `''` for `key =`). No other value is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub keys: BTreeSet<String>,
    pub credential_source: Option<String>,
    pub imds: BTreeMap<String, String>,
}

impl Section {
    pub(super) fn has(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
}

/// Parses an AWS shared config (`config_style`: `[default]`, `[profile NAME]`) or credentials
/// file (`[NAME]`) into sections. Indented lines (nested settings) and comments are skipped.
/// Public for the fuzz target (`fuzz/fuzz_targets/ini.rs`); the crate reads files with `load`.
pub fn parse_ini(text: &str, config_style: bool, keep: &[&str]) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            current = if config_style {
                if name == "default" {
                    Some("default".into())
                } else {
                    name.strip_prefix("profile ").map(|p| p.trim().to_string())
                }
            } else {
                Some(name.to_string())
            };
            if let Some(c) = &current {
                sections.entry(c.clone()).or_default();
            }
            continue;
        }
        // configparser splits at the first `=` or `:`.
        let (Some(section), Some((key, value))) = (&current, line.split_once(['=', ':'])) else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if keep.contains(&key.as_str()) {
            let s = sections.entry(section.clone()).or_default();
            s.imds
                .insert(key.clone(), value.chars().take(512).collect());
        }
        if value.is_empty() {
            continue;
        }
        let s = sections.entry(section.clone()).or_default();
        if key == "credential_source"
            && value.len() <= 32
            && value.chars().all(|c| c.is_ascii_alphanumeric())
        {
            s.credential_source = Some(value.to_string());
        }
        s.keys.insert(key);
    }
    sections
}

pub(super) enum FileState {
    Missing,
    Unreadable(String),
    Parsed(BTreeMap<String, Section>),
}

pub(super) fn load(path: &Path, config_style: bool, keep: &[&str]) -> FileState {
    match std::fs::read_to_string(path) {
        Ok(text) => FileState::Parsed(parse_ini(&text, config_style, keep)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::settings::IMDS_KEYS;

    #[test]
    fn the_ini_reader_keeps_key_names_only() {
        let text = "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key=wJalr/SECRET\n\
                    # comment\n[profile dev]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Ec2InstanceMetadata\n\
                    s3 =\n  max_concurrent_requests = 10\n[sso-session x]\nsso_start_url = u\n";
        let config = parse_ini(text, true, &IMDS_KEYS);
        assert!(config["default"].has("aws_access_key_id"));
        assert!(config["dev"].has("role_arn"));
        assert_eq!(
            config["dev"].credential_source.as_deref(),
            Some("Ec2InstanceMetadata")
        );
        assert!(!config["dev"].has("max_concurrent_requests"));
        assert!(!config.contains_key("x") && !config.contains_key("sso-session x"));
        assert!(!format!("{config:?}").contains("SECRET"));
        let creds = parse_ini("[profile dev]\naws_access_key_id=A\n", false, &IMDS_KEYS);
        assert!(creds.contains_key("profile dev"));
        // The IMDS settings keep their values (empty ones too), split as configparser splits.
        let config = parse_ini(
            "[default]\nMetadata_Service_Timeout: 3\nec2_metadata_service_endpoint = http://h:1\n\
             ec2_metadata_v1_disabled =\naws_secret_access_key: SECRET\n",
            true,
            &IMDS_KEYS,
        );
        let d = &config["default"];
        assert_eq!(d.imds["metadata_service_timeout"], "3");
        assert_eq!(d.imds["ec2_metadata_service_endpoint"], "http://h:1");
        assert_eq!(d.imds["ec2_metadata_v1_disabled"], "");
        assert!(d.has("aws_secret_access_key") && !d.has("ec2_metadata_v1_disabled"));
        assert!(!format!("{config:?}").contains("SECRET"));
    }
}
