//! Who gets in (`tether::admission`): the handshake hook accepting with a
//! subprotocol, headers and state or refusing with the status it chose;
//! Basic and Bearer authentication; the Origin allow-list; routes by path;
//! the connection cap under a flood; plain HTTP on the same port.

use std::sync::Arc;
use std::time::Duration;

use tether::admission::{self, Acceptance, Admission, Refusal};
use tether::{ClientConfig, CloseCode, Message, Routes, Server, ServerConfig, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn start(config: ServerConfig) -> String {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(echo));
    format!("ws://{addr}")
}

/// A raw HTTP exchange: the whole answer as text.
async fn http(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("ws://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

struct User(String);

#[tokio::test]
async fn the_hook_accepts_with_a_subprotocol_headers_and_state_or_refuses_as_it_chooses() {
    let mut config = ServerConfig::default();
    config.hook = Some(Arc::new(|handshake: &admission::Handshake<'_>| {
        let Some(user) = handshake.query().and_then(|q| q.strip_prefix("user=")) else {
            return Refusal::new(403, "who are you?").header("X-Reason", "no user").into();
        };
        assert!(handshake.peer.ip().is_loopback());
        let protocol = if handshake.offered_protocols().contains(&"chat.v2") { "chat.v2" } else { "chat.v1" };
        Acceptance::default().protocol(protocol).header("X-Welcome", user).state(User(user.to_owned())).into()
    }));
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let user = ws.state::<User>().map(|user| user.0.clone()).unwrap_or_default();
        let _ = ws.send(format!("hello {user}")).await;
        let _ = ws.close(CloseCode::NORMAL, "").await;
    }));
    let url = format!("ws://{addr}");

    let client = ClientConfig::default().protocol_offer("chat.v1").protocol_offer("chat.v2");
    let mut ws = tether::connect_with(&format!("{url}/?user=ada"), &client).await.unwrap();
    assert_eq!(ws.protocol(), Some("chat.v2"), "the hook's choice");
    assert_eq!(ws.response().unwrap().headers.get_str("x-welcome"), Some("ada"));
    assert!(ws.response().unwrap().headers.get_str("server").is_some_and(|s| s.starts_with("tether/")));
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("hello ada")));

    let error = tether::connect(&format!("{url}/")).await.unwrap_err();
    assert_eq!(error.http_status(), Some(403), "{error}");
    let answer = http(&url, &upgrade("/", "")).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.contains("X-Reason: no user\r\n") && answer.ends_with("who are you?\n"), "{answer}");
}

#[tokio::test]
async fn a_subprotocol_the_client_did_not_offer_is_a_server_error_not_a_bad_101() {
    let mut config = ServerConfig::default();
    config.hook = Some(Arc::new(|_: &admission::Handshake<'_>| Acceptance::default().protocol("nobody-asked").into()));
    let url = start(config).await;
    let error = tether::connect(&format!("{url}/")).await.unwrap_err();
    assert_eq!(error.http_status(), Some(500), "{error}");
}

#[tokio::test]
async fn basic_and_bearer_authentication() {
    let mut config = ServerConfig::default();
    config.hook = Some(admission::basic_auth("tether", "alice", "s3cret"));
    let url = start(config).await;
    let error = tether::connect(&format!("{url}/")).await.unwrap_err();
    assert_eq!(error.http_status(), Some(401));
    let answer = http(&url, &upgrade("/", "")).await;
    assert!(answer.contains("WWW-Authenticate: Basic realm=\"tether\"\r\n"), "{answer}");
    // alice:s3cret and alice:wrong in base64.
    let good = ClientConfig::default().header("Authorization", "Basic YWxpY2U6czNjcmV0");
    tether::connect_with(&format!("{url}/"), &good).await.unwrap().close(CloseCode::NORMAL, "").await.unwrap();
    let bad = ClientConfig::default().header("Authorization", "Basic YWxpY2U6d3Jvbmc=");
    assert_eq!(tether::connect_with(&format!("{url}/"), &bad).await.unwrap_err().http_status(), Some(401));

    let mut config = ServerConfig::default();
    config.hook = Some(admission::bearer_auth("t0ken"));
    let url = start(config).await;
    let good = ClientConfig::default().header("Authorization", "Bearer t0ken");
    tether::connect_with(&format!("{url}/"), &good).await.unwrap().close(CloseCode::NORMAL, "").await.unwrap();
    for wrong in ["Bearer t0ke", "Bearer t0kenn", "Basic t0ken"] {
        let bad = ClientConfig::default().header("Authorization", wrong);
        let error = tether::connect_with(&format!("{url}/"), &bad).await.unwrap_err();
        assert_eq!(error.http_status(), Some(401), "{wrong}");
        assert!(!error.is_retryable(), "a refusal is final");
    }
}

#[tokio::test]
async fn the_origin_allow_list() {
    let mut config = ServerConfig::default();
    config.allowed_origins = Some(vec!["https://app.example".into()]);
    let url = start(config).await;
    let from = |origin: &str| ClientConfig::default().header("Origin", origin);
    let error = tether::connect_with(&format!("{url}/"), &from("https://evil.example")).await.unwrap_err();
    assert_eq!(error.http_status(), Some(403));
    tether::connect_with(&format!("{url}/"), &from("https://APP.example")).await.unwrap();
    tether::connect(&format!("{url}/")).await.expect("no Origin: not a browser, allowed");
}

#[tokio::test]
async fn routes_by_path_and_404_elsewhere() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let routes = Routes::new().route("/echo", echo).route("/shout", |mut ws: WebSocket| async move {
        while let Ok(Some(message)) = ws.recv().await {
            let loud = message.as_text().unwrap_or("").to_uppercase();
            if ws.send(loud).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(server.serve_routes(routes));
    for (path, expected) in [("/echo", "hi"), ("/shout", "HI"), ("/echo?x=1", "hi")] {
        let mut ws = tether::connect(&format!("ws://{addr}{path}")).await.unwrap();
        ws.send("hi").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from(expected)), "{path}");
    }
    let error = tether::connect(&format!("ws://{addr}/nowhere")).await.unwrap_err();
    assert_eq!(error.http_status(), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_past_the_cap_is_refused_cleanly_with_503() {
    let mut config = ServerConfig::default();
    config.max_connections = Some(5);
    let url = start(config).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(tether::connect(&format!("{url}/")).await.unwrap());
    }
    let flood: Vec<_> = (0..50).map(|_| tokio::spawn(tether::connect(format!("{url}/").leak()))).collect();
    for attempt in flood {
        let error = attempt.await.unwrap().expect_err("past the cap");
        assert_eq!(error.http_status(), Some(503), "{error}");
        assert!(error.is_retryable(), "503 is worth retrying later");
    }
    // Those open are unharmed, and a place freed is a place taken.
    for ws in &mut open {
        ws.send("still here").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("still here")));
    }
    open.pop().unwrap().close(CloseCode::NORMAL, "").await.unwrap();
    let mut again = None;
    for _ in 0..50 {
        match tether::connect(&format!("{url}/")).await {
            Ok(ws) => {
                again = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "the freed place was never given out");
}

#[tokio::test]
async fn plain_http_is_answered_on_the_same_port() {
    let mut config = ServerConfig::default();
    config.http = Some(admission::health_check("/healthz"));
    let url = start(config).await;
    let health = http(&url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("ok\n"), "{health}");
    let other = http(&url, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(other.starts_with("HTTP/1.1 426 "), "{other}");
    tether::connect(&format!("{url}/healthz")).await.expect("an upgrade to the same path is still a WebSocket");
    drop(Admission::accept());
}
