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

/// A place in a topic's stream: the offset of a publication (0 before the
/// first), in the stream named by `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The publication's offset.
    pub offset: u64,
    /// The stream's name.
    pub epoch: String,
}

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
}

impl History {
    pub(crate) fn new(config: HistoryConfig) -> History {
        History { config, streams: HashMap::new(), since_sweep: 0 }
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

    /// Where `topic` is, and — if `since` is given — the publications
    /// after it, if all of them are still kept (`None`: recovery failed).
    pub(crate) fn read(
        &mut self,
        topic: &str,
        since: Option<&Position>,
        now: Instant,
    ) -> (Position, Option<Vec<PreparedMessage>>) {
        let config = self.config.clone();
        let stream = self.stream(topic, now);
        stream.trim(&config, now);
        let position = stream.position();
        let Some(since) = since else { return (position, None) };
        if since.epoch != stream.epoch || since.offset > stream.top {
            return (position, None);
        }
        // Complete only if the first publication after `since` is kept
        // (or there is none).
        let oldest = stream.entries.front().map_or(stream.top + 1, |(offset, ..)| *offset);
        if since.offset + 1 < oldest {
            return (position, None);
        }
        let missed = stream.entries.iter().filter(|(offset, ..)| *offset > since.offset);
        (position, Some(missed.map(|(_, _, message)| message.clone()).collect()))
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
        let (position, missed) = history.read("a", Some(&seen), now);
        assert_eq!(position.offset, 3);
        assert_eq!(payloads(&missed.unwrap()), [b"2".to_vec(), b"3".to_vec()]);
        let (_, nothing) = history.read("a", Some(&position), now);
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
        assert!(history.read("a", Some(&seen), now).1.is_none(), "2 was trimmed");
        let kept_from_3 = Position { offset: 2, ..seen.clone() };
        assert_eq!(history.read("a", Some(&kept_from_3), now).1.map(|m| m.len()), Some(2));
        // Another epoch, or an offset from the future: failed.
        assert!(history.read("a", Some(&Position { epoch: "other".into(), ..seen.clone() }), now).1.is_none());
        assert!(history.read("a", Some(&Position { offset: 9, ..seen }), now).1.is_none());
    }

    #[test]
    fn publications_older_than_the_ttl_are_gone_and_silent_streams_forgotten() {
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut history = History::new(HistoryConfig::new(100, ttl));
        let seen = publish(&mut history, "a", "1", start);
        publish(&mut history, "a", "2", start);
        let later = start + ttl + Duration::from_secs(1);
        assert!(history.read("a", Some(&seen), later).1.is_none(), "2 expired: cannot recover");
        for n in 0..1024 {
            publish(&mut history, &format!("t{n}"), "x", later + ttl + Duration::from_secs(1));
        }
        let (position, _) = history.read("a", None, later + ttl + Duration::from_secs(1));
        assert!(position.epoch != seen.epoch && position.offset == 0, "forgotten, so a new epoch: {position:?}");
    }
}
