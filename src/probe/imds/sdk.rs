//! What a fresh client of each AWS SDK family would get from IMDS, derived from one probe run.
//!
//! Each SDK fetches credentials its own way: different timeouts, retries, IMDSv1 fallback, and
//! different demands on the token answer and the document (docs/sdk-model.md, read from the
//! source of the versions named there and checked against the real clients by the test command).
//! This module replays each SDK's algorithm over what the run saw ([`Evidence`]: every request's
//! status, time to headers and body) and says whether that SDK would end up with credentials and
//! how long it would wait. Pure: no I/O, no clock.
//!
//! The replay assumes that a request the SDK repeats gets the answer the probe saw, except where
//! the probe made the repeat itself (one retry after a 5xx or 401, which Rust and Go retry).
//! Random backoff (Rust's) counts at its mean.

use std::time::Duration;

use crate::labels::Sdk;

/// How one request went, as the SDKs' timeouts need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Exchange {
    /// No response head within the probe's deadline (`limit`): the SDKs with a shorter or equal
    /// header timeout give up at theirs.
    NoHeaders { limit: Duration },
    /// The connection failed, was refused or reset, or the answer was not HTTP, after `took`.
    Transport { took: Duration },
    /// A response head with `status` after `headers`; the body as [`BodyEnd`] says.
    Answered {
        status: u16,
        headers: Duration,
        body: BodyEnd,
    },
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyEnd {
    /// Complete, after `took` from the start of the request.
    Complete { took: Duration },
    /// The connection closed before the announced length arrived.
    Cut { took: Duration },
    /// Still incomplete at the probe's deadline `limit`, data still arriving (`flowing`) or not.
    Stalled { limit: Duration, flowing: bool },
}

impl Exchange {
    fn status(&self) -> Option<u16> {
        match self {
            Exchange::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn complete(&self) -> bool {
        matches!(
            self,
            Exchange::Answered {
                body: BodyEnd::Complete { .. },
                ..
            }
        )
    }
}

/// What the token PUT's answer was, beyond its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenShape {
    /// A non-empty body, valid as a header value.
    pub usable: bool,
    /// An empty body. Every SDK sends it as the token (an empty header is a valid one), so the
    /// run asks the role list with it too (see [`Evidence::role`]).
    pub empty: bool,
    /// An `x-aws-ec2-metadata-token-ttl-seconds` header that parses.
    pub ttl_header: bool,
}

/// What the role list's body was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleShape {
    /// A first line that is a role name.
    pub named: bool,
    /// Any `\n` or `\r` in the body (a trailing one included).
    pub newline: bool,
    /// More non-empty lines after the first.
    pub more_lines: bool,
}

/// What the credentials document was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DocShape {
    /// A JSON object.
    pub json: bool,
    /// `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration` are all present, and
    /// `Expiration` is a timestamp.
    pub complete: bool,
    pub code: Code,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Code {
    #[default]
    Absent,
    Success,
    Other,
}

/// One request and what its body was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen<S> {
    pub exchange: Exchange,
    pub shape: S,
}

/// The requests of one probe run that the replay reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// `PUT /latest/api/token`, and its immediate repeat when it answered 5xx or 401.
    pub token: Option<Seen<TokenShape>>,
    pub token_retry: Option<Seen<TokenShape>>,
    /// The role list with the token, and its repeat after a 5xx or 401. When the token answer
    /// was a 200 with an empty body, these are asked with that empty token, as the SDKs do.
    pub role: Option<Seen<RoleShape>>,
    pub role_retry: Option<Seen<RoleShape>>,
    /// The credentials document with the token, and its repeat after a 5xx or 401.
    pub credentials: Option<Seen<DocShape>>,
    pub credentials_retry: Option<Seen<DocShape>>,
    /// The role list without a token (IMDSv1), and, when it named a role and the token was not
    /// usable by every SDK, the document without a token.
    pub v1_role: Option<Seen<RoleShape>>,
    pub v1_credentials: Option<Seen<DocShape>>,
}

impl<S> Seen<S> {
    /// The status of the answer, if there was one.
    pub fn exchange_status(&self) -> Option<u16> {
        self.exchange.status()
    }
}

