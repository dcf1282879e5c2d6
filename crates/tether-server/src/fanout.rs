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

use crate::history::{BrokerHistory, Position};

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

    /// Whether its broker numbers topic publications and keeps them (a
    /// hub with history needs it: every process must agree on offsets).
    fn keeps_history(&self) -> bool {
        false
    }

    /// Whether this process hears every topic's publications (classic
    /// pub/sub: the broker sends it everything under its namespace), or
    /// only those of the topics it follows ([`follow`](Self::follow);
    /// sharded pub/sub, where a subscription per topic is what keeps a
    /// publication inside its shard).
    fn hears_every_topic(&self) -> bool {
        true
    }

    /// The hub starts following `topic` (its first local subscriber came,
    /// or a subscriber's recovery is about to be asked of the broker) or
    /// stops (`false`: nobody here wants it any more). Called only when
    /// [`hears_every_topic`](Self::hears_every_topic) is `false`, in the
    /// order the hub decided them; it must not block.
    fn follow(&self, topic: &str, follow: bool) {
        let _ = (topic, follow);
    }

    /// Asks the broker's history where `topic` is and, if `after` is
    /// given, for the publications after that offset; `done` gets the
    /// answer, or `None` if the broker cannot be asked. Called from any
    /// thread, an event loop's included: it must not block. An engine
    /// that hears only followed topics answers only once the
    /// subscription to a topic followed before the call is in place, so
    /// every publication after the answer's top arrives.
    fn read_history(&self, topic: &str, after: Option<u64>, done: Box<dyn FnOnce(Option<BrokerHistory>) + Send>) {
        let _ = (topic, after);
        done(None);
    }
}

/// Hands what arrives from other processes to this process's clients,
/// with its place in the topic's history if the engine keeps one.
pub type Deliver = Arc<dyn Fn(Target, Message, Option<Position>) + Send + Sync>;

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
    recovered: AtomicU64,
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
    /// process's clients got them; other processes may not have. (A topic
    /// publication with history reached everyone if the broker took it,
    /// and no one if not.)
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

    /// Publications its subscription missed that were read from a topic's
    /// history instead (of `missed`, those its clients got after all).
    #[must_use]
    pub fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
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

    /// `n` publications were on their way when the link failed (see
    /// [`unconfirmed`](Self::unconfirmed)).
    pub fn count_unconfirmed(&self, n: u64) {
        self.unconfirmed.fetch_add(n, Ordering::Relaxed);
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
    /// Its place in its topic's history, when the engine keeps one (the
    /// broker gave it).
    pub position: Option<Position>,
}

const TEXT: u8 = b't';
const BINARY: u8 = b'b';
const HEARTBEAT: u8 = b'h';
/// A text or binary publication with its place in history: after the
/// header, `offset:epoch\n` in ASCII, then the payload.
const TEXT_AT: u8 = b'T';
const BINARY_AT: u8 = b'B';
const HEADER: usize = 17;

