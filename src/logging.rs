//! Logging set-up: `--log.level` and `--log.format` (logfmt, like the Go exporters, or JSON).
//!
//! Only this crate logs at the chosen level; dependencies (hyper, reqwest) are held at `warn`,
//! so `--log.level=trace` shows what the probe did without wire-level dumps of IMDS traffic.
//!
//! The logfmt formatter is written here rather than taken from `tracing-logfmt`, for a security
//! property: log values carry text that IMDS, NTP servers and the environment control (error
//! texts, role names), and that crate quotes a value only when it holds a space, `=`, `"` or an
//! ASCII control character, writing DEL, the C1 controls (U+0085 NEL among them) and Unicode
//! format characters raw otherwise. [`quote`] escapes every control character in any value, so
//! no answer can forge or hide a log line. It also writes `msg=`, the key the Prometheus
//! exporters' logfmt uses, where that crate writes `message=`.
//!
//! Unicode format characters (bidi overrides, zero-width characters; `untrusted::is_format`)
//! and the line and paragraph separators are removed from every line, logfmt or JSON, by the
//! writer ([`Visible`]): JSON escapes control characters but not these, and a right-to-left
//! override in a value makes a terminal or a log viewer show the line's text out of order.

use std::fmt::{self, Write as _};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::untrusted;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Our crate at `level`, dependencies at `warn` (or `error`). A plain target filter rather than
/// `EnvFilter`, whose directive parser brings a regex engine (a tenth of the binary) for a
/// filter that never changes.
fn filter(level: LogLevel) -> Targets {
    let deps = match level {
        LogLevel::Error => LevelFilter::ERROR,
        _ => LevelFilter::WARN,
    };
    Targets::new()
        .with_default(deps)
        .with_target("imds_exporter", level.filter())
}

/// Installs the global subscriber writing to stderr. Safe to call more than once (later calls
/// are ignored), so `demo` can share it between its halves.
pub fn init(level: LogLevel, format: LogFormat) {
    init_with_writer(level, format, std::io::stderr);
}

pub fn init_with_writer<W>(level: LogLevel, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(Visible(writer));
    let _ = match format {
        LogFormat::Logfmt => tracing_subscriber::registry()
            .with(layer.event_format(Logfmt).with_filter(filter(level)))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(filter(level)),
            )
            .try_init(),
    };
}

/// `ts=... level=info target=imds_exporter::exporter msg="..." key=value`.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        write!(
            writer,
            "ts={now} level={} target={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut visitor = LogfmtVisitor::default();
        event.record(&mut visitor);
        if let Some(msg) = visitor.message {
            write!(writer, " msg={}", quote(&msg))?;
        }
        writer.write_str(&visitor.fields)?;
        writeln!(writer)
    }
}

#[derive(Default)]
struct LogfmtVisitor {
    message: Option<String>,
    fields: String,
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), quote(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Makes writers that drop format characters and line or paragraph separators from what is
/// written (see the module's doc).
struct Visible<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Visible<M> {
    type Writer = Visible<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Visible(self.0.make_writer())
    }
}

impl<W: std::io::Write> std::io::Write for Visible<W> {
    /// The formatter writes each event whole; text with nothing to drop (or, never from the
    /// formatters, not UTF-8) goes through as it is.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf).map(untrusted::without_format) {
            Ok(std::borrow::Cow::Owned(clean)) => {
                self.0.write_all(clean.as_bytes())?;
                Ok(buf.len())
            }
            _ => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Quotes a logfmt value when it needs it; format characters are dropped.
fn quote(v: &str) -> String {
    let v = untrusted::without_format(v);
    let v = v.as_ref();
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        v.to_string()
    } else {
        let mut out = String::with_capacity(v.len() + 2);
        out.push('"');
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                // Other control characters (from an error's text) could forge or hide a line.
                c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::{Visible, quote};
    use crate::untrusted::is_format;

    /// Reads a logfmt value back: the inverse of [`quote`].
    fn unquote(v: &str) -> String {
        let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            return v.to_string();
        };
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                Some(c) => out.push(c),
                None => panic!("dangling escape in {v:?}"),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Any value, quoted, is one logfmt token without control or format characters, and
        /// reads back as the value without its format characters.
        #[test]
        fn quoted_values_are_one_clean_token_that_reads_back(v in any::<String>()) {
            let q = quote(&v);
            prop_assert!(!q.chars().any(|c| c.is_control() || is_format(c)), "{q:?}");
            let bare = !q.starts_with('"');
            prop_assert!(!bare || !q.contains([' ', '=', '"']), "{q:?}");
            prop_assert_eq!(unquote(&q), crate::untrusted::without_format(&v));
        }
    }

    #[test]
    fn the_writer_drops_format_characters_from_json_lines_too() {
        let mut out = Vec::new();
        let line = "{\"msg\":\"role \u{202E}lor\u{200B}\"}\n";
        Visible(&mut out).write_all(line.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"msg\":\"role lor\"}\n");
        assert_eq!(quote("a\u{202E}b c"), "\"ab c\"");
    }

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(quote("timeout"), "timeout");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        assert_eq!(quote("a\rb\tc"), "\"a\\rb\\tc\"");
        assert_eq!(quote("x\u{1b}[2Ky"), "\"x\\u{001b}[2Ky\"");
        assert!(
            !quote("ok\u{0}\u{7f}level=error")
                .chars()
                .any(char::is_control)
        );
    }
}
