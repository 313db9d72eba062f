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

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

impl CredentialSchedule {
    pub fn new(rotate_every: Duration, lifetime: Duration) -> Self {
        Self::with_seed(rotate_every, lifetime, fastrand::u64(..))
    }

    pub fn with_seed(rotate_every: Duration, lifetime: Duration, seed: u64) -> Self {
        let now = whole_seconds(Utc::now());
        let lifetime = chrono(lifetime);
        Self {
            rotate_every: chrono(rotate_every),
            lifetime,
            current: Generation {
                generation: 0,
                issued: now,
                expires: now + lifetime,
                seed,
            },
        }
    }

    fn issue(&mut self, issued: DateTime<Utc>, expires: DateTime<Utc>) {
        self.current = Generation {
            generation: self.current.generation + 1,
            issued,
            expires,
            seed: self.current.seed,
        };
    }

    /// Applies what a switch to `scenario` at `now` does to the credentials.
    pub fn switch(&mut self, scenario: &Scenario, now: DateTime<Utc>) {
        let now = whole_seconds(now);
        match scenario {
            Scenario::Expired => {
                let expires = now - ChronoDuration::minutes(1);
                self.issue(expires - self.lifetime, expires);
            }
            Scenario::Expiring { in_ } => {
                // The same key, re-dated to expire soon: what an instance whose role session
                // could not be renewed serves. (A new key would read as a rotation.)
                self.current.expires = now + chrono(*in_);
            }
            _ => {
                // Back from a frozen or expired state: the service issues fresh credentials.
                if self.current.expires <= now {
                    self.issue(now, now + self.lifetime);
                }
            }
        }
    }

    /// The generation served at `now` under `scenario`, advancing the schedule.
    pub fn current(&mut self, scenario: &Scenario, now: DateTime<Utc>) -> Generation {
        match scenario {
            Scenario::Stale | Scenario::Expiring { .. } | Scenario::Expired => {}
            Scenario::RotateLate { lead } => {
                let lead = chrono(*lead);
                while now >= self.current.expires - lead {
                    let issued = self.current.expires - lead;
                    self.issue(issued, issued + self.lifetime);
                }
            }
            _ => {
                // Long frozen, or re-dated by `expiring` (the schedule never issues anything
                // else): start again from now, rather than replaying missed issues or serving
                // credentials that expire before the next rotation is due.
                let redated = self.current.expires != self.current.issued + self.lifetime;
                if now - self.current.issued > self.lifetime || redated {
                    let now = whole_seconds(now);
                    self.issue(now, now + self.lifetime);
                }
                while now >= self.current.issued + self.rotate_every {
                    let issued = self.current.issued + self.rotate_every;
                    self.issue(issued, issued + self.lifetime);
                }
            }
        }
        self.current.clone()
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
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7);
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
        let mut s = CredentialSchedule::with_seed(secs(60), secs(600), 7);
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
    fn expired_and_expiring_move_the_expiration() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7);
        let now = s.current.issued + ChronoDuration::minutes(10);
        s.switch(&Scenario::Expired, now);
        let g = s.current(&Scenario::Expired, now);
        assert!(g.expires < now);
        s.switch(&Scenario::Healthy, now);
        let g = s.current(&Scenario::Healthy, now);
        assert!(g.expires > now + ChronoDuration::hours(5));
        let key = g.access_key_id();
        s.switch(&Scenario::Expiring { in_: secs(240) }, now);
        let g = s.current(&Scenario::Expiring { in_: secs(240) }, now);
        assert_eq!(g.expires, now + ChronoDuration::minutes(4));
        assert_eq!(g.access_key_id(), key);
    }

    #[test]
    fn healthy_after_expiring_issues_fresh_credentials() {
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7);
        let t0 = s.current.issued + ChronoDuration::minutes(10);
        let expiring = Scenario::Expiring { in_: secs(240) };
        s.switch(&expiring, t0);
        let old = s.current(&expiring, t0);
        let now = t0 + ChronoDuration::minutes(1);
        s.switch(&Scenario::Healthy, now);
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
        let mut s = CredentialSchedule::with_seed(secs(3600), secs(6 * 3600), 7);
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