impl Frame {
    /// The frame's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let body = self.message.as_ref().map_or(&[][..], Message::as_bytes);
        let mut out = self.head(self.position.is_some());
        if let Some(position) = &self.position {
            out.extend_from_slice(format!("{}:{}\n", position.offset, position.epoch).as_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// The kind byte, origin and sequence number; `at`: a place in history
    /// follows (which a broker may write itself, as Redis's script does).
    #[must_use]
    pub fn head(&self, at: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.message.as_ref().map_or(0, Message::len) + 32);
        out.push(match (&self.message, at) {
            (None, _) => HEARTBEAT,
            (Some(message), false) if message.is_text() => TEXT,
            (Some(_), false) => BINARY,
            (Some(message), true) if message.is_text() => TEXT_AT,
            (Some(_), true) => BINARY_AT,
        });
        out.extend_from_slice(&self.origin.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
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
        let mut body = &bytes[HEADER..];
        let mut position = None;
        if matches!(bytes[0], TEXT_AT | BINARY_AT) {
            let end = body.iter().position(|&byte| byte == b'\n')?;
            let (offset, epoch) = std::str::from_utf8(&body[..end]).ok()?.split_once(':')?;
            position = Some(Position { offset: offset.parse().ok()?, epoch: epoch.to_owned() });
            body = &body[end + 1..];
        }
        let message = match bytes[0] {
            TEXT | TEXT_AT => Some(Message::from(std::str::from_utf8(body).ok()?.to_owned())),
            BINARY | BINARY_AT => Some(Message::from(body.to_vec())),
            HEARTBEAT if body.is_empty() => None,
            _ => return None,
        };
        Some(Frame { origin, seq, message, position })
    }
}

/// Most own publications kept for replay, and most bytes.
const OWN_KEPT: usize = 4096;
const OWN_KEPT_BYTES: usize = 8 << 20;

/// This process's own publications: numbered as they leave, kept a while,
/// and delivered here exactly once — when they come back from the broker,
/// or from what was kept when the subscription missed them, or at once
/// when the link failed with them on the way. Publications that go into a
/// topic's history are not kept here: the history has them, with the
/// offsets only the broker gives.
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
    /// Recent publications, by number.
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

    /// Numbers `message` and keeps it; the frame to send. A publication
    /// that goes into a topic's history (`in_history`) is not numbered
    /// here (sequence 0): its offset in the topic orders it and finds its
    /// gaps, and on a cluster publications of different topics travel
    /// through different nodes, so one sequence across them would show
    /// gaps that are only reordering.
    pub fn number(&self, target: &Target, message: &Message, in_history: bool) -> Frame {
        if in_history {
            return Frame { origin: self.origin, seq: 0, message: Some(message.clone()), position: None };
        }
        let mut state = self.lock();
        state.last += 1;
        let seq = state.last;
        state.kept_bytes += message.len();
        state.kept.push_back((seq, target.clone(), message.clone()));
        while state.kept.len() > OWN_KEPT || state.kept_bytes > OWN_KEPT_BYTES {
            let Some((_, _, old)) = state.kept.pop_front() else { break };
            state.kept_bytes -= old.len();
        }
        Frame { origin: self.origin, seq, message: Some(message.clone()), position: None }
    }

    /// A heartbeat: the latest number given out.
    #[must_use]
    pub fn heartbeat(&self) -> Frame {
        Frame { origin: self.origin, seq: self.lock().last, message: None, position: None }
    }

    /// Publications up to `upto` were on their way when the link failed:
    /// those not yet delivered here are delivered now. How many may not
    /// have reached other processes. (Publications with history are not
    /// numbered here: one reaches nobody unless the broker took it, and
    /// then it is read back from the history.)
    pub fn deliver_unconfirmed(&self, upto: u64, deliver: &Deliver, status: &FanoutStatus) -> u64 {
        let mut state = self.lock();
        let n = upto.saturating_sub(state.delivered);
        let (_, lost) = self.catch_up(&mut state, upto, deliver);
        status.unconfirmed.fetch_add(n, Ordering::Relaxed);
        status.missed.fetch_add(lost, Ordering::Relaxed);
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
        let (replayed, lost) = self.catch_up(&mut state, before, deliver);
        status.replayed.fetch_add(replayed, Ordering::Relaxed);
        status.missed.fetch_add(lost, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(
                replayed,
                "fan-out: our own publications missed by our subscription, delivered here from what we kept"
            );
        }
        if lost > 0 {
            tracing::warn!(lost, "fan-out: our own publications missed by our subscription and no longer kept");
        }
        if let Some(message) = frame.message {
            state.delivered = frame.seq;
            status.received.fetch_add(1, Ordering::Relaxed);
            deliver(target, message, None);
        }
    }

    /// Delivers what was kept after `delivered` up to `upto`: how many,
    /// and how many were no longer kept.
    fn catch_up(&self, state: &mut OwnState, upto: u64, deliver: &Deliver) -> (u64, u64) {
        let (mut delivered, mut lost) = (0, 0);
        // Numbers are kept in order: find the first after `delivered` once.
        let start = state.kept.partition_point(|(seq, ..)| *seq <= state.delivered);
        let mut kept = state.kept.range(start..).peekable();
        while state.delivered < upto {
            state.delivered += 1;
            let seq = state.delivered;
            match kept.next_if(|(kept, ..)| *kept == seq) {
                Some((_, target, message)) => {
                    deliver(target.clone(), message.clone(), None);
                    delivered += 1;
                }
                None => lost += 1,
            }
        }
        (delivered, lost)
    }
}

impl Default for Own {
    fn default() -> Self {
        Own::new()
    }
}

/// Forgotten after this long without a word: a process that stopped.
const ORIGIN_SILENCE: Duration = Duration::from_secs(600);

/// Publications of a topic's history this process has not received: the
/// ones after `after` up to `upto`, in the stream named `epoch`. The
/// engine reads them from the broker's history and hands them to
/// [`Receiver::fill`] before the publication that revealed the gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: String,
    /// The last offset delivered here.
    pub after: u64,
    /// The last offset missing.
    pub upto: u64,
    /// The stream.
    pub epoch: String,
}

