//! Topic history: each publication in a topic gets the next offset
//! (1, 2, 3, …) and is kept a while, so a client that reconnects with the
//! last offset it saw gets what it missed, in order, exactly once — or is
//! told that recovery failed and reloads its state some other way.
//!
//! A topic's stream has an epoch, a random name given when the stream is
//! made: an offset means something only with its epoch. A stream that was
//! forgotten (every entry older than the time to live, or this process
//! restarted) comes back with a new epoch, so an old position can never
//! be taken for a place in the new stream.
//!
//! The model is Centrifugo's history and recovery. Here the history is
//! this process's memory; with several processes behind Redis, the
//! offsets must come from one place (Redis Streams, not built yet), so a
//! hub with an engine does not keep history.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tether_proto::PreparedMessage;

/// How much each topic keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Most publications kept per topic. Default 256.
    pub size: usize,
    /// How long a publication is kept. Default 5 minutes: recovery is for
    /// short disconnections; an application keeps its state elsewhere.
    pub ttl: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { size: 256, ttl: Duration::from_secs(300) }
    }
}

impl HistoryConfig {
    /// Keeps `size` publications per topic, each for `ttl`.
    #[must_use]
    pub fn new(size: usize, ttl: Duration) -> HistoryConfig {
        HistoryConfig { size, ttl }
    }
}

pub use tether_proto::position::Position;

/// What subscribing gave a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// Where the topic's stream is now (its latest offset), for the client
    /// to keep; `None` when the hub keeps no history.
    pub position: Option<Position>,
    /// Whether what the client missed since the position it gave was sent
    /// to it; `None` if it gave none.
    pub recovered: Option<bool>,
    /// How many missed publications were sent.
    pub replayed: usize,
}

/// What the topic histories hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// Topics with a stream.
    pub topics: usize,
    /// Publications kept.
    pub publications: usize,
    /// Their framed bytes.
    pub bytes: usize,
}

/// One topic's stream.
struct Stream {
    epoch: String,
    top: u64,
    /// The last publication's time (a stream silent for the time to live
    /// is forgotten).
    touched: Instant,
    entries: VecDeque<(u64, Instant, PreparedMessage)>,
}

impl Stream {
    fn new(now: Instant) -> Stream {
        Stream { epoch: format!("{:016x}", rand::random::<u64>()), top: 0, touched: now, entries: VecDeque::new() }
    }

    fn position(&self) -> Position {
        Position { offset: self.top, epoch: self.epoch.clone() }
    }

    fn trim(&mut self, config: &HistoryConfig, now: Instant) {
        while self.entries.len() > config.size {
            self.entries.pop_front();
        }
        while self.entries.front().is_some_and(|(_, at, _)| now.duration_since(*at) >= config.ttl) {
            self.entries.pop_front();
        }
    }
}

/// Every topic's stream.
pub(crate) struct History {
    config: HistoryConfig,
    streams: HashMap<String, Stream>,
    /// Publications since the last sweep of silent streams.
    since_sweep: usize,
    /// The streams are a broker's (offsets and epochs come from it): what
    /// this process has not seen, it must ask the broker.
    mirror: bool,
    /// Subscribers' recoveries being asked of the broker, per topic (the
    /// hub follows a topic while any is; see
    /// [`Engine::follow`](crate::fanout::Engine::follow)).
    asking: HashMap<String, u32>,
}

/// What a subscriber gets from the history here.
pub(crate) enum Lookup {
    /// Where the topic is and, if a position was given, what came after it
    /// (`None`: recovery failed).
    Served(Position, Option<Vec<PreparedMessage>>),
    /// This process has not seen enough of the stream: ask the broker.
    AskBroker,
}

/// What a broker's history says of a topic: where it is, and the
/// publications after the position asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerHistory {
    /// The stream's latest place (offset 0 if nothing was published yet).
    pub top: Position,
    /// The publications after the position asked about, in order.
    pub publications: Vec<(Position, tether_proto::Message)>,
}

