//! The simulator's credentials: a rotation schedule and the documents it serves.
//!
//! Credentials are numbered generations. In `healthy`, generation n+1 is issued `rotate_every`
//! after generation n and each lives `lifetime`, so new ones appear long before the old expire,
//! as on EC2 (reissued about hourly, valid about six hours). Other scenarios bend the schedule:
//! `stale` and `expiring` stop it, `rotate-late` issues only `lead` before expiry, `expired`
//! serves a generation that has already expired. Secrets are derived from a per-process random
//! seed, so tests can read them from the simulator and then look for them where they must not be.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;

use super::scenario::Scenario;

#[derive(Debug, Clone)]
pub struct Generation {
    pub generation: u64,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    seed: u64,
}

impl Generation {
    pub fn access_key_id(&self) -> String {
        // "ASIA" marks temporary credentials, as on AWS.
        format!(
            "ASIASIM{:013X}",
            (self.seed ^ self.generation) & 0xF_FFFF_FFFF_FFFF
        )
    }

    /// The secret strings this generation serves (tests search for them in what must not
    /// contain them).
    pub fn secret_access_key(&self) -> String {
        format!("simSECRET{:016x}{:08x}key", self.seed, self.generation)
    }

    pub fn session_token(&self) -> String {
        format!(
            "simTOKEN{:016x}{:08x}IQoJb3JpZ2luX2VjEHEaCXVzLWVhc3QtMSJHMEUCIQDsimulated",
            self.seed.rotate_left(17),
            self.generation
        )
    }

    /// The credentials document, as IMDS renders it.
    pub fn document(&self) -> String {
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!(
            "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"{}\",\n  \"SecretAccessKey\" : \"{}\",\n  \"Token\" : \"{}\",\n  \"Expiration\" : \"{}\"\n}}",
            ts(self.issued),
            self.access_key_id(),
            self.secret_access_key(),
            self.session_token(),
            ts(self.expires)
        )
    }
}

#[derive(Debug, Clone)]
pub struct CredentialSchedule {
    rotate_every: ChronoDuration,
    lifetime: ChronoDuration,
    current: Generation,
}

/// IMDS timestamps have whole seconds; issuing on whole seconds keeps the documents exact.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// `d` as chrono's duration; `None` past chrono's range (about 292 billion years).
fn chrono(d: Duration) -> Option<ChronoDuration> {
    ChronoDuration::from_std(d).ok()
}

/// How many whole `step`s fit in `span` (both positive), or `None` if either does not fit in
/// nanoseconds (292 years): the schedule's catch-up, computed at once rather than a step at a
/// time, so that it costs the same after a second or a year and with any step.
fn whole_steps(span: ChronoDuration, step: ChronoDuration) -> Option<i64> {
    let (span, step) = (span.num_nanoseconds()?, step.num_nanoseconds()?);
    (step > 0 && span >= 0).then(|| span / step)
}

/// `step` times `n`, when `n` steps fit in a span that fits in nanoseconds.
fn times(step: ChronoDuration, n: i64) -> Option<ChronoDuration> {
    Some(ChronoDuration::nanoseconds(
        step.num_nanoseconds()?.checked_mul(n)?,
    ))
}

impl CredentialSchedule {
    /// A schedule issuing generation 0 now. The flags' bounds
    /// ([`super::limits::MAX_CREDENTIAL_TIME`]) keep every date it computes in range; a duration
    /// outside chrono's range is an error naming the flag.
    pub fn new(rotate_every: Duration, lifetime: Duration) -> Result<Self, String> {
        Self::with_seed(rotate_every, lifetime, fastrand::u64(..))
    }

