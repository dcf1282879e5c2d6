//! The blocking client (`websocket-client`'s `create_connection`): no
//! async runtime on the client side, against real peers; receive limits,
//! keepalive, the open and close timeouts, TLS and proxies.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tether::blocking;
use tether::proto::Timeout;
use tether::proxy::Proxy;
use tether::{ClientConfig, CloseCode, Config, Message, Server, ServerConfig, TrustRoots, WebSocket};
use tether_test_support::{self as support, Peer, TestCert};

/// A tether server on a runtime of its own thread; the tests' clients
/// stay free of any runtime.
fn tether_server<H, F>(config: ServerConfig, handler: H) -> (tokio::runtime::Runtime, SocketAddr)
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = runtime.block_on(Server::bind("127.0.0.1:0", config)).unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.serve(handler));
    (runtime, addr)
}

async fn echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

fn python_echo() -> Peer {
    support::python_echo_server(0)
}

#[test]
fn create_connection_send_recv_close_against_python_websockets() {
    let server = python_echo();
    let ws = blocking::connect(&format!("ws://127.0.0.1:{}/", server.port())).unwrap();
    assert!(ws.is_compressed(), "permessage-deflate with websockets");
    for message in
        [Message::from("Hello, World"), Message::from(vec![0u8, 1, 2, 255]), Message::from(vec![b'x'; 1 << 20])]
    {
        ws.send(message.clone()).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(message));
    }
    ws.close(CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(ws.close_frame().map(|frame| frame.code), Some(CloseCode::NORMAL));
    assert_eq!(ws.recv().unwrap(), None, "after a clean close, None");
    assert!(ws.send("late").unwrap_err().is_closed());
}

#[test]
fn a_receive_limit_passes_without_harming_the_connection() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), echo);
    let ws = blocking::connect(&format!("ws://{addr}/")).unwrap();
    let started = Instant::now();
    let error = ws.recv_timeout(Duration::from_millis(200)).unwrap_err();
    assert_eq!(error.timeout(), Some(Timeout::Receive), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(190));
    ws.set_timeout(Some(Duration::from_secs(5)));
    ws.send("still open").unwrap();
    assert_eq!(ws.recv().unwrap(), Some(Message::from("still open")));
    ws.close(CloseCode::NORMAL, "").unwrap();
}

/// A wss:// server with a certificate of a private CA, and a client
/// configuration that trusts that CA.
fn tls_server<H, F>(handler: H) -> (TestCert, tokio::runtime::Runtime, SocketAddr, ClientConfig)
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let cert = TestCert::new();
    let mut config = ServerConfig::default();
    config.tls = Some(tether::tls::server_config_from_pem(cert.cert_path(), cert.key_path()).unwrap());
    let (runtime, addr) = tether_server(config, handler);
    let client = ClientConfig::default().trust(TrustRoots::CaFile(cert.ca_path().to_owned()));
    (cert, runtime, addr, client)
}

#[test]
fn wss_with_a_private_ca() {
    let (_cert, _runtime, addr, client) = tls_server(echo);
    let ws = blocking::connect_with(&format!("wss://localhost:{}/", addr.port()), &client).unwrap();
    ws.send("secret").unwrap();
    assert_eq!(ws.recv().unwrap(), Some(Message::from("secret")));
    ws.close(CloseCode::NORMAL, "").unwrap();

    let untrusted = blocking::connect(&format!("wss://localhost:{}/", addr.port())).unwrap_err();
    assert!(untrusted.is_tls(), "{untrusted}");
}

#[test]
fn keepalive_runs_inside_recv_and_detects_a_frozen_server() {
    let mut server = python_echo();
    let config = ClientConfig::default().keepalive(Some(Duration::from_secs(1)), Some(Duration::from_secs(1)));
    let ws = blocking::connect_with(&format!("ws://127.0.0.1:{}/", server.port()), &config).unwrap();
    // Live: two seconds of pings, answered, no message.
    assert_eq!(ws.recv_timeout(Duration::from_secs(2)).unwrap_err().timeout(), Some(Timeout::Receive));
    assert!(ws.round_trip().is_some(), "pongs were timed");
    server.freeze();
    let frozen_at = Instant::now();
    let error = ws.recv().unwrap_err();
    let elapsed = frozen_at.elapsed();
    println!("blocking client detected the frozen server after {elapsed:?}: {error}");
    assert_eq!(error.timeout(), Some(Timeout::Ping), "{error}");
    assert!(elapsed <= Duration::from_millis(2_200), "{elapsed:?}");
}

