//! Password hashing (argon2id, PHC strings) and constant-time secret comparison.
//!
//! Passwords are never stored or logged; only their argon2id hash is kept in the store.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks `password` against a PHC string. A malformed hash verifies nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// The PHC string that timing-equalising verifications run against (unknown users, locked
/// passwords): a hash of a fixed text, made once per process.
pub fn timing_equaliser_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("winmdm-timing-equaliser").unwrap_or_default())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("Correct horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

/// Remembers recent successful password checks so that the two authentications of one
/// enrollment (GetPolicies, then RequestSecurityToken, seconds apart with the same credentials)
/// cost one argon2id verification, not two.
///
/// Entries are HMAC-SHA256 tags under a per-process random key over (UPN, stored hash, password):
/// no password or reusable verifier is kept, a password change (new hash) invalidates them, and
/// they expire after [`VerifyCache::TTL`]. Only successes are cached; failures always pay argon2.
pub struct VerifyCache {
    key: aws_lc_rs::hmac::Key,
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache").finish_non_exhaustive()
    }
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl VerifyCache {
    /// How long a successful check is remembered.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(300);
    /// Most entries kept; the cache is emptied when full.
    pub const MAX_ENTRIES: usize = 10_000;

    /// An empty cache with a fresh random key.
    pub fn new() -> VerifyCache {
        use aws_lc_rs::rand::SecureRandom;
        let mut k = [0u8; 32];
        if aws_lc_rs::rand::SystemRandom::new().fill(&mut k).is_err() {
            panic!("operating system random number generator unavailable");
        }
        VerifyCache {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k),
            entries: Default::default(),
        }
    }

    fn tag(&self, upn: &str, phc: &str, password: &str) -> [u8; 32] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        for part in [upn, phc, password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Forgets every entry (benchmarks use it to measure an enrollment's real cost).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether the same check (`upn`, stored hash `phc`, `password`) succeeded within
    /// [`VerifyCache::TTL`]: a cheap HMAC, no argon2.
    pub fn hit(&self, upn: &str, password: &str, phc: &str) -> bool {
        let tag = self.tag(upn, phc, password);
        let now = std::time::Instant::now();
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&tag)
            .is_some_and(|t| now.duration_since(*t) < Self::TTL)
    }

    /// Remembers a successful check.
    pub fn remember(&self, upn: &str, password: &str, phc: &str) {
        let tag = self.tag(upn, phc, password);
        let now = std::time::Instant::now();
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= Self::MAX_ENTRIES {
            g.retain(|_, t| now.duration_since(*t) < Self::TTL);
            if g.len() >= Self::MAX_ENTRIES {
                g.clear();
            }
        }
        g.insert(tag, now);
    }

    /// A password check answered from the cache when the same check succeeded recently, else
    /// run on a permit of `work` (the global bound on password work).
    pub fn verify(
        &self,
        work: &crate::password_work::PasswordWork,
        upn: &str,
        password: &str,
        phc: &str,
    ) -> Result<bool, crate::password_work::Busy> {
        if self.hit(upn, password, phc) {
            return Ok(true);
        }
        let mut permit = work.acquire()?;
        if !permit.verify(password, phc) {
            return Ok(false);
        }
        drop(permit);
        self.remember(upn, password, phc);
        Ok(true)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_remembers_only_successes_for_the_same_hash() {
        let c = VerifyCache::new();
        let w = crate::password_work::PasswordWork::new(1, std::time::Duration::from_secs(1));
        let h = hash_password("pw-1").unwrap();
        assert!(!c.verify(&w, "a@b", "wrong", &h).unwrap());
        assert!(c.verify(&w, "a@b", "pw-1", &h).unwrap());
        assert!(c.verify(&w, "a@b", "pw-1", &h).unwrap(), "cached");
        assert_eq!(w.stats().verified, 2, "the cached answer ran no argon2");
        assert!(
            !c.verify(&w, "a@b", "pw-2", &h).unwrap(),
            "another password is checked"
        );
        let h2 = hash_password("pw-2").unwrap();
        assert!(
            !c.verify(&w, "a@b", "pw-1", &h2).unwrap(),
            "a changed password invalidates the entry"
        );
        assert!(!c.verify(&w, "other@b", "pw-1", "garbage").unwrap());
    }
}
