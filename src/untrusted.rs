//! Text from outside, made safe for where it lands.
//!
//! Owns: what counts as an AWS identifier (instance id, region, account id, ARN, IAM role name),
//! the set of invisible characters removed from every shown value, and the quoting of a value
//! for a POSIX shell command line and for HTML. Does not own: logfmt quoting
//! (`logging::quote`), label bounds (`probe::credentials::label_value`), nor the decision of
//! which value goes where (the modules that show them).
//!
//! Why: IMDS, NTP servers, the environment and the AWS config files control text that reaches a
//! suggested command (`check`), a log line, the landing page or a label. A value that is not
//! what AWS would send is either refused (a suggested command gets a placeholder) or quoted for
//! its context, and Unicode format characters (bidi overrides, zero-width characters) are
//! removed everywhere: they are invisible, and a right-to-left override makes a terminal show
//! a command other than the one that runs.

use std::borrow::Cow;

/// Unicode General_Category=Cf (format characters), all 170 of them as of Unicode 18.0 (the
/// ranges of `DerivedGeneralCategory.txt`; `tests::the_format_table_is_general_category_cf`
/// checks it against the `unicode-properties` tables, code point by code point).
const FORMAT: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, (non-)joiner, LRM, RLM
    ('\u{202A}', '\u{202E}'),   // bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{206F}'),   // bidi isolates (LRI, RLI, FSI, PDI), deprecated format chars
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (BOM)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol beams and phrases
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tag characters
];

