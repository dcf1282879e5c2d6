//! `tether serve --topics`: clients subscribe and publish with a small
//! JSON protocol, one object per text message.
//!
//! Client to server:
//! - `{"op":"subscribe","topic":"T"}`, answered `{"op":"subscribed","topic":"T"}`;
//! - `{"op":"unsubscribe","topic":"T"}`, answered `{"op":"unsubscribed","topic":"T"}`;
//! - `{"op":"publish","topic":"T","data":ANY}`: every subscriber of T (the
//!   sender too, if subscribed) receives `{"topic":"T","data":ANY}`.
//!
//! Anything else is answered `{"op":"error","error":"…"}` and the
//! connection stays open.

use serde_json::{json, Value};
use tether::{Hub, Message, WebSocket};

/// What the protocol needs of a connection, on either server.
pub trait Member {
    fn hub(&self) -> Option<&Hub>;
    fn subscribe(&self, topic: &str) -> bool;
    fn unsubscribe(&self, topic: &str);
}

impl Member for WebSocket {
    fn hub(&self) -> Option<&Hub> {
        WebSocket::hub(self)
    }
    fn subscribe(&self, topic: &str) -> bool {
        WebSocket::subscribe(self, topic)
    }
    fn unsubscribe(&self, topic: &str) {
        WebSocket::unsubscribe(self, topic);
    }
}

impl Member for tether::reactor::Conn<'_> {
    fn hub(&self) -> Option<&Hub> {
        tether::reactor::Conn::hub(self)
    }
    fn subscribe(&self, topic: &str) -> bool {
        tether::reactor::Conn::subscribe(self, topic)
    }
    fn unsubscribe(&self, topic: &str) {
        tether::reactor::Conn::unsubscribe(self, topic);
    }
}

/// The handler for the tokio server (`--tls-cert`).
pub async fn handler(mut socket: WebSocket) {
    while let Ok(Some(message)) = socket.recv().await {
        let Some(answer) = answer(&socket, &message) else { continue };
        if socket.send(answer).await.is_err() {
            return;
        }
    }
}

/// What to send back to `member` for `message`, if anything.
pub fn answer(member: &impl Member, message: &Message) -> Option<Message> {
    match handle(member, message) {
        Ok(None) => None,
        Ok(Some(answer)) => Some(Message::from(answer.to_string())),
        Err(error) => Some(Message::from(json!({ "op": "error", "error": error }).to_string())),
    }
}

fn handle(member: &impl Member, message: &Message) -> Result<Option<Value>, String> {
    let text = message.as_text().ok_or("messages are JSON text")?;
    let request: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let op = request.get("op").and_then(Value::as_str).ok_or("missing \"op\"")?;
    let topic = request.get("topic").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or("missing \"topic\"")?;
    let hub = member.hub().ok_or("no hub")?;
    match op {
        "subscribe" => {
            member.subscribe(topic);
            Ok(Some(json!({ "op": "subscribed", "topic": topic })))
        }
        "unsubscribe" => {
            member.unsubscribe(topic);
            Ok(Some(json!({ "op": "unsubscribed", "topic": topic })))
        }
        "publish" => {
            let data = request.get("data").cloned().unwrap_or(Value::Null);
            hub.publish(topic, &Message::from(json!({ "topic": topic, "data": data }).to_string()));
            Ok(None)
        }
        other => Err(format!("unknown op {other:?}: use subscribe, unsubscribe or publish")),
    }
}