    pub fn with_seed(
        rotate_every: Duration,
        lifetime: Duration,
        seed: u64,
    ) -> Result<Self, String> {
        let now = whole_seconds(Utc::now());
        let out_of_range = |flag: &str, d: Duration| {
            format!("{flag} {} is out of range", humantime::format_duration(d))
        };
        let rotate_every = chrono(rotate_every)
            .filter(|d| *d > ChronoDuration::zero())
            .ok_or_else(|| out_of_range("--rotate-every", rotate_every))?;
        let (lifetime, expires) = chrono(lifetime)
            .and_then(|l| Some((l, now.checked_add_signed(l)?)))
            .ok_or_else(|| out_of_range("--lifetime", lifetime))?;
        Ok(Self {
            rotate_every,
            lifetime,
            current: Generation {
                generation: 0,
                issued: now,
                expires,
                seed,
            },
        })
    }

    /// Replaces the current generation with the `n`th after it.
    fn issue_nth(&mut self, n: u64, issued: DateTime<Utc>, expires: DateTime<Utc>) {
        self.current = Generation {
            // An identifier, not a count anyone adds up: wrapping is harmless, a panic is not.
            generation: self.current.generation.wrapping_add(n),
            issued,
            expires,
            seed: self.current.seed,
        };
    }

    fn issue(&mut self, issued: DateTime<Utc>, expires: DateTime<Utc>) {
        self.issue_nth(1, issued, expires);
    }