impl Evidence {
    /// The token answer was one every SDK takes (HTTP 200, a usable body, a TTL header): no SDK
    /// falls back to IMDSv1 then.
    pub fn token_for_every_sdk(&self) -> bool {
        // (An empty token is not one: it fails the exporter's chain, and every SDK sends it.)
        let ok = |t: &Seen<TokenShape>| {
            t.exchange_status() == Some(200)
                && t.exchange.complete()
                && t.shape.usable
                && t.shape.ttl_header
        };
        // The first answer: botocore and JavaScript fall back on it without retrying.
        self.token.as_ref().is_some_and(ok)
    }
}

/// An SDK's verdict on the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub available: bool,
    /// Seconds from creating the client to credentials or to giving up; infinite when the
    /// client would never settle.
    pub wait_seconds: f64,
}

impl Verdict {
    fn yes(wait: f64) -> Self {
        Self {
            available: true,
            wait_seconds: wait,
        }
    }

    fn no(wait: f64) -> Self {
        Self {
            available: false,
            wait_seconds: wait,
        }
    }

    fn hang() -> Self {
        Self::no(f64::INFINITY)
    }
}

/// Every SDK's verdict.
pub fn verdicts(e: &Evidence) -> [(Sdk, Verdict); 4] {
    Sdk::ALL.map(|sdk| (sdk, verdict(sdk, e)))
}

pub fn verdict(sdk: Sdk, e: &Evidence) -> Verdict {
    match sdk {
        Sdk::Python => one_shot(e, OneShot::PYTHON),
        Sdk::Javascript => one_shot(e, OneShot::JAVASCRIPT),
        Sdk::Rust => rust(e),
        Sdk::Go => go(e),
    }
}

// ---------------------------------------------------------------------------------------------
// What one request costs an SDK with a given timeout
// ---------------------------------------------------------------------------------------------

/// One request as an SDK with `timeout` to the response head sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// A complete answer with this status after `took`.
    Status(u16, f64),
    /// The SDK's timeout fired (or the connection failed) after `took`.
    Failed(f64),
    /// The body was cut by a closed connection after `took`.
    Cut(f64),
    /// The body never ends while the SDK keeps reading: it waits forever.
    Forever,
}

/// How an SDK reads a body that stalls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyWait {
    /// Gives up after this long without data (per read), and waits for a body that keeps
    /// flowing (botocore, JavaScript).
    Inactivity(f64),
    /// Gives up when this long has passed since the request started (Rust's attempt timeout,
    /// Go's operation deadline).
    Total(f64),
}

fn step(x: &Exchange, header_timeout: f64, body: BodyWait) -> Step {
    match *x {
        Exchange::Transport { took } => Step::Failed(took.as_secs_f64().min(header_timeout)),
        Exchange::NoHeaders { .. } => Step::Failed(header_timeout),
        Exchange::Answered { headers, .. } if headers.as_secs_f64() > header_timeout => {
            Step::Failed(header_timeout)
        }
        Exchange::Answered {
            status,
            body: end,
            headers,
        } => match end {
            BodyEnd::Complete { took } => Step::Status(status, took.as_secs_f64()),
            BodyEnd::Cut { took } => Step::Cut(took.as_secs_f64()),
            BodyEnd::Stalled { limit, flowing } => match body {
                BodyWait::Inactivity(_) if flowing => Step::Forever,
                // Silent since the head (or since the last data): the read timeout fires.
                BodyWait::Inactivity(t) => Step::Failed(headers.as_secs_f64() + t),
                BodyWait::Total(t) => Step::Failed(t.max(limit.as_secs_f64())),
            },
        },
    }
}

// ---------------------------------------------------------------------------------------------
// botocore and JavaScript v3: one attempt, 1 s timeouts, IMDSv1 fallback on anything but 400
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct OneShot {
    timeout: f64,
    /// A cut body: botocore reads the short body (invalid JSON: no credentials); JavaScript's
    /// promise never settles.
    cut_hangs: bool,
}

impl OneShot {
    const PYTHON: OneShot = OneShot {
        timeout: 1.0,
        cut_hangs: false,
    };
    const JAVASCRIPT: OneShot = OneShot {
        timeout: 1.0,
        cut_hangs: true,
    };
}

