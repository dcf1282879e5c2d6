//! Interop with real third-party WebSocket peers (`tests/peers`, installed
//! by `scripts/install-deps.sh`), over `ws://` and `wss://`, both ways:
//!
//! - tether **server** (in-process, echoing) ← Python `websockets`,
//!   `websocket-client` (both of its APIs), Node `ws`, headless Chromium;
//! - tether **client** → Python `websockets` and Node `ws` echo servers.
//!
//! Every run is the matrix of `tests/peers/README.md`: a text and a binary
//! message of 0 B, 125 B, 126 B, 64 KiB and 16 MiB, each echoed and compared
//! by type and bytes, then a clean 1000 close. A missing peer fails the test.

use std::process::Command;
use std::time::{Duration, Instant};

use tether::reactor::{Conn, ConnId, Reactor, Service};
use tether::{ClientConfig, CloseCode, Config, DeflateConfig, Message, Server, ServerConfig, TrustRoots, WebSocket};
use tether_test_support::{self as support, Peer, TestCert};
use tokio::sync::mpsc;

/// The message sizes of the matrix; each is sent as text and as binary.
const SIZES: [usize; 5] = [0, 125, 126, 64 << 10, 16 << 20];
/// Message limit of tether in these tests (the peers allow 64 MiB).
const MAX_MESSAGE: usize = 32 << 20;
/// The peer scripts' own watchdog (`--timeout`).
const PEER_WATCHDOG_SECS: u32 = 40;
/// How long a client script may run before it is killed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a peer server gets to print `LISTENING <port>`.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// The hard limit of one test, hang or not.
const TEST_TIMEOUT: Duration = Duration::from_secs(50);
/// How long one echo may take in the tether client's matrix (a 16 MiB
/// text echo through a deflate peer takes 3-16 s in a debug build,
/// depending on the load; this is only there to name the message that hangs).
const ECHO_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Ws,
    Wss,
}

impl Transport {
    fn scheme(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// Runs `test` under [`TEST_TIMEOUT`], so a hang fails instead of blocking.
async fn within_limit(what: &str, test: impl std::future::Future<Output = ()>) {
    let started = Instant::now();
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        panic!("{what}: did not finish within {TEST_TIMEOUT:?}");
    }
    eprintln!("{what}: passed in {:.1} s", started.elapsed().as_secs_f64());
}

// ---- tether server ← peer clients --------------------------------------------

/// The client peers, each run against a tether echo server.
#[derive(Clone, Copy, Debug)]
enum PeerClient {
    /// Python `websockets` 15, asyncio API.
    PythonWebsockets,
    /// Python `websocket-client`, blocking `create_connection`.
    WebsocketClientCreateConnection,
    /// Python `websocket-client`, callback `WebSocketApp`.
    WebsocketClientApp,
    /// Node `ws` 8.
    NodeWs,
    /// Headless Chromium's native `WebSocket`.
    Chromium,
}

impl PeerClient {
    fn command(self) -> Command {
        match self {
            PeerClient::PythonWebsockets => support::python_peer("py_websockets_client.py"),
            PeerClient::WebsocketClientCreateConnection => {
                let mut command = support::python_peer("py_websocket_client.py");
                command.args(["--mode", "create_connection"]);
                command
            }
            PeerClient::WebsocketClientApp => {
                let mut command = support::python_peer("py_websocket_client.py");
                command.args(["--mode", "app"]);
                command
            }
            PeerClient::NodeWs => support::node_peer("node_ws_client.js"),
            PeerClient::Chromium => {
                let mut command = support::python_peer("chromium_client.py");
                command.arg("--chromium").arg(support::chromium());
                command
            }
        }
    }

