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
use tether::{Message, WebSocket};

pub async fn handler(mut socket: WebSocket) {
    while let Ok(Some(message)) = socket.recv().await {
        let answer = match handle(&socket, &message) {
            Ok(None) => continue,
            Ok(Some(answer)) => answer,
            Err(error) => json!({ "op": "error", "error": error }),
        };
        if socket.send(answer.to_string()).await.is_err() {
            return;
        }
    }
}

fn handle(socket: &WebSocket, message: &Message) -> Result<Option<Value>, String> {
    let text = message.as_text().ok_or("messages are JSON text")?;
    let request: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let op = request.get("op").and_then(Value::as_str).ok_or("missing \"op\"")?;
    let topic = request.get("topic").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or("missing \"topic\"")?;
    let hub = socket.hub().ok_or("no hub")?;
    match op {
        "subscribe" => {
            socket.subscribe(topic);
            Ok(Some(json!({ "op": "subscribed", "topic": topic })))
        }
        "unsubscribe" => {
            socket.unsubscribe(topic);
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
