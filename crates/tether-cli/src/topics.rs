//! `tether serve --topics`: clients subscribe and publish with a small
//! JSON protocol, one object per text message.
//!
//! Client to server:
//! - `{"op":"subscribe","topic":"T"}`, answered `{"op":"subscribed","topic":"T"}`;
//! - `{"op":"unsubscribe","topic":"T"}`, answered `{"op":"unsubscribed","topic":"T"}`;
//! - `{"op":"publish","topic":"T","data":ANY}`: every subscriber of T (the
//!   sender too, if subscribed) receives `{"topic":"T","data":ANY}`.
//!
//! With history (`--history N`), each publication also carries its place
//! in the topic's stream, `"offset":N,"epoch":"E"`, and so does the
//! `subscribed` answer (the stream's latest). A client that reconnects
//! subscribes with the last place it saw,
//! `{"op":"subscribe","topic":"T","recover":{"offset":N,"epoch":"E"}}`, and
//! is answered `{"op":"subscribed",…,"recovered":true}` followed by every
//! publication it missed, in order, then the live ones — or
//! `"recovered":false` (nothing sent: the history no longer covers the gap,
//! or the server restarted), and then it reloads its state another way.
//!
//! Anything else is answered `{"op":"error","error":"…"}` and the
//! connection stays open.

use std::sync::Arc;

use serde_json::{json, Value};
use tether::history::Position;
use tether::hub::{ClientId, Render};
use tether::{Hub, Message, WebSocket};

/// What the protocol needs of a connection, on either server.
pub trait Member {
    fn hub(&self) -> Option<&Hub>;
    fn client_id(&self) -> Option<ClientId>;
    fn unsubscribe(&self, topic: &str);
}

impl Member for WebSocket {
    fn hub(&self) -> Option<&Hub> {
        WebSocket::hub(self)
    }
    fn client_id(&self) -> Option<ClientId> {
        WebSocket::client_id(self)
    }
    fn unsubscribe(&self, topic: &str) {
        WebSocket::unsubscribe(self, topic);
    }
}

impl Member for tether::reactor::Conn<'_> {
    fn hub(&self) -> Option<&Hub> {
        tether::reactor::Conn::hub(self)
    }
    fn client_id(&self) -> Option<ClientId> {
        tether::reactor::Conn::client_id(self)
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
            let since = match request.get("recover") {
                None | Some(Value::Null) => None,
                Some(recover) => Some(position(recover).ok_or("\"recover\" is {\"offset\":N,\"epoch\":\"E\"}")?),
            };
            let id = member.client_id().ok_or("no hub")?;
            // The answer goes through the mailbox, ahead of what was missed
            // and of every later publication.
            let named = topic.to_owned();
            hub.subscribe_from(id, topic, since.as_ref(), move |subscribed| {
                let mut answer = json!({ "op": "subscribed", "topic": named });
                if let Some(position) = &subscribed.position {
                    answer["offset"] = json!(position.offset);
                    answer["epoch"] = json!(position.epoch);
                }
                if let Some(recovered) = subscribed.recovered {
                    answer["recovered"] = json!(recovered);
                }
                Some(Message::from(answer.to_string()))
            });
            Ok(None)
        }
        "unsubscribe" => {
            member.unsubscribe(topic);
            Ok(Some(json!({ "op": "unsubscribed", "topic": topic })))
        }
        "publish" => {
            // The data travels as it is (to other servers too); `render`
            // makes what subscribers receive, with its offset if any.
            let data = request.get("data").cloned().unwrap_or(Value::Null);
            hub.publish(topic, &Message::from(data.to_string()));
            Ok(None)
        }
        other => Err(format!("unknown op {other:?}: use subscribe, unsubscribe or publish")),
    }
}

fn position(value: &Value) -> Option<Position> {
    let offset = value.get("offset")?.as_u64()?;
    let epoch = value.get("epoch")?.as_str()?.to_owned();
    Some(Position { offset, epoch })
}

/// What subscribers receive for a publication of `data` (JSON text) in
/// `topic`: `{"topic":T,"data":ANY}`, with `"offset"` and `"epoch"` when
/// the hub keeps history.
pub fn render() -> Render {
    Arc::new(|topic: &str, data: &Message, position: Option<&Position>| {
        let data: Value = data.as_text().and_then(|text| serde_json::from_str(text).ok()).unwrap_or(Value::Null);
        let mut publication = json!({ "topic": topic, "data": data });
        if let Some(position) = position {
            publication["offset"] = json!(position.offset);
            publication["epoch"] = json!(position.epoch);
        }
        Message::from(publication.to_string())
    })
}
