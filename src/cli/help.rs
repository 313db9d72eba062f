//! How a default value is shown in `--help`: taken from the configuration's named constant,
//! so that the default is spelled once. clap wants a `&'static str`; these few strings are made
//! once per process and kept.

use std::time::Duration;

fn keep(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// In whole seconds, as the exporter's duration flags are documented (`30s`, `21600s`).
pub fn seconds(d: Duration) -> &'static str {
    if d.subsec_nanos() == 0 {
        keep(format!("{}s", d.as_secs()))
    } else {
        keep(format!("{}ms", d.as_millis()))
    }
}

/// A list, comma-separated, as a repeatable flag's env twin takes it.
pub fn list(items: &[&str]) -> &'static str {
    keep(items.join(","))
}

/// In the largest units that fit (`2m`, `6h`), as the simulator's flags are documented.
pub fn human(d: Duration) -> &'static str {
    keep(crate::config::human(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_read_as_documented() {
        assert_eq!(seconds(Duration::from_secs(21600)), "21600s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(6 * 3600)), "6h");
    }
}
