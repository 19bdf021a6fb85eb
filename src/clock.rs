//! Time and randomness, injected.
//!
//! [`Clock`] is the only place that reads the system time, so protocol code can be run with a
//! fixed clock in golden tests. [`random_hex`] draws from the operating system's CSPRNG
//! (aws-lc-rs `SystemRandom`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;

    /// The current time as an `OffsetDateTime` (UTC).
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.now_unix())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        now.duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64
    }
}

/// A clock frozen at one instant (tests, golden files).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0
    }
}

/// Milliseconds past the current wall-clock second (to order and time-stamp traced exchanges
/// within a second; the second itself comes from the app's [`Clock`]).
pub fn subsec_millis() -> u32 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis())
}

/// `n` random bytes from the OS CSPRNG, as lower-case hex.
pub fn random_hex(n: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    // SystemRandom only fails if the OS RNG is unavailable, which we cannot recover from.
    if aws_lc_rs::rand::SystemRandom::new().fill(&mut buf).is_err() {
        panic!("operating system random number generator unavailable");
    }
    hex(&buf)
}

/// A random number below `bound` (0 when `bound` is 0) for spreading out retries: cheap and
/// not for secrets (use [`random_hex`] for those).
pub fn jitter(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if bound == 0 {
        return 0;
    }
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % bound
}

/// A new 32-hex-digit id that sorts by creation time: the second `now` (8 digits) and 12
/// random bytes. A command's store key is its device's id and then this id, so a device's new
/// commands sit together at the end of its range, where a round that sends or answers two of
/// them rewrites one B-tree leaf instead of two scattered ones.
pub fn time_ordered_id(now: i64) -> String {
    let secs = u32::try_from(now.max(0)).unwrap_or(u32::MAX);
    let mut id = hex(&secs.to_be_bytes());
    id.push_str(&random_hex(12));
    id
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// RFC 3339 UTC timestamp with millisecond precision (`2026-11-23T16:08:17.000Z`), as used in
/// WS-Security `u:Created`/`u:Expires` and in JSON.
pub fn rfc3339(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_450_097), "2026-11-23T16:08:17.000Z");
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        assert_eq!(jitter(0), 0);
        assert_eq!(jitter(1), 0);
        assert!((0..100).all(|_| jitter(7) < 7));
    }

    #[test]
    fn time_ordered_ids_sort_by_second_and_differ_within_one() {
        let a = time_ordered_id(1_800_000_000);
        let b = time_ordered_id(1_800_000_000);
        let c = time_ordered_id(1_800_000_001);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(a < c && b < c, "{a} {b} {c}");
        assert!(time_ordered_id(-5).starts_with("00000000"));
    }

    #[test]
    fn random_hex_is_random_and_sized() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16));
    }
}
