//! The loop's deadlines: one heap for all its open connections, each
//! entry 16 bytes (an `Instant` alone takes 16).
//!
//! A connection's deadline moves whenever a ping is sent or answered; the
//! heap is not searched to move it. The slot remembers the one deadline
//! it has now ([`Tick`]), the new one is pushed, and an entry that no
//! longer matches its slot is skipped when it comes up (or dropped when
//! stale entries pile up, see [`Deadlines::retain`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A deadline as the loop keeps it: microseconds since the loop's epoch,
/// plus one (so `Option<Tick>` is 8 bytes), rounded up, so it never comes
/// before the instant it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Tick(NonZeroU64);

/// The heap, and the epoch its ticks count from.
pub(super) struct Deadlines {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Tick, usize)>>,
}

impl Deadlines {
    pub(super) fn new(epoch: Instant) -> Deadlines {
        Deadlines { epoch, heap: BinaryHeap::new() }
    }

    /// `at` as a tick, rounded up to the next microsecond.
    pub(super) fn tick(&self, at: Instant) -> Tick {
        let since = at.saturating_duration_since(self.epoch);
        let micros = since.as_micros() + u128::from(!since.subsec_nanos().is_multiple_of(1000));
        let micros = u64::try_from(micros).unwrap_or(u64::MAX - 1);
        Tick(NonZeroU64::MIN.saturating_add(micros))
    }

    /// The instant a tick stands for (at or just after the one it was made from).
    pub(super) fn instant(&self, tick: Tick) -> Instant {
        self.epoch + Duration::from_micros(tick.0.get() - 1)
    }

    /// Whether `tick` has come by `now`.
    pub(super) fn is_due(&self, tick: Tick, now: Instant) -> bool {
        self.instant(tick) <= now
    }

    pub(super) fn push(&mut self, at: Tick, token: usize) {
        self.heap.push(Reverse((at, token)));
    }

    /// The earliest entry.
    pub(super) fn peek(&self) -> Option<(Tick, usize)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    pub(super) fn pop(&mut self) {
        self.heap.pop();
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` accepts, with a little room to grow.
    pub(super) fn retain(&mut self, mut live: impl FnMut(Tick, usize) -> bool) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|&Reverse((at, token))| live(at, token));
        entries.shrink_to(entries.len() + entries.len() / 2);
        self.heap = BinaryHeap::from(entries);
    }

    /// Gives back memory after a crowd has left: a heap at a quarter of its
    /// capacity is halved.
    pub(super) fn release_spare(&mut self) {
        if self.heap.capacity() > 64 && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_16_bytes_and_a_slot_remembers_its_tick_in_8() {
        assert_eq!(std::mem::size_of::<Reverse<(Tick, usize)>>(), 16);
        assert_eq!(std::mem::size_of::<Option<Tick>>(), 8);
    }

    #[test]
    fn a_tick_never_comes_before_its_instant() {
        let epoch = Instant::now();
        let deadlines = Deadlines::new(epoch);
        for nanos in [0, 1, 999, 1000, 1001, 1_500_000, 20_000_000_001] {
            let at = epoch + Duration::from_nanos(nanos);
            let tick = deadlines.tick(at);
            assert!(deadlines.instant(tick) >= at, "{nanos} ns");
            assert!(deadlines.instant(tick) < at + Duration::from_micros(1), "{nanos} ns");
            if nanos > 0 {
                assert!(!deadlines.is_due(tick, at - Duration::from_nanos(1)), "{nanos} ns");
            }
            assert!(deadlines.is_due(tick, at + Duration::from_micros(1)));
        }
        // Before the epoch: due at once.
        assert!(deadlines.is_due(deadlines.tick(epoch), epoch));
    }

    #[test]
    fn the_earliest_comes_first_and_stale_entries_can_be_dropped() {
        let epoch = Instant::now();
        let mut deadlines = Deadlines::new(epoch);
        let at = |ms| deadlines.tick(epoch + Duration::from_millis(ms));
        let (late, early, stale) = (at(30), at(10), at(20));
        deadlines.push(late, 1);
        deadlines.push(early, 2);
        deadlines.push(stale, 3);
        assert_eq!(deadlines.peek(), Some((early, 2)));
        deadlines.retain(|_, token| token != 3);
        assert_eq!(deadlines.len(), 2);
        deadlines.pop();
        assert_eq!(deadlines.peek(), Some((late, 1)));
    }
}