    /// Applies what a switch to `scenario` at `now` does to the credentials. A date out of
    /// chrono's range is an error naming the parameter, and leaves the schedule as it was.
    pub fn switch(&mut self, scenario: &Scenario, now: DateTime<Utc>) -> Result<(), String> {
        let now = whole_seconds(now);
        let out_of_range = |what: &str| format!("{what}: the dates would be out of range");
        match scenario {
            Scenario::Expired => {
                let (issued, expires) = now
                    .checked_sub_signed(ChronoDuration::minutes(1))
                    .and_then(|e| Some((e.checked_sub_signed(self.lifetime)?, e)))
                    .ok_or_else(|| out_of_range("--lifetime"))?;
                self.issue(issued, expires);
            }
            Scenario::Expiring { in_ } => {
                // The same key, re-dated to expire soon: what an instance whose role session
                // could not be renewed serves. (A new key would read as a rotation.)
                self.current.expires = chrono(*in_)
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| out_of_range("in"))?;
            }
            _ => {
                // Back from a frozen or expired state: the service issues fresh credentials.
                if self.current.expires <= now {
                    let expires = now
                        .checked_add_signed(self.lifetime)
                        .ok_or_else(|| out_of_range("--lifetime"))?;
                    self.issue(now, expires);
                }
            }
        }
        Ok(())
    }

    /// The generation served at `now` under `scenario`, advancing the schedule. (Dates out of
    /// range, which the bounds on the flags and parameters rule out, stop the schedule instead
    /// of panicking.)
    pub fn current(&mut self, scenario: &Scenario, now: DateTime<Utc>) -> Generation {
        match scenario {
            Scenario::Stale | Scenario::Expiring { .. } | Scenario::Expired => {}
            Scenario::RotateLate { lead } => {
                // Each late issue comes `lead` before the expiry of the one before, and lives
                // `lifetime`: the k-th comes (k - 1) * (lifetime - lead) after the first.
                // `Scenario::parse` keeps `lead` below `lifetime`; with no step forward the
                // schedule would never catch up, so it does not move.
                let _ = self.rotate_late(*lead, now);
            }
            _ => {
                let _ = self.healthy(now);
            }
        }
        self.current.clone()
    }

    fn rotate_late(&mut self, lead: Duration, now: DateTime<Utc>) -> Option<()> {
        let lead = chrono(lead)?;
        let step = self.lifetime.checked_sub(&lead)?;
        let first = self.current.expires.checked_sub_signed(lead)?;
        if now < first || step <= ChronoDuration::zero() {
            return Some(());
        }
        let k = whole_steps(now.signed_duration_since(first), step)?.checked_add(1)?;
        let issued = first.checked_add_signed(times(step, k - 1)?)?;
        let expires = issued.checked_add_signed(self.lifetime)?;
        self.issue_nth(k as u64, issued, expires);
        Some(())
    }

    fn healthy(&mut self, now: DateTime<Utc>) -> Option<()> {
        // Long frozen, or re-dated by `expiring` (the schedule never issues anything else):
        // start again from now, rather than replaying missed issues or serving credentials that
        // expire before the next rotation is due.
        let redated =
            self.current.issued.checked_add_signed(self.lifetime) != Some(self.current.expires);
        if now.signed_duration_since(self.current.issued) > self.lifetime || redated {
            let now = whole_seconds(now);
            self.issue(now, now.checked_add_signed(self.lifetime)?);
        }
        // The rotations due since: the n-th is n * rotate_every after the current issue.
        let n = whole_steps(
            now.signed_duration_since(self.current.issued),
            self.rotate_every,
        )?;
        if n > 0 {
            let issued = self
                .current
                .issued
                .checked_add_signed(times(self.rotate_every, n)?)?;
            self.issue_nth(n as u64, issued, issued.checked_add_signed(self.lifetime)?);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn healthy_rotates_on_schedule_well_before_expiry() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7).unwrap();
        let t0 = s.current.issued;
        let g0 = s.current(&Scenario::Healthy, t0);
        let g = s.current(&Scenario::Healthy, t0 + ChronoDuration::minutes(59));
        assert_eq!(g.generation, g0.generation);
        let g1 = s.current(&Scenario::Healthy, t0 + ChronoDuration::minutes(61));
        assert_eq!(g1.generation, g0.generation + 1);
        assert_ne!(g1.access_key_id(), g0.access_key_id());
        assert_eq!(g1.issued, t0 + ChronoDuration::hours(1));
        assert_eq!(g1.expires - g1.issued, ChronoDuration::hours(6));
    }

    #[test]
    fn stale_stops_rotation_and_rotate_late_issues_at_the_lead() {
        let mut s = CredentialSchedule::with_seed(secs(60), secs(600), 7).unwrap();
        let t0 = s.current.issued;
        let g0 = s.current(&Scenario::Stale, t0 + ChronoDuration::minutes(5));
        assert_eq!(g0.generation, 0);
        let late = Scenario::RotateLate { lead: secs(120) };
        let g = s.current(&late, t0 + ChronoDuration::minutes(7));
        assert_eq!(g.generation, 0, "not yet: 3 minutes left");
        let g = s.current(&late, t0 + ChronoDuration::minutes(8));
        assert_eq!(g.generation, 1);
        assert_eq!(g.issued, g0.expires - ChronoDuration::minutes(2));
    }

    #[test]
    fn catching_up_on_several_rotations_lands_where_one_at_a_time_would() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7).unwrap();
        let t0 = s.current.issued;
        let g = s.current(
            &Scenario::Healthy,
            t0 + ChronoDuration::minutes(3 * 60 + 30),
        );
        assert_eq!(g.generation, 3);
        assert_eq!(g.issued, t0 + ChronoDuration::hours(3));
        assert_eq!(g.expires, t0 + ChronoDuration::hours(9));

        // rotate-late, lifetime 10m, lead 2m: issues at 8m, 16m, 24m after t0.
        let mut s = CredentialSchedule::with_seed(secs(60), secs(600), 7).unwrap();
        let t0 = s.current.issued;
        let late = Scenario::RotateLate { lead: secs(120) };
        let g = s.current(&late, t0 + ChronoDuration::minutes(24));
        assert_eq!(g.generation, 3);
        assert_eq!(g.issued, t0 + ChronoDuration::minutes(24));
        assert_eq!(g.expires, t0 + ChronoDuration::minutes(34));
        let g = s.current(
            &late,
            t0 + ChronoDuration::minutes(32) - ChronoDuration::seconds(1),
        );
        assert_eq!(g.generation, 3, "the next is due at 32m");
    }

    #[test]
    fn tiny_steps_and_far_times_cost_one_computation_and_never_panic() {
        // A lead a nanosecond short of the lifetime: a late set every nanosecond, caught up at
        // once rather than a billion times a second under the simulator's lock.
        let lifetime = secs(6 * 3600);
        let mut s = CredentialSchedule::with_seed(secs(3600), lifetime, 7).unwrap();
        let t0 = s.current.issued;
        let late = Scenario::RotateLate {
            lead: lifetime - Duration::from_nanos(1),
        };
        let g = s.current(&late, t0 + ChronoDuration::hours(1));
        assert_eq!(g.generation, 3_600_000_000_000);
        assert!(g.expires > t0 + ChronoDuration::hours(1));
        // A lead as long as the lifetime (refused by Scenario::parse) would never catch up: the
        // schedule stays put instead of looping.
        let mut s = CredentialSchedule::with_seed(secs(3600), lifetime, 7).unwrap();
        let g = s.current(
            &Scenario::RotateLate { lead: lifetime },
            t0 + ChronoDuration::hours(7),
        );
        assert_eq!(g.generation, 0);
        // Times far outside chrono's range are errors, not panics.
        assert!(CredentialSchedule::with_seed(secs(1), Duration::MAX, 7).is_err());
        let mut s = CredentialSchedule::with_seed(secs(3600), lifetime, 7).unwrap();
        let before = s.current.clone();
        let err = s
            .switch(
                &Scenario::Expiring {
                    in_: secs(u64::MAX / 4),
                },
                t0,
            )
            .unwrap_err();
        assert!(err.starts_with("in:"), "{err}");
        assert_eq!(s.current.expires, before.expires, "left as it was");
        let g = s.current(&Scenario::Healthy, DateTime::<Utc>::MAX_UTC);
        assert_eq!(g.generation, 0, "no date to issue at");
    }

    #[test]
    fn expired_and_expiring_move_the_expiration() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7).unwrap();
        let now = s.current.issued + ChronoDuration::minutes(10);
        s.switch(&Scenario::Expired, now).unwrap();
        let g = s.current(&Scenario::Expired, now);
        assert!(g.expires < now);
        s.switch(&Scenario::Healthy, now).unwrap();
        let g = s.current(&Scenario::Healthy, now);
        assert!(g.expires > now + ChronoDuration::hours(5));
        let key = g.access_key_id();
        s.switch(&Scenario::Expiring { in_: secs(240) }, now)
            .unwrap();
        let g = s.current(&Scenario::Expiring { in_: secs(240) }, now);
        assert_eq!(g.expires, now + ChronoDuration::minutes(4));
        assert_eq!(g.access_key_id(), key);
    }

    #[test]
    fn healthy_after_expiring_issues_fresh_credentials() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7).unwrap();
        let t0 = s.current.issued + ChronoDuration::minutes(10);
        let expiring = Scenario::Expiring { in_: secs(240) };
        s.switch(&expiring, t0).unwrap();
        let old = s.current(&expiring, t0);
        let now = t0 + ChronoDuration::minutes(1);
        s.switch(&Scenario::Healthy, now).unwrap();
        let g = s.current(&Scenario::Healthy, now);
        assert_ne!(g.access_key_id(), old.access_key_id());
        assert_eq!(g.expires - g.issued, ChronoDuration::hours(6));
        assert!(g.expires > now + ChronoDuration::hours(5));
        // And the schedule runs on from there.
        let later = s.current(&Scenario::Healthy, now + ChronoDuration::minutes(61));
        assert_eq!(later.generation, g.generation + 1);
    }

    #[test]
    fn the_document_carries_every_field_and_the_secrets() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7).unwrap();
        let g = s.current(&Scenario::Healthy, Utc::now());
        let doc: serde_json::Value = serde_json::from_str(&g.document()).unwrap();
        for field in [
            "Code",
            "LastUpdated",
            "Type",
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "Expiration",
        ] {
            assert!(doc.get(field).is_some(), "{field}");
        }
        assert_eq!(doc["SecretAccessKey"], g.secret_access_key());
        assert_eq!(g.access_key_id().len(), 20);
    }
}
