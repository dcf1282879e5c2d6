//! The reactor server: one event loop owns every connection, callbacks see
//! their messages (what an idle connection costs: `reactor_memory.rs`).

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{raw_client, wait_for};

use tether::hub::Hub;
use tether::reactor::{Conn, ConnId, Reactor, ReactorHandle, Service};
use tether::{CloseCode, Config, Message, ServerConfig};

/// A reactor on its own thread; returns its URL, handle and thread.
fn start(config: ServerConfig, service: impl Service) -> (String, ReactorHandle, JoinHandle<std::io::Result<()>>) {
    let reactor = Reactor::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let url = format!("ws://{}/", reactor.local_addr().unwrap());
    let handle = reactor.handle();
    (url, handle, std::thread::spawn(move || reactor.run(service)))
}

fn echo(conn: &mut Conn<'_>, message: Message) {
    let _ = conn.send(&message);
}

/// Records how each connection ended.
type Endings = Arc<Mutex<Vec<(ConnId, Option<CloseCode>)>>>;

#[derive(Clone, Default)]
struct Recorder {
    closed: Endings,
}

impl Service for Recorder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        let _ = conn.send(&message);
    }
    fn on_close(&mut self, id: ConnId, code: Option<CloseCode>) {
        self.closed.lock().unwrap().push((id, code));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_echoes_text_and_binary_with_and_without_compression_and_closes_cleanly() {
    let recorder = Recorder::default();
    let (url, handle, thread) = start(ServerConfig::default(), recorder.clone());
    for config in [
        tether::ClientConfig::default(),
        tether::ClientConfig::default().protocol_config(Config::default().with_deflate(None)),
    ] {
        let mut ws = tether::connect_with(&url, &config).await.unwrap();
        for message in [Message::from("hello"), Message::from(vec![7u8; 100_000]), Message::from("x".repeat(5000))] {
            ws.send(message.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(message));
        }
        ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    }
    wait_for("both closes", Duration::from_secs(5), || recorder.closed.lock().unwrap().len() == 2);
    assert!(recorder.closed.lock().unwrap().iter().all(|(_, code)| *code == Some(CloseCode::NORMAL)));
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed_with_1011_within_interval_plus_timeout() {
    let recorder = Recorder::default();
    let mut config = ServerConfig::default();
    config.protocol =
        Config::default().with_keepalive(Some(Duration::from_millis(300)), Some(Duration::from_millis(300)));
    let (url, handle, thread) = start(config, recorder.clone());
    let _frozen = raw_client(&url);
    let started = Instant::now();
    wait_for("keepalive", Duration::from_secs(3), || !recorder.closed.lock().unwrap().is_empty());
    let took = started.elapsed();
    println!("a silent client was dropped after {took:?}");
    assert!(took <= Duration::from_millis(660), "{took:?}");
    assert_eq!(recorder.closed.lock().unwrap()[0].1, Some(CloseCode::INTERNAL_ERROR));
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_broadcasts_reach_every_connection_and_shutdown_sends_1001() {
    let hub = Hub::default();
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    let (url, handle, thread) = start(config, |conn: &mut Conn<'_>, message: Message| {
        if let Some(hub) = conn.hub() {
            hub.broadcast(&message);
        }
    });
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(tether::connect(&url).await.unwrap());
    }
    wait_for("all in the hub", Duration::from_secs(5), || hub.count() == 5);
    let text = "to everyone, compressed once ".repeat(10);
    clients[0].send(Message::from(text.as_str())).await.unwrap();
    for ws in &mut clients {
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from(text.as_str())));
    }
    handle.shutdown();
    for ws in &mut clients {
        let ended = ws.recv().await;
        assert!(matches!(ended, Ok(None)), "{ended:?}");
        assert_eq!(ws.close_frame().map(|frame| frame.code), Some(CloseCode::GOING_AWAY));
    }
    let started = Instant::now();
    thread.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "the close handshakes ended the loop");
    assert_eq!(hub.count(), 0);
}

#[test]
fn refused_handshakes_get_their_status_and_plain_http_is_answered() {
    let mut config = ServerConfig::default();
    config.allowed_origins = Some(vec!["https://good.example".into()]);
    config.http = Some(tether::admission::health_check("/health"));
    let (url, handle, thread) = start(config, echo);
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let ask = |request: &str| {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    };
    let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    assert!(ask(&format!("{upgrade}Origin: https://evil.example\r\n\r\n")).starts_with("HTTP/1.1 403"));
    assert!(ask("GET /health HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200"));
    assert!(ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 426"));
    assert!(ask(&format!("GET / HTTP/1.1\r\n{}\r\n", "X-Pad: y\r\n".repeat(200))).starts_with("HTTP/1.1 431"));
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_late_gets_every_echo_once_it_reads() {
    // The client sends far more than the buffers hold before it reads: the
    // server stops reading while its answers pile up, and must start again
    // once the client drains them (no readiness event says so again).
    const MESSAGES: usize = 3000;
    let mut config = ServerConfig::default();
    config.send_buffer = Some(16 << 10);
    let (url, handle, thread) = start(config, echo);
    let ws = tether::connect_with(
        &url,
        &tether::ClientConfig::default().protocol_config(Config::default().with_deflate(None)),
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = ws.split();
    let writing = tokio::spawn(async move {
        for sequence in 0..MESSAGES as u32 {
            let mut payload = vec![0u8; 1024];
            payload[..4].copy_from_slice(&sequence.to_be_bytes());
            writer.send(Message::from(payload)).await.unwrap();
        }
        writer
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reading = async {
        for sequence in 0..MESSAGES as u32 {
            let message = reader.recv().await.unwrap().unwrap();
            assert_eq!(message.as_bytes()[..4], sequence.to_be_bytes());
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reading).await.expect("every echo arrived");
    drop(writing.await.unwrap());
    drop(reader);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}
