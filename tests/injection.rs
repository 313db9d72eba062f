//! `check` against an IMDS that answers hostile text (issue 15): an instance identity document
//! whose `instanceId` is `` i-0$(echo X)`echo X`;"q\ `` and a right-to-left override, a
//! region and an instance profile ARN with shell syntax, an `instance-id` path with the same,
//! an interface name and an endpoint setting with shell syntax. The suggested commands must not
//! carry any of it: every `$ ` line of every fix is lexed as a POSIX shell would read it, and no
//! metacharacter may stand outside a single-quoted word but the command templates' own (a `|`
//! word, `<placeholder>` words, `$NO_PROXY`), nor any format character anywhere. The server is
//! hand-written (the simulator serves only well-formed answers) and listens on 127.0.0.1.

mod common;

use std::time::Duration;

use imds_exporter::check::{
    self, CheckConfig, CheckId, KernelReading, LinklocalReading, NodeReading, NodeSource, Report,
    Status, report,
};
use imds_exporter::collector::clock::KernelClock;
use imds_exporter::sim::config::SimConfig;
use imds_exporter::untrusted::is_format;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The `instanceId` of the issue, with U+202E RIGHT-TO-LEFT OVERRIDE.
const HOSTILE_ID: &str = "i-0$(echo X)`echo X`;\"q\\\u{202E}";
const HOSTILE_REGION: &str = "us-east-1;echo X\u{200B}";
/// A valid IAM path may hold shell syntax (U+0021 to U+007E).
const HOSTILE_ARN: &str = "arn:aws:iam::123456789012:instance-profile/$(echo X)/web";
/// Linux allows any byte in an interface name but `/`, `:`, whitespace and NUL.
const HOSTILE_IFACE: &str = "e$(echo X)`;|&";

/// What the credentials path answers.
#[derive(Clone, Copy)]
enum Credentials {
    /// Valid keys that expire in two minutes: the expiry check fails with a fix naming the
    /// instance.
    Expiring,
    /// `AssumeRoleUnauthorizedAccess`: the fix names the role and the instance.
    Unauthorized,
}

