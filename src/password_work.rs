//! The global bound on password work (argon2id verifications).
//!
//! Owns: how many argon2id verifications run at once, how long and how many requests may wait
//! for one, and the memory they use. Every password check of the server — enrollment
//! `UsernameToken`s (GetPolicies and RequestSecurityToken), the federated login page, bulk
//! provisioning-package secrets, and the timing-equalising work for unknown users — runs on a
//! [`Permit`] from the one [`PasswordWork`] of the [`App`](crate::app::App).
//!
//! * **Permits** (`--password-workers`, default: the number of cores). Each permit owns one
//!   argon2 memory buffer (19 MiB for the default parameters), allocated on first use and kept
//!   for reuse, so the memory of password work is at most `permits × 19 MiB`, however many
//!   requests arrive, and does not depend on how the allocator returns freed memory.
//! * **Waiting** is bounded twice: at most [`WAITERS_PER_PERMIT`] × permits requests wait at
//!   once, each at most `--password-wait-ms` (default [`DEFAULT_WAIT_MS`]). A request beyond
//!   either bound gets [`Busy`] at once or at the deadline; callers turn it into the protocol's
//!   "try again later" answer. A busy refusal happens before the password is looked at, so it
//!   is never counted by the guessing lock ([`crate::lockout`]).
//! * Callers are blocking-pool threads (enrollment handlers run under `spawn_blocking`); at most
//!   `permits × (1 + WAITERS_PER_PERMIT)` of them are ever held by password work, far below
//!   tokio's 512, so device management (also on the blocking pool) is never starved.
//!
//! [`PasswordWork::stats`] counts verifications for tests and logs: how many ran against a
//! stored hash, how many only equalised timing, how many requests were refused, and the
//! largest number that ever ran at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Default longest wait for a permit, in milliseconds.
pub const DEFAULT_WAIT_MS: u64 = 2_000;
/// Requests allowed to wait per permit.
pub const WAITERS_PER_PERMIT: usize = 8;
/// `Retry-After` (seconds) sent with a busy refusal.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Largest argon2 memory a stored hash may ask for, in KiB (argon2 blocks are 1 KiB): hashes
/// asking for more verify nothing, so no stored value can make a permit's buffer grow without
/// bound. Our own hashes use 19 MiB.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Refused: every permit is in use and the wait is over (or too many already wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks are busy; retry after {retry_after_secs} s")]
pub struct Busy {
    /// What to tell the client to wait, in seconds.
    pub retry_after_secs: u32,
}

/// Counters of password work since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Passwords verified against a stored hash.
    pub verified: u64,
    /// Timing-equalising verifications (unknown user, locked password).
    pub equalised: u64,
    /// Requests refused with [`Busy`].
    pub refused: u64,
    /// Most permits ever held at once.
    pub peak_running: usize,
}

/// Password work at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Verifications running (permits held).
    pub running: usize,
    /// Requests waiting for a permit.
    pub waiting: usize,
}

struct Pool {
    /// Buffers of permits not in use.
    free: Vec<Vec<Block>>,
    /// Permits in use.
    running: usize,
    /// Requests waiting for a permit.
    waiting: usize,
}

/// The bound itself (one per server).
pub struct PasswordWork {
    permits: usize,
    max_waiting: usize,
    wait: Duration,
    pool: Mutex<Pool>,
    freed: Condvar,
    verified: AtomicU64,
    equalised: AtomicU64,
    refused: AtomicU64,
    peak: AtomicUsize,
}

