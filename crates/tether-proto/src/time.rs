//! Time as the core sees it: instants handed in by the caller, never read
//! from a clock, so every deadline can be tested by passing instants.

use std::fmt;
use std::time::{Duration, Instant};

/// Which deadline passed. Each is reported distinctly, so a program can
/// tell a dead peer from a slow close or a refused handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The opening handshake (TCP, TLS, HTTP upgrade) did not complete
    /// within `open_timeout`.
    Open,
    /// A keepalive ping went unanswered for `ping_timeout`: the connection
    /// was closed with 1011 and the reason `"keepalive ping timeout"`.
    Ping,
    /// The peer did not finish the closing handshake within
    /// `close_timeout` (or our last frames could not be written by then).
    Close,
    /// No data message went either way for `idle_timeout`: the connection
    /// was closed with 1001 and the reason `"idle timeout"`.
    Idle,
    /// An application-level heartbeat (a message the program defines,
    /// such as JSON `{"type":"ping"}`) went unanswered: the connection was
    /// closed with 1011 and the reason `"heartbeat timeout"`.
    Heartbeat,
    /// No message arrived within the time the program allowed one
    /// receive call (`recv_timeout`, `settimeout`). The connection is
    /// still open: receiving again is fine.
    Receive,
}

impl Timeout {
    /// The reason sent in the close frame, and the message shown to people.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Timeout::Open => "opening handshake timeout",
            Timeout::Ping => "keepalive ping timeout",
            Timeout::Close => "close handshake timeout",
            Timeout::Idle => "idle timeout",
            Timeout::Heartbeat => "heartbeat timeout",
            Timeout::Receive => "receive timeout",
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Timeout {}

/// A deadline for a phase that has no [`Connection`](crate::Connection)
/// yet: the opening handshake, which both I/O layers bound with
/// `open_timeout` from the moment they start connecting or accepting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// `limit` after `now`; `None` never expires.
    #[must_use]
    pub fn after(now: Instant, limit: Option<Duration>) -> Deadline {
        Deadline { at: limit.and_then(|limit| now.checked_add(limit)) }
    }

    /// When it expires, if ever.
    #[must_use]
    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// How long is left at `now` (zero once passed); `None` if it never expires.
    #[must_use]
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.at.map(|at| at.saturating_duration_since(now))
    }

    /// Whether it has passed at `now`.
    ///
    /// # Errors
    /// [`Timeout::Open`] once `now` reaches the deadline.
    pub fn check(&self, now: Instant) -> Result<(), Timeout> {
        match self.at {
            Some(at) if now >= at => Err(Timeout::Open),
            _ => Ok(()),
        }
    }
}

/// The connection's own time line: microseconds since the first instant
/// it was given. Eight bytes per timestamp instead of an `Instant`'s
/// sixteen keeps an idle connection small.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    origin: Option<Instant>,
}

/// Microseconds on a [`Clock`].
pub(crate) type Micros = u64;

impl Clock {
    /// `now` on this clock; the first call sets the origin.
    pub(crate) fn micros(&mut self, now: Instant) -> Micros {
        let origin = *self.origin.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether any instant was given yet.
    pub(crate) fn is_started(&self) -> bool {
        self.origin.is_some()
    }

    /// The instant `micros` stands for.
    pub(crate) fn instant(&self, micros: Micros) -> Option<Instant> {
        self.origin?.checked_add(Duration::from_micros(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_expires_at_its_instant_not_before() {
        let start = Instant::now();
        let deadline = Deadline::after(start, Some(Duration::from_secs(10)));
        assert_eq!(deadline.check(start + Duration::from_millis(9_999)), Ok(()));
        assert_eq!(deadline.check(start + Duration::from_secs(10)), Err(Timeout::Open));
        assert_eq!(deadline.remaining(start + Duration::from_secs(4)), Some(Duration::from_secs(6)));
        assert_eq!(deadline.remaining(start + Duration::from_secs(40)), Some(Duration::ZERO));
    }

    #[test]
    fn no_limit_never_expires() {
        let start = Instant::now();
        let deadline = Deadline::after(start, None);
        assert_eq!(deadline.check(start + Duration::from_secs(1 << 30)), Ok(()));
        assert_eq!(deadline.remaining(start), None);
    }

    #[test]
    fn the_clock_counts_from_its_first_instant() {
        let start = Instant::now();
        let mut clock = Clock::default();
        assert!(!clock.is_started());
        assert_eq!(clock.micros(start + Duration::from_secs(1)), 0);
        assert_eq!(clock.micros(start + Duration::from_millis(1_500)), 500_000);
        assert_eq!(clock.instant(250_000), Some(start + Duration::from_millis(1_250)));
        // An instant before the origin (clocks handed in out of order) is the origin.
        assert_eq!(clock.micros(start), 0);
    }
}