#[test]
fn close_gives_up_at_the_close_timeout_when_the_server_never_answers() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), |ws: WebSocket| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ws);
    });
    let protocol = Config::default().with_keepalive(None, None).with_close_timeout(Duration::from_millis(500));
    let config = ClientConfig::default().protocol_config(protocol);
    let ws = blocking::connect_with(&format!("ws://{addr}/"), &config).unwrap();
    let started = Instant::now();
    let error = ws.close(CloseCode::NORMAL, "").unwrap_err();
    assert_eq!(error.timeout(), Some(Timeout::Close), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn the_open_timeout_bounds_a_server_that_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ClientConfig::default().open_timeout(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let error = blocking::connect_with(&format!("ws://{addr}/"), &config).unwrap_err();
    assert_eq!(error.timeout(), Some(Timeout::Open), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(listener);
}

#[test]
fn through_a_socks5_proxy_with_a_password() {
    let mut command = support::python_peer("proxy.py");
    command.args(["--kind", "socks5", "--user", "alice", "--password", "s3cret"]);
    let proxy = Peer::server(command, Duration::from_secs(20)).unwrap();
    let (_runtime, addr) = tether_server(ServerConfig::default(), echo);
    let via = Proxy::parse(&format!("socks5h://alice:s3cret@127.0.0.1:{}", proxy.port())).unwrap();
    let ws = blocking::connect_with(&format!("ws://localhost:{}/", addr.port()), &ClientConfig::default().proxy(via))
        .unwrap();
    ws.send("via socks").unwrap();
    assert_eq!(ws.recv().unwrap(), Some(Message::from("via socks")));
    ws.close(CloseCode::NORMAL, "").unwrap();
}

// ---- threads: one waits in recv while others send and close ------------------------

/// Answers only after it is spoken to: a client's `recv` started first has
/// nothing to read until its own `send` (from another thread) gets out.
async fn answer_when_spoken_to(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(Message::from(format!("answer to {}", message.as_text().unwrap_or("?")))).await.is_err() {
            break;
        }
    }
}

/// Starts `recv` on its own thread; the result comes back on the channel.
fn recv_on_a_thread(ws: &Arc<blocking::WebSocket>) -> mpsc::Receiver<tether::Result<Option<Message>>> {
    let (results, received) = mpsc::channel();
    let ws = Arc::clone(ws);
    std::thread::spawn(move || {
        let _ = results.send(ws.recv());
    });
    // Let the thread get into its wait.
    std::thread::sleep(Duration::from_millis(100));
    received
}

fn send_while_another_thread_waits_in_recv(ws: blocking::WebSocket) {
    let ws = Arc::new(ws);
    let received = recv_on_a_thread(&ws);
    let started = Instant::now();
    ws.send("hello").unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "send waited {:?} for the receiver", started.elapsed());
    let answer = received.recv_timeout(Duration::from_secs(5)).expect("recv returns once answered");
    assert_eq!(answer.unwrap(), Some(Message::from("answer to hello")));
    ws.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn one_thread_sends_while_another_waits_in_recv() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), answer_when_spoken_to);
    send_while_another_thread_waits_in_recv(blocking::connect(&format!("ws://{addr}/")).unwrap());
}

#[test]
fn over_wss_one_thread_sends_while_another_waits_in_recv() {
    let (_cert, _runtime, addr, client) = tls_server(answer_when_spoken_to);
    let ws = blocking::connect_with(&format!("wss://localhost:{}/", addr.port()), &client).unwrap();
    send_while_another_thread_waits_in_recv(ws);
}

