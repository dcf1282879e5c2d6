//! [`Hub`]: the server's exact registry of connected clients, broadcast,
//! topics, and closing everyone at shutdown.
//!
//! Give a hub to [`ServerConfig::hub`](crate::config::ServerConfig::hub): every
//! accepted connection joins it before its handler runs and leaves it the
//! moment it ends, by whatever path (close, error, keepalive timeout,
//! shutdown, the handler dropping it).
//!
//! A broadcast or a publication is framed once ([`PreparedMessage`]) and
//! the same bytes are queued to every recipient. Each connection has a
//! mailbox bounded in bytes; the connection's own task moves frames from
//! it to the socket as the socket drains. When a recipient falls behind,
//! [`Overflow`] decides, and every drop is counted: a slow client never
//! slows the others, and never makes the server's memory grow without
//! bound.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

use tether_proto::{CloseCode, CloseFrame, Message, PreparedMessage};
use tokio::sync::broadcast;

use crate::fanout::{Deliver, Engine, FanoutStatus, Target};
use crate::history::{BrokerHistory, History, HistoryConfig, Kept, Lookup, Position, Subscribed};

/// A connected client's number in its hub, unique for the hub's life.
pub type ClientId = u64;

/// What the registry knows of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its number.
    pub id: ClientId,
    /// Its address.
    pub peer: Option<SocketAddr>,
    /// The path it connected to.
    pub path: String,
    /// When it connected.
    pub connected_at: SystemTime,
    /// The topics it is subscribed to, sorted.
    pub topics: Vec<String>,
}

/// A change in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A client connected.
    Joined(ClientInfo),
    /// A client left.
    Left(ClientId),
}

/// What to do when a recipient's mailbox is full: the hub's default
/// ([`HubConfig::overflow`]), or one connection's own
/// ([`Hub::set_overflow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the message that does not fit.
    DropNewest,
    /// Drop the oldest queued messages until it fits.
    DropOldest,
    /// Drop everything queued and keep only this message (state updates,
    /// where only the latest matters).
    KeepLatest,
    /// Close the connection with this code (1008 policy, 1013 try again
    /// later): the client can reconnect and catch up.
    Close(CloseCode),
}

impl Overflow {
    /// The policy's name in metrics (`policy` label).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Overflow::DropNewest => "drop_newest",
            Overflow::DropOldest => "drop_oldest",
            Overflow::KeepLatest => "keep_latest",
            Overflow::Close(_) => "close",
        }
    }

    fn index(self) -> usize {
        match self {
            Overflow::DropNewest => 0,
            Overflow::DropOldest => 1,
            Overflow::KeepLatest => 2,
            Overflow::Close(_) => 3,
        }
    }
}

/// Messages dropped by each overflow policy since the hub was made, and
/// the connections the closing policy closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Messages that did not fit and were dropped ([`Overflow::DropNewest`]).
    pub drop_newest: u64,
    /// Queued messages pushed out by newer ones ([`Overflow::DropOldest`]).
    pub drop_oldest: u64,
    /// Queued messages replaced by a newer one ([`Overflow::KeepLatest`]).
    pub keep_latest: u64,
    /// Messages discarded with a connection closed for being too slow
    /// ([`Overflow::Close`]): what was queued, and the one that did not fit.
    pub close: u64,
    /// Connections closed for being too slow.
    pub closed_connections: u64,
}

impl Drops {
    /// Every dropped message, whatever the policy.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.drop_newest + self.drop_oldest + self.keep_latest + self.close
    }

    /// `(policy name, messages dropped)` for each policy, for metrics.
    #[must_use]
    pub fn by_policy(&self) -> [(&'static str, u64); 4] {
        [
            ("drop_newest", self.drop_newest),
            ("drop_oldest", self.drop_oldest),
            ("keep_latest", self.keep_latest),
            ("close", self.close),
        ]
    }
}

/// The hub's drop counters, one per policy.
#[derive(Debug, Default)]
struct DropCounters {
    messages: [AtomicU64; 4],
    closed_connections: AtomicU64,
}

/// How a hub treats slow recipients, and what it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Most bytes waiting in one connection's mailbox. Default 1 MiB:
    /// seconds of a busy chat, and a thousand slow clients still hold at
    /// most 1 GiB.
    pub max_buffered: usize,
    /// Default: close with 1013 ("try again later"), so nothing is lost
    /// without the client knowing.
    pub overflow: Overflow,
    /// Topic history, for clients that reconnect to recover what they
    /// missed ([`Hub::subscribe_from`]). Default none. A hub with an
    /// engine (Redis) keeps none yet: offsets must then come from one
    /// place for every process.
    pub history: Option<HistoryConfig>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig { max_buffered: 1 << 20, overflow: Overflow::Close(CloseCode(1013)), history: None }
    }
}