impl History {
    pub(crate) fn new(config: HistoryConfig) -> History {
        History { config, streams: HashMap::new(), since_sweep: 0, mirror: false, asking: HashMap::new() }
    }

    /// Forgets `topic`'s stream: this process stops hearing the topic, or
    /// starts again after a time it did not hear (what it kept would
    /// pass for complete).
    pub(crate) fn forget(&mut self, topic: &str) {
        self.streams.remove(topic);
    }

    /// A recovery in `topic` is being asked of the broker.
    pub(crate) fn ask(&mut self, topic: &str) {
        *self.asking.entry(topic.to_owned()).or_default() += 1;
    }

    /// The broker answered one.
    pub(crate) fn answered(&mut self, topic: &str) {
        if let Some(count) = self.asking.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                self.asking.remove(topic);
            }
        }
    }

    /// Whether a recovery in `topic` is being asked of the broker.
    pub(crate) fn is_asking(&self, topic: &str) -> bool {
        self.asking.contains_key(topic)
    }

    /// From now on the offsets come from a broker (see [`Lookup::AskBroker`]).
    pub(crate) fn become_mirror(&mut self) {
        self.mirror = true;
        self.streams.clear();
    }

    /// Answers a subscriber from what the broker said (`None`: it could
    /// not be asked): where the topic is and, if `since` was given, the
    /// publications after it — the broker's, then those this process
    /// received meanwhile — if together they leave no gap (`None`:
    /// recovery failed). `render` makes what subscribers receive of the
    /// broker's publications. A topic this process had not seen is
    /// started here from the broker's place, so later recoveries are
    /// served without asking.
    pub(crate) fn merge(
        &mut self,
        topic: &str,
        since: Option<&Position>,
        broker: Option<BrokerHistory>,
        mut render: impl FnMut(&Position, &tether_proto::Message) -> PreparedMessage,
        now: Instant,
    ) -> (Option<Position>, Option<Vec<PreparedMessage>>) {
        let Some(BrokerHistory { top, publications }) = broker else { return (None, None) };
        let config = self.config.clone();
        let mut complete = since.is_some_and(|since| since.epoch == top.epoch && since.offset <= top.offset);
        let mut last = since.map_or(top.offset, |since| since.offset);
        let mut missed = Vec::new();
        for (place, message) in publications {
            if place.epoch != top.epoch || place.offset <= last {
                continue;
            }
            complete &= place.offset == last + 1;
            last = place.offset;
            missed.push((place.offset, render(&place, &message)));
        }
        // The broker gave everything up to its latest.
        complete &= last >= top.offset;
        let mut position = top.clone();
        match self.streams.get_mut(topic).filter(|stream| stream.epoch == top.epoch) {
            Some(stream) => {
                // What arrived here while the broker was asked, after what it gave.
                stream.trim(&config, now);
                let newer: Vec<(u64, PreparedMessage)> = stream
                    .entries
                    .iter()
                    .filter(|(offset, ..)| *offset > last)
                    .map(|(offset, _, message)| (*offset, message.clone()))
                    .collect();
                if let Some((first, _)) = newer.first() {
                    complete &= *first == last + 1;
                }
                complete &= newer.last().map_or(stream.top <= last, |(offset, _)| *offset == stream.top);
                position.offset = position.offset.max(stream.top);
                missed.extend(newer);
            }
            None => {
                let stream = self.stream(topic, now);
                *stream = Stream { epoch: top.epoch.clone(), top: top.offset.max(last), ..Stream::new(now) };
                if complete {
                    stream.entries.extend(missed.iter().map(|(offset, message)| (*offset, now, message.clone())));
                    stream.trim(&config, now);
                }
            }
        }
        let missed = missed.into_iter().map(|(_, message)| message).collect();
        (Some(position), since.map(|_| missed).filter(|_| complete))
    }

    /// What is kept now (walks every topic: for a metrics scrape).
    pub(crate) fn kept(&self) -> Kept {
        let mut kept = Kept { topics: self.streams.len(), ..Kept::default() };
        for stream in self.streams.values() {
            kept.publications += stream.entries.len();
            kept.bytes += stream.entries.iter().map(|(_, _, message)| message.len()).sum::<usize>();
        }
        kept
    }

    /// The position the next publication in `topic` takes.
    pub(crate) fn next_position(&mut self, topic: &str, now: Instant) -> Position {
        self.sweep(now);
        let stream = self.stream(topic, now);
        Position { offset: stream.top + 1, epoch: stream.epoch.clone() }
    }

    /// Keeps `message`, the publication at `position` (from
    /// [`next_position`](Self::next_position)).
    pub(crate) fn push(&mut self, topic: &str, position: &Position, message: PreparedMessage, now: Instant) {
        let config = self.config.clone();
        let stream = self.stream(topic, now);
        debug_assert_eq!(position.offset, stream.top + 1);
        stream.top = position.offset;
        stream.touched = now;
        stream.entries.push_back((position.offset, now, message));
        stream.trim(&config, now);
    }

    /// Keeps `message`, a publication whose place the broker gave (the
    /// history here then mirrors the broker's). `false` if it is here
    /// already. A new epoch starts the stream anew; a gap (what the broker
    /// could not give back) empties it, so recovery from before the gap
    /// fails instead of skipping what is missing.
    pub(crate) fn push_at(&mut self, topic: &str, position: &Position, message: PreparedMessage, now: Instant) -> bool {
        let config = self.config.clone();
        self.sweep(now);
        let stream = self.stream(topic, now);
        if stream.epoch != position.epoch {
            *stream = Stream { epoch: position.epoch.clone(), ..Stream::new(now) };
        } else if position.offset <= stream.top {
            return false;
        }
        if position.offset != stream.top + 1 {
            stream.entries.clear();
        }
        stream.top = position.offset;
        stream.touched = now;
        stream.entries.push_back((position.offset, now, message));
        stream.trim(&config, now);
        true
    }

    /// Where `topic` is, and — if `since` is given — the publications
    /// after it, if all of them are still kept (`None`: recovery failed).
    pub(crate) fn read(&mut self, topic: &str, since: Option<&Position>, now: Instant) -> Lookup {
        let config = self.config.clone();
        if self.mirror && !self.streams.contains_key(topic) {
            return Lookup::AskBroker;
        }
        let mirror = self.mirror;
        let stream = self.stream(topic, now);
        stream.trim(&config, now);
        let position = stream.position();
        let Some(since) = since else { return Lookup::Served(position, None) };
        // Complete only if the first publication after `since` is kept
        // (or there is none).
        let oldest = stream.entries.front().map_or(stream.top + 1, |(offset, ..)| *offset);
        let covered = since.epoch == stream.epoch && since.offset <= stream.top && since.offset + 1 >= oldest;
        if !covered {
            // The broker may know better: this process may have started
            // after the client's position, or the client may come from
            // another epoch the broker still has.
            return if mirror { Lookup::AskBroker } else { Lookup::Served(position, None) };
        }
        let missed = stream.entries.iter().filter(|(offset, ..)| *offset > since.offset);
        Lookup::Served(position, Some(missed.map(|(_, _, message)| message.clone()).collect()))
    }

    fn stream(&mut self, topic: &str, now: Instant) -> &mut Stream {
        if !self.streams.contains_key(topic) {
            self.streams.insert(topic.to_owned(), Stream::new(now));
        }
        self.streams.get_mut(topic).expect("just made")
    }

    /// Forgets streams silent for longer than the time to live (every
    /// 1,024 publications: a sweep walks every topic).
    fn sweep(&mut self, now: Instant) {
        self.since_sweep += 1;
        if self.since_sweep < 1024 {
            return;
        }
        self.since_sweep = 0;
        let ttl = self.config.ttl;
        self.streams.retain(|_, stream| now.duration_since(stream.touched) < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::Message;

    fn publish(history: &mut History, topic: &str, text: &str, now: Instant) -> Position {
        let position = history.next_position(topic, now);
        history.push(topic, &position, PreparedMessage::new(&Message::from(text)), now);
        position
    }

    fn read(
        history: &mut History,
        topic: &str,
        since: Option<&Position>,
        now: Instant,
    ) -> (Position, Option<Vec<PreparedMessage>>) {
        match history.read(topic, since, now) {
            Lookup::Served(position, missed) => (position, missed),
            Lookup::AskBroker => panic!("a history of its own never asks a broker"),
        }
    }

    fn payloads(messages: &[PreparedMessage]) -> Vec<Vec<u8>> {
        messages.iter().map(|message| message.payload().to_vec()).collect()
    }

    #[test]
    fn offsets_count_up_per_topic_within_one_epoch() {
        let now = Instant::now();
        let mut history = History::new(HistoryConfig::default());
        let first = publish(&mut history, "a", "1", now);
        let second = publish(&mut history, "a", "2", now);
        let other = publish(&mut history, "b", "x", now);
        assert_eq!((first.offset, second.offset, other.offset), (1, 2, 1));
        assert_eq!(first.epoch, second.epoch);
        assert_ne!(first.epoch, other.epoch, "each stream has its own epoch");
    }

    #[test]
    fn a_client_gets_what_it_missed_after_its_position_in_order() {
        let now = Instant::now();
        let mut history = History::new(HistoryConfig::default());
        let seen = publish(&mut history, "a", "1", now);
        publish(&mut history, "a", "2", now);
        publish(&mut history, "a", "3", now);
        let (position, missed) = read(&mut history, "a", Some(&seen), now);
        assert_eq!(position.offset, 3);
        assert_eq!(payloads(&missed.unwrap()), [b"2".to_vec(), b"3".to_vec()]);
        let (_, nothing) = read(&mut history, "a", Some(&position), now);
        assert_eq!(nothing.map(|m| m.len()), Some(0), "up to date: recovered, nothing to send");
    }

    #[test]
    fn recovery_fails_when_the_history_no_longer_covers_the_gap() {
        let now = Instant::now();
        let mut history = History::new(HistoryConfig::new(2, Duration::from_secs(60)));
        let seen = publish(&mut history, "a", "1", now);
        for text in ["2", "3", "4"] {
            publish(&mut history, "a", text, now);
        }
        assert!(read(&mut history, "a", Some(&seen), now).1.is_none(), "2 was trimmed");
        let kept_from_3 = Position { offset: 2, ..seen.clone() };
        assert_eq!(read(&mut history, "a", Some(&kept_from_3), now).1.map(|m| m.len()), Some(2));
        // Another epoch, or an offset from the future: failed.
        assert!(read(&mut history, "a", Some(&Position { epoch: "other".into(), ..seen.clone() }), now).1.is_none());
        assert!(read(&mut history, "a", Some(&Position { offset: 9, ..seen }), now).1.is_none());
    }

    #[test]
    fn publications_older_than_the_ttl_are_gone_and_silent_streams_forgotten() {
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut history = History::new(HistoryConfig::new(100, ttl));
        let seen = publish(&mut history, "a", "1", start);
        publish(&mut history, "a", "2", start);
        let later = start + ttl + Duration::from_secs(1);
        assert!(read(&mut history, "a", Some(&seen), later).1.is_none(), "2 expired: cannot recover");
        for n in 0..1024 {
            publish(&mut history, &format!("t{n}"), "x", later + ttl + Duration::from_secs(1));
        }
        let (position, _) = read(&mut history, "a", None, later + ttl + Duration::from_secs(1));
        assert!(position.epoch != seen.epoch && position.offset == 0, "forgotten, so a new epoch: {position:?}");
    }
}
