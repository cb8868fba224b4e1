//! The retry policy drivers share: attempts and a time budget per request,
//! and jittered exponential backoff between attempts. Each driver decides
//! what is worth another attempt; this decides how often and how long.

use std::time::{Duration, Instant};

use rand::Rng;

/// The cap of the first backoff drivers use by default.
pub const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// The largest wait between two attempts drivers use by default.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// How often and for how long a request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Time budget of one request, from its first failed attempt: no
    /// attempt starts after it is spent.
    pub timeout: Duration,
    /// The cap of the first backoff; doubled for each further retry.
    pub base_backoff: Duration,
    /// The largest cap of a backoff.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// `max_attempts` (at least 1) within `timeout`, with the default
    /// backoffs ([`BASE_BACKOFF`] doubling up to [`MAX_BACKOFF`]).
    pub fn new(max_attempts: u32, timeout: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            timeout,
            base_backoff: BASE_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// The longest wait after `failures` failed attempts (1-based):
    /// `base_backoff x 2^(failures-1)`, at most `max_backoff`.
    pub fn backoff_cap(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.base_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// A random wait between zero and [`RetryPolicy::backoff_cap`] (full
    /// jitter).
    pub fn backoff(&self, failures: u32) -> Duration {
        let cap = self.backoff_cap(failures);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if cap_nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::thread_rng().gen_range(0..=cap_nanos))
    }

    /// Whether another attempt may start after `failures` failed ones, the
    /// first failure at `started`, with `wait` to sleep first.
    pub fn allows_another(&self, failures: u32, started: Instant, wait: Duration) -> bool {
        failures < self.max_attempts && started.elapsed() + wait <= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_the_budget_ends_retries() {
        let p = RetryPolicy::new(10, Duration::from_secs(180));
        assert_eq!(p.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(5), Duration::from_millis(1600));
        assert_eq!(p.backoff_cap(9), Duration::from_secs(15));
        assert_eq!(p.backoff_cap(1000), Duration::from_secs(15));
        for n in 1..20 {
            assert!(p.backoff(n) <= p.backoff_cap(n));
        }
        let started = Instant::now();
        assert!(p.allows_another(9, started, Duration::ZERO));
        assert!(!p.allows_another(10, started, Duration::ZERO));
        assert!(!p.allows_another(1, started, Duration::from_secs(181)));
        assert_eq!(RetryPolicy::new(0, Duration::ZERO).max_attempts, 1);
    }
}
