//! Password-guessing defence for enrollment (WS-Security `UsernameToken`) and the federated
//! login page.
//!
//! Every wrong password for an existing user is counted in the store (so the count survives a
//! restart and is shared by every node). The [`LOCK_AFTER`]-th wrong password in a row locks the
//! user's password for [`FIRST_LOCK_SECS`]; every further wrong one (each needs the lock to have
//! ended first) doubles the lock, up to [`MAX_LOCK_SECS`]. While locked, every password — the right one
//! too — is refused with the same answer as a wrong one and after the same argon2id work, so a
//! lock reveals neither the password nor that the user exists (unknown users are never counted:
//! that would let anyone fill the store). A correct password outside a lock clears the count; so
//! does an admin setting a new password.
//!
//! Provisioning-package secrets of bulk accounts (random 256-bit values) are checked before and
//! outside the lock, so guessing at a bulk UPN, which every package carries, cannot stop a
//! provisioning run.
//!
//! The trade-off is the usual one: somebody guessing at a user's password delays that user's own
//! enrollments for at most [`MAX_LOCK_SECS`] after the last guess. Every refusal is logged with the
//! user and the lock's end.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::password_work::Busy;
use crate::store::records::Kind;
use crate::store::StoreError;

/// Wrong passwords in a row that start the first lock.
pub const LOCK_AFTER: u32 = 5;
/// The first lock, in seconds; each further failure doubles it.
pub const FIRST_LOCK_SECS: i64 = 30;
/// The longest lock, in seconds.
pub const MAX_LOCK_SECS: i64 = 900;

/// The failure count of one user (record kind `login_failures`, keyed by normalized UPN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// Wrong passwords since the last success.
    pub count: u32,
    /// The last one (Unix seconds).
    pub last_at: i64,
    /// Passwords are refused until then (Unix seconds; 0 when not locked).
    pub locked_until: i64,
}

const FAILURES: Kind<Failures> = Kind::new("login_failures");

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right.
    Accepted,
    /// The password is wrong (counted).
    Wrong {
        /// Wrong passwords in a row now.
        count: u32,
        /// When this failure started a lock, its end.
        locked_until: Option<i64>,
    },
    /// The user's passwords are refused until `until`; the password was not looked at.
    Locked {
        /// End of the lock (Unix seconds).
        until: i64,
    },
}

/// The lock that the `count`-th wrong password in a row starts, in seconds (0: none).
pub fn lock_secs(count: u32) -> i64 {
    if count < LOCK_AFTER {
        return 0;
    }
    let doublings = (count - LOCK_AFTER).min(20);
    (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS)
}

/// Why a password could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Every password-work permit is busy ([`crate::password_work`]); nothing was counted.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Checks `password` against `phc`, the stored hash of the existing user `upn` (normalized),
/// under the lock rules above, on a permit of the global password-work bound.
///
/// Concurrency: the attempt is *reserved* in the store before the password is verified — one
/// atomic update counts it as a failure (and starts the lock when it is the
/// [`LOCK_AFTER`]-th), and a right password then clears the count. So however many guesses
/// arrive at once, at most [`LOCK_AFTER`] of them are verified before the lock, and at most one
/// per lock period after it. A recent identical success ([`crate::auth::VerifyCache`]) is
/// answered without argon2 and without a reservation (it is no guess), but never during a lock.
/// A busy refusal ([`CheckError::Busy`]) happens before the reservation: it is not counted.
pub fn check(app: &App, upn: &str, password: &str, phc: &str) -> Result<Verdict, CheckError> {
    let s = app.store.records();
    let now = app.clock.now_unix();
    let current = FAILURES.get(s, upn)?;
    if let Some(f) = current.as_ref().filter(|f| f.locked_until > now) {
        app.password_work.acquire()?.equalise(password);
        return Ok(Verdict::Locked {
            until: f.locked_until,
        });
    }
    if app.password_cache.hit(upn, password, phc) {
        if current.is_some() {
            FAILURES.delete(s, upn)?;
        }
        return Ok(Verdict::Accepted);
    }
    let mut permit = app.password_work.acquire()?;
    // Reserve the attempt: counted before it is verified.
    let mut locked_by_other: Option<i64> = None;
    let written = FAILURES.update(s, upn, |old| {
        locked_by_other = None;
        if let Some(f) = old.as_ref().filter(|f| f.locked_until > now) {
            // Locked meanwhile by a concurrent guess: leave the record as it is.
            locked_by_other = Some(f.locked_until);
            return Ok(old);
        }
        let count = old.map_or(0, |f| f.count).saturating_add(1);
        let lock = lock_secs(count);
        Ok(Some(Failures {
            count,
            last_at: now,
            locked_until: if lock > 0 {
                now.saturating_add(lock)
            } else {
                0
            },
        }))
    })?;
    if let Some(until) = locked_by_other {
        permit.equalise(password);
        return Ok(Verdict::Locked { until });
    }
    if permit.verify(password, phc) {
        drop(permit);
        app.password_cache.remember(upn, password, phc);
        FAILURES.delete(s, upn)?;
        return Ok(Verdict::Accepted);
    }
    let f = written.unwrap_or_default();
    Ok(Verdict::Wrong {
        count: f.count,
        locked_until: (f.locked_until > 0).then_some(f.locked_until),
    })
}

/// The work of a password check for a user that does not exist (same time as a real one, so
/// timing does not tell which users exist), on a permit like every other check.
pub fn equalise_unknown(app: &App, password: &str) -> Result<(), Busy> {
    app.password_work.acquire()?.equalise(password);
    Ok(())
}

/// Forgets `upn`'s failures (an admin set a new password or re-enabled the user).
pub fn clear(app: &App, upn: &str) -> Result<(), StoreError> {
    FAILURES.delete(app.store.records(), upn).map(|_| ())
}

/// `upn`'s failures, if any are recorded.
pub fn failures(app: &App, upn: &str) -> Result<Option<Failures>, StoreError> {
    FAILURES.get(app.store.records(), upn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let secs: Vec<i64> = (1..=12).map(lock_secs).collect();
        assert_eq!(
            secs,
            vec![0, 0, 0, 0, 30, 60, 120, 240, 480, 900, 900, 900],
            "locks from the {LOCK_AFTER}th failure"
        );
        assert_eq!(lock_secs(u32::MAX), MAX_LOCK_SECS);
    }
}
