//! Renders a [`Report`]: aligned text for a person at a terminal, or JSON with a stable schema
//! (version 1, documented in docs/check.md) for scripts.
//!
//! Owns only the presentation: statuses, values and advice are decided by the evaluators.
//! Values carry text from outside (IMDS answers, the environment, config files): both outputs
//! remove its format characters (a bidi override would make a terminal show another command
//! than the one pasted), and the human one its control characters too (JSON escapes them).

use std::borrow::Cow;

use serde::Serialize;

use super::model::{Check, Counts, Report, Status, Verdict};
use crate::untrusted::{visible, without_format};

/// Version of the JSON document; bumped only when a field changes meaning or disappears.
pub const JSON_VERSION: u32 = 1;

/// Human output wraps prose at this width (commands are never wrapped).
const WIDTH: usize = 100;
/// The advice lines start under the check's name.
const ADVICE_INDENT: usize = 6;

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    verdict: Verdict,
    strict: bool,
    imds_endpoint: Cow<'a, str>,
    imds_probed: bool,
    ntp_servers: Vec<Cow<'a, str>>,
    counts: Counts,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    id: &'static str,
    name: &'static str,
    status: Status,
    value: Cow<'a, str>,
    cause: Option<Cow<'a, str>>,
    fix: Option<Cow<'a, str>>,
}

