//! HTTP basic authentication against the bcrypt hashes of the web configuration file.
//!
//! bcrypt is slow on purpose (50-100 ms a check at the usual cost of 10), and Prometheus sends
//! the same credentials with every scrape, so a verified user, password and hash are remembered
//! as a SHA-256 of the three (never the password itself): a scrape every 15 s costs one bcrypt
//! per configuration, not one per scrape, as in the exporter-toolkit. Only successes are
//! remembered, so guesses cannot push a real client out of the cache. The checks run on tokio's
//! blocking pool, one at a time, so that a flood of guesses can neither stall the probes (which
//! share the one runtime thread) nor take more than one core.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine;
use tokio::sync::Semaphore;

/// A verified (user, password, hash), as SHA-256.
type Key = [u8; 32];

/// How many verified combinations are remembered; the cache starts over when full.
const CACHE_ENTRIES: usize = 64;

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<Key>>,
    bcrypt: Semaphore,
    /// Checked when the user is unknown, so that an unknown user takes as long as a known one.
    decoy: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The user and password of an `Authorization: Basic ...` header value.
pub fn parse_header(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn key(user: &str, password: &str, hash: &str) -> Key {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl BasicAuth {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        // The decoy has the cost of the first user's hash, so both paths take as long.
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .next()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash_with_salt("decoy", cost, [7u8; 16])
            .map(|p| p.format_for_version(bcrypt::Version::TwoB))
            .unwrap_or_default();
        Self {
            users,
            verified: Mutex::new(HashSet::new()),
            bcrypt: Semaphore::new(1),
            decoy,
        }
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header value names a user with the right password.
    pub async fn check(&self, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = header.and_then(parse_header) else {
            return false;
        };
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.clone()),
            None => (false, self.decoy.clone()),
        };
        let key = key(&user, &password, &hash);
        if known && self.lock().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && known {
            let mut cache = self.lock();
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key);
        }
        ok && known
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}").into_bytes()
    }

    #[test]
    fn headers_parse_only_as_basic_credentials() {
        assert_eq!(
            parse_header(&header("a", "b:c")),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(parse_header(b"Bearer abc"), None);
        assert_eq!(parse_header(b"Basic !!!"), None);
        assert_eq!(parse_header(b"Basic"), None);
        assert_eq!(parse_header(&[0xff, 0xfe]), None);
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key("ab", "c", "h"), key("a", "bc", "h"));
        assert_ne!(key("a", "b", "h1"), key("a", "b", "h2"));
    }

    #[tokio::test]
    async fn the_right_password_passes_once_through_bcrypt_then_from_the_cache() {
        let users = BTreeMap::from([("alice".to_string(), bcrypt::hash("pw", 4).unwrap())]);
        let auth = BasicAuth::new(users);
        assert!(auth.check(Some(&header("alice", "pw"))).await);
        assert_eq!(auth.cached(), 1);
        assert!(auth.check(Some(&header("alice", "pw"))).await);
        assert_eq!(auth.cached(), 1);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await);
        assert!(!auth.check(Some(&header("bob", "pw"))).await);
        assert!(!auth.check(None).await);
        assert_eq!(auth.cached(), 1, "failures are not remembered");
    }
}