fn one_shot(e: &Evidence, sdk: OneShot) -> Verdict {
    let body = BodyWait::Inactivity(sdk.timeout);
    let Some(token) = &e.token else {
        return Verdict::no(0.0);
    };
    let mut wait = 0.0;
    // The token: used when answered 200 (the TTL header is not read); 400 is final; anything
    // else, a timeout included, falls back to IMDSv1.
    let v2 = match step(&token.exchange, sdk.timeout, body) {
        Step::Forever => return Verdict::hang(),
        Step::Status(400, t) => return Verdict::no(t),
        Step::Status(200, t) => {
            wait += t;
            // Any body is taken as the token, an empty one too: the GETs with it decide (IMDS
            // answers 401). A body that is no header value fails the first GET.
            if !token.shape.usable && !token.shape.empty {
                return Verdict::no(wait + first_get(e, sdk.timeout, body));
            }
            true
        }
        Step::Cut(t) if sdk.cut_hangs => {
            let _ = t;
            return Verdict::hang();
        }
        Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => {
            wait += t;
            false
        }
    };
    let (role, credentials) = if v2 {
        (&e.role, &e.credentials)
    } else {
        (&e.v1_role, &e.v1_credentials)
    };
    let Some(role) = role else {
        return Verdict::no(wait);
    };
    match step(&role.exchange, sdk.timeout, body) {
        Step::Forever => return Verdict::hang(),
        Step::Cut(_) if sdk.cut_hangs => return Verdict::hang(),
        Step::Status(200, t) => {
            wait += t;
            // botocore drops \n, \r and \t when it builds the next URL, so a trailing newline
            // is harmless and a second line is glued to the first (a role that does not exist);
            // JavaScript trims the body, and a newline left inside makes node refuse the URL.
            if !role.shape.named || role.shape.more_lines {
                return Verdict::no(wait);
            }
        }
        Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => return Verdict::no(wait + t),
    }
    let Some(doc) = credentials else {
        return Verdict::no(wait);
    };
    match step(&doc.exchange, sdk.timeout, body) {
        Step::Forever => Verdict::hang(),
        Step::Cut(_) if sdk.cut_hangs => Verdict::hang(),
        // The four fields are all either SDK reads; `Code` is ignored; an expired document is
        // accepted (and its expiry moved a few minutes ahead).
        Step::Status(200, t) if doc.shape.json && doc.shape.complete => Verdict::yes(wait + t),
        Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => Verdict::no(wait + t),
    }
}

/// The cost of the first GET after an unusable token (it is answered 401, or fails).
fn first_get(e: &Evidence, timeout: f64, body: BodyWait) -> f64 {
    e.role
        .as_ref()
        .map_or(0.0, |r| match step(&r.exchange, timeout, body) {
            Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => t,
            Step::Forever => f64::INFINITY,
        })
}

// ---------------------------------------------------------------------------------------------
// Retrying SDKs (Rust, Go): one request with retries
// ---------------------------------------------------------------------------------------------

/// How an SDK retries one request.
struct Retries {
    header_timeout: f64,
    body: BodyWait,
    attempts: usize,
    /// The wait before retry `n` (1-based).
    backoff: fn(usize) -> f64,
    retryable: fn(&Step) -> bool,
}

/// The end of one request after the retries: the last status (or none) and the shape of the
/// answer it came with.
struct Ended<S> {
    status: Option<u16>,
    shape: S,
}

/// Replays one request: the first attempt as the probe saw it, every repeat as the probe's own
/// repeat saw it (or as the first, when the probe made none). Adds the time to `wait`.
fn with_retries<S: Copy + Default>(
    first: &Seen<S>,
    retry: Option<&Seen<S>>,
    how: &Retries,
    wait: &mut f64,
) -> Ended<S> {
    let mut n = 0;
    loop {
        let seen = if n == 0 {
            first
        } else {
            retry.unwrap_or(first)
        };
        let s = step(&seen.exchange, how.header_timeout, how.body);
        match s {
            Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => *wait += t,
            Step::Forever => *wait = f64::INFINITY,
        }
        n += 1;
        if !(how.retryable)(&s) || n >= how.attempts {
            return match s {
                Step::Status(status, _) => Ended {
                    status: Some(status),
                    shape: seen.shape,
                },
                _ => Ended {
                    status: None,
                    shape: S::default(),
                },
            };
        }
        *wait += (how.backoff)(n);
    }
}