/// What a process receives: delivers it, and finds the gaps.
pub struct Receiver {
    own: Arc<Own>,
    deliver: Deliver,
    status: Arc<FanoutStatus>,
    /// Each other publisher's latest sequence number seen, and when.
    others: HashMap<u64, (u64, Instant)>,
    /// The place of the latest publication delivered in each topic with
    /// history.
    tops: HashMap<String, Position>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("publishers", &self.others.len())
            .field("topics", &self.tops.len())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver for the process whose own publications are `own`.
    #[must_use]
    pub fn new(own: Arc<Own>, deliver: Deliver, status: Arc<FanoutStatus>) -> Receiver {
        Receiver { own, deliver, status, others: HashMap::new(), tops: HashMap::new() }
    }

    /// What is missing before `frame` in its topic's history, if anything
    /// (the engine then fills it before calling [`accept`](Self::accept)).
    #[must_use]
    pub fn gap(&self, target: &Target, frame: &Frame) -> Option<Gap> {
        let (Target::Topic(topic), Some(position)) = (target, &frame.position) else { return None };
        let top = self.tops.get(topic)?;
        (top.epoch == position.epoch && position.offset > top.offset + 1).then(|| Gap {
            topic: topic.clone(),
            after: top.offset,
            upto: position.offset - 1,
            epoch: top.epoch.clone(),
        })
    }

    /// Forgets where `topic` is (this process stopped following it: what
    /// it publishes meanwhile is no gap here).
    pub fn forget(&mut self, topic: &str) {
        self.tops.remove(topic);
    }

    /// Where each topic with history is, as far as this process has
    /// delivered (for an engine that checks them all after losing its
    /// subscription for a while).
    pub fn tops(&self) -> impl Iterator<Item = (&String, &Position)> {
        self.tops.iter()
    }

    /// Publications read from the broker's history to close `gap`, in
    /// order: each is delivered unless it was already. Those of the gap
    /// the history no longer had are counted missed (and logged).
    pub fn fill(&mut self, gap: &Gap, frames: impl IntoIterator<Item = Frame>) {
        let target = Target::Topic(gap.topic.clone());
        let mut found = 0;
        for frame in frames {
            let (Some(message), Some(position)) = (frame.message, frame.position) else { continue };
            let in_gap = position.epoch == gap.epoch && (gap.after + 1..=gap.upto).contains(&position.offset);
            found += u64::from(in_gap);
            if self.seen(&target, Some(&position)) {
                continue;
            }
            self.status.recovered.fetch_add(u64::from(in_gap), Ordering::Relaxed);
            (self.deliver)(target.clone(), message, Some(position));
        }
        let lost = (gap.upto - gap.after).saturating_sub(found);
        if lost > 0 {
            self.status.missed.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(
                topic = %gap.topic,
                lost,
                "fan-out: publications our subscription missed are no longer in the topic's history; our clients did not get them"
            );
        }
    }

