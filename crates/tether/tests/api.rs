//! The public API end to end on loopback: what a user of `websockets` or
//! `websocket-client` expects `connect`, `serve`, `send`, `recv` and
//! `close` to do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether::{ClientConfig, CloseCode, Message, Server, ServerConfig, TrustRoots, WebSocket};
use tokio::sync::mpsc;

async fn echo(mut socket: WebSocket) {
    while let Ok(Some(message)) = socket.recv().await {
        if socket.send(message).await.is_err() {
            break;
        }
    }
}

async fn start(config: ServerConfig) -> std::net::SocketAddr {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(echo));
    addr
}

#[tokio::test]
async fn text_and_binary_messages_echo_with_their_type() {
    let addr = start(ServerConfig::default()).await;
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    assert!(socket.connection().is_compressed(), "deflate is on by default on both sides");
    for message in
        [Message::from("héllo"), Message::from(vec![0u8, 255, 7]), Message::from(""), Message::from(vec![1u8; 300_000])]
    {
        socket.send(message.clone()).await.unwrap();
        assert_eq!(socket.recv().await.unwrap(), Some(message));
    }
    socket.close(CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(socket.close_frame().map(|frame| frame.code), Some(CloseCode::NORMAL));
    assert_eq!(socket.recv().await.unwrap(), None, "after a clean close recv is None, not an error");
}

#[tokio::test]
async fn the_handler_sees_path_query_headers_and_peer_address() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut socket: WebSocket| {
        let seen_tx = seen_tx.clone();
        async move {
            let request = socket.request().unwrap();
            let _ = seen_tx.send((
                request.path().to_owned(),
                request.query().map(str::to_owned),
                request.headers.get_str("x-token").map(str::to_owned),
                socket.peer_addr().unwrap().ip(),
            ));
            let _ = socket.close(CloseCode::NORMAL, "").await;
        }
    }));
    let config = ClientConfig::default().header("X-Token", "secret");
    let mut socket = tether::connect_with(&format!("ws://{addr}/rooms/1?user=ann"), &config).await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), None);
    let (path, query, token, ip) = seen_rx.recv().await.unwrap();
    assert_eq!((path.as_str(), query.as_deref(), token.as_deref()), ("/rooms/1", Some("user=ann"), Some("secret")));
    assert!(ip.is_loopback());
}

#[tokio::test]
async fn a_subprotocol_both_sides_speak_is_negotiated() {
    let mut config = ServerConfig::default();
    config.protocols = vec!["chat.v2".into(), "chat.v1".into()];
    let addr = start(config).await;
    let client = ClientConfig::default().protocol_offer("chat.v1").protocol_offer("chat.v2");
    let socket = tether::connect_with(&format!("ws://{addr}/"), &client).await.unwrap();
    assert_eq!(socket.protocol(), Some("chat.v1"), "the client's preference wins");
}

#[tokio::test]
async fn a_server_initiated_close_ends_the_client_stream_cleanly_with_its_code() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut socket: WebSocket| async move {
        socket.send("bye soon").await.unwrap();
        socket.close(CloseCode(4001), "shutting down").await.unwrap();
    }));
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), Some(Message::from("bye soon")));
    assert_eq!(socket.recv().await.unwrap(), None);
    let frame = socket.close_frame().unwrap();
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4001), "shutting down"));
}

#[tokio::test]
async fn the_socket_is_a_stream_and_a_sink() {
    let addr = start(ServerConfig::default()).await;
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    for i in 0..100 {
        socket.feed(Message::from(format!("m{i}"))).await.unwrap();
    }
    socket.flush().await.unwrap();
    let received: Vec<Message> = socket.by_ref().take(100).map(Result::unwrap).collect().await;
    assert_eq!(received, (0..100).map(|i| Message::from(format!("m{i}"))).collect::<Vec<_>>());
    SinkExt::close(&mut socket).await.unwrap();
    assert!(socket.next().await.is_none());
}

#[tokio::test]
async fn split_halves_send_and_receive_from_different_tasks() {
    let addr = start(ServerConfig::default()).await;
    let socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    let (mut reader, mut writer) = socket.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            writer.send(format!("{i}")).await.unwrap();
        }
        writer
    });
    for i in 0..1000 {
        assert_eq!(reader.recv().await.unwrap(), Some(Message::from(format!("{i}"))));
    }
    let mut writer = sender.await.unwrap();
    writer.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), reader.recv()).await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn a_server_ping_while_the_client_only_reads_is_answered() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut socket: WebSocket| {
        let pong_tx = pong_tx.clone();
        async move {
            socket.ping("probe").await.unwrap();
            // The pong is consumed inside recv; the close comes after it.
            socket.send("after ping").await.unwrap();
            let _ = pong_tx.send(());
            let _ = socket.recv().await;
        }
    }));
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), Some(Message::from("after ping")));
    pong_rx.recv().await.unwrap();
}

fn test_certificate() -> (rcgen::CertifiedKey<rcgen::KeyPair>, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let dir =
        std::env::temp_dir().join(format!("tether-api-test-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    (certified, dir)
}

#[tokio::test]
async fn wss_works_with_a_pem_certificate_and_a_ca_file() {
    let (certified, dir) = test_certificate();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let mut config = ServerConfig::default();
    config.tls = Some(tether::tls::server_config_from_pem(&cert_path, &key_path).unwrap());
    let addr = start(config).await;
    let client = ClientConfig::default().trust(TrustRoots::CaFile(cert_path.clone()));
    let mut socket = tether::connect_with(&format!("wss://127.0.0.1:{}/", addr.port()), &client).await.unwrap();
    assert!(socket.get_ref().is_tls());
    socket.send("secret").await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), Some(Message::from("secret")));
    socket.close(CloseCode::NORMAL, "").await.unwrap();

    let error = tether::connect(&format!("wss://127.0.0.1:{}/", addr.port())).await.unwrap_err();
    assert!(error.is_tls(), "an unknown CA must fail verification: {error}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_custom_mask_key_source_is_used() {
    let addr = start(ServerConfig::default()).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut config = ClientConfig::default();
    let counter = calls.clone();
    config.mask_key = Some(Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        [1, 2, 3, 4]
    }));
    let mut socket = tether::connect_with(&format!("ws://{addr}/"), &config).await.unwrap();
    socket.send("masked").await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), Some(Message::from("masked")));
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn sending_after_close_is_a_closed_error() {
    let addr = start(ServerConfig::default()).await;
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    socket.close(CloseCode::NORMAL, "").await.unwrap();
    let error = socket.send("late").await.unwrap_err();
    assert!(error.is_closed(), "{error}");
}

#[tokio::test]
async fn a_bad_url_is_a_handshake_error_before_any_io() {
    let error = tether::connect("http://127.0.0.1:1/").await.unwrap_err();
    assert!(error.is_handshake() && error.to_string().contains("scheme"), "{error}");
}