    /// Whether the client offers permessage-deflate (so tether must accept it).
    fn offers_deflate(self) -> bool {
        !matches!(self, PeerClient::WebsocketClientCreateConnection | PeerClient::WebsocketClientApp)
    }
}

/// What the tether server's echo handler saw on one connection.
#[derive(Debug)]
struct ServerReport {
    compressed: bool,
    extensions_offered: Option<String>,
    messages: usize,
    outcome: Result<(), String>,
    close: Option<tether::CloseFrame>,
}

/// Echoes every message back with its type until the connection ends.
async fn echo(mut ws: WebSocket, reports: mpsc::UnboundedSender<ServerReport>) {
    let compressed = ws.connection().is_compressed();
    let extensions_offered =
        ws.request().and_then(|request| request.headers.get_str("sec-websocket-extensions")).map(str::to_owned);
    let mut messages = 0;
    let outcome = loop {
        match ws.recv().await {
            Ok(Some(message)) => {
                messages += 1;
                if let Err(error) = ws.send(message).await {
                    break Err(format!("send: {error}"));
                }
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(format!("recv: {error}")),
        }
    };
    let close = ws.close_frame().cloned();
    let _ = reports.send(ServerReport { compressed, extensions_offered, messages, outcome, close });
}

/// The reactor's echo service, reporting each connection as `echo` does.
struct ReactorEcho {
    reports: mpsc::UnboundedSender<ServerReport>,
    /// Each open connection: compressed, messages so far.
    seen: std::collections::HashMap<ConnId, (bool, usize)>,
}

impl Service for ReactorEcho {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.seen.insert(conn.id(), (conn.connection().is_compressed(), 0));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        if let Some((_, messages)) = self.seen.get_mut(&conn.id()) {
            *messages += 1;
        }
        let _ = conn.send(&message);
    }

    fn on_close(&mut self, id: ConnId, code: Option<CloseCode>) {
        let (compressed, messages) = self.seen.remove(&id).unwrap_or_default();
        let outcome = if code == Some(CloseCode::NORMAL) { Ok(()) } else { Err(format!("ended with {code:?}")) };
        let close = code.map(|code| tether::CloseFrame::new(code, ""));
        let _ = self.reports.send(ServerReport { compressed, extensions_offered: None, messages, outcome, close });
    }
}

/// Which tether server a peer client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Tokio,
    Reactor,
}

async fn peer_client_echoes_through_tether_server(client: PeerClient, transport: Transport) {
    for engine in [Engine::Tokio, Engine::Reactor] {
        peer_client_echoes_through_engine(client, transport, engine).await;
    }
}

async fn peer_client_echoes_through_engine(client: PeerClient, transport: Transport, engine: Engine) {
    let what = format!("{client:?} -> tether server ({engine:?}) over {}", transport.scheme());
    within_limit(&what, async {
        let cert = TestCert::new();
        let mut config = ServerConfig::default();
        config.protocol = Config::default().with_max_message_size(MAX_MESSAGE);
        if transport == Transport::Wss {
            config.tls =
                Some(tether::tls::server_config_from_pem(cert.cert_path(), cert.key_path()).expect("TLS config"));
        }
        let (report_tx, mut reports) = mpsc::unbounded_channel();
        let (port, stop): (u16, Box<dyn FnOnce() + Send>) = match engine {
            Engine::Tokio => {
                let server = Server::bind("127.0.0.1:0", config).await.expect("bind");
                let port = server.local_addr().expect("local_addr").port();
                let serving = tokio::spawn(server.serve(move |ws| echo(ws, report_tx.clone())));
                (port, Box::new(move || serving.abort()))
            }
            Engine::Reactor => {
                let reactor = Reactor::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind");
                let port = reactor.local_addr().expect("local_addr").port();
                let handle = reactor.handle();
                let service = ReactorEcho { reports: report_tx, seen: Default::default() };
                let running = std::thread::spawn(move || reactor.run(service));
                (
                    port,
                    Box::new(move || {
                        handle.shutdown();
                        let _ = running.join();
                    }),
                )
            }
        };
        let mut command = client.command();
        command.arg(format!("{}://127.0.0.1:{port}/", transport.scheme()));
        command.args(["--timeout", &PEER_WATCHDOG_SECS.to_string()]);
        if transport == Transport::Wss {
            command.arg("--cafile").arg(cert.ca_path());
        }
        let output = tokio::task::spawn_blocking(move || support::run_client(command, CLIENT_TIMEOUT))
            .await
            .expect("client thread")
            .unwrap_or_else(|error| panic!("{what}: client failed:\n{error}"));
        assert!(output.stdout.starts_with("OK 10 messages"), "{what}: unexpected client output {:?}", output.stdout);

        let report = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: the server handler never finished"))
            .expect("report channel");
        stop();
        assert_eq!(report.outcome, Ok(()), "{what}: server side failed ({report:?})");
        assert_eq!(report.messages, 10, "{what}: server echoed {} messages", report.messages);
        let close_code = report.close.as_ref().map(|frame| frame.code);
        assert_eq!(close_code, Some(CloseCode::NORMAL), "{what}: client's close frame");
        assert_eq!(
            report.compressed,
            client.offers_deflate(),
            "{what}: permessage-deflate negotiated = {} (client offered {:?})",
            report.compressed,
            report.extensions_offered
        );
    })
    .await;
}

// ---- tether client → peer servers ---------------------------------------------

/// The server peers, each echoing for a tether client.
#[derive(Clone, Copy, Debug)]
enum PeerServer {
    /// Python `websockets` 15, asyncio API, `compression="deflate"`.
    PythonWebsockets,
    /// Node `ws` 8, `perMessageDeflate: true`.
    NodeWs,
}