async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// An IMDS that answers IMDSv1 and IMDSv2 alike, with hostile text wherever a value is free.
async fn hostile_imds(credentials: Credentials) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_request(&mut stream).await else {
                    return;
                };
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split(' ').nth(1).unwrap_or_default();
                let expiration = (chrono::Utc::now() + chrono::Duration::minutes(2))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let body = match (line.starts_with("PUT "), path) {
                    (true, "/latest/api/token") => "hostile-token".to_string(),
                    (false, "/latest/meta-data/iam/security-credentials/") => {
                        "hostile-role".to_string()
                    }
                    (false, "/latest/meta-data/iam/security-credentials/hostile-role") => {
                        match credentials {
                            Credentials::Expiring => serde_json::json!({
                                "Code": "Success",
                                "AccessKeyId": "ASIAHOSTILEEXAMPLE01",
                                "SecretAccessKey": "s",
                                "Token": "t",
                                "Expiration": expiration,
                            }),
                            Credentials::Unauthorized => serde_json::json!({
                                "Code": "AssumeRoleUnauthorizedAccess",
                                "Message": "EC2 cannot assume the role $(echo X)",
                            }),
                        }
                        .to_string()
                    }
                    (false, "/latest/meta-data/iam/info") => serde_json::json!({
                        "Code": "Success",
                        "InstanceProfileArn": HOSTILE_ARN,
                    })
                    .to_string(),
                    (false, "/latest/dynamic/instance-identity/document") => serde_json::json!({
                        "accountId": "123456789012",
                        "availabilityZone": "us-east-1a\u{202E}",
                        "imageId": "ami-0123456789abcdef0",
                        "instanceId": HOSTILE_ID,
                        "instanceType": "m7g.large",
                        "region": HOSTILE_REGION,
                    })
                    .to_string(),
                    (false, "/latest/meta-data/instance-id") => HOSTILE_ID.to_string(),
                    _ => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\
                     X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// The check against the hostile IMDS, with the simulator's NTP answerer, a node whose only
/// interface (with a hostile name) drops link-local packets, and an environment whose proxy
/// catches IMDS traffic and whose endpoint setting holds shell syntax (a URL host may hold `$`,
/// parentheses and `;`).
async fn run(credentials: Credentials) -> Report {
    let sim = imds_exporter::sim::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            ntp_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let mut config = CheckConfig::new(
        hostile_imds(credentials).await,
        sim.ntp_addr.unwrap().to_string(),
    );
    config.imds_timeout = Duration::from_secs(2);
    config.node = NodeSource::Fixed(NodeReading {
        kernel_clock: KernelReading::Clock(KernelClock {
            synchronized: true,
            max_error_seconds: 0.01,
            estimated_error_seconds: 0.0001,
            status: 0x2001,
            state: 0,
        }),
        linklocal: LinklocalReading::Interfaces(vec![(HOSTILE_IFACE.into(), 7)]),
    });
    // Never contacted: `--imds.endpoint` (the hostile server) is what the check probes; the
    // variables only feed the proxy and endpoint checks' advice.
    config.env = [
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://a$(echo-x);b/"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let report = check::run(&config).await.expect("the check runs");
    sim.shutdown().await;
    report
}

/// The unquoted metacharacters of a command line, as a POSIX shell lexes it: a single-quoted
/// word is inert; outside one, `$ \` ; & | < > ( ) { } " \\` are special. The templates' own
/// syntax is allowed: a `|` between commands, a `<placeholder>` (a word the reader replaces,
/// never run as is), and `$NO_PROXY`/`$no_proxy` appended to a list.
fn unquoted_metacharacters(command: &str) -> Vec<char> {
    let mut found = Vec::new();
    for word in lex(command) {
        let rest = word
            .trim_end_matches(",$NO_PROXY")
            .trim_end_matches(",$no_proxy");
        if rest == "|" {
            continue;
        }
        let mut rest = rest;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = placeholder_end(rest) {
                rest = &rest[after..];
                continue;
            }
            if "$`;&|<>(){}\"\\".contains(c) {
                found.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    found
}

/// The length of the `<placeholder>` (lower-case words joined by `-`) `s` starts with.
fn placeholder_end(s: &str) -> Option<usize> {
    let name_len = s.strip_prefix('<')?.find('>')?;
    let name = &s[1..=name_len];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .then_some(name_len + 2)
}

/// Splits a command line into words, keeping of each only its unquoted characters (a quoted
/// part, and the `\'` that puts a quote inside a single-quoted word, become `_`). Panics on an
/// unterminated single quote: the line would not parse.
fn lex(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_quote = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quote, c) {
            (true, '\'') => in_quote = false,
            (true, _) => {}
            (false, '\'') => {
                in_quote = true;
                word.push('_');
            }
            (false, '\\') if chars.peek() == Some(&'\'') => {
                chars.next();
                word.push('_');
            }
            (false, ' ') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (false, c) => word.push(c),
        }
    }
    assert!(!in_quote, "unterminated quote in {command:?}");
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The `$ ` lines of every fix.
fn commands(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter_map(|c| c.fix.as_deref())
        .flat_map(str::lines)
        .filter_map(|l| l.strip_prefix("$ "))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_inert(report: &Report) {
    let commands = commands(report);
    eprintln!("suggested commands:\n{}", commands.join("\n"));
    assert!(!commands.is_empty());
    for command in &commands {
        assert_eq!(
            unquoted_metacharacters(command),
            Vec::<char>::new(),
            "{command}"
        );
        assert!(!command.chars().any(is_format), "{command:?}");
        assert!(!command.chars().any(char::is_control), "{command:?}");
    }
    // Nor anywhere in either output.
    let human = report::human(report, false, false);
    let json = report::json(report, false);
    for text in [&human, &json] {
        assert!(!text.chars().any(is_format), "{text}");
    }
    assert!(
        !human.chars().any(|c| c.is_control() && c != '\n'),
        "{human:?}"
    );
    // The human output prints the same command lines.
    for command in &commands {
        assert!(human.contains(&format!("$ {command}\n")), "{command}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_instance_id_never_reaches_a_suggested_command() {
    let report = run(Credentials::Expiring).await;
    assert_inert(&report);
    let commands = commands(&report);
    // The fixes that name the instance show the placeholder, and say why.
    let with_id: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains("instance-id"))
        .collect();
    assert!(with_id.len() >= 2, "{commands:#?}");
    for c in with_id {
        assert!(c.contains("<instance-id>"), "{c}");
    }
    let expiry = report.get(CheckId::ImdsExpiry).unwrap();
    assert_eq!(expiry.status, Status::Fail);
    assert!(
        expiry
            .fix
            .as_deref()
            .unwrap()
            .contains("the instanceId IMDS sent is not an EC2 instance id"),
        "{expiry:?}"
    );
    // The identity check shows what was sent, escaped, and why it is refused.
    let identity = report.get(CheckId::ImdsIdentity).unwrap();
    assert_eq!(identity.status, Status::Warn, "{identity:?}");
    assert!(
        identity.value.contains(
            r#"instanceId "i-0$(echo X)`echo X`;\"q\\" (want i- and 8 or 17 hex digits)"#
        ),
        "{}",
        identity.value
    );
    assert!(identity.value.contains("region \"us-east-1;echo X\""));
    // The interface and the endpoint's host are quoted where they are pasted.
    assert!(
        commands
            .iter()
            .any(|c| c.contains("NO_PROXY='a$(echo-x);b',$NO_PROXY")),
        "{commands:#?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("ethtool -S 'e$(echo X)`;|&' | grep")),
        "{commands:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_instance_id_path_and_role_fix_stay_inert() {
    // The credentials fail, so the identity document is not read; IMDSv1 answers, so the check
    // asks `meta-data/instance-id`, which is hostile too: refused, the placeholder shown.
    let report = run(Credentials::Unauthorized).await;
    assert_inert(&report);
    let credentials = report.get(CheckId::ImdsCredentials).unwrap();
    assert_eq!(credentials.status, Status::Fail);
    let fix = credentials.fix.as_deref().unwrap();
    assert!(fix.contains("--role-name hostile-role "), "{fix}");
    assert!(
        fix.contains("Name=instance-id,Values=<instance-id>"),
        "{fix}"
    );
}

#[test]
fn the_lexer_finds_what_a_shell_would_run() {
    assert_eq!(
        unquoted_metacharacters("aws x --id i-0$(id)"),
        ['$', '(', ')']
    );
    assert!(unquoted_metacharacters("aws x --id 'i-0$(id)'").is_empty());
    assert!(unquoted_metacharacters("a 'it'\\''s' b").is_empty());
    assert_eq!(unquoted_metacharacters("a 'x'`y`"), ['`', '`']);
    assert_eq!(unquoted_metacharacters("a \"$x\""), ['"', '$', '"']);
    assert!(unquoted_metacharacters("a <instance-id> | grep x").is_empty());
    assert_eq!(unquoted_metacharacters("a <b;c>"), ['<', ';', '>']);
    assert!(unquoted_metacharacters("export NO_PROXY='[::1]',$NO_PROXY").is_empty());
    assert_eq!(
        unquoted_metacharacters("export NO_PROXY=$x,$NO_PROXY"),
        ['$']
    );
}
