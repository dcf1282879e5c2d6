//! How long to wait before each reconnection attempt: exponential growth
//! to a cap, with random jitter on every delay, so that many clients
//! dropped at once (a server restart) come back spread out rather than
//! all in the same instant.
//!
//! Pure arithmetic: the caller sleeps. The randomness is seedable, so a
//! schedule can be tested exactly.

use std::time::Duration;

/// The reconnection schedule. Start from [`BackoffPolicy::default`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BackoffPolicy {
    /// The ceiling of the first delay. Default 6 s: with full jitter, a
    /// thousand clients dropped at once (a server restart) spread their
    /// first attempts over six seconds, so that no second sees more than
    /// a quarter of them (about 170 a second), while a lone client is back
    /// within 3 s on average. Python `websockets` uses 5 s.
    pub initial_delay: Duration,
    /// Each attempt's ceiling is this many times the previous one.
    /// Default 1.6 (`websockets`: 1.618).
    pub multiplier: f64,
    /// The largest ceiling. Default 90 s, as `websockets`: a client that
    /// has failed for minutes still tries every minute or so.
    pub max_delay: Duration,
    /// The share of each ceiling that is random: the delay is drawn
    /// uniformly from `[ceiling × (1 − jitter), ceiling]`. Default 1.0
    /// ("full jitter"), which spreads simultaneous clients the most; 0
    /// makes every delay exactly its ceiling.
    pub jitter: f64,
    /// Give up when this many reconnection attempts in a row have failed;
    /// `None` never gives up. Default `None`, as a long-running client should.
    pub max_retries: Option<u32>,
    /// A connection that stayed open this long resets the schedule; one
    /// lost sooner counts as a failed attempt, so a server that accepts
    /// and then drops at once is not hammered at the first delay forever.
    /// Default 10 s.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial_delay: Duration::from_secs(6),
            multiplier: 1.6,
            max_delay: Duration::from_secs(90),
            jitter: 1.0,
            max_retries: None,
            stable_after: Duration::from_secs(10),
        }
    }
}

impl BackoffPolicy {
    /// A policy with this first ceiling and cap, doubling, full jitter,
    /// never giving up.
    #[must_use]
    pub fn new(initial_delay: Duration, max_delay: Duration) -> Self {
        BackoffPolicy { initial_delay, max_delay, multiplier: 2.0, ..BackoffPolicy::default() }
    }

    /// Sets the most reconnection attempts before giving up.
    #[must_use]
    pub fn with_max_retries(mut self, attempts: Option<u32>) -> Self {
        self.max_retries = attempts;
        self
    }

    /// Sets how long a connection must last to reset the schedule.
    #[must_use]
    pub fn with_stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// Sets the random share of each delay (clamped to 0..=1).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The ceiling of attempt `attempt` (1-based), before jitter.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let growth = self.multiplier.max(1.0).powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX));
        let ceiling = self.initial_delay.as_secs_f64() * growth;
        if ceiling.is_finite() && ceiling < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(ceiling)
        } else {
            self.max_delay
        }
    }
}

/// The state of one client's schedule: how many attempts have failed in a
/// row, and its random source.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    random: u64,
}

impl Backoff {
    /// A schedule seeded from the operating system's randomness.
    #[must_use]
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff::with_seed(policy, rand::random())
    }

    /// A schedule with a fixed seed, for reproducible tests.
    #[must_use]
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff { policy, failures: 0, random: seed | 1 }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Reconnection attempts scheduled since the last success: the number
    /// of the attempt the latest delay leads to.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.failures
    }

    /// Schedules the next reconnection attempt after a failure (a lost
    /// connection or a failed attempt): how long to wait first. `None`
    /// once `max_retries` attempts have been made.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.policy.max_retries.is_some_and(|max| self.failures >= max) {
            return None;
        }
        self.failures += 1;
        let ceiling = self.policy.ceiling(self.failures).as_secs_f64();
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        let delay = ceiling * (1.0 - jitter * self.next_unit());
        Some(Duration::from_secs_f64(delay.max(0.0)))
    }

    /// A connection succeeded: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// A connection that was open for `lasted` ended: it resets the
    /// schedule only if it lasted [`stable_after`](BackoffPolicy::stable_after).
    pub fn connection_ended(&mut self, lasted: Duration) {
        if lasted >= self.policy.stable_after {
            self.reset();
        }
    }

    /// A uniform number in `[0, 1)` (xorshift64*).
    fn next_unit(&mut self) -> f64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        let value = self.random.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let policy = BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(10));
        let ceilings: Vec<u64> = (1..=6).map(|attempt| policy.ceiling(attempt).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.ceiling(10_000), Duration::from_secs(10), "no overflow however long it fails");
    }

    #[test]
    fn every_delay_is_jittered_within_its_ceiling() {
        let policy = BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut backoff = Backoff::with_seed(policy.clone(), 7);
        for attempt in 1..=20 {
            let delay = backoff.next_delay().unwrap();
            assert!(delay <= policy.ceiling(attempt), "attempt {attempt}: {delay:?}");
        }
        // Two clients with different seeds do not wait the same.
        let first = |seed| Backoff::with_seed(policy.clone(), seed).next_delay().unwrap();
        assert_ne!(first(1), first(2));
    }

    #[test]
    fn no_jitter_means_exactly_the_ceiling() {
        let policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.0);
        let mut backoff = Backoff::with_seed(policy, 3);
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().unwrap().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn a_thousand_clients_spread_their_first_attempt() {
        let policy = BackoffPolicy::default();
        let mut per_second = [0u32; 6];
        for seed in 0..1000u64 {
            let delay =
                Backoff::with_seed(policy.clone(), seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_delay().unwrap();
            per_second[(delay.as_secs() as usize).min(5)] += 1;
        }
        for count in per_second {
            assert!((120..220).contains(&count), "{per_second:?}");
        }
    }

    #[test]
    fn the_defaults_grow_by_1_6_to_90_seconds() {
        let policy = BackoffPolicy::default();
        let ceilings: Vec<u64> = (1..=8).map(|attempt| policy.ceiling(attempt).as_millis() as u64).collect();
        assert_eq!(ceilings, [6000, 9600, 15360, 24576, 39321, 62914, 90000, 90000]);
    }

    #[test]
    fn it_gives_up_after_max_retries_and_a_reset_starts_over() {
        let policy = BackoffPolicy::new(Duration::from_secs(2), Duration::from_secs(60))
            .with_max_retries(Some(2))
            .with_jitter(0.0);
        let mut backoff = Backoff::with_seed(policy, 1);
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(2)));
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(4)));
        assert_eq!(backoff.next_delay(), None);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn only_a_connection_that_lasted_resets_the_schedule() {
        let policy = BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.0);
        let mut backoff = Backoff::with_seed(policy, 1);
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(1)));
        backoff.connection_ended(Duration::from_secs(2)); // dropped at once: still failing
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(2)));
        backoff.connection_ended(Duration::from_secs(10));
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(1)));
    }
}
