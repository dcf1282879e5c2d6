//! WebSockets inside other HTTP servers and over transports the caller
//! brings: `examples/hyper.rs` and `examples/axum.rs` run as programs and
//! used by real clients; `Upgrader::accept` and `client::connect_over`
//! speak over an in-memory pipe, with the hub, the hook's state and the
//! metrics as on tether's own servers.
//!
//! The examples are built by `cargo test` (as every example is); run
//! `cargo build -p tether --examples` first when running this file alone.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tether::admission::{Acceptance, Admission, Handshake};
use tether::{ClientConfig, Hub, Message, ServerConfig, Upgrader};
use tether_test_support::Peer;

fn example(name: &str) -> Peer {
    let deps = std::env::current_exe().unwrap();
    let path: PathBuf = deps.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build -p tether --examples` first", path.display());
    let mut command = Command::new(path);
    command.args(["--port", "0"]).env_remove("TETHER_TRACE");
    Peer::server(command, Duration::from_secs(15)).unwrap()
}

/// A plain HTTP exchange: what the server answered.
fn http(port: u16, request: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = tcp.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && !answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn next_text(ws: &mut tether::WebSocket) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.expect("in time").unwrap().unwrap();
    message.as_text().unwrap().to_owned()
}

/// Both examples: HTTP routes beside the chat, two clients hear each
/// other through the hub, permessage-deflate is agreed through the
/// framework's 101, and a broken upgrade request gets tether's answer.
async fn chat_through(name: &str, path: &str) -> Peer {
    let server = example(name);
    let port = server.port();
    assert!(http(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ends_with("ok\n"));
    let url = format!("ws://127.0.0.1:{port}{path}");
    let mut alice = tether::connect(&url).await.unwrap();
    let mut bob = tether::connect(&url).await.unwrap();
    let extensions = alice.response().unwrap().headers.get_str("Sec-WebSocket-Extensions").unwrap_or("").to_owned();
    assert!(extensions.starts_with("permessage-deflate"), "{name}: {extensions:?}");
    alice.send("hello from alice").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "hello from alice");
    assert_eq!(next_text(&mut bob).await, "hello from alice");
    bob.send(Message::from(vec![1u8, 2, 3])).await.unwrap();
    let binary = tokio::time::timeout(Duration::from_secs(5), alice.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(binary.as_bytes(), [1, 2, 3]);
    let refused = http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
    );
    assert!(refused.starts_with("HTTP/1.1 400"), "{name}: a request without a key: {refused}");
    alice.close(tether::CloseCode::NORMAL, "").await.unwrap();
    bob.close(tether::CloseCode::NORMAL, "").await.unwrap();
    server
}

#[tokio::test]
async fn the_hyper_example_runs_a_chat_beside_its_http_routes() {
    chat_through("hyper", "/").await;
}

#[tokio::test]
async fn the_axum_example_runs_a_chat_beside_its_http_routes() {
    let server = chat_through("axum", "/chat").await;
    // The hub is the application's: an axum route reads it.
    let url = format!("ws://127.0.0.1:{}/chat", server.port());
    let _carol = tether::connect(&url).await.unwrap();
    let mut count = String::new();
    for _ in 0..100 {
        count = http(server.port(), "GET /clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if count.ends_with("\n1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(count.ends_with("\n1\n"), "one client left connected: {count}");
}

#[tokio::test]
async fn over_a_pipe_a_server_and_a_client_speak_with_the_hub_and_the_hook_state() {
    let hub = Hub::default();
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    config.hook = Some(Arc::new(|handshake: &Handshake<'_>| {
        let user = handshake.query().unwrap_or("anonymous").to_owned();
        Admission::from(Acceptance::default().state(user))
    }));
    let upgrader = Upgrader::new(config).unwrap();
    let (client_side, server_side) = tokio::io::duplex(64 << 10);
    let peer: SocketAddr = "10.0.0.7:40000".parse().unwrap();
    let serving = tokio::spawn(async move {
        let mut ws = upgrader.accept(server_side, peer).await.unwrap();
        let user = ws.state::<String>().cloned().unwrap();
        assert_eq!(ws.peer_addr(), Some(peer));
        let message = ws.recv().await.unwrap().unwrap();
        ws.send(format!("{user} said {}", message.as_text().unwrap())).await.unwrap();
        assert!(ws.recv().await.unwrap().is_none(), "a clean close");
    });
    let mut ws = tether::client::connect_over("ws://chat.example/room?ada", client_side, &ClientConfig::default())
        .await
        .unwrap();
    assert_eq!(hub.count(), 1, "the connection joined the hub");
    ws.send("hi").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("ada said hi"));
    ws.close(tether::CloseCode::NORMAL, "").await.unwrap();
    serving.await.unwrap();
    assert_eq!(hub.count(), 0, "and left it");
}

#[tokio::test]
async fn an_upgrader_refuses_as_tether_servers_do_and_says_how_to_answer() {
    let mut config = ServerConfig::default();
    config.allowed_origins = Some(vec!["https://good.example".to_owned()]);
    let upgrader = Upgrader::new(config).unwrap();
    let request = |origin: &str| {
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        );
        let mut reader = tether::proto::handshake::HeadReader::new(tether::proto::HandshakeLimits::default());
        reader.feed(head.as_bytes()).unwrap();
        tether::proto::handshake::Request::parse(&reader).unwrap()
    };
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let refusal = upgrader.upgrade(request("https://evil.example"), peer).unwrap_err();
    assert_eq!(refusal.status, 403);
    let upgrade = upgrader.upgrade(request("https://good.example"), peer).unwrap();
    let answer = upgrade.answer();
    assert_eq!(answer.status, 101);
    let accept =
        answer.headers.iter().find(|(name, _)| name == "Sec-WebSocket-Accept").map(|(_, value)| value.as_str());
    assert_eq!(accept, Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455's own example");
    let response = answer.into_http();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
}