/// The JSON document, pretty-printed, with a trailing newline.
pub fn json(report: &Report, strict: bool) -> String {
    let doc = JsonReport {
        version: JSON_VERSION,
        verdict: report.verdict(strict),
        strict,
        imds_endpoint: without_format(&report.imds_endpoint),
        imds_probed: report.imds_probed,
        ntp_servers: report
            .ntp_servers
            .iter()
            .map(|s| without_format(s))
            .collect(),
        counts: report.counts(),
        checks: report
            .checks
            .iter()
            .map(|c| JsonCheck {
                id: c.id.as_str(),
                name: c.id.name(),
                status: c.status,
                value: without_format(&c.value),
                cause: c.cause.as_deref().map(without_format),
                fix: c.fix.as_deref().map(without_format),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&doc).expect("a report serialises");
    text.push('\n');
    text
}

fn paint(status: Status, text: &str, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match status {
        Status::Ok => "32",
        Status::Warn => "33",
        Status::Fail => "1;31",
        Status::Skip => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Word-wraps `text` to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One advice block: `cause: ...` or `fix:   ...`, prose wrapped, `$ ` commands kept whole.
fn advice(out: &mut String, label: &str, text: &str) {
    let head = format!("{}{label:<7}", " ".repeat(ADVICE_INDENT));
    let pad = " ".repeat(head.len());
    let width = WIDTH.saturating_sub(head.len()).max(40);
    let mut first = true;
    for paragraph in text.lines() {
        let paragraph = visible(paragraph);
        let lines = if paragraph.starts_with("$ ") {
            vec![paragraph.to_string()]
        } else {
            wrap(&paragraph, width)
        };
        for l in lines {
            out.push_str(if first { &head } else { &pad });
            out.push_str(&l);
            out.push('\n');
            first = false;
        }
    }
}

/// The report for a person: a header, one aligned line per check with its advice indented
/// below, and the verdict.
pub fn human(report: &Report, strict: bool, colour: bool) -> String {
    let imds = match (report.imds_probed, &report.imds_endpoint_setting) {
        (true, _) => report.imds_endpoint.clone(),
        (false, Some(setting)) => format!("not probed ({setting})"),
        (false, None) => format!("not probed ({:?})", report.imds_endpoint),
    };
    let mut out = format!(
        "imds_exporter check: IMDS {}, NTP {}\n\n",
        visible(&imds),
        visible(&report.ntp_servers.join(", "))
    );
    let name_width = report
        .checks
        .iter()
        .map(|c| c.id.name().len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        line(&mut out, c, name_width, colour);
    }
    let Counts {
        ok,
        warn,
        fail,
        skip,
    } = report.counts();
    let verdict = report.verdict(strict);
    let word = verdict.as_str().to_uppercase();
    let word = match verdict {
        Verdict::Ok => paint(Status::Ok, &word, colour),
        Verdict::Warn => paint(Status::Warn, &word, colour),
        Verdict::Fail => paint(Status::Fail, &word, colour),
    };
    out.push_str(&format!(
        "\nverdict: {word} ({fail} failed, {warn} warning{}, {ok} ok, {skip} skipped){}; exit code {}\n",
        if warn == 1 { "" } else { "s" },
        if strict { ", --strict: warnings fail" } else { "" },
        verdict.exit_code()
    ));
    out
}

fn line(out: &mut String, c: &Check, name_width: usize, colour: bool) {
    let status = paint(c.status, &format!("{:<4}", c.status.as_str()), colour);
    out.push_str(&format!(
        "{status}  {:<name_width$}  {}\n",
        c.id.name(),
        visible(&c.value)
    ));
    if let Some(cause) = &c.cause {
        advice(out, "cause:", cause);
    }
    if let Some(fix) = &c.fix {
        advice(out, "fix:", fix);
    }
}

#[cfg(test)]
mod tests {
    use super::super::CheckId;
    use super::*;

    fn report() -> Report {
        Report {
            imds_endpoint: "http://127.0.0.1:1".into(),
            imds_probed: true,
            imds_endpoint_setting: None,
            ntp_servers: vec!["127.0.0.1:2".into()],
            checks: vec![
                Check::ok(CheckId::ImdsReachable, "TCP connect in 0.1 ms"),
                Check::fail(CheckId::ImdsToken, "no answer")
                    .cause("word ".repeat(40))
                    .fix("Raise it:\n$ aws ec2 modify-instance-metadata-options --instance-id i-1 --http-put-response-hop-limit 2 --http-endpoint enabled"),
            ],
        }
    }

    #[test]
    fn human_output_aligns_wraps_prose_and_keeps_commands_whole() {
        let text = human(&report(), false, false);
        assert!(text.contains("ok    IMDS reachable  TCP connect"), "{text}");
        assert!(text.contains("fail  IMDSv2 token    no answer"), "{text}");
        for l in text.lines().filter(|l| !l.contains("$ aws")) {
            assert!(l.chars().count() <= WIDTH, "{l}");
        }
        assert!(text.contains(
            "             $ aws ec2 modify-instance-metadata-options --instance-id i-1 --http-put-response-hop-limit 2 --http-endpoint enabled\n"
        ), "{text}");
        assert!(text.contains("      cause: word"), "{text}");
        assert!(
            text.contains("verdict: FAIL (1 failed, 0 warnings, 1 ok, 0 skipped); exit code 1"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn outside_text_loses_its_format_characters_and_on_a_terminal_its_controls() {
        let report = Report {
            imds_endpoint: "http://127.0.0.1:1\u{202E}".into(),
            imds_probed: true,
            imds_endpoint_setting: None,
            ntp_servers: vec!["127.0.0.1:2\u{200B}".into()],
            checks: vec![
                Check::warn(CheckId::ImdsIdentity, "a\u{202E}b\x1b[2Kc")
                    .cause("x\u{2066}y\rz")
                    .fix("Run:\n$ cmd \u{FEFF}arg"),
            ],
        };
        let text = human(&report, false, false);
        assert!(!text.chars().any(crate::untrusted::is_format), "{text:?}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("ab[2Kc") && text.contains("$ cmd arg\n"),
            "{text}"
        );
        let text = json(&report, false);
        assert!(!text.chars().any(crate::untrusted::is_format), "{text:?}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        // JSON escapes control characters itself.
        assert_eq!(v["checks"][0]["value"], "ab\x1b[2Kc");
        assert_eq!(v["checks"][0]["fix"], "Run:\n$ cmd arg");
        assert_eq!(v["imds_endpoint"], "http://127.0.0.1:1");
    }

    #[test]
    fn colour_is_only_added_when_asked() {
        let text = human(&report(), false, true);
        assert!(text.contains("\x1b[32mok  \x1b[0m"), "{text:?}");
        assert!(text.contains("\x1b[1;31mfail\x1b[0m"));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&json(&report(), true)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["strict"], true);
        assert_eq!(v["imds_probed"], true);
        assert_eq!(v["checks"][0]["id"], "imds.reachable");
        assert_eq!(v["checks"][0]["status"], "ok");
        assert!(v["checks"][0]["cause"].is_null());
        assert_eq!(v["checks"][1]["name"], "IMDSv2 token");
        assert_eq!(v["counts"]["fail"], 1);
    }
}