impl PeerServer {
    fn command(self) -> Command {
        match self {
            PeerServer::PythonWebsockets => support::python_peer("py_websockets_server.py"),
            PeerServer::NodeWs => support::node_peer("node_ws_server.js"),
        }
    }
}

async fn tether_client_echoes_through_peer_server(server: PeerServer, transport: Transport) {
    let what = format!("tether client -> {server:?} over {}", transport.scheme());
    within_limit(&what, async {
        let cert = TestCert::new();
        let mut command = server.command();
        command.args(["--host", "127.0.0.1", "--port", "0"]);
        if transport == Transport::Wss {
            command.arg("--cert").arg(cert.cert_path()).arg("--key").arg(cert.key_path());
        }
        let mut peer = tokio::task::spawn_blocking(move || Peer::server(command, SERVER_START_TIMEOUT))
            .await
            .expect("server thread")
            .unwrap_or_else(|error| panic!("{what}: server did not start:\n{error}"));
        let url = format!("{}://127.0.0.1:{}/", transport.scheme(), peer.port());

        // Every message compressed, the empty ones too: two empty messages
        // in a row once left the second with an empty payload, which a
        // peer's inflater reads as the start of a stored block.
        let mut deflate = DeflateConfig::default();
        deflate.min_size = 0;
        let config = ClientConfig::default()
            .protocol_config(Config::default().with_max_message_size(MAX_MESSAGE).with_deflate(Some(deflate)))
            .trust(TrustRoots::CaFile(cert.ca_path().to_owned()));
        let result = run_matrix(&url, &config).await;
        if let Err(error) = result {
            panic!("{what}: {error}\n{}", peer.error("server log"));
        }
        tokio::task::spawn_blocking(move || peer.stop()).await.expect("stop thread");
    })
    .await;
}

/// The tether client's side of the matrix: connect, check that
/// permessage-deflate was negotiated, echo every message, close cleanly.
async fn run_matrix(url: &str, config: &ClientConfig) -> Result<(), String> {
    let mut ws = tether::connect_with(url, config).await.map_err(|error| format!("connect {url}: {error}"))?;
    if !ws.connection().is_compressed() {
        let answer = ws.response().and_then(|response| response.headers.get_str("sec-websocket-extensions"));
        return Err(format!("permessage-deflate was not negotiated (server answered {answer:?})"));
    }
    for size in SIZES {
        for message in [Message::from(text_payload(size)), Message::from(binary_payload(size))] {
            let label = format!("{}/{size}", if message.is_text() { "text" } else { "binary" });
            let started = Instant::now();
            ws.send(message.clone()).await.map_err(|error| format!("{label}: send: {error}"))?;
            let echoed = tokio::time::timeout(ECHO_TIMEOUT, ws.recv())
                .await
                .map_err(|_| format!("{label}: no echo within {ECHO_TIMEOUT:?}"))?
                .map_err(|error| format!("{label}: recv: {error}"))?
                .ok_or_else(|| format!("{label}: connection closed instead of echoing"))?;
            compare(&message, &echoed).map_err(|mismatch| format!("{label}: {mismatch}"))?;
            eprintln!("  {label}: echoed in {:.3} s", started.elapsed().as_secs_f64());
        }
    }
    ws.close(CloseCode::NORMAL, "").await.map_err(|error| format!("close: {error}"))?;
    match ws.close_frame() {
        Some(frame) if frame.code == CloseCode::NORMAL => {}
        other => return Err(format!("server's close frame: expected 1000, got {other:?}")),
    }
    match ws.recv().await {
        Ok(None) => Ok(()),
        other => Err(format!("recv after close: expected Ok(None), got {other:?}")),
    }
}

/// Compares by type and bytes, describing the first difference (never
/// printing a 16 MiB payload).
fn compare(sent: &Message, echoed: &Message) -> Result<(), String> {
    let kind = |message: &Message| if message.is_text() { "text" } else { "binary" };
    if sent.is_text() != echoed.is_text() {
        return Err(format!("sent {}, echoed as {}", kind(sent), kind(echoed)));
    }
    let (sent, echoed) = (sent.as_bytes(), echoed.as_bytes());
    if sent == echoed {
        return Ok(());
    }
    if sent.len() != echoed.len() {
        return Err(format!("sent {} bytes, echoed {}", sent.len(), echoed.len()));
    }
    match sent.iter().zip(echoed).position(|(a, b)| a != b) {
        Some(at) => Err(format!("byte {at} differs: sent {:#04x}, echoed {:#04x}", sent[at], echoed[at])),
        None => Ok(()),
    }
}

