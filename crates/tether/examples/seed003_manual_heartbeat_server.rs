//! Seed 003 (d): the server side of the application heartbeat: each
//! `{"type":"ping","timestamp":T}` is answered `{"type":"pong","timestamp":T}`
//! by the server itself (a responder), and the handler sees only the
//! other messages, which it logs.
//!
//! Run: `cargo run --example seed003_manual_heartbeat_server -- [--listen 127.0.0.1:8765]`;
//! prints `LISTENING <port>`.

use tether::heartbeat::json_responder;
use tether::{Server, ServerConfig, WebSocket};

async fn handler(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        match message.as_text() {
            Some(text) if serde_json_like(text) => println!("business: {text}"),
            Some(text) => println!("not JSON, ignored: {text}"),
            None => println!("binary, ignored"),
        }
    }
}

/// Whether `text` looks like a JSON object (the seed logs JSON, warns otherwise).
fn serde_json_like(text: &str) -> bool {
    let text = text.trim();
    text.starts_with('{') && text.ends_with('}')
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen =
        args.iter().position(|a| a == "--listen").and_then(|i| args.get(i + 1)).map_or("127.0.0.1:8765", |s| s);
    let mut config = ServerConfig::default();
    config.heartbeat_responder = Some(json_responder());
    let server = Server::bind(listen, config).await?;
    println!("LISTENING {}", server.local_addr()?.port());
    server.serve(handler).await
}
