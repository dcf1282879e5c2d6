//! The client side of the `--topics` protocol of `tether serve`:
//! subscriptions that survive reconnections without losing or repeating a
//! publication.
//!
//! [`Topics`] is an [`App`](crate::App) [`Handler`]: on every connection it
//! subscribes to its topics, each with the last place it saw (when the
//! server keeps history, `--history`), so what was published while it was
//! away arrives first, in order, then the live stream. Publications it has
//! seen already are not shown twice; when the server cannot give back what
//! was missed (its history no longer covers the gap, or it lost it), the
//! [`TopicsHandler`] is told, once per topic, and the application reloads
//! its state some other way.
//!
//! ```no_run
//! use tether::topics::{Publication, Topics, TopicsHandler};
//! use tether::{App, AppHandle, Reconnect};
//!
//! struct Chat;
//! impl TopicsHandler for Chat {
//!     fn on_publication(&mut self, _: &AppHandle, publication: Publication) {
//!         println!("{}: {}", publication.topic, publication.data);
//!     }
//!     fn on_recovery_failed(&mut self, _: &AppHandle, topic: &str) {
//!         println!("{topic}: missed messages; reloading");
//!     }
//! }
//!
//! App::new("ws://127.0.0.1:9001/")
//!     .reconnect(Reconnect::default())
//!     .handler(Topics::new(Chat).subscribe("room"))
//!     .run_forever();
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tether_proto::position::Position;

use crate::app::{AppHandle, Handler};
use crate::{CloseFrame, Error, Message};

/// A publication in a topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// Its topic.
    pub topic: String,
    /// What was published.
    pub data: Value,
    /// Its place in the topic's history, if the server keeps one.
    pub position: Option<Position>,
}

/// What the application does with its topics.
#[allow(unused_variables)]
pub trait TopicsHandler: Send + 'static {
    /// A publication, once, in order (missed ones first after a
    /// reconnection).
    fn on_publication(&mut self, app: &AppHandle, publication: Publication) {}
    /// Subscribed (again, after every reconnection); `recovered` says
    /// whether what was missed meanwhile is on its way (`None`: there was
    /// no place to recover from).
    fn on_subscribed(&mut self, app: &AppHandle, topic: &str, recovered: Option<bool>) {}
    /// Publications of `topic` were missed and cannot be given back.
    fn on_recovery_failed(&mut self, app: &AppHandle, topic: &str) {}
    /// The server answered with an error.
    fn on_server_error(&mut self, app: &AppHandle, error: &str) {}
    /// Any other message.
    fn on_other(&mut self, app: &AppHandle, message: Message) {}
    /// A connection or attempt failed.
    fn on_error(&mut self, app: &AppHandle, error: &Error) {}
    /// A connection ended.
    fn on_close(&mut self, app: &AppHandle, frame: Option<CloseFrame>) {}
}

/// Subscriptions kept across reconnections (see the [module docs](self)).
#[derive(Debug)]
pub struct Topics<H> {
    handler: H,
    /// Each topic, and the place of its latest publication seen.
    topics: BTreeMap<String, Option<Position>>,
}

impl<H: TopicsHandler> Topics<H> {
    /// No topics yet; publications go to `handler`.
    pub fn new(handler: H) -> Topics<H> {
        Topics { handler, topics: BTreeMap::new() }
    }

    /// Subscribes to `topic` on every connection.
    #[must_use]
    pub fn subscribe(mut self, topic: impl Into<String>) -> Topics<H> {
        self.topics.entry(topic.into()).or_insert(None);
        self
    }

    /// The place of the latest publication seen in `topic`.
    #[must_use]
    pub fn position(&self, topic: &str) -> Option<&Position> {
        self.topics.get(topic)?.as_ref()
    }

    /// The request that subscribes to `topic` from `since`.
    fn request(topic: &str, since: Option<&Position>) -> String {
        let mut request = json!({ "op": "subscribe", "topic": topic });
        if let Some(since) = since {
            request["recover"] = json!({ "offset": since.offset, "epoch": since.epoch });
        }
        request.to_string()
    }

    fn answered(&mut self, app: &AppHandle, value: &Value) {
        let Some(topic) = value.get("topic").and_then(Value::as_str) else { return };
        let Some(held) = self.topics.get_mut(topic) else { return };
        let recovered = value.get("recovered").and_then(Value::as_bool);
        let place = position(value);
        // Without recovery, the place to continue from is where the stream
        // is now: what came before was never this subscription's.
        if recovered != Some(true) {
            *held = place;
        }
        self.handler.on_subscribed(app, topic, recovered);
        if recovered == Some(false) {
            self.handler.on_recovery_failed(app, topic);
        }
    }

    fn published(&mut self, app: &AppHandle, topic: &str, value: &Value) {
        let place = position(value);
        if let (Some(held), Some(place)) = (self.topics.get_mut(topic), &place) {
            match held {
                Some(seen) if seen.epoch == place.epoch && place.offset <= seen.offset => return,
                Some(seen) if seen.epoch != place.epoch || place.offset > seen.offset + 1 => {
                    // A live gap, or a stream made anew: something was lost.
                    *held = Some(place.clone());
                    self.handler.on_recovery_failed(app, topic);
                }
                _ => *held = Some(place.clone()),
            }
        }
        let data = value.get("data").cloned().unwrap_or(Value::Null);
        self.handler.on_publication(app, Publication { topic: topic.to_owned(), data, position: place });
    }
}

fn position(value: &Value) -> Option<Position> {
    let offset = value.get("offset")?.as_u64()?;
    let epoch = value.get("epoch")?.as_str()?.to_owned();
    Some(Position { offset, epoch })
}

impl<H: TopicsHandler> Handler for Topics<H> {
    fn on_open(&mut self, app: &AppHandle) {
        for (topic, since) in &self.topics {
            let _ = app.send(Topics::<H>::request(topic, since.as_ref()));
        }
    }

    fn on_message(&mut self, app: &AppHandle, message: Message) {
        let value = message.as_text().and_then(|text| serde_json::from_str::<Value>(text).ok());
        let Some(value) = value else { return self.handler.on_other(app, message) };
        match (value.get("op").and_then(Value::as_str), value.get("topic").and_then(Value::as_str)) {
            (Some("subscribed"), _) => self.answered(app, &value),
            (Some("error"), _) => {
                let error = value.get("error").and_then(Value::as_str).unwrap_or("error");
                self.handler.on_server_error(app, error);
            }
            (None, Some(topic)) => {
                let topic = topic.to_owned();
                self.published(app, &topic, &value);
            }
            _ => self.handler.on_other(app, message),
        }
    }

    fn on_error(&mut self, app: &AppHandle, error: &Error) {
        self.handler.on_error(app, error);
    }

    fn on_close(&mut self, app: &AppHandle, frame: Option<CloseFrame>) {
        self.handler.on_close(app, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_asks_to_recover_from_the_last_place_seen() {
        assert_eq!(Topics::<()>::request("room", None), r#"{"op":"subscribe","topic":"room"}"#);
        let since = Position { offset: 7, epoch: "e".into() };
        let request: Value = serde_json::from_str(&Topics::<()>::request("room", Some(&since))).unwrap();
        assert_eq!(request["recover"], json!({ "offset": 7, "epoch": "e" }));
    }

    impl TopicsHandler for () {}
}