// ---- payloads -------------------------------------------------------------------

/// A deterministic xorshift64 stream, seeded per payload.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text of exactly `size` UTF-8 bytes, with 2-, 3- and 4-byte characters
/// whenever `size` allows, padded with ASCII.
fn text_payload(size: usize) -> String {
    const TOKENS: &[&str] = &[
        "a",
        "b",
        "c",
        "x",
        "y",
        "z",
        "0",
        "7",
        " ",
        ".",
        "é",
        "ß",
        "Ω",
        "д",
        "€",
        "中",
        "✓",
        "あ",
        "😀",
        "🦀",
        "𝄞",
        "tether ",
        "websocket ",
        "permessage-deflate ",
        "\n",
    ];
    let mut text = String::with_capacity(size + 32);
    if size >= 9 {
        text.push_str("é€🦀");
    }
    let mut rng = XorShift::new(size as u64);
    while text.len() < size {
        text.push_str(TOKENS[(rng.next() % TOKENS.len() as u64) as usize]);
    }
    let mut cut = size;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// `size` bytes alternating 4 KiB of pseudo-random bytes and 4 KiB of a
/// repeated pattern, so deflate both stores and compresses.
fn binary_payload(size: usize) -> Vec<u8> {
    let mut rng = XorShift::new(!(size as u64));
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        let block = (size - data.len()).min(4096);
        if (data.len() / 4096) % 2 == 0 {
            data.extend((0..block).map(|_| rng.next().to_le_bytes()[0]));
        } else {
            data.extend((0..block).map(|i| b"tether-binary-pattern\x00\xff"[i % 23]));
        }
    }
    data
}

#[test]
fn payloads_have_the_exact_sizes_and_multibyte_text() {
    for size in SIZES {
        let text = text_payload(size);
        assert_eq!(text.len(), size);
        assert_eq!(binary_payload(size).len(), size);
        if size >= 9 {
            assert!(text.chars().any(|c| c.len_utf8() == 2));
            assert!(text.chars().any(|c| c.len_utf8() == 3));
            assert!(text.chars().any(|c| c.len_utf8() == 4));
        }
    }
}

// ---- the tests ------------------------------------------------------------------

/// One `#[tokio::test]` per row: `name => runner(peer, transport);`.
macro_rules! interop_tests {
    ($($name:ident => $runner:ident($peer:expr, $transport:ident);)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $runner($peer, Transport::$transport).await;
            }
        )*
    };
}

interop_tests! {
    python_websockets_client_echoes_through_tether_server_over_ws =>
        peer_client_echoes_through_tether_server(PeerClient::PythonWebsockets, Ws);
    python_websockets_client_echoes_through_tether_server_over_wss =>
        peer_client_echoes_through_tether_server(PeerClient::PythonWebsockets, Wss);
    websocket_client_create_connection_echoes_through_tether_server_over_ws =>
        peer_client_echoes_through_tether_server(PeerClient::WebsocketClientCreateConnection, Ws);
    websocket_client_create_connection_echoes_through_tether_server_over_wss =>
        peer_client_echoes_through_tether_server(PeerClient::WebsocketClientCreateConnection, Wss);
    websocket_client_app_echoes_through_tether_server_over_ws =>
        peer_client_echoes_through_tether_server(PeerClient::WebsocketClientApp, Ws);
    websocket_client_app_echoes_through_tether_server_over_wss =>
        peer_client_echoes_through_tether_server(PeerClient::WebsocketClientApp, Wss);
    node_ws_client_echoes_through_tether_server_over_ws =>
        peer_client_echoes_through_tether_server(PeerClient::NodeWs, Ws);
    node_ws_client_echoes_through_tether_server_over_wss =>
        peer_client_echoes_through_tether_server(PeerClient::NodeWs, Wss);
    chromium_echoes_through_tether_server_over_ws =>
        peer_client_echoes_through_tether_server(PeerClient::Chromium, Ws);
    chromium_echoes_through_tether_server_over_wss =>
        peer_client_echoes_through_tether_server(PeerClient::Chromium, Wss);

    tether_client_echoes_through_python_websockets_server_over_ws =>
        tether_client_echoes_through_peer_server(PeerServer::PythonWebsockets, Ws);
    tether_client_echoes_through_python_websockets_server_over_wss =>
        tether_client_echoes_through_peer_server(PeerServer::PythonWebsockets, Wss);
    tether_client_echoes_through_node_ws_server_over_ws =>
        tether_client_echoes_through_peer_server(PeerServer::NodeWs, Ws);
    tether_client_echoes_through_node_ws_server_over_wss =>
        tether_client_echoes_through_peer_server(PeerServer::NodeWs, Wss);
}
