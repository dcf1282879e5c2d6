//! The connection's timers: the keepalive ping schedule and its pong
//! deadline, the idle limit and the closing handshake's deadline, driven
//! entirely by instants the caller passes in.
//!
//! The connection tells this module what happened (a pong arrived, data
//! moved, the close began) as it happens, without a time; the time is
//! attached at the next [`Connection::handle_timeout`](crate::Connection::handle_timeout),
//! which the I/O layer calls after every batch of reads and when the
//! deadline from [`Connection::poll_timeout`](crate::Connection::poll_timeout)
//! passes. So reads need no clock, and one clock reading serves a whole
//! batch of frames.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::frame::MAX_CONTROL_PAYLOAD;
use crate::time::{Clock, Micros, Timeout};

/// "Not set" for a timestamp or a limit.
const NEVER: Micros = Micros::MAX;

/// Something happened since the last tick whose time is not yet recorded.
mod noted {
    /// A data message went either way (idle timer).
    pub(super) const ACTIVITY: u8 = 1;
    /// The pong to the outstanding ping arrived (RTT, next ping).
    pub(super) const ANSWERED: u8 = 1 << 1;
    /// Data frames arrived from the peer since the ping (it is alive, but
    /// its pong may be stuck behind the message it is sending).
    pub(super) const PROGRESS_IN: u8 = 1 << 2;
    /// Our output moved since the ping (the peer is consuming it).
    pub(super) const PROGRESS_OUT: u8 = 1 << 3;
}

/// Round-trip time measured by keepalive pings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundTrip {
    /// The latest measurement.
    pub last: Duration,
    /// An exponentially weighted average (weight 1/8 to the newest
    /// measurement, as TCP's smoothed RTT), steadier than `last`.
    pub smoothed: Duration,
}

/// Where the connection is, as far as its timers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Data flows: keepalive and idle timers run.
    Open,
    /// Closing, or closed with output still to write: the close deadline runs.
    Closing,
    /// Nothing left to do or wait for.
    Done,
}

/// What [`Timers::handle_timeout`] wants the connection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    /// Send a keepalive ping: its payload comes from [`Timers::ping_payload`].
    Ping,
    /// A deadline passed.
    Expired(Timeout),
}

/// The configured limits, the same for every connection made from one
/// [`Config`] (shared, see [`Settings`](crate::connection::Settings)).
#[derive(Debug)]
pub(crate) struct Schedule {
    /// In milliseconds (`u32::MAX`: none), half the size of microsecond
    /// timestamps.
    interval_ms: u32,
    timeout_ms: u32,
    idle_ms: u32,
    close_ms: u32,
    custom_payload: Option<Box<[u8]>>,
}

impl Schedule {
    pub(crate) fn new(config: &Config) -> Schedule {
        Schedule {
            interval_ms: millis(config.ping_interval),
            timeout_ms: millis(config.ping_timeout),
            idle_ms: millis(config.idle_timeout),
            close_ms: millis(Some(config.close_timeout)),
            custom_payload: config
                .ping_payload
                .as_ref()
                .map(|payload| payload[..payload.len().min(MAX_CONTROL_PAYLOAD)].into()),
        }
    }

    fn interval(&self) -> Micros {
        micros_of_millis(self.interval_ms)
    }

    fn timeout(&self) -> Micros {
        micros_of_millis(self.timeout_ms)
    }

    fn idle(&self) -> Micros {
        micros_of_millis(self.idle_ms)
    }

    fn close(&self) -> Micros {
        micros_of_millis(self.close_ms)
    }
}

