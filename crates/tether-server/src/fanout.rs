//! Fan-out across server processes, whatever carries it: the [`Engine`]
//! trait a [`Hub`](crate::hub::Hub) publishes through, the frame every
//! publication travels in, and the bookkeeping that makes loss visible.
//!
//! Pub/sub brokers deliver at most once: a process whose subscription was
//! down for a second never hears what others published in that second,
//! and nothing tells it. So every publication carries its publisher's
//! number (`origin`, random per process start) and a sequence number, and
//! each publisher also sends a heartbeat with its latest sequence number
//! every health interval. A receiver that sees a publisher's sequence jump
//! knows exactly how many of its messages it missed: they are counted and
//! logged ([`FanoutStatus::missed`]). Its own publications it keeps for a
//! while ([`Own`]): the ones its subscription missed are delivered to its
//! clients from there, so a process never loses its own messages.
//!
//! A second engine (NATS, say) implements [`Engine`]: it carries
//! [`Frame`]s between processes on channels named by [`Target`], feeds
//! what arrives to [`Receiver::accept`], and keeps a [`FanoutStatus`].
//! The hub does not change.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tether_proto::Message;

/// Where a publication goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every client of every process (a broadcast).
    All,
    /// The subscribers of a topic, on every process.
    Topic(String),
}

/// What carries publications between processes.
pub trait Engine: Send + Sync {
    /// Its name in logs and metric names (`redis` gives `tether_redis_up`).
    fn name(&self) -> &'static str;

    /// Takes `message` to every process, this one included (its clients get
    /// it when it comes back). `false` when it cannot now (the link is down,
    /// or the queue to it is full): the caller delivers to its own clients
    /// only, and the engine has counted it in [`FanoutStatus::local_only`].
    fn publish(&self, target: &Target, message: &Message) -> bool;

    /// Its counters.
    fn status(&self) -> &FanoutStatus;
}

/// Hands what arrives from other processes to this process's clients.
pub type Deliver = Arc<dyn Fn(Target, Message) + Send + Sync>;

/// An engine's state and counters, for the program and for metrics. Every
/// message that may not have reached every process is in one of
/// `local_only`, `unconfirmed` or `missed`.
#[derive(Debug, Default)]
pub struct FanoutStatus {
    up: AtomicBool,
    outages: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    local_only: AtomicU64,
    unconfirmed: AtomicU64,
    missed: AtomicU64,
    replayed: AtomicU64,
}

impl FanoutStatus {
    /// Whether publications reach the other processes now.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// How many times the link was lost.
    #[must_use]
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Publications handed to the broker and acknowledged by it.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Publications received from the broker and delivered here.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Publications made while the link was down or full: they reached
    /// this process's clients only.
    #[must_use]
    pub fn local_only(&self) -> u64 {
        self.local_only.load(Ordering::Relaxed)
    }

    /// Publications on their way to the broker when the link failed: this
    /// process's clients got them; other processes may not have.
    #[must_use]
    pub fn unconfirmed(&self) -> u64 {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    /// Other processes' publications this process never received (seen as
    /// gaps in their sequence numbers): its clients did not get them.
    #[must_use]
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// This process's own publications that its subscription missed,
    /// delivered to its clients from what it kept.
    #[must_use]
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// An engine's links are up (both ways) or not; what it was before.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed)
    }

