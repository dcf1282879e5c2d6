//! One specification, both servers: the tokio `Server` (a task per
//! connection) and the `Reactor` (one event loop) drive the same session,
//! and every test here runs against each of them. The defects that the two
//! copies of this logic once had are pinned here.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{raw_client, wait_for};
use tether::admission::{bearer_auth, Acceptance, Admission};
use tether::hub::{Hub, HubConfig, Overflow};
use tether::metrics::Metrics;
use tether::reactor::{Conn, Reactor, ReactorHandle, Service};
use tether::{ClientConfig, CloseCode, Config, Message, Server, ServerConfig, WebSocket};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Tokio,
    Reactor,
    /// Two event loops on one port (`SO_REUSEPORT`), one hub.
    ReactorThreads,
}

const ENGINES: [Engine; 3] = [Engine::Tokio, Engine::Reactor, Engine::ReactorThreads];

/// What the application does with each message it receives: the replies.
/// It sees the hook's state, if the hook attached a `String`.
type Behaviour = Arc<dyn Fn(&Message, Option<&String>) -> Vec<Message> + Send + Sync>;

fn echo() -> Behaviour {
    Arc::new(|message: &Message, _: Option<&String>| vec![message.clone()])
}

/// A running server of either kind; stopped when dropped.
struct Running {
    addr: SocketAddr,
    engine: Engine,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Running {
    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn wss_url(&self) -> String {
        format!("wss://localhost:{}/", self.addr.port())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

struct Behave(Behaviour);

impl Service for Behave {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        for reply in (self.0)(&message, conn.state::<String>()) {
            let _ = conn.send(&reply);
        }
    }
}

async fn start(engine: Engine, config: ServerConfig, behaviour: Behaviour) -> Running {
    match engine {
        Engine::Tokio => {
            let server = Server::bind("127.0.0.1:0", config).await.unwrap();
            let addr = server.local_addr().unwrap();
            let task = tokio::spawn(server.serve(move |mut ws: WebSocket| {
                let behaviour = behaviour.clone();
                async move {
                    while let Ok(Some(message)) = ws.recv().await {
                        for reply in behaviour(&message, ws.state::<String>()) {
                            if ws.send(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
            Running { addr, engine, stop: Some(Box::new(move || task.abort())) }
        }
        Engine::Reactor | Engine::ReactorThreads => {
            let threads = if engine == Engine::Reactor { 1 } else { 2 };
            let reactor = Reactor::bind_threads("127.0.0.1:0".parse().unwrap(), config, threads).unwrap();
            let addr = reactor.local_addr().unwrap();
            let handle: ReactorHandle = reactor.handle();
            let thread = std::thread::spawn(move || reactor.run_with(|_| Behave(behaviour.clone())));
            let stop = move || {
                handle.shutdown();
                let _ = thread.join();
            };
            Running { addr, engine, stop: Some(Box::new(stop)) }
        }
    }
}

/// A metric's value in the Prometheus text (the line without labels).
fn metric(metrics: &Metrics, name: &str) -> u64 {
    let text = metrics.render();
    let line = text.lines().find(|line| line.split(' ').next() == Some(name));
    line.and_then(|line| line.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_cannot_work_is_refused_when_binding() {
    let mut config = ServerConfig::default();
    config.protocol = Config::default().with_keepalive(None, Some(Duration::from_secs(1)));
    let Err(error) = Server::bind("127.0.0.1:0", config.clone()).await else { panic!("tokio: bound") };
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "tokio: {error}");
    assert!(error.to_string().contains("ping_interval"), "tokio: {error}");
    let error = Reactor::bind("127.0.0.1:0".parse().unwrap(), config).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "reactor: {error}");
    assert!(error.to_string().contains("ping_interval"), "reactor: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_hook_attaches_reaches_the_application() {
    for engine in ENGINES {
        let mut config = ServerConfig::default();
        config.hook = Some(Arc::new(|handshake: &tether::admission::Handshake<'_>| {
            let user = handshake.query().unwrap_or_default().trim_start_matches("user=").to_owned();
            Admission::Accept(Acceptance::default().state(user))
        }));
        let whoami: Behaviour = Arc::new(|_: &Message, user: Option<&String>| {
            vec![Message::from(user.cloned().unwrap_or_else(|| "<no state>".into()))]
        });
        let server = start(engine, config, whoami).await;
        let mut ws = tether::connect(&format!("{}?user=ada", server.url())).await.unwrap();
        ws.send("who am I?").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("ada")), "{engine:?}");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_pings_are_answered_by_the_server_and_counted_like_any_message() {
    for engine in ENGINES {
        let metrics = Metrics::new();
        let mut config = ServerConfig::default();
        config.heartbeat_responder = Some(tether::heartbeat::json_responder());
        config.metrics = Some(metrics.clone());
        let server = start(engine, config, echo()).await;
        let mut ws = tether::connect(&server.url()).await.unwrap();
        ws.send(r#"{"type":"ping","timestamp":7}"#).await.unwrap();
        let pong = ws.recv().await.unwrap().unwrap();
        assert_eq!(pong.as_text(), Some(r#"{"timestamp":7,"type":"pong"}"#), "{engine:?}");
        ws.send("hello").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("hello")), "{engine:?}");
        // Two messages in (the heartbeat ping and "hello"), two out (its
        // pong and the echo), on either server.
        assert_eq!(metric(&metrics, "tether_messages_received_total"), 2, "{engine:?}");
        assert_eq!(metric(&metrics, "tether_messages_sent_total"), 2, "{engine:?}");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        wait_for("the close to be counted", Duration::from_secs(5), || {
            metric(&metrics, "tether_connections_open") == 0
        });
    }
}

/// A relay that forwards client → server freely and server → client at
/// `rate` bytes per second: a slow but live link. Its receive buffer is
/// small, as a real slow link holds little in flight; loopback's
/// megabytes of buffering would otherwise hide the data from the sender.
async fn throttled_relay(target: SocketAddr, rate: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 << 10).unwrap();
        let server = socket.connect(target).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let chunk = rate / 20;
        let mut buf = vec![0u8; chunk];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_over_a_slow_link_does_not_starve_keepalive() {
    // RELIABILITY 21, scaled to a few seconds: 4 MiB at 1 MiB/s, while
    // both ends ping every 0.3 s and allow 0.5 s for the pong. The server's
    // pings wait behind megabytes in its socket; it must tell this slow
    // reader (the kernel's queue shrinks) from a dead one.
    let quick = Config::default().with_keepalive(Some(Duration::from_millis(300)), Some(Duration::from_millis(500)));
    let big = Message::from(vec![0x42u8; 4 << 20]);
    for engine in ENGINES {
        let mut config = ServerConfig::default();
        config.protocol = quick.clone().with_deflate(None);
        let to_send = big.clone();
        let send_on_go: Behaviour = Arc::new(move |_: &Message, _: Option<&String>| vec![to_send.clone()]);
        let server = start(engine, config, send_on_go).await;
        let port = throttled_relay(server.addr, 1 << 20).await;
        let client = ClientConfig::default().protocol_config(quick.clone());
        let mut ws = tether::connect_with(&format!("ws://127.0.0.1:{port}/"), &client).await.unwrap();
        ws.send("go").await.unwrap();
        let started = Instant::now();
        let received = ws.recv().await.unwrap_or_else(|error| panic!("{engine:?}: false keepalive timeout: {error}"));
        println!("{engine:?}: 4 MiB over 1 MiB/s in {:?} with 0.3 s pings", started.elapsed());
        assert_eq!(received, Some(big.clone()), "{engine:?}");
        assert!(started.elapsed() >= Duration::from_secs(2), "the link really was slow");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_the_policy_closes_leaves_at_once_and_is_gone_within_the_close_timeout() {
    // Keepalive off: nothing but the close decision may end it.
    let close_timeout = Duration::from_millis(500);
    for engine in ENGINES {
        let hub = Hub::new({
            let mut config = HubConfig::default();
            config.max_buffered = 64 << 10;
            config.overflow = Overflow::Close(CloseCode(1013));
            config
        });
        let metrics = Metrics::new().with_hub(hub.clone());
        let mut config = ServerConfig::default();
        config.protocol = Config::default().with_keepalive(None, None).with_close_timeout(close_timeout);
        config.send_buffer = Some(16 << 10);
        config.hub = Some(hub.clone());
        config.metrics = Some(metrics.clone());
        let server = start(engine, config, echo()).await;
        let _never_reads = raw_client(&server.url());
        wait_for("the client to join", Duration::from_secs(5), || hub.count() == 1);
        // Far more than the client's socket, our output and its mailbox hold.
        let chunk = Message::from(vec![7u8; 4 << 10]);
        let mut decided = None;
        for _ in 0..2_000 {
            hub.broadcast(&chunk);
            if hub.drops().closed_connections == 1 {
                decided = Some(Instant::now());
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let decided = decided.unwrap_or_else(|| panic!("{engine:?}: the overflow policy never closed the client"));
        wait_for("the hub to let it go", Duration::from_millis(200), || hub.count() == 0);
        let left = decided.elapsed();
        wait_for("the connection to end", close_timeout + Duration::from_secs(1), || {
            metric(&metrics, "tether_connections_open") == 0
        });
        let ended = decided.elapsed();
        println!("{engine:?}: left the hub after {left:?}, ended after {ended:?} (close timeout {close_timeout:?})");
        assert!(ended <= close_timeout + Duration::from_millis(300), "{engine:?}: {ended:?}");
        assert_eq!(metric(&metrics, "tether_hub_buffered_bytes"), 0, "{engine:?}");
        drop(server);
    }
}

/// Sends `bytes` on a fresh connection and reads the answer until the
/// server closes; returns it and how long that took.
fn answer_to(addr: SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    tcp.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_is_not_http_is_answered_400_at_once_not_held_for_the_open_timeout() {
    let client_hello = [0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x5e];
    let junk = [0x00, 0xff, 0x13, 0x37, 0x80, 0x81];
    for engine in ENGINES {
        let mut config = ServerConfig::default();
        config.open_timeout = Duration::from_secs(10);
        let server = start(engine, config, echo()).await;
        for input in [&client_hello[..], &junk[..]] {
            let (answer, took) = answer_to(server.addr, input);
            assert!(answer.starts_with("HTTP/1.1 400"), "{engine:?}: {answer:?}");
            assert!(answer.contains("not HTTP"), "{engine:?}: {answer:?}");
            assert!(took < Duration::from_secs(1), "{engine:?}: held for {took:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_websocket_port_are_behind_the_hook_and_the_origin_check() {
    for engine in ENGINES {
        let mut config = ServerConfig::default();
        config.metrics = Some(Metrics::new());
        config.hook = Some(bearer_auth("s3cret"));
        config.allowed_origins = Some(vec!["https://app.example".into()]);
        let server = start(engine, config, echo()).await;
        let get = |extra: &str| format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let (anonymous, _) = answer_to(server.addr, get("").as_bytes());
        assert!(anonymous.starts_with("HTTP/1.1 401"), "{engine:?}: {anonymous}");
        assert!(!anonymous.contains("tether_connections_open"), "{engine:?}");
        let (foreign, _) =
            answer_to(server.addr, get("Authorization: Bearer s3cret\r\nOrigin: https://evil.example\r\n").as_bytes());
        assert!(foreign.starts_with("HTTP/1.1 403"), "{engine:?}: {foreign}");
        let (allowed, _) = answer_to(server.addr, get("Authorization: Bearer s3cret\r\n").as_bytes());
        assert!(allowed.starts_with("HTTP/1.1 200"), "{engine:?}: {allowed}");
        assert!(allowed.contains("tether_connections_open 0"), "{engine:?}: {allowed}");
        let _ = server.engine;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_chain_never_repeats_a_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let error = tether::connect(&format!("ws://{addr}/")).await.unwrap_err();
    let mut lines = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        lines.push(cause.to_string());
        source = cause.source();
    }
    for pair in lines.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "a cause printed twice: {lines:?}");
    }
    assert!(lines[0].contains("refused"), "{lines:?}");
}

// A handler's end (the tokio server's; the reactor's callbacks do not end).

/// What a client sees when the handler answers one message and then ends
/// as `end` says, without closing.
async fn close_after_handler(end: &'static str) -> (Option<Message>, Option<tether::CloseFrame>, Duration) {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |mut ws: WebSocket| async move {
        let message = ws.recv().await?.unwrap_or_else(|| Message::from(""));
        ws.send(message).await?;
        match end {
            "return" => Ok::<(), tether::Error>(()),
            "fail" => Err(std::io::Error::other("the database is down").into()),
            _ => panic!("handler bug"),
        }
    }));
    let mut ws = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    ws.send("hi").await.unwrap();
    let echo = ws.recv().await.unwrap();
    let started = Instant::now();
    let after = ws.recv().await;
    assert!(matches!(after, Ok(None)), "{end}: a clean close, not {after:?}");
    (echo, ws.close_frame().cloned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_returns_closes_its_connection_with_1000() {
    let (echo, frame, took) = close_after_handler("return").await;
    assert_eq!(echo, Some(Message::from("hi")));
    assert_eq!(frame.map(|frame| frame.code), Some(CloseCode::NORMAL));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_or_panics_closes_its_connection_with_1011() {
    for end in ["fail", "panic"] {
        let (echo, frame, took) = close_after_handler(end).await;
        assert_eq!(echo, Some(Message::from("hi")), "{end}");
        let frame = frame.unwrap_or_else(|| panic!("{end}: no close frame"));
        assert_eq!(frame.code, CloseCode::INTERNAL_ERROR, "{end}");
        assert_eq!(frame.reason, "internal error", "{end}: the error itself stays in the server's log");
        assert!(took < Duration::from_secs(1), "{end}: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_away_by_its_handler_stays_open_until_dropped() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (keep, mut kept) = tokio::sync::mpsc::unbounded_channel::<WebSocket>();
    tokio::spawn(server.serve(move |ws: WebSocket| {
        let keep = keep.clone();
        async move {
            let _ = keep.send(ws);
        }
    }));
    let mut client = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut held = kept.recv().await.unwrap();
    // The handler has returned; the connection lives on with its new owner.
    client.send("still here").await.unwrap();
    assert_eq!(held.recv().await.unwrap(), Some(Message::from("still here")));
    drop(held);
    assert!(matches!(client.recv().await, Ok(None)));
    assert_eq!(client.close_frame().map(|frame| frame.code), Some(CloseCode::NORMAL));
}

// Several event loops.

/// Records which loop served each message.
struct LoopRecorder {
    index: usize,
    served: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Service for LoopRecorder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        self.served.lock().unwrap().push(self.index);
        let _ = conn.send(&message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_on_one_port_share_the_work_the_hub_and_the_connection_cap() {
    let hub = Hub::default();
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    config.max_connections = Some(24);
    let reactor = Reactor::bind_threads("127.0.0.1:0".parse().unwrap(), config, 2).unwrap();
    assert_eq!(reactor.threads(), 2);
    let url = format!("ws://{}/", reactor.local_addr().unwrap());
    let handle = reactor.handle();
    let served = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = served.clone();
    let thread =
        std::thread::spawn(move || reactor.run_with(move |index| LoopRecorder { index, served: recorder.clone() }));
    let mut clients = Vec::new();
    let mut refused = 0;
    for _ in 0..32 {
        match tether::connect(&url).await {
            Ok(ws) => clients.push(ws),
            Err(error) => {
                assert_eq!(error.http_status(), Some(503), "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!((clients.len(), refused), (24, 8), "the cap counts every loop's connections");
    assert_eq!(hub.count(), 24, "one hub for both loops");
    for ws in &mut clients {
        ws.send("which loop?").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("which loop?")));
    }
    let served = served.lock().unwrap().clone();
    let second = served.iter().filter(|&&index| index == 1).count();
    println!("loop 0 served {}, loop 1 served {second}", served.len() - second);
    assert!(second > 0 && second < served.len(), "the kernel spread the connections: {served:?}");
    // A broadcast from the hub reaches the clients of both loops.
    hub.broadcast(&Message::from("to all"));
    for ws in &mut clients {
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("to all")));
    }
    handle.shutdown();
    for ws in &mut clients {
        assert!(matches!(ws.recv().await, Ok(None)));
        assert_eq!(ws.close_frame().map(|frame| frame.code), Some(CloseCode::GOING_AWAY));
    }
    thread.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_past_the_connection_cap_is_closed_not_answered_in_plain_text() {
    let cert = tether_test_support::TestCert::new();
    let client = ClientConfig::default().trust(tether::TrustRoots::CaFile(cert.ca_path().to_owned()));
    for engine in ENGINES {
        let mut config = ServerConfig::default();
        config.tls = Some(tether::tls::server_config_from_pem(cert.cert_path(), cert.key_path()).unwrap());
        config.max_connections = Some(1);
        let server = start(engine, config, echo()).await;
        let first = tether::connect_with(&server.wss_url(), &client).await.unwrap();
        let refused = tether::connect_with(&server.wss_url(), &client).await.expect_err("past the cap");
        // A plain-text 503 is unreadable to a TLS client, which would then
        // blame the server for speaking ws:// on a wss:// port.
        let said = format!("{refused:#}");
        assert!(!said.contains("plain text"), "{engine:?}: {said}");
        drop(first);
    }
}

/// A server configuration serving wss:// with `cert`.
fn wss_config(cert: &tether_test_support::TestCert) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.tls = Some(tether::tls::server_config_from_pem(cert.cert_path(), cert.key_path()).unwrap());
    config
}

/// The client's TLS configuration is built once and kept (with its session
/// cache), so a reconnection resumes its TLS session: one round trip, no
/// certificate chain sent or checked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_reconnection_resumes_its_tls_session_on_every_engine() {
    let cert = tether_test_support::TestCert::new();
    let client = ClientConfig::default().trust(tether::TrustRoots::CaFile(cert.ca_path().to_owned()));
    for engine in ENGINES {
        let server = start(engine, wss_config(&cert), echo()).await;
        let handshake = |ws: &tether::WebSocket| match ws.get_ref() {
            tether::MaybeTlsStream::ClientTls(tls) => tls.get_ref().1.handshake_kind(),
            other => panic!("not TLS: {other:?}"),
        };
        let mut first = tether::connect_with(&server.wss_url(), &client).await.unwrap();
        // The session ticket comes after the handshake, with the first data.
        first.send("hello").await.unwrap();
        assert_eq!(first.recv().await.unwrap(), Some(Message::from("hello")));
        first.close(CloseCode::NORMAL, "").await.unwrap();
        let second = tether::connect_with(&server.wss_url(), &client).await.unwrap();
        assert_eq!(handshake(&second), Some(rustls::HandshakeKind::Resumed), "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_is_served_by_every_engine_and_plain_text_on_its_port_is_answered_in_plain_text() {
    let cert = tether_test_support::TestCert::new();
    let client = ClientConfig::default().trust(tether::TrustRoots::CaFile(cert.ca_path().to_owned()));
    for engine in ENGINES {
        let server = start(engine, wss_config(&cert), echo()).await;
        let mut ws = tether::connect_with(&server.wss_url(), &client).await.unwrap();
        for message in [Message::from("secret"), Message::from(vec![9u8; 3 << 20]), Message::from("x".repeat(70_000))] {
            ws.send(message.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(message), "{engine:?}");
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let (answer, took) = answer_to(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("wss://"), "{engine:?}: {answer:?}");
        assert!(took < Duration::from_secs(1), "{engine:?}: {took:?}");
    }
}