    /// Whether a publication at `position` in `target` was delivered
    /// already; if not, it is the topic's latest from now on.
    fn seen(&mut self, target: &Target, position: Option<&Position>) -> bool {
        let (Target::Topic(topic), Some(position)) = (target, position) else { return false };
        match self.tops.get_mut(topic) {
            Some(top) if top.epoch == position.epoch && position.offset <= top.offset => true,
            Some(top) => {
                *top = position.clone();
                false
            }
            None => {
                self.tops.insert(topic.clone(), position.clone());
                false
            }
        }
    }

    /// A frame arrived on `target`'s channel (heartbeats: any target).
    /// Returns how many publications of other processes it revealed as
    /// missed.
    pub fn accept(&mut self, target: Target, frame: Frame, now: Instant) -> u64 {
        if let (Some(message), Some(position)) = (&frame.message, &frame.position) {
            // A publication with history: its topic's offsets order it.
            if !self.seen(&target, Some(position)) {
                self.status.received.fetch_add(1, Ordering::Relaxed);
                (self.deliver)(target, message.clone(), frame.position);
            }
            return 0;
        }
        if frame.origin == self.own.origin {
            self.own.came_back(target, frame, &self.deliver, &self.status);
            return 0;
        }
        let is_message = frame.message.is_some();
        let (last, heard) = self.others.entry(frame.origin).or_insert((frame.seq - u64::from(is_message), now));
        *heard = now;
        if frame.seq <= *last {
            return 0; // an old heartbeat, or a publication seen already
        }
        let missed = frame.seq - *last - u64::from(is_message);
        *last = frame.seq;
        if missed > 0 {
            self.status.missed.fetch_add(missed, Ordering::Relaxed);
            tracing::warn!(
                missed,
                publisher = %format_args!("{:016x}", frame.origin),
                "fan-out: publications from another server never arrived here (our subscription was down); \
                 those in a topic's history are read from it, the others our clients did not get"
            );
        }
        if let Some(message) = frame.message {
            self.status.received.fetch_add(1, Ordering::Relaxed);
            (self.deliver)(target, message, None);
        }
        if self.others.len() > 64 {
            self.others.retain(|_, (_, heard)| now.duration_since(*heard) < ORIGIN_SILENCE);
        }
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Arc<Mutex<Vec<(Target, Message)>>>;

    fn receiver(own: &Arc<Own>) -> (Receiver, Log, Arc<FanoutStatus>) {
        let log: Log = Arc::default();
        let sink = log.clone();
        let deliver: Deliver = Arc::new(move |target, message, _| sink.lock().unwrap().push((target, message)));
        let status = Arc::new(FanoutStatus::default());
        (Receiver::new(own.clone(), deliver, status.clone()), log, status)
    }

    fn texts(log: &Log) -> Vec<String> {
        log.lock().unwrap().iter().map(|(_, message)| message.as_text().unwrap().to_owned()).collect()
    }

    fn publication(origin: u64, seq: u64, text: &str) -> Frame {
        Frame { origin, seq, message: Some(Message::from(text)), position: None }
    }

    #[test]
    fn frames_round_trip_and_foreign_bytes_are_refused() {
        for message in
            [Some(Message::from("héllo")), Some(Message::from(vec![0u8, 255])), Some(Message::from("")), None]
        {
            let frame = Frame { origin: 7, seq: 1 << 40, message, position: None };
            assert_eq!(Frame::decode(&frame.encode()), Some(frame));
        }
        assert_eq!(Frame::decode(b"t"), None);
        assert_eq!(Frame::decode(b"x0123456789abcdefg"), None);
        let mut bad_text = publication(1, 1, "").encode();
        bad_text.push(0xff);
        assert_eq!(Frame::decode(&bad_text), None);
        // With a place in history, for text and binary, the payload intact
        // even when it has a newline of its own.
        for message in [Message::from("line\nnext"), Message::from(vec![b'\n', 0])] {
            let position = Some(Position { offset: 42, epoch: "e1".into() });
            let frame = Frame { origin: 7, seq: 3, message: Some(message), position };
            assert_eq!(Frame::decode(&frame.encode()), Some(frame));
        }
        assert_eq!(Frame::decode(&[&publication(1, 1, "").head(true)[..], b"no newline"].concat()), None);
    }

    fn at(origin: u64, seq: u64, offset: u64, text: &str) -> Frame {
        let position = Some(Position { offset, epoch: "e".into() });
        Frame { origin, seq, message: Some(Message::from(text)), position }
    }

    #[test]
    fn a_gap_in_a_topics_offsets_is_reported_then_filled_and_nothing_comes_twice() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let room = Target::Topic("room".into());
        let now = Instant::now();
        receiver.accept(room.clone(), at(9, 1, 1, "1"), now);
        let next = at(9, 4, 4, "4");
        let gap = receiver.gap(&room, &next).expect("2 and 3 are missing");
        assert_eq!((gap.topic.as_str(), gap.after, gap.upto, gap.epoch.as_str()), ("room", 1, 3, "e"));
        receiver.fill(&gap, [at(9, 2, 2, "2"), at(9, 3, 3, "3")]);
        assert_eq!(receiver.gap(&room, &next), None);
        receiver.accept(room.clone(), next, now);
        // The same publications again (a late copy): not delivered twice.
        receiver.accept(room.clone(), at(9, 3, 3, "3"), now);
        receiver.fill(&Gap { after: 3, upto: 4, ..gap.clone() }, [at(9, 4, 4, "4")]);
        assert_eq!(texts(&log), ["1", "2", "3", "4"]);
        assert_eq!((status.missed(), status.recovered(), status.received()), (0, 2, 2));
        // A gap the history no longer covers: what is missing is counted.
        let hole = Gap { after: 4, upto: 7, ..gap };
        receiver.fill(&hole, [at(9, 7, 7, "7")]);
        assert_eq!((status.missed(), status.recovered(), texts(&log).len()), (2, 3, 5));
        // A new epoch (the broker lost the stream): no gap to fill, a new start.
        let reborn = Frame { position: Some(Position { offset: 1, epoch: "f".into() }), ..at(9, 5, 1, "new") };
        assert_eq!(receiver.gap(&room, &reborn), None);
        receiver.accept(room, reborn, now);
        assert_eq!(texts(&log).last().unwrap(), "new");
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
        receiver.accept(Target::All, Frame { origin: 9, seq: 10, message: None, position: None }, now);
        receiver.accept(Target::All, Frame { origin: 9, seq: 12, message: None, position: None }, now);
        assert_eq!(status.missed(), 2);
        receiver.accept(Target::All, publication(9, 13, "next"), now);
        assert_eq!((status.missed(), texts(&log)), (2, vec!["next".to_owned()]));
    }

    #[test]
    fn own_publications_missed_by_the_subscription_are_delivered_from_what_was_kept() {
        let own = Arc::new(Own::with_origin(1));
        let (mut receiver, log, status) = receiver(&own);
        let topic = Target::Topic("room".into());
        let frames: Vec<Frame> = ["one", "two", "three", "four"]
            .iter()
            .map(|text| own.number(&topic, &Message::from(*text), false))
            .collect();
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
        let frames: Vec<Frame> =
            (0..4).map(|n| own.number(&Target::All, &Message::from(n.to_string()), false)).collect();
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