/// Turns a topic's publication into what its subscribers receive, given
/// its place in the topic's history (`None` without history): the place
/// where an application's protocol shows offsets. Called once per
/// publication, whatever the number of subscribers.
pub type Render = Arc<dyn Fn(&str, &Message, Option<&Position>) -> Message + Send + Sync>;

/// What became of one broadcast or publication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Recipients it was queued for.
    pub queued: usize,
    /// Messages dropped by the overflow policy (this one, or older ones
    /// pushed out by it).
    pub dropped: usize,
    /// Recipients closed by the policy, or already closing.
    pub closed: usize,
}

/// The hub asks a connection to close.
#[derive(Debug)]
pub(crate) struct CloseRequest {
    pub(crate) frame: CloseFrame,
    /// By the overflow policy: leave the registry at once.
    pub(crate) evicted: bool,
}

/// How a mailbox tells its connection's driver that mail has come.
#[derive(Clone)]
pub enum MailSignal {
    /// Wake a task (a connection driven by its own future).
    Task(Waker),
    /// Tell an event loop which of its connections has mail: the loop's
    /// one signal is shared by all its connections, so none allocates a
    /// waker of its own.
    Loop(Arc<dyn LoopMail>, usize),
}

impl std::fmt::Debug for MailSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailSignal::Task(waker) => f.debug_tuple("Task").field(waker).finish(),
            MailSignal::Loop(_, token) => f.debug_tuple("Loop").field(token).finish(),
        }
    }
}

impl MailSignal {
    fn send(&self) {
        match self {
            MailSignal::Task(waker) => waker.wake_by_ref(),
            MailSignal::Loop(target, token) => target.mail_for(*token),
        }
    }
}

/// An event loop that drives many connections, told which one has mail.
pub trait LoopMail: Send + Sync {
    /// The connection the loop knows as `token` has mail (or a close
    /// request) to take. Called at most once between two takes.
    fn mail_for(&self, token: usize);
}

/// A client in the registry: what [`ClientInfo`] shows, and the mailbox
/// where a broadcast reaches it, in one allocation (a server may hold a
/// hundred thousand).
pub(crate) struct Member {
    id: ClientId,
    peer: Option<SocketAddr>,
    /// Shared with the connection that keeps its path too.
    path: Arc<str>,
    /// Microseconds since the Unix epoch: half a `SystemTime`.
    connected_at: u64,
    state: Mutex<MailboxState>,
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<PreparedMessage>,
    bytes: usize,
    /// Who to tell when mail comes; told once until the next take.
    signal: Option<MailSignal>,
    signalled: bool,
    /// Boxed: rare, and a mailbox exists per connection.
    close: Option<Box<CloseFrame>>,
    closing: bool,
    /// The close is the overflow policy's: the connection leaves the
    /// registry as soon as it takes the request, not after its close
    /// handshake (a shutdown's close keeps it counted until it is gone).
    evicted: bool,
    /// This connection's own policy, if it has one.
    overflow: Option<Overflow>,
    /// Messages dropped on the way to this connection.
    dropped: u64,
    /// Its topics, sorted; a client has a few. Changed only under the
    /// registry's write lock, which keeps them and the topic index in step.
    topics: Vec<Box<str>>,
}

impl Member {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn info(&self) -> ClientInfo {
        ClientInfo {
            id: self.id,
            peer: self.peer,
            path: self.path.to_string(),
            connected_at: SystemTime::UNIX_EPOCH + Duration::from_micros(self.connected_at),
            topics: self.lock().topics.iter().map(|topic| topic.to_string()).collect(),
        }
    }

    /// Who to tell when mail comes, from now on.
    pub(crate) fn set_signal(&self, signal: MailSignal) {
        let mut state = self.lock();
        state.signal = Some(signal);
        state.signalled = false;
        if !state.queue.is_empty() || state.close.is_some() {
            signal_once(&mut state);
        }
    }