/// A Unicode format character (General_Category=Cf).
pub fn is_format(c: char) -> bool {
    FORMAT
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// A character that must not be shown raw: a control character (Cc: C0, DEL, C1), a format
/// character (Cf), or a line or paragraph separator (U+2028, U+2029: line breaks in disguise).
pub fn is_hidden(c: char) -> bool {
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `s` without its format characters and line or paragraph separators; control characters are
/// kept (for contexts that escape them, such as logfmt and JSON, or that need `\n`).
pub fn without_format(s: &str) -> Cow<'_, str> {
    strip(s, |c| is_format(c) || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// `s` without any [hidden](is_hidden) character: what a value from outside may show on a
/// terminal, in a label or on a page.
pub fn visible(s: &str) -> Cow<'_, str> {
    strip(s, is_hidden)
}

fn strip(s: &str, drop: impl Fn(char) -> bool) -> Cow<'_, str> {
    if s.chars().any(&drop) {
        Cow::Owned(s.chars().filter(|&c| !drop(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Characters a POSIX shell never treats specially in an unquoted word (outside the first
/// position, where `-` could read as an option: [`shell_word`] checks that too).
fn shell_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// `value` as one word of a POSIX shell command line: as it is when it holds only characters no
/// shell treats specially, else in single quotes (inside which nothing is special), an embedded
/// `'` written `'\''`. Hidden characters are removed first: quoting keeps a shell from running
/// them, not a terminal from showing something else.
pub fn shell_word(value: &str) -> String {
    let value = visible(value);
    if !value.is_empty() && value.chars().all(shell_plain) {
        return value.into_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `value` as HTML text or a double- or single-quoted attribute value: `& < > " '` escaped,
/// hidden characters removed. For the landing page, whose configuration values come from flags
/// and the environment.
pub fn html_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|&c| !is_hidden(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An EC2 instance id: `i-` and 8 (before 2016) or 17 lower-case hex digits.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|h| matches!(h.len(), 8 | 17) && lower_hex(h))
}

/// An AWS region name: lower-case words joined by `-`, the first of 2 to 4 letters, the last a
/// number (`us-east-1`, `us-gov-west-1`, `cn-northwest-1`, `us-isob-east-1`, `eusc-de-east-1`).
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    s.len() <= 32
        && !middle.is_empty()
        && (2..=4).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && middle
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS account id: 12 digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An IAM role (or instance profile) name: 1 to 64 of `[A-Za-z0-9_+=,.@-]` (IAM's
/// `[\w+=,.@-]+`). None of them is special to a shell, a URL path or a label.
pub fn is_role_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// An ARN's shape: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, the partition `aws` or
/// `aws-` and a lower-case word (`aws-cn`, `aws-us-gov`, `aws-iso-b`), the service lower-case
/// alphanumeric with `-`, the region empty or a [region](is_region), the account empty or 12
/// digits (or `aws` for AWS-managed resources), the resource 1 to 1023 printable ASCII characters
/// without space (IAM paths allow U+0021 to U+007E). At most 2048 characters in all.
///
/// The resource may hold shell metacharacters (an IAM path may contain `$` or `;`): an ARN is
/// validated for its shape, and still quoted ([`shell_word`]) wherever it is pasted.
pub fn is_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|p| {
            !p.is_empty()
                && !p.starts_with('-')
                && !p.ends_with('-')
                && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    s.len() <= 2048
        && partition_ok
        && !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (region.is_empty() || is_region(region))
        && (account.is_empty() || account == "aws" || is_account_id(account))
        && (1..=1023).contains(&resource.len())
        && resource.bytes().all(|b| b.is_ascii_graphic())
}

/// An IAM instance profile ARN: `arn:PARTITION:iam::ACCOUNT:instance-profile/` and an optional
/// path and a [name](is_role_name).
pub fn is_instance_profile_arn(s: &str) -> bool {
    if !is_arn(s) {
        return false;
    }
    let fields: Vec<&str> = s.splitn(6, ':').collect();
    let name = fields[5]
        .strip_prefix("instance-profile/")
        .map(|p| p.rsplit('/').next().unwrap_or(p));
    fields[2] == "iam"
        && fields[3].is_empty()
        && is_account_id(fields[4])
        && name.is_some_and(is_role_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_table_is_general_category_cf() {
        use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
        assert!(
            FORMAT.windows(2).all(|w| w[0].1 < w[1].0),
            "sorted, disjoint"
        );
        let mut count = 0;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let cf = c.general_category() == GeneralCategory::Format;
            assert_eq!(is_format(c), cf, "U+{:04X}", c as u32);
            count += usize::from(cf);
        }
        assert_eq!(count, 170);
    }

    #[test]
    fn hidden_characters_are_removed_and_the_rest_kept() {
        let rlo = "i-0abc\u{202E}fed\u{200B}\u{2066}x\u{FEFF}\u{AD}";
        assert_eq!(visible(rlo), "i-0abcfedx");
        assert_eq!(visible("a\nb\u{0}c\u{7f}d\u{85}e\u{2028}f"), "abcdef");
        assert_eq!(without_format("a\nb\u{202E}c\u{2029}"), "a\nbc");
        assert!(matches!(visible("plain ascii, é, 中文"), Cow::Borrowed(_)));
    }

    #[test]
    fn shell_words_are_plain_or_single_quoted() {
        assert_eq!(shell_word("i-0123456789abcdef0"), "i-0123456789abcdef0");
        assert_eq!(shell_word("my-role@x,y=z+1.2"), "my-role@x,y=z+1.2");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(
            shell_word("i-0$(echo X)`echo X`;\"q\\\u{202E}"),
            "'i-0$(echo X)`echo X`;\"q\\'"
        );
        assert_eq!(shell_word("a\nb"), "ab");
    }

    #[test]
    fn html_text_escapes_every_markup_character() {
        assert_eq!(
            html_text("<a href='x' title=\"y\">&\u{202E}</a>"),
            "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn aws_identifiers_are_recognised_by_their_format() {
        type Case<'a> = (fn(&str) -> bool, &'a str, bool);
        let cases: &[Case] = &[
            (is_instance_id, "i-0123456789abcdef0", true),
            (is_instance_id, "i-12345678", true),
            (is_instance_id, "i-0123456789ABCDEF0", false),
            (is_instance_id, "i-0123456789abcdef", false),
            (is_instance_id, "i-0abc", false),
            (is_instance_id, "i-0$(echo X)`echo X`;\"q\\", false),
            (is_instance_id, "i-0123456789abcdef0\u{202E}", false),
            (is_instance_id, "", false),
            (is_region, "us-east-1", true),
            (is_region, "us-gov-west-1", true),
            (is_region, "cn-northwest-1", true),
            (is_region, "us-isob-east-1", true),
            (is_region, "eusc-de-east-1", true),
            (is_region, "ap-southeast-4", true),
            (is_region, "us-east", false),
            (is_region, "US-east-1", false),
            (is_region, "us--1", false),
            (is_region, "us-east-1;", false),
            (is_region, "eu-west-1a", false),
            (is_account_id, "123456789012", true),
            (is_account_id, "12345678901", false),
            (is_account_id, "12345678901a", false),
            (is_role_name, "my-role", true),
            (is_role_name, "role.with+chars=,@_-", true),
            (is_role_name, "a b", false),
            (is_role_name, "../etc", false),
            (is_role_name, &"r".repeat(65), false),
            (
                is_arn,
                "arn:aws:iam::123456789012:instance-profile/web",
                true,
            ),
            (is_arn, "arn:aws-us-gov:iam::123456789012:role/a/b/c", true),
            (is_arn, "arn:aws:s3:::bucket/key", true),
            (
                is_arn,
                "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
                true,
            ),
            (is_arn, "arn:aws:iam::aws:policy/ReadOnlyAccess", true),
            (is_arn, "arn:aws:iam::123456789012:", false),
            (is_arn, "arn:aws:iam::12345:role/x", false),
            (is_arn, "arn:gcp:iam::123456789012:role/x", false),
            (is_arn, "arn:aws:iam::123456789012:role/a b", false),
            (is_arn, "arn:aws:iam::123456789012", false),
            (
                is_instance_profile_arn,
                "arn:aws:iam::123456789012:instance-profile/web",
                true,
            ),
            (
                is_instance_profile_arn,
                "arn:aws:iam::123456789012:instance-profile/p/q/web",
                true,
            ),
            (
                is_instance_profile_arn,
                "arn:aws:iam::123456789012:role/web",
                false,
            ),
            (
                is_instance_profile_arn,
                "arn:aws:iam::123456789012:instance-profile/p/",
                false,
            ),
        ];
        for (f, s, want) in cases {
            assert_eq!(f(s), *want, "{s:?}");
        }
    }
}
