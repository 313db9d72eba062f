//! What every configuration type shares: how a bad value is reported, and the duration syntax.
//!
//! Each module owns its configuration (`ImdsConfig` beside the IMDS probe, `NtpConfig` beside the
//! NTP probe, `NodeViewsConfig`, `WebConfig`, `SimConfig`, `CheckConfig`): a plain struct with
//! `Default`, its defaults as named constants, and a `validate()` that returns a [`ConfigError`]
//! naming the setting. The command line (`cli`) only maps flags into them. This module owns no
//! setting itself, and knows nothing of flags beyond the name a [`ConfigError`] carries.

use std::time::Duration;

/// A setting whose value cannot be used. Displays as `--<setting> <problem>`: settings are named
/// as their flags are, so the message says what to change whether it came from a flag, its
/// environment twin or a test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{setting} {problem}")]
pub struct ConfigError {
    /// The flag's name without the leading dashes, e.g. `imds.interval`.
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }
}

/// `Ok` for a duration above zero; every interval, timeout and period must be one.
pub fn positive(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(setting, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// Longest interval of a schedule (`--imds.interval`, `--ntp.interval`, `--collector.interval`):
/// the alerts assume a minute or less; a day is far past any use, and keeps the time arithmetic
/// (deadlines, jitter, `Instant + interval`) far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Longest deadline of one network exchange or of a connection's wait (`--*.timeout`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// `Ok` for an interval above zero and at most [`MAX_INTERVAL`].
pub fn interval(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    positive(setting, value)?;
    at_most(setting, value, MAX_INTERVAL)
}

/// `Ok` for a timeout above zero and at most [`MAX_TIMEOUT`].
pub fn timeout(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    positive(setting, value)?;
    at_most(setting, value, MAX_TIMEOUT)
}

fn at_most(setting: &'static str, value: Duration, max: Duration) -> Result<(), ConfigError> {
    if value > max {
        Err(ConfigError::new(
            setting,
            format!("must be at most {}", human(max)),
        ))
    } else {
        Ok(())
    }
}

/// Parses `30s`, `100ms`, `1h30m` (humantime's syntax, as the Go exporters' durations read).
/// A leading `-` is refused by name: the flags take values that start with a hyphen, so that
/// `--imds.interval -5s` reaches this parser instead of reading as an unknown flag `-5`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim().starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 100ms, 30s, 5m or 1h)"))
}

/// Whether `host` (without brackets or port; one trailing dot allowed) is an IP address or a
/// host name as RFC 1123 spells them: labels of letters, digits and inner hyphens, 1 to 63
/// characters, 253 in all, the last not all digits. Names that are neither are refused before
/// they reach the resolver, which would otherwise send them to the network's DNS.
pub fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.iter().all(label_ok)
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Largest configuration file read (`--web.config.file`, `--script`, the PEM files the web
/// configuration names): far above any real one, small enough that a wrong path costs nothing.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a configuration file that a flag names: a regular file of at most [`MAX_FILE_BYTES`].
/// A device (`/dev/zero` would be read forever), a FIFO (opening one blocks until a writer
/// comes), a directory or an oversized file is an error, not a hang or an exhausted memory.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            MAX_FILE_BYTES / 1024
        )));
    }
    Ok(out)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text_file(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// A duration as people write it (`30s`, `6h`, `1h 30m`), for messages and the landing page.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_the_setting_as_its_flag() {
        let err = positive("imds.interval", Duration::ZERO).unwrap_err();
        assert_eq!(err.to_string(), "--imds.interval must be greater than 0");
        assert!(positive("imds.interval", Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn hosts_are_addresses_or_rfc_1123_names() {
        for ok in [
            "127.0.0.1",
            "::1",
            "localhost",
            "ntp.internal.",
            "a-b.c",
            "169.254.169.123",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            ".",
            "-a",
            "a-",
            "a..b",
            "ü",
            "%s",
            "a b",
            "a/b",
            "{}",
            "1",
            "18446744073709551616",
            "1.2.3.4.5",
            &long,
        ] {
            assert!(!is_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_small_regular_files_are_read() {
        for special in ["/dev/zero", "/dev/null", "/", "/proc/self"] {
            let err = read_file(std::path::Path::new(special)).unwrap_err();
            assert!(err.to_string().contains("regular file"), "{special}: {err}");
        }
        let big = std::env::temp_dir().join(format!("imds-big-{}", std::process::id()));
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(read_file(&big).unwrap_err().to_string().contains("larger"));
        std::fs::write(&big, "ok").unwrap();
        assert_eq!(read_text_file(&big).unwrap(), "ok");
        std::fs::remove_file(&big).unwrap();
    }

    #[test]
    fn intervals_and_timeouts_are_bounded() {
        assert!(interval("imds.interval", MAX_INTERVAL).is_ok());
        let err = interval("imds.interval", MAX_INTERVAL + Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.to_string(), "--imds.interval must be at most 1day");
        let err = timeout("ntp.timeout", Duration::MAX).unwrap_err();
        assert_eq!(err.to_string(), "--ntp.timeout must be at most 1h");
        assert!(timeout("ntp.timeout", Duration::ZERO).is_err());
    }

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(
            parse_duration(" 100ms ").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
        assert_eq!(
            parse_duration(" -5s").unwrap_err(),
            "durations cannot be negative"
        );
        assert_eq!(human(Duration::from_secs(21600)), "6h");
    }
}