impl std::fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordWork")
            .field("permits", &self.permits)
            .field("max_waiting", &self.max_waiting)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl PasswordWork {
    /// `permits` verifications at once (at least 1), waits of at most `wait`.
    pub fn new(permits: usize, wait: Duration) -> PasswordWork {
        let permits = permits.max(1);
        PasswordWork {
            permits,
            max_waiting: permits.saturating_mul(WAITERS_PER_PERMIT),
            wait,
            pool: Mutex::new(Pool {
                free: (0..permits).map(|_| Vec::new()).collect(),
                running: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
            verified: AtomicU64::new(0),
            equalised: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The default for a machine: one permit per core.
    pub fn default_permits() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Number of permits.
    pub fn permits(&self) -> usize {
        self.permits
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        Stats {
            verified: self.verified.load(Ordering::Relaxed),
            equalised: self.equalised.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            peak_running: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Checks running and waiting now (for the metrics; one lock).
    pub fn load(&self) -> Load {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        Load {
            running: pool.running,
            waiting: pool.waiting,
        }
    }

    /// A permit: at once if one is free, else after waiting (bounded in time and in the number
    /// of waiters). Blocks the calling thread; call from a blocking context.
    pub fn acquire(&self) -> Result<Permit<'_>, Busy> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.free.is_empty() {
            if pool.waiting >= self.max_waiting {
                drop(pool);
                return Err(self.refuse("too many requests already wait"));
            }
            pool.waiting += 1;
            let deadline = Instant::now() + self.wait;
            while pool.free.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    pool.waiting -= 1;
                    drop(pool);
                    return Err(self.refuse("no permit within the wait"));
                }
                pool = self
                    .freed
                    .wait_timeout(pool, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            pool.waiting -= 1;
        }
        let blocks = pool.free.pop().unwrap_or_default();
        pool.running += 1;
        self.peak.fetch_max(pool.running, Ordering::Relaxed);
        Ok(Permit {
            work: self,
            blocks: Some(blocks),
        })
    }

    fn refuse(&self, why: &'static str) -> Busy {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // One line per 100 refusals: a burst must not flood the log either.
        if n % 100 == 1 {
            tracing::warn!(
                permits = self.permits,
                refused_so_far = n,
                why,
                "password check refused: all password-work permits busy"
            );
        }
        Busy {
            retry_after_secs: RETRY_AFTER_SECS,
        }
    }

    fn release(&self, blocks: Vec<Block>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.free.push(blocks);
        pool.running = pool.running.saturating_sub(1);
        drop(pool);
        self.freed.notify_one();
    }
}

/// The right to run one argon2id verification, with the memory for it.
pub struct Permit<'a> {
    work: &'a PasswordWork,
    blocks: Option<Vec<Block>>,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.blocks.take() {
            self.work.release(b);
        }
    }
}

impl Permit<'_> {
    /// Checks `password` against the PHC string `phc` (counted as a real verification). A
    /// malformed hash, or one asking for more than [`MAX_M_COST_KIB`], verifies nothing.
    pub fn verify(&mut self, password: &str, phc: &str) -> bool {
        self.work.verified.fetch_add(1, Ordering::Relaxed);
        self.run(password, phc)
    }

    /// Spends the work of one verification without looking at any stored hash (unknown users,
    /// locked passwords), so response time reveals neither.
    pub fn equalise(&mut self, password: &str) {
        self.work.equalised.fetch_add(1, Ordering::Relaxed);
        let phc = crate::auth::timing_equaliser_hash();
        let _ = self.run(password, phc);
    }

    fn run(&mut self, password: &str, phc: &str) -> bool {
        let Some(blocks) = self.blocks.as_mut() else {
            return false;
        };
        verify_with_memory(password, phc, blocks)
    }
}

/// argon2 verification into the caller's (reused) memory.
fn verify_with_memory(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        tracing::warn!(
            m_cost_kib = params.m_cost(),
            max = MAX_M_COST_KIB,
            "stored password hash asks for more argon2 memory than allowed; not verified"
        );
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let ok = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..])
        .is_ok();
    ok && crate::auth::constant_time_eq(out, expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_like_argon2_itself() {
        let work = PasswordWork::new(1, Duration::from_millis(10));
        let h = crate::auth::hash_password("correct horse").unwrap();
        let mut p = work.acquire().unwrap();
        assert!(p.verify("correct horse", &h));
        assert!(!p.verify("Correct horse", &h));
        assert!(!p.verify("x", "not a hash"));
        assert!(!p.verify(
            "x",
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"
        ));
        p.equalise("x");
        drop(p);
        let s = work.stats();
        assert_eq!((s.verified, s.equalised, s.peak_running), (4, 1, 1));
    }

    #[test]
    fn waits_are_bounded_in_time_and_number() {
        let work = PasswordWork::new(1, Duration::from_millis(50));
        let held = work.acquire().unwrap();
        let t = Instant::now();
        assert_eq!(
            work.acquire().err(),
            Some(Busy {
                retry_after_secs: RETRY_AFTER_SECS
            })
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(work.acquire().is_ok(), "a freed permit is handed out again");
        assert_eq!(work.stats().refused, 1);
    }
}
