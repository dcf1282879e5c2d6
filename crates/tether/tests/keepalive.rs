//! Keepalive against real faults on loopback: a peer process frozen with
//! SIGSTOP, a forwarder that goes silent without closing (a half-open
//! connection), a peer that stops reading while we send. Each is detected
//! within `ping_interval + ping_timeout` (+10 %) with the reason reported,
//! and live peers we did not write answer our pings.

use std::time::{Duration, Instant};

use tether::proto::Timeout;
use tether::{ClientConfig, CloseCode, Config, Message, Server, ServerConfig, WebSocket};
use tether_test_support::{self as support, Peer};
use tokio::sync::mpsc;

const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(2);
/// `ping_interval + ping_timeout`, plus 10 %.
const DETECTION_BOUND: Duration = Duration::from_millis(4_400);
const START: Duration = Duration::from_secs(15);

fn keepalive() -> Config {
    Config::default().with_keepalive(Some(INTERVAL), Some(TIMEOUT))
}

fn client_config() -> ClientConfig {
    ClientConfig::default().protocol_config(keepalive())
}

/// Reads until the connection ends; returns the error and when it came.
async fn read_until_failure(ws: &mut WebSocket) -> (tether::Error, Instant) {
    loop {
        match ws.recv().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the connection ended cleanly; a failure was expected"),
            Err(error) => return (error, Instant::now()),
        }
    }
}