    /// The link was lost once more.
    pub fn count_outage(&self) {
        self.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// The broker acknowledged `n` more publications.
    pub fn count_published(&self, n: usize) {
        self.published.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One more publication reached local clients only; the count so far.
    pub fn count_local_only(&self) -> u64 {
        self.local_only.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A publication or heartbeat as it travels: one kind byte, the
/// publisher's origin and sequence number (8 bytes each, big-endian), and
/// the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The publishing process, random per start.
    pub origin: u64,
    /// The publication's number from that process (1, 2, 3, …); for a
    /// heartbeat, the latest number it has published.
    pub seq: u64,
    /// What it carries: a message, or nothing (a heartbeat).
    pub message: Option<Message>,
}

const TEXT: u8 = b't';
const BINARY: u8 = b'b';
const HEARTBEAT: u8 = b'h';
const HEADER: usize = 17;

impl Frame {
    /// The frame's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let body = self.message.as_ref().map_or(&[][..], Message::as_bytes);
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.push(match &self.message {
            None => HEARTBEAT,
            Some(message) if message.is_text() => TEXT,
            Some(_) => BINARY,
        });
        out.extend_from_slice(&self.origin.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A frame from its bytes; `None` if they are not one (another
    /// program's message on our channels, or invalid UTF-8 in a text).
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Frame> {
        if bytes.len() < HEADER {
            return None;
        }
        let origin = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        let seq = u64::from_be_bytes(bytes[9..17].try_into().ok()?);
        let body = &bytes[HEADER..];
        let message = match bytes[0] {
            TEXT => Some(Message::from(std::str::from_utf8(body).ok()?.to_owned())),
            BINARY => Some(Message::from(body.to_vec())),
            HEARTBEAT if body.is_empty() => None,
            _ => return None,
        };
        Some(Frame { origin, seq, message })
    }
}

/// Most own publications kept for replay, and most bytes.
const OWN_KEPT: usize = 4096;
const OWN_KEPT_BYTES: usize = 8 << 20;

/// This process's own publications: numbered as they leave, kept a while,
/// and delivered here exactly once — when they come back from the broker,
/// or from what was kept when the subscription missed them, or at once
/// when the link failed with them on the way.
pub struct Own {
    origin: u64,
    state: Mutex<OwnState>,
}

#[derive(Default)]
struct OwnState {
    /// The last sequence number given out.
    last: u64,
    /// Delivered here up to this number (from the broker or not).
    delivered: u64,
    kept: VecDeque<(u64, Target, Message)>,
    kept_bytes: usize,
}

impl std::fmt::Debug for Own {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Own").field("origin", &format_args!("{:016x}", self.origin)).finish_non_exhaustive()
    }
}

impl Own {
    /// A new origin, random.
    #[must_use]
    pub fn new() -> Own {
        Own::with_origin(rand::random::<u64>() | 1)
    }

    fn with_origin(origin: u64) -> Own {
        Own { origin, state: Mutex::default() }
    }

    /// This process's origin.
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OwnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers `message` and keeps it; the frame to send.
    pub fn number(&self, target: &Target, message: &Message) -> Frame {
        let mut state = self.lock();
        state.last += 1;
        let seq = state.last;
        state.kept_bytes += message.len();
        state.kept.push_back((seq, target.clone(), message.clone()));
        while state.kept.len() > OWN_KEPT || state.kept_bytes > OWN_KEPT_BYTES {
            let Some((_, _, old)) = state.kept.pop_front() else { break };
            state.kept_bytes -= old.len();
        }
        Frame { origin: self.origin, seq, message: Some(message.clone()) }
    }

    /// A heartbeat: the latest number given out.
    #[must_use]
    pub fn heartbeat(&self) -> Frame {
        Frame { origin: self.origin, seq: self.lock().last, message: None }
    }

    /// Publications up to `upto` were on their way when the link failed:
    /// those not yet delivered here are delivered now. How many (other
    /// processes may not have them).
    pub fn deliver_unconfirmed(&self, upto: u64, deliver: &Deliver, status: &FanoutStatus) -> u64 {
        let mut state = self.lock();
        let n = self.catch_up(&mut state, upto, deliver);
        status.unconfirmed.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// An own frame came back from the broker (a publication, or a
    /// heartbeat saying how far we are).
    fn came_back(&self, target: Target, frame: Frame, deliver: &Deliver, status: &FanoutStatus) {
        let mut state = self.lock();
        if frame.seq <= state.delivered {
            return; // delivered already, when the link failed
        }
        let before = frame.seq - u64::from(frame.message.is_some());
        let replayed = self.catch_up(&mut state, before, deliver);
        status.replayed.fetch_add(replayed, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(
                replayed,
                "fan-out: our own publications missed by our subscription, delivered here from what we kept"
            );
        }
        if let Some(message) = frame.message {
            state.delivered = frame.seq;
            status.received.fetch_add(1, Ordering::Relaxed);
            deliver(target, message);
        }
    }

    /// Delivers what was kept after `delivered` up to `upto`; what was no
    /// longer kept is counted missed.
    fn catch_up(&self, state: &mut OwnState, upto: u64, deliver: &Deliver) -> u64 {
        let mut delivered = 0;
        while state.delivered < upto {
            state.delivered += 1;
            let seq = state.delivered;
            if let Some((_, target, message)) = state.kept.iter().find(|(kept, ..)| *kept == seq) {
                deliver(target.clone(), message.clone());
                delivered += 1;
            }
        }
        delivered
    }
}

impl Default for Own {
    fn default() -> Self {
        Own::new()
    }
}

/// Forgotten after this long without a word: a process that stopped.
const ORIGIN_SILENCE: Duration = Duration::from_secs(600);

/// What a process receives: delivers it, and finds the gaps.
pub struct Receiver {
    own: Arc<Own>,
    deliver: Deliver,
    status: Arc<FanoutStatus>,
    /// Each other publisher's latest sequence number seen, and when.
    others: HashMap<u64, (u64, Instant)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("publishers", &self.others.len()).finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver for the process whose own publications are `own`.
    #[must_use]
    pub fn new(own: Arc<Own>, deliver: Deliver, status: Arc<FanoutStatus>) -> Receiver {
        Receiver { own, deliver, status, others: HashMap::new() }
    }

    /// A frame arrived on `target`'s channel (heartbeats: any target).
    pub fn accept(&mut self, target: Target, frame: Frame, now: Instant) {
        if frame.origin == self.own.origin {
            return self.own.came_back(target, frame, &self.deliver, &self.status);
        }
        let is_message = frame.message.is_some();
        let (last, heard) = self.others.entry(frame.origin).or_insert((frame.seq - u64::from(is_message), now));
        *heard = now;
        if frame.seq <= *last {
            return; // an old heartbeat, or a publication seen already
        }
        let missed = frame.seq - *last - u64::from(is_message);
        *last = frame.seq;
        if missed > 0 {
            self.status.missed.fetch_add(missed, Ordering::Relaxed);
            tracing::warn!(
                missed,
                publisher = %format_args!("{:016x}", frame.origin),
                "fan-out: publications from another server never arrived here (our subscription was down); our clients did not get them"
            );
        }
        if let Some(message) = frame.message {
            self.status.received.fetch_add(1, Ordering::Relaxed);
            (self.deliver)(target, message);
        }
        if self.others.len() > 64 {
            self.others.retain(|_, (_, heard)| now.duration_since(*heard) < ORIGIN_SILENCE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Arc<Mutex<Vec<(Target, Message)>>>;

    fn receiver(own: &Arc<Own>) -> (Receiver, Log, Arc<FanoutStatus>) {
        let log: Log = Arc::default();
        let sink = log.clone();
        let deliver: Deliver = Arc::new(move |target, message| sink.lock().unwrap().push((target, message)));
        let status = Arc::new(FanoutStatus::default());
        (Receiver::new(own.clone(), deliver, status.clone()), log, status)
    }

    fn texts(log: &Log) -> Vec<String> {
        log.lock().unwrap().iter().map(|(_, message)| message.as_text().unwrap().to_owned()).collect()
    }

    fn publication(origin: u64, seq: u64, text: &str) -> Frame {
        Frame { origin, seq, message: Some(Message::from(text)) }
    }

    #[test]
    fn frames_round_trip_and_foreign_bytes_are_refused() {
        for message in
            [Some(Message::from("héllo")), Some(Message::from(vec![0u8, 255])), Some(Message::from("")), None]
        {
            let frame = Frame { origin: 7, seq: 1 << 40, message };
            assert_eq!(Frame::decode(&frame.encode()), Some(frame));
        }
        assert_eq!(Frame::decode(b"t"), None);
        assert_eq!(Frame::decode(b"x0123456789abcdefg"), None);
        let mut bad_text = publication(1, 1, "").encode();
        bad_text.push(0xff);
        assert_eq!(Frame::decode(&bad_text), None);
    }

    #[test]
    fn a_gap_in_another_publishers_numbers_is_counted_and_the_rest_delivered() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let now = Instant::now();
        receiver.accept(Target::All, publication(9, 41, "a"), now); // first heard: no judgement
        receiver.accept(Target::All, publication(9, 42, "b"), now);
        receiver.accept(Target::All, publication(9, 46, "f"), now); // 43, 44, 45 never came
        receiver.accept(Target::All, publication(9, 46, "f"), now); // a duplicate
        assert_eq!(texts(&log), ["a", "b", "f"]);
        assert_eq!((status.missed(), status.received()), (3, 3));
    }

    #[test]
    fn a_heartbeat_reveals_a_gap_without_waiting_for_the_next_publication() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let now = Instant::now();
        receiver.accept(Target::All, Frame { origin: 9, seq: 10, message: None }, now);
        receiver.accept(Target::All, Frame { origin: 9, seq: 12, message: None }, now);
        assert_eq!(status.missed(), 2);
        receiver.accept(Target::All, publication(9, 13, "next"), now);
        assert_eq!((status.missed(), texts(&log)), (2, vec!["next".to_owned()]));
    }

    #[test]
    fn own_publications_missed_by_the_subscription_are_delivered_from_what_was_kept() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let topic = Target::Topic("room".into());
        let frames: Vec<Frame> =
            ["one", "two", "three", "four"].iter().map(|text| own.number(&topic, &Message::from(*text))).collect();
        let now = Instant::now();
        receiver.accept(topic.clone(), frames[0].clone(), now);
        // "two" and "three" were published while our subscription was down.
        receiver.accept(topic.clone(), frames[3].clone(), now);
        assert_eq!(texts(&log), ["one", "two", "three", "four"]);
        assert_eq!((status.replayed(), status.missed(), status.received()), (2, 0, 2));
        assert!(log.lock().unwrap().iter().all(|(target, _)| *target == topic));
    }

    #[test]
    fn own_publications_caught_in_a_failed_link_are_delivered_once() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let frames: Vec<Frame> = (0..4).map(|n| own.number(&Target::All, &Message::from(n.to_string()))).collect();
        let now = Instant::now();
        receiver.accept(Target::All, frames[0].clone(), now);
        // The link failed with 2..=4 on their way: delivered here at once.
        let unconfirmed = own.deliver_unconfirmed(frames[3].seq, &receiver.deliver, &status);
        assert_eq!(unconfirmed, 3);
        // Some of them did reach the broker and come back: not again.
        receiver.accept(Target::All, frames[2].clone(), now);
        receiver.accept(Target::All, own.heartbeat(), now);
        assert_eq!(texts(&log), ["0", "1", "2", "3"]);
        assert_eq!(status.unconfirmed(), 3);
    }
}