#[test]
fn many_threads_send_at_once_and_every_message_arrives_whole() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), echo);
    let ws = Arc::new(blocking::connect(&format!("ws://{addr}/")).unwrap());
    let senders: Vec<_> = (0..4u8)
        .map(|thread| {
            let ws = Arc::clone(&ws);
            std::thread::spawn(move || {
                for n in 0..50u8 {
                    // Large enough to be written in several pieces.
                    ws.send(Message::from(vec![thread * 64 + n % 64; 100_000])).unwrap();
                }
            })
        })
        .collect();
    let mut counts = [0usize; 4];
    for _ in 0..200 {
        let Some(Message::Binary(bytes)) = ws.recv().unwrap() else { panic!("a binary echo") };
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "a message interleaved with another");
        counts[usize::from(bytes[0] / 64)] += 1;
    }
    assert_eq!(counts, [50; 4]);
    for sender in senders {
        sender.join().unwrap();
    }
    ws.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn close_from_another_thread_ends_the_waiting_recv_cleanly() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), echo);
    let ws = Arc::new(blocking::connect(&format!("ws://{addr}/")).unwrap());
    let received = recv_on_a_thread(&ws);
    let started = Instant::now();
    ws.close(CloseCode::NORMAL, "bye").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "close took {:?}", started.elapsed());
    let result = received.recv_timeout(Duration::from_secs(5)).expect("recv returns");
    assert_eq!(result.unwrap(), None, "a clean end for the receiver");
    assert_eq!(ws.close_frame().map(|frame| frame.code), Some(CloseCode::NORMAL));
}

#[test]
fn close_gives_up_on_a_silent_server_even_while_another_thread_waits() {
    let mut server = python_echo();
    let config = ClientConfig::default().close_timeout(Duration::from_millis(500));
    let ws = Arc::new(blocking::connect_with(&format!("ws://127.0.0.1:{}/", server.port()), &config).unwrap());
    let received = recv_on_a_thread(&ws);
    server.freeze(); // no close reply will come
    let started = Instant::now();
    // Whether close itself reports the timeout or the receiver does, both
    // return within the close timeout (and a little).
    let _ = ws.close(CloseCode::NORMAL, "");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "close waited {elapsed:?}");
    let result = received.recv_timeout(Duration::from_secs(3)).expect("the waiting recv wakes");
    assert!(result.is_err(), "no close reply came: {result:?}");
    server.thaw();
}

#[test]
fn abort_wakes_a_thread_waiting_in_recv() {
    let (_runtime, addr) = tether_server(ServerConfig::default(), echo);
    let ws = Arc::new(blocking::connect(&format!("ws://{addr}/")).unwrap());
    let received = recv_on_a_thread(&ws);
    ws.abort();
    let result = received.recv_timeout(Duration::from_secs(5)).expect("recv wakes");
    assert!(result.is_err(), "no close handshake: {result:?}");
}

#[test]
fn a_frozen_server_ends_a_blocked_sender_and_a_waiting_receiver_together() {
    let mut server = python_echo();
    let config = ClientConfig::default().keepalive(Some(Duration::from_secs(1)), Some(Duration::from_secs(1)));
    let ws = Arc::new(blocking::connect_with(&format!("ws://127.0.0.1:{}/", server.port()), &config).unwrap());
    let received = recv_on_a_thread(&ws);
    server.freeze();
    // Incompressible megabytes (the server offered permessage-deflate):
    // the kernel's buffers fill and the sender blocks in write.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let sender = {
        let ws = Arc::clone(&ws);
        std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                if let Err(error) = ws.send(Message::from(noise.clone())) {
                    return (error, started.elapsed());
                }
                assert!(started.elapsed() < Duration::from_secs(30), "the sender never noticed");
            }
        })
    };
    let (error, took) = sender.join().unwrap();
    println!("the sender gave up after {took:?}: {error}");
    assert!(took < Duration::from_secs(10), "{took:?}: {error}");
    let result = received.recv_timeout(Duration::from_secs(10)).expect("the receiver returns too");
    assert!(result.is_err(), "{result:?}");
    server.thaw();
}