// ---------------------------------------------------------------------------------------------
// Rust aws-config: IMDSv2 only, 1 s to the head, 10 s per attempt, 4 attempts on 5xx and 401
// ---------------------------------------------------------------------------------------------

/// aws-config's IMDS client: 4 attempts, retrying 5xx and 401 only (never a timeout, a refused
/// connection or 429), with the standard strategy's full-jitter backoff (0..1, 0..2, 0..4 s),
/// counted at its mean.
const RUST: Retries = Retries {
    header_timeout: 1.0,
    body: BodyWait::Total(10.0),
    attempts: 4,
    backoff: |n| 0.5 * f64::from(1u32 << (n - 1)),
    retryable: |s| matches!(s, Step::Status(s, _) if *s >= 500 || *s == 401),
};

fn rust(e: &Evidence) -> Verdict {
    let mut wait = 0.0;
    let Some(token) = &e.token else {
        return Verdict::no(0.0);
    };
    // No IMDSv1 path: the token needs status 200, a TTL header and a body valid as a header,
    // an empty one included (400 and 403 are errors; other statuses make the body a "token"
    // without a TTL header). An empty token is sent, answered 401, and retried as a 401.
    let t = with_retries(token, e.token_retry.as_ref(), &RUST, &mut wait);
    if t.status != Some(200) || !t.shape.ttl_header || !(t.shape.usable || t.shape.empty) {
        return Verdict::no(wait);
    }
    let Some(role) = &e.role else {
        return Verdict::no(wait);
    };
    // The role list is used whole: a newline in it panics inside aws-config (an invalid URI).
    let r = with_retries(role, e.role_retry.as_ref(), &RUST, &mut wait);
    if r.status != Some(200) || !r.shape.named || r.shape.newline {
        return Verdict::no(wait);
    }
    let Some(doc) = &e.credentials else {
        return Verdict::no(wait);
    };
    // `Code` absent or "Success"; an expired document is accepted (its expiry moved ahead).
    let d = with_retries(doc, e.credentials_retry.as_ref(), &RUST, &mut wait);
    let usable =
        d.shape.json && d.shape.complete && matches!(d.shape.code, Code::Absent | Code::Success);
    Verdict {
        available: d.status == Some(200) && usable,
        wait_seconds: wait,
    }
}

// ---------------------------------------------------------------------------------------------
// Go v2: 0.5 s to the head, 3 attempts 1 s apart, a 5 s deadline per operation, IMDSv1 fallback
// ---------------------------------------------------------------------------------------------

const GO_DEADLINE: f64 = 5.0;

/// aws-sdk-go-v2's IMDS client: 3 attempts exactly 1 s apart, retrying 500/502/503/504,
/// connection failures and head timeouts (never 429, nor a body cut after the head);
/// 0.5 s to the response head.
const GO: Retries = Retries {
    header_timeout: 0.5,
    body: BodyWait::Total(GO_DEADLINE),
    attempts: 3,
    backoff: |_| 1.0,
    retryable: |s| match s {
        Step::Status(s, _) => matches!(s, 500 | 502 | 503 | 504),
        Step::Failed(_) => true,
        Step::Cut(_) | Step::Forever => false,
    },
};

/// The Go client's token provider between requests (`imds/token_provider.go`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum GoToken {
    /// Enabled, nothing cached: the next attempt of a GET asks for a token first (at the start,
    /// after a bypass, and after a 401 on a GET, which clears the token and re-enables tokens).
    Ask,
    /// A token is cached: GETs go with it (IMDSv2).
    Cached,
    /// Tokens off (403, 404, 405, a transport failure or head timeout): GETs go without one
    /// (IMDSv1) until a 401 turns them on again.
    Off,
}