/// The timers of one connection. Timestamps are microseconds on the
/// connection's own [`Clock`], to keep this small; the limits they apply
/// come in as a [`Schedule`].
#[derive(Debug)]
pub(crate) struct Timers {
    clock: Clock,
    /// The latest time given.
    latest: Micros,
    /// When the next ping is due.
    next_ping: Micros,
    /// When the outstanding ping was sent (`NEVER`: none is).
    ping_sent: Micros,
    /// When the outstanding ping is declared unanswered.
    pong_deadline: Micros,
    /// The sequence number of the latest ping (its default payload).
    sequence: u32,
    /// A hash of the latest ping the application sent after our
    /// outstanding one: the peer may answer only that one (RFC 6455
    /// §5.5.3), which then answers ours too. 0 when there is none.
    later_ping: u32,
    last_activity: Micros,
    close_deadline: Micros,
    /// Microseconds; `u32::MAX` until measured.
    rtt_last: u32,
    rtt_smoothed: u32,
    /// Bytes the transport (the kernel's send queue) held at the last
    /// report: data on its way to a slow reader that we can no longer see.
    transport_queue: u32,
    /// Output bytes still ahead of the end of our latest ping: writing
    /// them (the ping included) is not progress made after the ping.
    before_ping_end: u32,
    noted: u8,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            clock: Clock::default(),
            latest: 0,
            next_ping: NEVER,
            ping_sent: NEVER,
            pong_deadline: NEVER,
            sequence: 0,
            later_ping: 0,
            last_activity: 0,
            close_deadline: NEVER,
            rtt_last: u32::MAX,
            rtt_smoothed: u32::MAX,
            transport_queue: 0,
            before_ping_end: 0,
            noted: 0,
        }
    }

    fn note(&mut self, what: u8) {
        self.noted |= what;
    }

    fn take_noted(&mut self, what: u8) -> bool {
        let was = self.noted & what != 0;
        self.noted &= !what;
        was
    }

    // ---- what happened (no time) ------------------------------------------

    pub(crate) fn note_activity(&mut self) {
        self.note(noted::ACTIVITY);
    }

    pub(crate) fn note_progress_in(&mut self) {
        self.note(noted::PROGRESS_IN);
    }

    /// `written` bytes of our output went to the transport.
    pub(crate) fn note_progress_out(&mut self, written: usize) {
        let written = u32::try_from(written).unwrap_or(u32::MAX);
        let ours = written.min(self.before_ping_end);
        self.before_ping_end -= ours;
        if written > ours {
            self.note(noted::PROGRESS_OUT);
        }
    }

    /// The ping just queued ends `unsent` bytes into the output.
    pub(crate) fn note_ping_queued(&mut self, unsent: usize) {
        self.before_ping_end = u32::try_from(unsent).unwrap_or(u32::MAX);
    }

    /// Closing is not waited for: the close deadline is now, so whatever
    /// the transport does not take at once is abandoned at the next check.
    pub(crate) fn close_without_waiting(&mut self) {
        self.close_deadline = self.latest;
    }

    /// The transport holds `queued` bytes not yet taken by the peer; a
    /// smaller number than last time means the peer is reading.
    pub(crate) fn note_transport_queue(&mut self, queued: usize) {
        let queued = u32::try_from(queued).unwrap_or(u32::MAX);
        if queued < self.transport_queue {
            self.note(noted::PROGRESS_OUT);
        }
        self.transport_queue = queued;
    }

    /// A pong arrived: does it answer our outstanding ping?
    pub(crate) fn note_pong(&mut self, schedule: &Schedule, payload: &[u8]) {
        if self.ping_sent == NEVER {
            return;
        }
        let answers_ours = match &schedule.custom_payload {
            Some(custom) => payload == &custom[..],
            None => payload == self.sequence.to_be_bytes(),
        };
        if answers_ours || (self.later_ping != 0 && hash(payload) == self.later_ping) {
            self.note(noted::ANSWERED);
        }
    }

    /// The application sent a ping of its own.
    pub(crate) fn note_app_ping(&mut self, payload: &[u8]) {
        if self.ping_sent != NEVER {
            self.later_ping = hash(payload);
        }
    }

    // ---- time ---------------------------------------------------------------

    /// Attaches `now` to what happened since the last call and says what
    /// is due. `output_waiting`: bytes wait to be written to the peer.
    pub(crate) fn handle_timeout(
        &mut self,
        schedule: &Schedule,
        now: Instant,
        phase: Phase,
        output_waiting: bool,
    ) -> Due {
        let first = !self.clock.is_started();
        let t = self.clock.micros(now).max(self.latest);
        self.latest = t;
        if first {
            self.next_ping = t.saturating_add(schedule.interval());
            self.last_activity = t;
        }
        if self.take_noted(noted::ACTIVITY) {
            self.last_activity = t;
        }
        if self.take_noted(noted::ANSWERED) {
            self.record_rtt(t - self.ping_sent.min(t));
            self.next_ping = self.ping_sent.saturating_add(schedule.interval()).max(t);
            self.ping_sent = NEVER;
            self.pong_deadline = NEVER;
            self.later_ping = 0;
        }
        match phase {
            Phase::Open => {}
            Phase::Done => return Due::Nothing,
            Phase::Closing => {
                if self.close_deadline == NEVER {
                    self.close_deadline = t.saturating_add(schedule.close());
                }
                return if t >= self.close_deadline { Due::Expired(Timeout::Close) } else { Due::Nothing };
            }
        }
        if t >= self.pong_deadline {
            // Late, but is it dead? A peer in the middle of sending us data,
            // or reading what we send, is alive: give it another period.
            let progress_in = self.take_noted(noted::PROGRESS_IN);
            let progress_out = self.take_noted(noted::PROGRESS_OUT) && (output_waiting || self.transport_queue > 0);
            if !(progress_in || progress_out) {
                return Due::Expired(Timeout::Ping);
            }
            self.pong_deadline = t.saturating_add(schedule.timeout());
        }
        if t >= self.last_activity.saturating_add(schedule.idle()) {
            return Due::Expired(Timeout::Idle);
        }
        // Never a second ping while one is awaited, unless nothing is
        // awaited at all (no ping timeout): then the schedule alone rules.
        if t >= self.next_ping && (self.ping_sent == NEVER || schedule.timeout() == NEVER) {
            return Due::Ping;
        }
        Due::Nothing
    }

    /// The payload of the next keepalive ping, written into `buf`; records
    /// the ping as sent at the time of the latest `handle_timeout`.
    pub(crate) fn ping_payload(&mut self, schedule: &Schedule, buf: &mut [u8; MAX_CONTROL_PAYLOAD]) -> usize {
        let t = self.now();
        self.sequence = self.sequence.wrapping_add(1);
        self.ping_sent = t;
        self.pong_deadline = t.saturating_add(schedule.timeout());
        self.later_ping = 0;
        self.noted &= !(noted::PROGRESS_IN | noted::PROGRESS_OUT | noted::ANSWERED);
        if schedule.timeout() == NEVER {
            // Nothing will be waited for: the schedule alone sets the pace,
            // and a late pong still measures the round trip.
            self.next_ping = t.saturating_add(schedule.interval());
        }
        match &schedule.custom_payload {
            Some(custom) => {
                buf[..custom.len()].copy_from_slice(custom);
                custom.len()
            }
            None => {
                buf[..4].copy_from_slice(&self.sequence.to_be_bytes());
                4
            }
        }
    }

    fn now(&self) -> Micros {
        self.latest
    }

    fn record_rtt(&mut self, micros: Micros) {
        let sample = u32::try_from(micros).unwrap_or(u32::MAX - 1);
        self.rtt_smoothed = if self.rtt_smoothed == u32::MAX {
            sample
        } else {
            let smoothed = (u64::from(self.rtt_smoothed) * 7 + u64::from(sample)) / 8;
            u32::try_from(smoothed).unwrap_or(u32::MAX - 1)
        };
        self.rtt_last = sample;
    }

    /// The round-trip time, once a pong has answered a keepalive ping.
    pub(crate) fn round_trip(&self) -> Option<RoundTrip> {
        (self.rtt_last != u32::MAX).then(|| RoundTrip {
            last: Duration::from_micros(self.rtt_last.into()),
            smoothed: Duration::from_micros(self.rtt_smoothed.into()),
        })
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// has something to do; `None` before the clock started or when
    /// nothing is scheduled. A close not yet timed makes it due at once.
    ///
    /// Activity and pongs noted but not yet timed do not: timing them late
    /// only moves the idle deadline and the next ping later, never earlier.
    pub(crate) fn poll_timeout(&self, schedule: &Schedule, phase: Phase) -> Option<Instant> {
        if !self.clock.is_started() {
            return None;
        }
        let due = match phase {
            Phase::Done => NEVER,
            Phase::Closing if self.close_deadline == NEVER => self.latest,
            Phase::Closing => self.close_deadline,
            Phase::Open => {
                let ping = if self.ping_sent == NEVER || schedule.timeout() == NEVER { self.next_ping } else { NEVER };
                ping.min(self.pong_deadline).min(self.last_activity.saturating_add(schedule.idle()))
            }
        };
        if due == NEVER {
            None
        } else {
            self.clock.instant(due)
        }
    }
}

fn hash(bytes: &[u8]) -> u32 {
    // FNV-1a: only has to tell one ping payload from another.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash | 1
}

/// A limit in milliseconds; `None`, or one of 49 days or more, is "never".
fn millis(limit: Option<Duration>) -> u32 {
    limit.map_or(u32::MAX, |limit| u32::try_from(limit.as_millis()).unwrap_or(u32::MAX))
}

fn micros_of_millis(ms: u32) -> Micros {
    if ms == u32::MAX {
        NEVER
    } else {
        Micros::from(ms) * 1000
    }
}