fn assert_keepalive_failure(error: &tether::Error, elapsed: Duration) {
    assert_eq!(error.timeout(), Some(Timeout::Ping), "{error}");
    assert_eq!(error.close_code(), Some(CloseCode::INTERNAL_ERROR));
    assert!(error.to_string().contains("keepalive ping timeout"), "{error}");
    assert!(!error.is_io() && !error.is_protocol() && !error.is_closed(), "distinct from other endings: {error}");
    assert!(elapsed <= DETECTION_BOUND, "detected after {elapsed:?}, bound {DETECTION_BOUND:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_process_is_detected_within_interval_plus_timeout() {
    let mut server = support::python_echo_server(0);
    let url = format!("ws://127.0.0.1:{}/", server.port());
    let mut ws = tether::connect_with(&url, &client_config()).await.unwrap();
    ws.send("before").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("before")));

    server.freeze();
    let frozen_at = Instant::now();
    let (error, at) = read_until_failure(&mut ws).await;
    let elapsed = at - frozen_at;
    println!("frozen server detected after {elapsed:?}: {error}");
    assert_keepalive_failure(&error, elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_peers_answer_our_pings_and_the_round_trip_is_measured() {
    for script in ["py_websockets_server.py", "node_ws_server.js"] {
        let command = if script.ends_with(".py") { support::python_peer(script) } else { support::node_peer(script) };
        let server = Peer::server(command, START).unwrap();
        let url = format!("ws://127.0.0.1:{}/", server.port());
        let config = ClientConfig::default().keepalive(Some(Duration::from_millis(200)), Some(TIMEOUT));
        let mut ws = tether::connect_with(&url, &config).await.unwrap();
        // Two seconds of quiet: about ten pings, each answered.
        let quiet = tokio::time::timeout(Duration::from_secs(2), ws.recv()).await;
        assert!(quiet.is_err(), "{script}: the connection must stay open and quiet, got {quiet:?}");
        let rtt = ws.round_trip().unwrap_or_else(|| panic!("{script}: no pong measured"));
        println!("{script}: round trip last {:?}, smoothed {:?}", rtt.last, rtt.smoothed);
        assert!(rtt.smoothed < Duration::from_millis(500), "{script}: {rtt:?}");
        ws.send("still here").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("still here")));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

/// A tether echo server on a free port whose handlers report how each
/// connection ended.
async fn reporting_server(config: Config) -> (u16, mpsc::UnboundedReceiver<(Result<(), tether::Error>, Instant)>) {
    let mut server_config = ServerConfig::default();
    server_config.protocol = config;
    let server = Server::bind("127.0.0.1:0", server_config).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let report = report.clone();
        async move {
            let ending = loop {
                match ws.recv().await {
                    Ok(Some(message)) => {
                        if let Err(error) = ws.send(message).await {
                            break Err(error);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
            };
            let _ = report.send((ending, Instant::now()));
        }
    }));
    (port, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_client_process_is_detected_by_the_server() {
    let (port, mut reports) = reporting_server(keepalive()).await;
    let mut client = Peer::spawn({
        let mut command = support::python_peer("py_quiet_client.py");
        command.arg(format!("ws://127.0.0.1:{port}/"));
        command
    })
    .unwrap();
    client.wait_line("CONNECTED", START).unwrap();
    // Live, it answers the server's pings: nothing ends for a while.
    let early = tokio::time::timeout(INTERVAL * 2, reports.recv()).await;
    assert!(early.is_err(), "a live client must not be dropped: {early:?}");

    client.freeze();
    let frozen_at = Instant::now();
    let (ending, at) = tokio::time::timeout(DETECTION_BOUND * 2, reports.recv()).await.unwrap().unwrap();
    let error = ending.expect_err("the server must fail the connection");
    println!("frozen client detected after {:?}: {error}", at - frozen_at);
    assert_keepalive_failure(&error, at - frozen_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_by_both_ends() {
    let (port, mut reports) = reporting_server(keepalive()).await;
    let proxy = support::stall_proxy(port);
    let url = format!("ws://127.0.0.1:{}/", proxy.port());
    let mut ws = tether::connect_with(&url, &client_config()).await.unwrap();
    ws.send("through the proxy").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("through the proxy")));

    proxy.signal_usr1();
    let stalled_at = Instant::now();
    let (client_error, client_at) = read_until_failure(&mut ws).await;
    let (ending, server_at) = tokio::time::timeout(DETECTION_BOUND * 2, reports.recv()).await.unwrap().unwrap();
    let server_error = ending.expect_err("the server must fail the connection");
    println!(
        "half-open detected by the client after {:?}, by the server after {:?}",
        client_at - stalled_at,
        server_at - stalled_at
    );
    assert_keepalive_failure(&client_error, client_at - stalled_at);
    assert_keepalive_failure(&server_error, server_at - stalled_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_blocked_on_a_peer_that_stopped_reading_ends_with_the_keepalive_timeout() {
    // The server's handler never reads: its kernel buffers fill, our send
    // blocks, and no pong can come back. The send must not wait forever.
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(server.serve(|ws: WebSocket| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(ws);
    }));
    let mut ws = tether::connect_with(&format!("ws://127.0.0.1:{port}/"), &client_config()).await.unwrap();
    let started = Instant::now();
    let payload = Message::from(vec![0x5a; 1 << 20]);
    let error = loop {
        if let Err(error) = ws.send_uncompressed(payload.clone()).await {
            break error;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the send never failed");
    };
    let elapsed = started.elapsed();
    println!("send to a peer that stopped reading failed after {elapsed:?}: {error}");
    assert_eq!(error.timeout(), Some(Timeout::Ping), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_keepalive_is_refused_before_connecting() {
    let config = ClientConfig::default().keepalive(None, Some(Duration::from_secs(5)));
    // Nothing listens on this port: a refusal here proves nothing was tried.
    let error = tether::connect_with("ws://127.0.0.1:9/", &config).await.unwrap_err();
    assert!(error.is_config(), "{error}");
    assert!(error.to_string().contains("ping_interval is None"), "{error}");

    let mut bad = ServerConfig::default();
    bad.protocol.ping_interval = Some(Duration::ZERO);
    let error = Server::bind("127.0.0.1:0", bad).await.err().expect("refused");
    assert!(error.to_string().contains("ping_interval is zero"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_connection_is_closed_with_1001_and_the_client_told_why() {
    let config = Config::default().with_keepalive(None, None).with_idle_timeout(Some(Duration::from_millis(600)));
    let (port, mut reports) = reporting_server(config).await;
    let mut ws = tether::connect(&format!("ws://127.0.0.1:{port}/")).await.unwrap();
    ws.send("one message").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("one message")));
    let quiet_from = Instant::now();
    assert_eq!(ws.recv().await.unwrap(), None, "a clean closing handshake");
    let frame = ws.close_frame().expect("the server's close frame").clone();
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::GOING_AWAY, "idle timeout"));
    assert!(quiet_from.elapsed() >= Duration::from_millis(550), "not before the limit: {:?}", quiet_from.elapsed());
    let (ending, _) = reports.recv().await.unwrap();
    assert_eq!(ending.unwrap_err().timeout(), Some(Timeout::Idle));
}

// RELIABILITY 21 (a large message over a slow link) runs against both
// servers in `servers.rs`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_at_50_ms_closes_a_dead_peer_within_150_ms_and_reconnection_starts() {
    // RELIABILITY 19. A stalled forwarder drops everything both ways.
    let (port, _reports) = reporting_server(Config::default().with_keepalive(None, None)).await;
    let proxy = support::stall_proxy(port);
    let (events, mut seen) = mpsc::unbounded_channel();
    let reconnecting = events.clone();
    let app = tether::App::new(format!("ws://127.0.0.1:{}/", proxy.port()))
        .keepalive(Some(Duration::from_millis(50)), Some(Duration::from_millis(50)))
        .reconnect(tether::Reconnect::default())
        .on_open(move |_| {
            let _ = events.send(("open".to_owned(), Instant::now()));
        })
        .on_reconnect(move |_, next| {
            let cause = match next.cause {
                tether::app::Cause::Failed(error) => format!("{:?}", error.timeout()),
                tether::app::Cause::ServerClosed(frame) => format!("{frame:?}"),
            };
            let _ = reconnecting.send((cause, Instant::now()));
        });
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    assert_eq!(seen.recv().await.unwrap().0, "open");
    tokio::time::sleep(Duration::from_millis(200)).await; // a few pings answered
    proxy.signal_usr1();
    let stalled_at = Instant::now();
    let (cause, at) = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
    let elapsed = at - stalled_at;
    println!("50 ms keepalive: dead peer noticed after {elapsed:?}, reconnecting");
    assert_eq!(cause, "Some(Ping)");
    assert!(elapsed <= Duration::from_millis(150), "{elapsed:?}");
    handle.close();
    let _ = runner.await;

    // Without a pong timeout, the same silence keeps the connection open.
    let proxy = support::stall_proxy(port);
    let config = ClientConfig::default().keepalive(Some(Duration::from_millis(50)), None);
    let mut ws = tether::connect_with(&format!("ws://127.0.0.1:{}/", proxy.port()), &config).await.unwrap();
    proxy.signal_usr1();
    let quiet = tokio::time::timeout(Duration::from_millis(500), ws.recv()).await;
    assert!(quiet.is_err(), "ping_timeout=None keeps the connection open: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_peer_that_never_reads_is_bounded_and_closed_by_keepalive() {
    // RELIABILITY 18: 100,000 pings, never reading our pongs. Pongs stop
    // piling up once the socket is full, and the connection is closed by
    // the keepalive (our pings go unanswered): it acts as the write timeout.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let quick = Config::default().with_keepalive(Some(Duration::from_millis(300)), Some(Duration::from_millis(300)));
    let (port, mut reports) = reporting_server(quick).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    // A masked ping with a 100-byte payload (mask of zeros keeps it plain).
    let mut ping = vec![0x89, 0x80 | 100, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 100]);
    let flood: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if tcp.write_all(&flood).await.is_err() {
                break;
            }
        }
        tcp // kept open, never read
    });
    let (ending, at) = tokio::time::timeout(Duration::from_secs(20), reports.recv()).await.unwrap().unwrap();
    let error = ending.expect_err("the server must close the flooding peer");
    println!("ping flood closed after {:?}: {error}", at - started);
    assert_eq!(error.timeout(), Some(Timeout::Ping), "{error}");
    writer.abort();
}
