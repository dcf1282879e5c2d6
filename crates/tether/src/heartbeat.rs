//! An application-level heartbeat: ordinary messages the program defines
//! (seed 003's JSON `{"type":"ping","timestamp":…}` answered by
//! `{"type":"pong","timestamp":…}`), for peers or proxies where protocol
//! pings are not enough (an application that must prove it is alive, not
//! just its WebSocket stack).
//!
//! The client side is [`Heartbeat`], given to an [`App`](crate::App): it
//! sends the ping message on schedule, matches the answer, measures the
//! round trip, and declares the peer gone when no answer comes in time.
//! Answers are not delivered as ordinary messages unless asked. The server
//! side is a [`Responder`] in [`ServerConfig`](crate::ServerConfig): it
//! answers such pings by itself, before the handler sees them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_proto::Message;

/// How a received message relates to the heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It answers the latest heartbeat ping.
    Current,
    /// It is a heartbeat answer, but to an earlier ping (late).
    Stale,
    /// It is an ordinary message.
    NotHeartbeat,
}

/// The messages of a heartbeat: how to make a ping, how to recognise the
/// answer.
pub trait HeartbeatProtocol: Send {
    /// The next ping message.
    fn ping(&mut self) -> Message;
    /// What `message` is, given `ping`, the latest ping sent (`None`
    /// before the first).
    fn answer(&mut self, ping: Option<&Message>, message: &Message) -> Answer;
}

/// An application heartbeat for an [`App`](crate::App).
pub struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) deliver_answers: bool,
    pub(crate) protocol: Box<dyn HeartbeatProtocol>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("deliver_answers", &self.deliver_answers)
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    /// A ping every `interval` (one interval after the previous ping),
    /// declared unanswered after `timeout`, in the messages of `protocol`.
    #[must_use]
    pub fn new(interval: Duration, timeout: Duration, protocol: impl HeartbeatProtocol + 'static) -> Heartbeat {
        Heartbeat { interval, timeout, deliver_answers: false, protocol: Box::new(protocol) }
    }

    /// Seed 003's JSON heartbeat: see [`JsonHeartbeat`].
    #[must_use]
    pub fn json(interval: Duration, timeout: Duration) -> Heartbeat {
        Heartbeat::new(interval, timeout, JsonHeartbeat)
    }

    /// A heartbeat from two functions: one makes the ping, the other says
    /// whether a message is an answer (to the latest ping if one is
    /// awaited).
    #[must_use]
    pub fn from_fns(
        interval: Duration,
        timeout: Duration,
        make_ping: impl FnMut() -> Message + Send + 'static,
        is_answer: impl FnMut(&Message) -> bool + Send + 'static,
    ) -> Heartbeat {
        Heartbeat::new(interval, timeout, Fns { make_ping, is_answer })
    }

    /// Also deliver heartbeat answers to `on_message` (default: not).
    #[must_use]
    pub fn deliver_answers(mut self, deliver: bool) -> Heartbeat {
        self.deliver_answers = deliver;
        self
    }
}

struct Fns<P, A> {
    make_ping: P,
    is_answer: A,
}

impl<P, A> HeartbeatProtocol for Fns<P, A>
where
    P: FnMut() -> Message + Send,
    A: FnMut(&Message) -> bool + Send,
{
    fn ping(&mut self) -> Message {
        (self.make_ping)()
    }

    fn answer(&mut self, ping: Option<&Message>, message: &Message) -> Answer {
        match ((self.is_answer)(message), ping) {
            (false, _) => Answer::NotHeartbeat,
            (true, Some(_)) => Answer::Current,
            (true, None) => Answer::Stale,
        }
    }
}

/// Seed 003's manual heartbeat: the ping is the text message
/// `{"type":"ping","timestamp":T}` (T: seconds since the Unix epoch, with
/// fractions); its answer is `{"type":"pong","timestamp":T}` with the same T.
/// A pong with another timestamp answers an earlier ping.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonHeartbeat;

fn json_field(message: &Message) -> Option<(String, Option<serde_json::Value>)> {
    let text = message.as_text()?;
    // Cheap refusal first: most messages are not heartbeats.
    if !text.contains("\"type\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let kind = value.get("type")?.as_str()?.to_owned();
    Some((kind, value.get("timestamp").cloned()))
}

impl HeartbeatProtocol for JsonHeartbeat {
    fn ping(&mut self) -> Message {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        Message::from(serde_json::json!({ "type": "ping", "timestamp": now }).to_string())
    }

    fn answer(&mut self, ping: Option<&Message>, message: &Message) -> Answer {
        match json_field(message) {
            Some((kind, timestamp)) if kind == "pong" => {
                let sent = ping.and_then(json_field).and_then(|(_, timestamp)| timestamp);
                if sent.is_some() && sent == timestamp {
                    Answer::Current
                } else {
                    Answer::Stale
                }
            }
            _ => Answer::NotHeartbeat,
        }
    }
}

#[cfg(feature = "server")]
pub use tether_server::Responder;

/// Answers [`JsonHeartbeat`] pings (`{"type":"ping","timestamp":T}`) with
/// `{"type":"pong","timestamp":T}`, as seed 003's server does.
#[cfg(feature = "server")]
#[must_use]
pub fn json_responder() -> Responder {
    std::sync::Arc::new(|message: &Message| {
        let (kind, timestamp) = json_field(message)?;
        (kind == "ping").then(|| {
            let timestamp = timestamp.unwrap_or(serde_json::Value::Null);
            Message::from(serde_json::json!({ "type": "pong", "timestamp": timestamp }).to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "server")]
    #[test]
    fn a_json_pong_with_the_pings_timestamp_answers_it() {
        let mut protocol = JsonHeartbeat;
        let ping = protocol.ping();
        let answer = json_responder()(&ping).expect("the responder answers a ping");
        assert!(answer.as_text().unwrap().contains("\"pong\""));
        assert_eq!(protocol.answer(Some(&ping), &answer), Answer::Current);
        let later = Message::from(r#"{"type":"ping","timestamp":1.5}"#);
        assert_eq!(protocol.answer(Some(&later), &answer), Answer::Stale);
        assert_eq!(protocol.answer(Some(&ping), &Message::from("hello")), Answer::NotHeartbeat);
        assert_eq!(protocol.answer(Some(&ping), &Message::from(r#"{"type":"chat"}"#)), Answer::NotHeartbeat);
        assert!(json_responder()(&Message::from(r#"{"type":"chat"}"#)).is_none());
        assert!(json_responder()(&Message::from(b"binary".to_vec())).is_none());
    }
}