    /// Hands `send` what the connection should send now, up to `room`
    /// bytes of frames (at least one, unless `room` is 0), in order, and
    /// returns a close request if there is one. `waker`, if given, is the
    /// signal from now on (a task's waker may change between polls).
    /// Frames go to `send` under the mailbox's lock: no list is built per
    /// wake-up, and framing one is a copy of a few bytes.
    pub(crate) fn take(
        &self,
        room: usize,
        waker: Option<&Waker>,
        mut send: impl FnMut(&PreparedMessage),
    ) -> Option<CloseRequest> {
        let mut state = self.lock();
        let mut size = 0;
        // No room: nothing is taken, but a close request still is (a
        // connection whose output is full is the one the policy closes).
        while let Some(front) = state.queue.front().filter(|_| room > 0) {
            if size > 0 && size + front.len() > room {
                break;
            }
            size += front.len();
            state.bytes -= front.len();
            if let Some(frame) = state.queue.pop_front() {
                send(&frame);
            }
        }
        state.signalled = false;
        if let Some(waker) = waker {
            let current = matches!(&state.signal, Some(MailSignal::Task(current)) if current.will_wake(waker));
            if !current {
                state.signal = Some(MailSignal::Task(waker.clone()));
            }
        }
        state.close.take().map(|frame| CloseRequest { frame: *frame, evicted: state.evicted })
    }

    /// Bytes waiting.
    pub(crate) fn buffered(&self) -> usize {
        self.lock().bytes
    }

    fn deliver(&self, message: &PreparedMessage, config: &HubConfig, counters: &DropCounters) -> Delivery {
        let mut state = self.lock();
        if state.closing {
            return Delivery { closed: 1, ..Delivery::default() };
        }
        let mut delivery = Delivery::default();
        let overflow = state.overflow.unwrap_or(config.overflow);
        if state.bytes + message.len() > config.max_buffered {
            match overflow {
                Overflow::DropNewest => delivery.dropped = 1,
                Overflow::DropOldest => {
                    while state.bytes + message.len() > config.max_buffered {
                        let Some(old) = state.queue.pop_front() else { break };
                        state.bytes -= old.len();
                        delivery.dropped += 1;
                    }
                }
                Overflow::KeepLatest => {
                    delivery.dropped = state.queue.len();
                    state.queue.clear();
                    state.bytes = 0;
                }
                Overflow::Close(code) => {
                    delivery.dropped = state.queue.len() + 1;
                    delivery.closed = 1;
                    state.queue.clear();
                    state.bytes = 0;
                    state.closing = true;
                    state.close = Some(Box::new(CloseFrame::new(code, "too slow: messages were piling up")));
                    state.evicted = true;
                    counters.closed_connections.fetch_add(1, Ordering::Relaxed);
                }
            }
            state.dropped += delivery.dropped as u64;
            counters.messages[overflow.index()].fetch_add(delivery.dropped as u64, Ordering::Relaxed);
            if matches!(overflow, Overflow::DropNewest | Overflow::Close(_)) {
                signal_once(&mut state);
                return delivery;
            }
        }
        state.bytes += message.len();
        state.queue.push_back(message.clone());
        delivery.queued = 1;
        signal_once(&mut state);
        delivery
    }

    fn close(&self, frame: CloseFrame) {
        let mut state = self.lock();
        if !state.closing {
            state.closing = true;
            state.close = Some(Box::new(frame));
            signal_once(&mut state);
        }
    }
}

/// Tells the driver once: a thousand deliveries before it takes them
/// are one wake-up.
fn signal_once(state: &mut MailboxState) {
    if !state.signalled {
        if let Some(signal) = &state.signal {
            state.signalled = true;
            signal.send();
        }
    }
}

/// Hashes client ids, which are the hub's own counter and never chosen by
/// a peer, so no one can craft colliding keys: one multiplication spreads
/// consecutive ids over the table, for a fraction of SipHash's cost (a
/// broadcast looks up nothing, but joins, leaves and subscriptions do).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<ClientId, V, std::hash::BuildHasherDefault<IdHasher>>;

struct Inner {
    config: HubConfig,
    /// Fan-out to other processes, if configured.
    engine: std::sync::OnceLock<Box<dyn Engine>>,
    /// Every topic's stream, if the hub keeps history. Held while a
    /// publication is numbered and delivered, and while a subscriber
    /// recovers and joins: nothing falls between the two, nothing comes
    /// twice.
    history: Option<Mutex<History>>,
    render: std::sync::OnceLock<Render>,
    clients: RwLock<IdMap<Arc<Member>>>,
    /// Each topic's subscribers, with their mailboxes: a publication goes
    /// straight to them, without looking each one up in `clients`.
    topics: RwLock<HashMap<String, IdMap<Arc<Member>>>>,
    next_id: AtomicU64,
    drops: DropCounters,
    events: broadcast::Sender<HubEvent>,
}

