//! Seed 003 (b): a server that keeps the set of connected clients, pings
//! each of them (keepalive 20 s / 20 s) so dead ones are dropped and leave
//! the set, logs what they send, and broadcasts it to everyone.
//!
//! Run: `cargo run --example seed003_heartbeat_server -- [--listen 127.0.0.1:8765]
//! [--ping-interval 20] [--ping-timeout 20]`; prints `LISTENING <port>`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether::{Config, Message, Server, ServerConfig, WebSocket};
use tokio::sync::mpsc;

type Clients = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Message>>>>;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn broadcast(clients: &Clients, message: &Message) {
    for sender in clients.lock().unwrap().values() {
        let _ = sender.send(message.clone());
    }
}

async fn handler(mut ws: WebSocket, clients: Clients) {
    let peer = ws.peer_addr().expect("a TCP peer");
    let (sender, mut outbox) = mpsc::unbounded_channel();
    let count = {
        let mut clients = clients.lock().unwrap();
        clients.insert(peer, sender);
        clients.len()
    };
    println!("joined {peer} ({count} connected)");
    let reason = loop {
        tokio::select! {
            received = ws.recv() => match received {
                Ok(Some(message)) => {
                    println!("from {peer}: {}", message.as_text().unwrap_or("<binary>"));
                    broadcast(&clients, &message);
                }
                Ok(None) => break "closed".to_owned(),
                Err(error) => break error.to_string(),
            },
            Some(message) = outbox.recv() => {
                if let Err(error) = ws.send(message).await {
                    break error.to_string();
                }
            }
        }
    };
    // Whatever ended it, the client leaves the set now.
    let count = {
        let mut clients = clients.lock().unwrap();
        clients.remove(&peer);
        clients.len()
    };
    println!("left {peer}: {reason} ({count} connected)");
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let seconds = |name, default| Duration::from_secs_f64(arg(name).map_or(default, |v| v.parse().expect(name)));
    let mut config = ServerConfig::default();
    config.protocol =
        Config::default().with_keepalive(Some(seconds("--ping-interval", 20.0)), Some(seconds("--ping-timeout", 20.0)));
    let server = Server::bind(arg("--listen").as_deref().unwrap_or("127.0.0.1:8765"), config).await?;
    println!("LISTENING {}", server.local_addr()?.port());
    let clients = Clients::default();
    server.serve(move |ws| handler(ws, clients.clone())).await
}