/// One Go client over the run's evidence: its token provider's state and the token answers it
/// has used, carried from the role list's operation to the credentials'.
struct GoClient<'a> {
    e: &'a Evidence,
    token: GoToken,
    /// Token PUTs made so far: the first gets the probe's first answer, later ones its repeat.
    token_puts: usize,
}

/// How a GET operation ended, and its cost within the operation's 5 s deadline.
struct GoGet<S> {
    ended: Option<Ended<S>>,
    spent: f64,
}

impl<S: Copy + Default> GoGet<S> {
    fn failed(spent: f64) -> Self {
        GoGet {
            ended: None,
            spent: spent.min(GO_DEADLINE),
        }
    }
}

impl<'a> GoClient<'a> {
    fn new(e: &'a Evidence) -> Self {
        Self {
            e,
            token: GoToken::Ask,
            token_puts: 0,
        }
    }

    /// The token step of one GET attempt: whether the GET goes with a token; `None` when the
    /// attempt fails (a 400, or no evidence). The token fetch is an operation of its own, with
    /// its own retries, inside the GET's deadline.
    fn token_for_attempt(&mut self, spent: &mut f64) -> Option<bool> {
        match self.token {
            GoToken::Cached => return Some(true),
            GoToken::Off => return Some(false),
            GoToken::Ask => {}
        }
        let e = self.e;
        let first = if self.token_puts == 0 {
            e.token.as_ref()
        } else {
            e.token_retry.as_ref().or(e.token.as_ref())
        }?;
        let t = with_retries(first, e.token_retry.as_ref(), &GO, spent);
        self.token_puts += 1;
        match t.status {
            // An empty body with a TTL header is a token too: it is sent as it is.
            Some(200) if t.shape.ttl_header => {
                self.token = GoToken::Cached;
                Some(true)
            }
            // 400 is final: the GET attempt fails, and it is not retried.
            Some(400) => None,
            Some(403..=405) | None => {
                self.token = GoToken::Off;
                Some(false)
            }
            // 429, a 5xx after the retries, no TTL header: this attempt goes without a token,
            // the next one asks again.
            Some(_) => Some(false),
        }
    }

    /// One GET operation: up to 3 attempts 1 s apart, each after its token step. Retried: 500,
    /// 502, 503, 504, a transport failure or head timeout, and a 401 (which clears the token and
    /// turns tokens back on, `HandleDeserialize`). With a token the first attempt gets the
    /// probe's answer and later ones its repeat; without one, the token-less answer.
    fn get<S: Copy + Default>(
        &mut self,
        with_token: Option<&Seen<S>>,
        with_token_retry: Option<&Seen<S>>,
        without: Option<&Seen<S>>,
    ) -> GoGet<S> {
        let mut spent = 0.0;
        let mut tokened = 0;
        for attempt in 1..=GO.attempts {
            if attempt > 1 {
                spent += (GO.backoff)(attempt - 1);
            }
            let Some(v2) = self.token_for_attempt(&mut spent) else {
                return GoGet::failed(spent);
            };
            let seen = if v2 {
                tokened += 1;
                if tokened == 1 {
                    with_token
                } else {
                    with_token_retry.or(with_token)
                }
            } else {
                without
            };
            let Some(seen) = seen else {
                return GoGet::failed(spent);
            };
            let s = step(&seen.exchange, GO.header_timeout, GO.body);
            match s {
                Step::Status(_, t) | Step::Failed(t) | Step::Cut(t) => spent += t,
                Step::Forever => spent = f64::INFINITY,
            }
            if spent >= GO_DEADLINE {
                return GoGet::failed(spent);
            }
            let unauthorized = matches!(s, Step::Status(401, _));
            if unauthorized {
                self.token = GoToken::Ask;
            }
            if !(unauthorized || (GO.retryable)(&s)) || attempt == GO.attempts {
                return GoGet {
                    ended: match s {
                        Step::Status(status, _) => Some(Ended {
                            status: Some(status),
                            shape: seen.shape,
                        }),
                        _ => None,
                    },
                    spent,
                };
            }
        }
        GoGet::failed(spent)
    }
}