/// The registry, broadcast and topics of a server. Cheap to clone: all
/// clones are the same hub.
///
/// Give it to a server in its configuration (`ServerConfig::hub`): every
/// connection joins it when it opens and leaves it when it ends, however
/// it ends, so [`count`](Self::count) and [`list`](Self::list) are exact.
/// A broadcast or publication is framed (and compressed) once for all.
///
/// ```
/// use tether_server::hub::{Hub, HubConfig};
/// use tether_proto::Message;
///
/// let hub = Hub::new(HubConfig::default());
/// assert_eq!(hub.count(), 0);
/// // Nobody is connected: delivered to no one, and nothing is kept.
/// let delivery = hub.publish("news", &Message::from("framed once, shared by every subscriber"));
/// assert_eq!(delivery.queued, 0);
/// hub.broadcast(&Message::from("to every client"));
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("clients", &self.count()).field("config", &self.inner.config).finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new(config: HubConfig) -> Hub {
        let (events, _) = broadcast::channel(1024);
        let history = config.history.clone().map(|history| Mutex::new(History::new(history)));
        Hub {
            inner: Arc::new(Inner {
                config,
                engine: std::sync::OnceLock::new(),
                history,
                render: std::sync::OnceLock::new(),
                clients: RwLock::default(),
                topics: RwLock::default(),
                next_id: AtomicU64::new(1),
                drops: DropCounters::default(),
                events,
            }),
        }
    }

    /// A hub whose broadcasts and publications go through Redis pub/sub
    /// to every process using the same Redis and prefix (see
    /// [`redis`](crate::redis)). Must be called inside a tokio runtime: it
    /// starts the connections.
    ///
    /// # Errors
    /// The URL, prefix or certificates are unusable. Redis being away is
    /// not an error: the hub serves local clients and keeps trying.
    #[cfg(feature = "redis")]
    pub fn with_redis(config: HubConfig, redis: impl Into<crate::redis::RedisConfig>) -> std::io::Result<Hub> {
        let mut redis = redis.into();
        redis.history.clone_from(&config.history);
        Hub::with_engine(config, |deliver| Ok(Box::new(crate::redis::Redis::start(redis, deliver)?)))
    }

    /// A hub whose broadcasts and publications go through the engine
    /// `start` makes (see [`fanout`](crate::fanout)); it is given what
    /// delivers arriving publications to this hub's clients.
    ///
    /// # Errors
    /// What `start` returns.
    pub fn with_engine(
        config: HubConfig,
        start: impl FnOnce(Deliver) -> std::io::Result<Box<dyn Engine>>,
    ) -> std::io::Result<Hub> {
        let hub = Hub::new(config);
        let weak = Arc::downgrade(&hub.inner);
        let deliver: Deliver = Arc::new(move |target, message, position| {
            if let Some(inner) = weak.upgrade() {
                let hub = Hub { inner };
                match (target, position) {
                    (Target::All, _) => hub.broadcast_local(&message),
                    (Target::Topic(topic), None) => hub.publish_local(&topic, &message),
                    (Target::Topic(topic), Some(position)) => hub.publish_at(&topic, &message, &position),
                };
            }
        });
        let engine = start(deliver)?;
        if let Some(history) = &hub.inner.history {
            if !engine.keeps_history() {
                let why =
                    format!("the {} engine keeps no topic history: offsets must come from one place", engine.name());
                return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, why));
            }
            // This process's history now mirrors the broker's.
            history.lock().unwrap_or_else(PoisonError::into_inner).become_mirror();
        }
        let _ = hub.inner.engine.set(engine);
        Ok(hub)
    }

    /// The engine fanning out to other processes, if the hub has one.
    #[must_use]
    pub fn fanout(&self) -> Option<&dyn Engine> {
        self.inner.engine.get().map(|engine| &**engine)
    }

    /// The fan-out's state and counters, if the hub has an engine.
    #[must_use]
    pub fn fanout_status(&self) -> Option<&FanoutStatus> {
        self.fanout().map(Engine::status)
    }

    fn clients(&self) -> std::sync::RwLockReadGuard<'_, IdMap<Arc<Member>>> {
        self.inner.clients.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many clients are connected now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.clients().len()
    }

    /// Every connected client.
    #[must_use]
    pub fn list(&self) -> Vec<ClientInfo> {
        let mut list: Vec<ClientInfo> = self.clients().values().map(|member| member.info()).collect();
        list.sort_by_key(|info| info.id);
        list
    }

    /// One client, if connected.
    #[must_use]
    pub fn get(&self, id: ClientId) -> Option<ClientInfo> {
        self.clients().get(&id).map(|member| member.info())
    }

    /// Joins and leaves from now on (a lagging receiver misses the oldest).
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Messages dropped by the overflow policies since the hub was made.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.drops().total()
    }

    /// Drops by policy, and connections closed for being too slow.
    #[must_use]
    pub fn drops(&self) -> Drops {
        let counters = &self.inner.drops;
        let load = |policy: Overflow| counters.messages[policy.index()].load(Ordering::Relaxed);
        Drops {
            drop_newest: load(Overflow::DropNewest),
            drop_oldest: load(Overflow::DropOldest),
            keep_latest: load(Overflow::KeepLatest),
            close: load(Overflow::Close(CloseCode::NORMAL)),
            closed_connections: counters.closed_connections.load(Ordering::Relaxed),
        }
    }

    /// Messages dropped on the way to one client.
    #[must_use]
    pub fn dropped_for(&self, id: ClientId) -> Option<u64> {
        self.clients().get(&id).map(|member| member.lock().dropped)
    }

    /// Gives one client its own overflow policy (a dashboard that only
    /// needs the latest state, next to chat clients that must not miss a
    /// message); `false` if it is not connected.
    pub fn set_overflow(&self, id: ClientId, overflow: Overflow) -> bool {
        let clients = self.clients();
        let Some(member) = clients.get(&id) else { return false };
        member.lock().overflow = Some(overflow);
        true
    }

    /// Bytes waiting in all mailboxes.
    #[must_use]
    pub fn buffered_total(&self) -> usize {
        self.clients().values().map(|member| member.buffered()).sum()
    }

    /// Bytes waiting in one client's mailbox.
    #[must_use]
    pub fn buffered(&self, id: ClientId) -> Option<usize> {
        self.clients().get(&id).map(|member| member.buffered())
    }

    pub(crate) fn join(&self, peer: Option<SocketAddr>, path: Arc<str>) -> Arc<Member> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Mutex::default();
        let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let connected_at = u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX);
        let member = Arc::new(Member { id, peer, path, connected_at, state });
        // Only built when someone listens: a crowd joining costs no copies.
        let joined = (self.inner.events.receiver_count() > 0).then(|| member.info());
        self.inner.clients.write().unwrap_or_else(PoisonError::into_inner).insert(id, member.clone());
        if let Some(info) = joined {
            let _ = self.inner.events.send(HubEvent::Joined(info));
        }
        member
    }

    pub(crate) fn leave(&self, id: ClientId) {
        let mut following = self.following();
        let removed = {
            let mut clients = self.inner.clients.write().unwrap_or_else(PoisonError::into_inner);
            let removed = clients.remove(&id);
            release_spare_capacity(&mut *clients);
            removed
        };
        if let Some(member) = removed {
            let mut topics = self.inner.topics.write().unwrap_or_else(PoisonError::into_inner);
            let held = std::mem::take(&mut member.lock().topics);
            let emptied: Vec<&str> =
                held.iter().filter(|topic| remove_member(&mut topics, topic, id)).map(|topic| &**topic).collect();
            drop(topics);
            if let Some(history) = following.as_deref_mut() {
                for topic in emptied {
                    self.unfollow_if_unwanted(history, topic);
                }
            }
            let _ = self.inner.events.send(HubEvent::Left(id));
        }
    }

    /// Subscribes a client to a topic; `false` if it is not connected.
    pub fn subscribe(&self, id: ClientId, topic: &str) -> bool {
        let mut following = self.following();
        self.subscribe_following(id, topic, following.as_deref_mut())
    }

    /// [`subscribe`](Self::subscribe), with the history held if the hub
    /// follows topics (see [`following`](Self::following)).
    fn subscribe_following(&self, id: ClientId, topic: &str, following: Option<&mut History>) -> bool {
        let mut clients = self.inner.clients.write().unwrap_or_else(PoisonError::into_inner);
        let Some(member) = clients.get_mut(&id) else { return false };
        let mut state = member.lock();
        if let Err(at) = state.topics.binary_search_by(|held| (**held).cmp(topic)) {
            state.topics.insert(at, topic.into());
            drop(state);
            let first = {
                let mut topics = self.inner.topics.write().unwrap_or_else(PoisonError::into_inner);
                let members = topics.entry(topic.to_owned()).or_default();
                members.insert(id, member.clone());
                members.len() == 1
            };
            drop(clients);
            if let (true, Some(history)) = (first, following) {
                if !history.is_asking(topic) {
                    self.set_followed(history, topic, true);
                }
            }
        }
        true
    }

    /// Unsubscribes a client from a topic.
    pub fn unsubscribe(&self, id: ClientId, topic: &str) {
        let mut following = self.following();
        let mut clients = self.inner.clients.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(member) = clients.get_mut(&id) {
            let mut state = member.lock();
            if let Ok(at) = state.topics.binary_search_by(|held| (**held).cmp(topic)) {
                state.topics.remove(at);
                drop(state);
                let emptied =
                    remove_member(&mut self.inner.topics.write().unwrap_or_else(PoisonError::into_inner), topic, id);
                drop(clients);
                if let (true, Some(history)) = (emptied, following.as_deref_mut()) {
                    self.unfollow_if_unwanted(history, topic);
                }
            }
        }
    }

    /// With an engine that hears only the topics this process follows
    /// (sharded pub/sub), the history, held: whoever follows or lets go
    /// of a topic, or records one of its publications, holds it first,
    /// so those happen in one order. `None` with any other engine.
    fn following(&self) -> Option<std::sync::MutexGuard<'_, History>> {
        if self.fanout().is_none_or(Engine::hears_every_topic) {
            return None;
        }
        Some(self.inner.history.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether this process follows `topic`: it has subscribers here, or
    /// one's recovery is being asked of the broker.
    fn is_followed(&self, history: &History, topic: &str) -> bool {
        history.is_asking(topic) || self.inner.topics.read().unwrap_or_else(PoisonError::into_inner).contains_key(topic)
    }

    /// Starts or stops following `topic`. Either way what the history held
    /// of it goes: it was not heard while not followed.
    fn set_followed(&self, history: &mut History, topic: &str, follow: bool) {
        history.forget(topic);
        if let Some(engine) = self.fanout() {
            engine.follow(topic, follow);
        }
    }

    fn unfollow_if_unwanted(&self, history: &mut History, topic: &str) {
        if !self.is_followed(history, topic) {
            self.set_followed(history, topic, false);
        }
    }

    /// Sends `message` to every connected client, framed once. With
    /// Redis, to every client of every process: the local delivery then
    /// happens when the message comes back from Redis, and the returned
    /// `Delivery` is empty.
    pub fn broadcast(&self, message: &Message) -> Delivery {
        if let Some(engine) = self.fanout() {
            if engine.publish(&Target::All, message) {
                return Delivery::default();
            }
        }
        self.broadcast_local(message)
    }

    fn broadcast_local(&self, message: &Message) -> Delivery {
        let prepared = PreparedMessage::new(message);
        let clients = self.clients();
        self.deliver(clients.values(), &prepared)
    }

    /// Sends `message` to every subscriber of `topic`, framed once (with
    /// Redis, on every process, as [`broadcast`](Self::broadcast)).
    pub fn publish(&self, topic: &str, message: &Message) -> Delivery {
        if let Some(engine) = self.fanout() {
            if engine.publish(&Target::Topic(topic.to_owned()), message) {
                return Delivery::default();
            }
        }
        self.publish_local(topic, message)
    }

    fn publish_local(&self, topic: &str, message: &Message) -> Delivery {
        // With an engine, only its broker numbers publications: one made
        // while it is away reaches local subscribers without a place in
        // history (and a client that recovers later will not get it).
        let history = self.inner.history.as_ref().filter(|_| self.fanout().is_none());
        let Some(history) = history else {
            let topics = self.inner.topics.read().unwrap_or_else(PoisonError::into_inner);
            let Some(members) = topics.get(topic) else { return Delivery::default() };
            return self.deliver(members.values(), &PreparedMessage::new(&self.render(topic, message, None)));
        };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let position = history.next_position(topic, now);
        let prepared = PreparedMessage::new(&self.render(topic, message, Some(&position)));
        history.push(topic, &position, prepared.clone(), now);
        let topics = self.inner.topics.read().unwrap_or_else(PoisonError::into_inner);
        let Some(members) = topics.get(topic) else { return Delivery::default() };
        self.deliver(members.values(), &prepared)
    }

    /// A publication whose place in the topic's history the engine's
    /// broker gave: kept (unless it was here already) and delivered.
    fn publish_at(&self, topic: &str, message: &Message, position: &Position) -> Delivery {
        let prepared = PreparedMessage::new(&self.render(topic, message, Some(position)));
        let mut history =
            self.inner.history.as_ref().map(|history| history.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(history) = &mut history {
            // One on its way when this process let go of its topic.
            if self.fanout().is_some_and(|engine| !engine.hears_every_topic()) && !self.is_followed(history, topic) {
                return Delivery::default();
            }
            if !history.push_at(topic, position, prepared.clone(), Instant::now()) {
                return Delivery::default();
            }
        }
        let topics = self.inner.topics.read().unwrap_or_else(PoisonError::into_inner);
        let Some(members) = topics.get(topic) else { return Delivery::default() };
        self.deliver(members.values(), &prepared)
    }

    fn render(&self, topic: &str, message: &Message, position: Option<&Position>) -> Message {
        match self.inner.render.get() {
            Some(render) => render(topic, message, position),
            None => message.clone(),
        }
    }

    /// What the topic histories hold now, if the hub keeps history.
    #[must_use]
    pub fn history_kept(&self) -> Option<Kept> {
        let history = self.inner.history.as_ref()?;
        Some(history.lock().unwrap_or_else(PoisonError::into_inner).kept())
    }

    /// How topic publications are shown to subscribers (see [`Render`]);
    /// set once, before the first publication. Without one, subscribers
    /// get the published message itself. `false` if one was set already.
    pub fn set_render(&self, render: Render) -> bool {
        self.inner.render.set(render).is_ok()
    }

    /// Subscribes a client to a topic and, if it gives the `since`
    /// position it last saw, sends it what it missed since. In its
    /// mailbox, in this order: `answer` (made from what subscribing gave,
    /// if it returns one: the application's reply), then the missed
    /// publications, then every later one — nothing missed, nothing twice.
    /// Recovery fails (`recovered: Some(false)`, nothing sent) if the hub
    /// keeps no history, if the position is from another epoch, or if part
    /// of what was missed is no longer kept.
    ///
    /// With an engine whose broker keeps the history (Redis), a topic or a
    /// position this process has not seen is asked of the broker without
    /// blocking: the answer and the rest then follow when it replies.
    /// `false` if the client is not connected.
    pub fn subscribe_from(
        &self,
        id: ClientId,
        topic: &str,
        since: Option<&Position>,
        answer: impl FnOnce(&Subscribed) -> Option<Message> + Send + 'static,
    ) -> bool {
        let Some(history) = &self.inner.history else {
            let subscribed = Subscribed { position: None, recovered: since.map(|_| false), replayed: 0 };
            return self.join_topic(id, topic, &subscribed, &[], answer, None);
        };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        // What a process that follows topics kept of one it does not
        // follow now is not to be trusted: it was not listening.
        let follows = self.fanout().is_some_and(|engine| !engine.hears_every_topic());
        let lookup = if follows && !self.is_followed(&history, topic) {
            Lookup::AskBroker
        } else {
            history.read(topic, since, Instant::now())
        };
        match lookup {
            Lookup::Served(position, missed) => {
                let recovered = since.map(|_| missed.is_some());
                let missed = missed.unwrap_or_default();
                let subscribed = Subscribed { position: Some(position), recovered, replayed: missed.len() };
                self.join_topic(id, topic, &subscribed, &missed, answer, follows.then_some(&mut *history))
            }
            Lookup::AskBroker => {
                if !self.clients().contains_key(&id) {
                    return false;
                }
                if follows {
                    // Followed from now until the broker answers, so the
                    // subscription is in place before the stream is read.
                    let followed = self.is_followed(&history, topic);
                    history.ask(topic);
                    if !followed {
                        self.set_followed(&mut history, topic, true);
                    }
                }
                drop(history);
                let weak = Arc::downgrade(&self.inner);
                let (topic, since) = (topic.to_owned(), since.cloned());
                let Some(engine) = self.fanout() else { return false };
                engine.read_history(
                    &topic.clone(),
                    since.as_ref().map(|since| since.offset),
                    Box::new(move |broker| {
                        let Some(inner) = weak.upgrade() else { return };
                        Hub { inner }.answer_from_broker(id, &topic, since.as_ref(), broker, answer);
                    }),
                );
                true
            }
        }
    }

    fn answer_from_broker(
        &self,
        id: ClientId,
        topic: &str,
        since: Option<&Position>,
        broker: Option<BrokerHistory>,
        answer: impl FnOnce(&Subscribed) -> Option<Message>,
    ) {
        let Some(history) = &self.inner.history else { return };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        let render =
            |place: &Position, message: &Message| PreparedMessage::new(&self.render(topic, message, Some(place)));
        let (position, missed) = history.merge(topic, since, broker, render, Instant::now());
        let recovered = since.map(|_| missed.is_some());
        let missed = missed.unwrap_or_default();
        let subscribed = Subscribed { position, recovered, replayed: missed.len() };
        let follows = self.fanout().is_some_and(|engine| !engine.hears_every_topic());
        self.join_topic(id, topic, &subscribed, &missed, answer, follows.then_some(&mut *history));
        if follows {
            history.answered(topic);
            self.unfollow_if_unwanted(&mut history, topic);
        }
    }

    /// Queues the answer and what was missed, then subscribes: called with
    /// the history held, so no publication falls in between.
    fn join_topic(
        &self,
        id: ClientId,
        topic: &str,
        subscribed: &Subscribed,
        missed: &[PreparedMessage],
        answer: impl FnOnce(&Subscribed) -> Option<Message>,
        following: Option<&mut History>,
    ) -> bool {
        {
            let clients = self.clients();
            let Some(member) = clients.get(&id) else { return false };
            if let Some(answer) = answer(subscribed) {
                member.deliver(&PreparedMessage::new(&answer), &self.inner.config, &self.inner.drops);
            }
            for message in missed {
                member.deliver(message, &self.inner.config, &self.inner.drops);
            }
        }
        self.subscribe_following(id, topic, following)
    }

    /// Sends `message` to one client.
    pub fn send_to(&self, id: ClientId, message: &Message) -> Delivery {
        let prepared = PreparedMessage::new(message);
        let clients = self.clients();
        self.deliver(clients.get(&id).into_iter(), &prepared)
    }

    fn deliver<'a>(&self, members: impl Iterator<Item = &'a Arc<Member>>, message: &PreparedMessage) -> Delivery {
        let mut total = Delivery::default();
        for member in members {
            let delivery = member.deliver(message, &self.inner.config, &self.inner.drops);
            total.queued += delivery.queued;
            total.dropped += delivery.dropped;
            total.closed += delivery.closed;
        }
        total
    }

    /// Asks every connected client's connection to close with `code` and
    /// `reason` (1001 "going away" at shutdown). Each closes from its own
    /// task, with its close handshake and close timeout.
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for entry in self.clients().values() {
            entry.close(CloseFrame::new(code, reason));
        }
    }

    /// Waits until no client is connected, at most `limit`; whether it got there.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let mut events = self.events();
        let deadline = tokio::time::Instant::now() + limit;
        while self.count() > 0 {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(_) => {}
                Err(_) => return self.count() == 0,
            }
        }
        true
    }
}

