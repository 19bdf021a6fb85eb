//! Management throttling: a token bucket over management requests. When it is empty the device
//! gets `429 Too Many Requests` with `Retry-After`, which Windows ≥ 20H2 honours (MS-MDM §3.1.6).

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// A bucket that starts full.
    pub fn new(rate_per_second: u32, burst: u32) -> Throttle {
        let burst = f64::from(burst.max(1));
        Throttle {
            rate: f64::from(rate_per_second),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *g;
        let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
        let tokens = (tokens + refill).min(self.burst);
        if tokens >= 1.0 {
            *g = (tokens - 1.0, now);
            true
        } else {
            *g = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_rate() {
        let t = Throttle::new(10, 2);
        let t0 = Instant::now();
        assert!(t.try_acquire_at(t0));
        assert!(t.try_acquire_at(t0));
        assert!(!t.try_acquire_at(t0), "burst exhausted");
        assert!(!t.try_acquire_at(t0 + Duration::from_millis(50)));
        assert!(
            t.try_acquire_at(t0 + Duration::from_millis(160)),
            "refilled after 100 ms"
        );
    }
}