fn go(e: &Evidence) -> Verdict {
    let mut client = GoClient::new(e);
    // The role list's operation: the token fetch and the GET share one 5 s deadline.
    let role = client.get(e.role.as_ref(), e.role_retry.as_ref(), e.v1_role.as_ref());
    let wait = role.spent;
    // The first line of the body names the role.
    match role.ended {
        Some(Ended {
            status: Some(200),
            shape,
        }) if shape.named => {}
        _ => return Verdict::no(wait),
    }
    // The credentials' operation: its own 5 s, with the token provider as the role list left it.
    let doc = client.get(
        e.credentials.as_ref(),
        e.credentials_retry.as_ref(),
        e.v1_credentials.as_ref(),
    );
    // `Code` must be "Success" (a document without one is refused); expired credentials are
    // returned as served.
    let available = matches!(
        doc.ended,
        Some(Ended { status: Some(200), shape })
            if shape.json && shape.complete && shape.code == Code::Success
    );
    Verdict {
        available,
        wait_seconds: wait + doc.spent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A complete answer with `status` after 2 ms.
    fn answer(status: u16) -> Exchange {
        Exchange::Answered {
            status,
            headers: ms(1),
            body: BodyEnd::Complete { took: ms(2) },
        }
    }

    fn slow(status: u16, after: u64) -> Exchange {
        Exchange::Answered {
            status,
            headers: ms(after),
            body: BodyEnd::Complete { took: ms(after) },
        }
    }

    const SILENCE: Exchange = Exchange::NoHeaders {
        limit: Duration::from_secs(1),
    };
    const REFUSED: Exchange = Exchange::Transport {
        took: Duration::from_millis(1),
    };

    fn token(x: Exchange) -> Option<Seen<TokenShape>> {
        let ok = x.status() == Some(200);
        Some(Seen {
            exchange: x,
            shape: TokenShape {
                usable: ok,
                empty: false,
                ttl_header: ok,
            },
        })
    }

    fn role(x: Exchange) -> Option<Seen<RoleShape>> {
        let ok = x.status() == Some(200);
        Some(Seen {
            exchange: x,
            shape: RoleShape {
                named: ok,
                newline: false,
                more_lines: false,
            },
        })
    }

    fn doc(x: Exchange) -> Option<Seen<DocShape>> {
        let ok = x.status() == Some(200);
        Some(Seen {
            exchange: x,
            shape: DocShape {
                json: ok,
                complete: ok,
                code: if ok { Code::Success } else { Code::Absent },
            },
        })
    }

    /// IMDS answering `token` for the PUT and `rest` for every GET, with and without a token.
    fn everywhere(token_x: Exchange, rest: Exchange) -> Evidence {
        Evidence {
            token: token(token_x),
            role: role(rest),
            credentials: doc(rest),
            v1_role: role(rest),
            v1_credentials: doc(rest),
            ..Evidence::default()
        }
    }

    fn healthy() -> Evidence {
        everywhere(answer(200), answer(200))
    }

    /// (available, wait) for python, javascript, rust, go; `None` for a wait not checked here.
    type Row = [(bool, Option<f64>); 4];

    fn check(name: &str, e: &Evidence, want: Row) {
        for ((sdk, got), (available, wait)) in verdicts(e).into_iter().zip(want) {
            assert_eq!(
                got.available,
                available,
                "{name}: {} available ({got:?})",
                sdk.as_str()
            );
            if let Some(w) = wait {
                assert!(
                    (got.wait_seconds - w).abs() < 0.05
                        || (w.is_infinite() && got.wait_seconds.is_infinite()),
                    "{name}: {} waits {} s, want {w} s",
                    sdk.as_str(),
                    got.wait_seconds
                );
            }
        }
    }

    const YES: (bool, Option<f64>) = (true, None);

    #[test]
    fn a_healthy_imds_gives_every_sdk_credentials_at_once() {
        check("healthy", &healthy(), [YES; 4]);
    }

    /// docs/sdk-model.md, "Total wait": no answer at all.
    #[test]
    fn an_outage_costs_each_sdk_its_own_timeouts() {
        let e = everywhere(SILENCE, SILENCE);
        check(
            "outage",
            &e,
            [
                (false, Some(2.0)),
                (false, Some(2.0)),
                (false, Some(1.0)),
                (false, Some(5.0)),
            ],
        );
    }

    #[test]
    fn refused_connections_fail_at_once_except_for_go_which_retries() {
        let e = everywhere(REFUSED, REFUSED);
        check(
            "refused",
            &e,
            [
                (false, Some(0.002)),
                (false, Some(0.002)),
                (false, Some(0.001)),
                (false, Some(4.004)),
            ],
        );
    }

    /// The hop-limit signature: the token PUT gets no answer, token-less GETs work.
    #[test]
    fn behind_a_hop_limit_all_but_rust_fall_back_to_imdsv1() {
        let mut e = everywhere(SILENCE, answer(200));
        e.role = None;
        e.credentials = None;
        check(
            "hop-limit",
            &e,
            [
                (true, Some(1.004)),
                (true, Some(1.004)),
                (false, Some(1.0)),
                (true, Some(3.504)),
            ],
        );
        // With IMDSv1 off as well, nobody gets any; Go runs into its deadline.
        e.v1_role = role(answer(401));
        e.v1_credentials = None;
        check(
            "hop-limit-v2-only",
            &e,
            [
                (false, None),
                (false, None),
                (false, Some(1.0)),
                (false, Some(5.0)),
            ],
        );
    }

    #[test]
    fn token_answers_other_than_400_send_the_fallback_sdks_to_imdsv1() {
        for status in [403, 404, 405, 429, 500, 503] {
            let mut e = everywhere(answer(status), answer(200));
            e.role = None;
            e.credentials = None;
            let rust = (false, None);
            check(&format!("token {status}"), &e, [YES, YES, rust, YES]);
        }
        let e = everywhere(answer(400), answer(200));
        check("token 400", &e, [(false, None); 4]);
    }

    #[test]
    fn a_5xx_survived_by_retrying_only_counts_for_rust_and_go() {
        // The credentials document: 500 once, then 200 on the probe's repeat.
        let mut e = healthy();
        e.credentials = doc(answer(500));
        e.credentials_retry = doc(answer(200));
        let no = (false, None);
        check("credentials 500 once", &e, [no, no, YES, YES]);
        // 500 on every try: nobody.
        e.credentials_retry = doc(answer(500));
        check("credentials 500", &e, [no; 4]);
    }

    #[test]
    fn throttling_is_retried_by_nobody() {
        let mut e = healthy();
        e.credentials = doc(answer(429));
        check("credentials 429", &e, [(false, None); 4]);
    }

    #[test]
    fn latency_between_half_a_second_and_one_costs_go_only() {
        let x = slow(200, 700);
        let e = everywhere(x, x);
        check(
            "slow 700 ms",
            &e,
            [
                (true, Some(2.1)),
                (true, Some(2.1)),
                (true, Some(2.1)),
                (false, Some(5.0)),
            ],
        );
    }

    #[test]
    fn a_cut_transfer_fails_every_sdk_and_hangs_javascript() {
        let cut = Exchange::Answered {
            status: 200,
            headers: ms(1),
            body: BodyEnd::Cut { took: ms(20) },
        };
        let mut e = healthy();
        e.credentials = doc(cut);
        check(
            "truncated transfer",
            &e,
            [
                (false, None),
                (false, Some(f64::INFINITY)),
                (false, None),
                (false, None),
            ],
        );
    }

    #[test]
    fn a_body_that_never_ends_hangs_the_sdks_that_wait_for_data() {
        let endless = Exchange::Answered {
            status: 200,
            headers: ms(1),
            body: BodyEnd::Stalled {
                limit: Duration::from_secs(1),
                flowing: true,
            },
        };
        let e = everywhere(endless, endless);
        check(
            "endless body",
            &e,
            [
                (false, Some(f64::INFINITY)),
                (false, Some(f64::INFINITY)),
                (false, Some(10.0)),
                (false, Some(5.0)),
            ],
        );
    }

    #[test]
    fn the_document_is_judged_as_each_sdk_judges_it() {
        let with = |code: Code, complete: bool| {
            let mut e = healthy();
            e.credentials = Some(Seen {
                exchange: answer(200),
                shape: DocShape {
                    json: true,
                    complete,
                    code,
                },
            });
            e
        };
        let no = (false, None);
        // botocore and JavaScript ignore Code; Rust refuses another Code; Go wants "Success".
        check("Code other", &with(Code::Other, true), [YES, YES, no, no]);
        check("no Code", &with(Code::Absent, true), [YES, YES, YES, no]);
        // Without SecretAccessKey and Token nobody has credentials.
        check("keys missing", &with(Code::Success, false), [no; 4]);
    }

    #[test]
    fn a_role_list_with_newlines_trips_rust_and_a_second_line_the_one_shot_sdks() {
        let with = |newline: bool, more_lines: bool| {
            let mut e = healthy();
            e.role = Some(Seen {
                exchange: answer(200),
                shape: RoleShape {
                    named: true,
                    newline,
                    more_lines,
                },
            });
            e
        };
        let no = (false, None);
        check("role\\n", &with(true, false), [YES, YES, no, YES]);
        check("role\\nother", &with(true, true), [no, no, no, YES]);
    }

    #[test]
    fn a_token_without_a_ttl_header_is_rusts_problem_and_sends_go_to_imdsv1() {
        let mut e = healthy();
        e.token = Some(Seen {
            exchange: answer(200),
            shape: TokenShape {
                usable: true,
                empty: false,
                ttl_header: false,
            },
        });
        check("no ttl", &e, [YES, YES, (false, None), YES]);
        assert!(!e.token_for_every_sdk());
        assert!(healthy().token_for_every_sdk());
    }

    /// tests/sdk: a token answer of 200 with a TTL header and an empty body. Every SDK sends the
    /// empty token; IMDS answers its GETs 401. Rust retries the 401 four times (0-7 s of
    /// backoff, 3.5 s on average), Go three times, 1 s apart, asking for a token before each.
    /// (Before the run asked the role list with the empty token, the verdicts said 0 s.)
    #[test]
    fn an_empty_token_is_sent_and_its_401_retried_by_rust_and_go() {
        let mut e = everywhere(answer(200), answer(200));
        e.token = Some(Seen {
            exchange: answer(200),
            shape: TokenShape {
                usable: false,
                empty: true,
                ttl_header: true,
            },
        });
        e.role = role(answer(401));
        e.role_retry = role(answer(401));
        e.credentials = None;
        assert!(!e.token_for_every_sdk());
        check(
            "empty token",
            &e,
            [
                (false, Some(0.004)),
                (false, Some(0.004)),
                (false, Some(3.5 + 0.002 + 4.0 * 0.002)),
                (false, Some(2.0 + 3.0 * 0.004)),
            ],
        );
    }

    /// tests/sdk: Go retries a 401 on a GET, token-less ones included, and asks for a token again
    /// before each retry (`HandleDeserialize` re-enables and clears it). A token answer that Go
    /// bypasses (429, no TTL header) in front of IMDSv1 refusing token-less GETs: three rounds of
    /// token PUT and 401, 2 s of backoff. (Before: one retry counted, 1 s.)
    #[test]
    fn go_retries_a_401_and_asks_for_a_token_before_each_retry() {
        let mut e = everywhere(answer(429), answer(401));
        e.role = None;
        e.credentials = None;
        e.v1_credentials = None;
        let go = (false, Some(2.0 + 3.0 * 0.004));
        check(
            "v2only token 429",
            &e,
            [(false, None), (false, None), (false, None), go],
        );
        // The minimal look-alike: a token without a TTL header (Go bypasses it), tokens required.
        let mut e = everywhere(answer(200), answer(401));
        e.token = Some(Seen {
            exchange: answer(200),
            shape: TokenShape {
                usable: true,
                empty: false,
                ttl_header: false,
            },
        });
        e.role = role(answer(200));
        e.credentials = doc(answer(200));
        check("minimal", &e, [YES, YES, (false, None), go]);
        // Tokens off after a hop-limit timeout: the 401 turns them on, the PUT times out again,
        // and the 5 s deadline ends it.
        let mut e = everywhere(SILENCE, answer(401));
        e.role = None;
        e.credentials = None;
        check(
            "hop-limit v2 only",
            &e,
            [
                (false, None),
                (false, None),
                (false, None),
                (false, Some(5.0)),
            ],
        );
    }
}