/// Takes `id` out of `topic`'s members, and the topic out of the index
/// once nobody is subscribed to it (then `true`).
fn remove_member(topics: &mut HashMap<String, IdMap<Arc<Member>>>, topic: &str, id: ClientId) -> bool {
    let Some(members) = topics.get_mut(topic) else { return false };
    members.remove(&id);
    if members.is_empty() {
        topics.remove(topic);
        true
    } else {
        release_spare_capacity(members);
        false
    }
}

/// Hash tables never shrink by themselves: after a crowd of 100,000 clients
/// has left, the registry would keep their slots (megabytes) for good. A
/// table at a quarter of its capacity is halved, which keeps the cost of
/// shrinking amortised over the removals that emptied it.
trait SpareCapacity {
    fn len_and_capacity(&self) -> (usize, usize);
    fn shrink_to(&mut self, capacity: usize);
}

impl<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher> SpareCapacity for HashMap<K, V, S> {
    fn len_and_capacity(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_to(&mut self, capacity: usize) {
        HashMap::shrink_to(self, capacity);
    }
}

fn release_spare_capacity(table: &mut impl SpareCapacity) {
    const SMALL: usize = 64;
    let (len, capacity) = table.len_and_capacity();
    if capacity > SMALL && len < capacity / 4 {
        table.shrink_to((len * 2).max(SMALL));
    }
}

/// A connection's membership: leaves the hub when dropped or when the
/// connection ends, whichever comes first.
pub(crate) struct Registration {
    pub(crate) hub: Hub,
    pub(crate) member: Arc<Member>,
}

impl Registration {
    pub(crate) fn id(&self) -> ClientId {
        self.member.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.leave(self.member.id);
    }
}
