//! The server's hub: an exact registry under churn, broadcast framed once
//! and delivered exactly once in order while slow subscribers stall,
//! overflow policies, topics, and closing everyone at shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::hub::{Hub, HubConfig, HubEvent, Overflow};
use tether::{ClientConfig, CloseCode, Config, Message, Server, ServerConfig, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server whose connections join `hub`; the handler subscribes to the
/// topics named in the query (`?topics=a,b`) and otherwise just reads.
async fn hub_server(hub: Hub, protocol: Config) -> String {
    let mut config = ServerConfig::default();
    config.protocol = protocol.with_deflate(None);
    config.hub = Some(hub);
    // A small kernel buffer: a stalled client fills it, and then its
    // mailbox, quickly (the default grows to megabytes on loopback).
    config.send_buffer = Some(16 << 10);
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let topics = ws.request().and_then(|r| r.query()).and_then(|q| q.strip_prefix("topics=")).map(str::to_owned);
        for topic in topics.iter().flat_map(|t| t.split(',')) {
            assert!(ws.subscribe(topic));
        }
        while let Ok(Some(_)) = ws.recv().await {}
    }));
    format!("ws://{addr}/")
}

async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

enum Leaving {
    /// With a close handshake.
    Clean,
    /// By dropping the socket, without a close frame.
    Abrupt,
}

/// A tether client whose task reads (and so answers the server's pings)
/// until `leave` turns true, then leaves as told. `recv` keeps its state in
/// the connection, so abandoning it in `select!` loses nothing.
fn attended_client(
    mut ws: WebSocket,
    mut leave: tokio::sync::watch::Receiver<bool>,
    how: Leaving,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = leave.wait_for(|leave| *leave) => break,
                message = ws.recv() => if !matches!(message, Ok(Some(_))) {
                    panic!("the server ended a client the test had not let go: {message:?}");
                },
            }
        }
        if let Leaving::Clean = how {
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }
    })
}

/// A client that answers the server's pings (masked pongs, echoing the
/// payload) until `freeze` turns true, then stops reading and answering
/// and hands its socket back: a process that freezes at a moment the test
/// chooses, so the keepalive cannot drop it before the test looks.
async fn freezable_client(
    url: &str,
    mut freeze: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<tokio::net::TcpStream> {
    let mut tcp = stalled_client(url).await;
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            tokio::select! {
                _ = freeze.wait_for(|frozen| *frozen) => return tcp,
                read = tcp.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return tcp,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                },
            }
            // Server frames are unmasked; the server only pings these
            // clients, with payloads under 126 bytes.
            while buffer.len() >= 2 && buffer.len() >= 2 + usize::from(buffer[1] & 0x7f) {
                let length = usize::from(buffer[1] & 0x7f);
                if buffer[0] == 0x89 {
                    let mut pong = vec![0x8a, 0x80 | length as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&buffer[2..2 + length]); // a zero mask key
                    if tcp.write_all(&pong).await.is_err() {
                        return tcp;
                    }
                }
                buffer.drain(..2 + length);
            }
        }
    })
}

/// A client that completes the handshake and then never reads or answers
/// (a frozen process, seen from the server), with a small receive buffer.
async fn stalled_client(url: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 512];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_exact_under_churn_and_ends_at_zero() {
    const CLIENTS: usize = 999;
    let hub = Hub::default();
    // Count joins and leaves as they happen (the channel keeps 1,024).
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let mut events = hub.events();
    let counter = counts.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let mut counts = counter.lock().unwrap();
            match event {
                HubEvent::Joined(_) => counts.0 += 1,
                HubEvent::Left(_) => counts.1 += 1,
            }
        }
    });
    let keepalive =
        Config::default().with_keepalive(Some(Duration::from_millis(300)), Some(Duration::from_millis(300)));
    let url = hub_server(hub.clone(), keepalive).await;
    let client = ClientConfig::default().keepalive(None, None);
    // Every client answers the server's pings until the test makes it
    // leave, so no checkpoint races the keepalive on a loaded machine.
    let (leave_clean, clean_signal) = tokio::sync::watch::channel(false);
    let (leave_abrupt, abrupt_signal) = tokio::sync::watch::channel(false);
    let mut clean = Vec::new();
    let mut abrupt = Vec::new();
    for _ in 0..CLIENTS / 3 {
        let ws = tether::connect_with(&url, &client).await.unwrap();
        clean.push(attended_client(ws, clean_signal.clone(), Leaving::Clean));
        let ws = tether::connect_with(&url, &client).await.unwrap();
        abrupt.push(attended_client(ws, abrupt_signal.clone(), Leaving::Abrupt));
    }
    let (freeze, frozen_signal) = tokio::sync::watch::channel(false);
    let mut freezable = Vec::new();
    for _ in 0..CLIENTS / 3 {
        freezable.push(freezable_client(&url, frozen_signal.clone()).await);
    }
    wait_for("all registered", Duration::from_secs(10), || hub.count() == CLIENTS).await;
    let listed = hub.list();
    assert_eq!(listed.len(), CLIENTS);
    assert!(listed.iter().all(|info| info.path == "/" && info.peer.is_some_and(|p| p.ip().is_loopback())));

    leave_clean.send_replace(true);
    for client in clean {
        client.await.unwrap();
    }
    wait_for("clean closes to leave", Duration::from_secs(10), || hub.count() == CLIENTS * 2 / 3).await;
    leave_abrupt.send_replace(true);
    for client in abrupt {
        client.await.unwrap();
    }
    wait_for("abrupt drops to leave", Duration::from_secs(10), || hub.count() == CLIENTS / 3).await;
    // Now the rest freeze: they stop answering the server's pings and are
    // dropped by keepalive.
    freeze.send_replace(true);
    let mut frozen = Vec::new();
    for client in freezable {
        frozen.push(client.await.unwrap());
    }
    let started = Instant::now();
    wait_for("keepalive to drop the frozen", Duration::from_secs(10), || hub.count() == 0).await;
    println!("{} frozen clients dropped by keepalive in {:?}", CLIENTS / 3, started.elapsed());
    drop(frozen);

    wait_for("every event", Duration::from_secs(5), || *counts.lock().unwrap() == (CLIENTS, CLIENTS)).await;
}

/// Reads every message of a fast subscriber into `log`.
fn record(mut ws: WebSocket, log: Arc<Mutex<Vec<u32>>>) {
    tokio::spawn(async move {
        while let Ok(Some(message)) = ws.recv().await {
            let sequence = u32::from_be_bytes(message.as_bytes()[..4].try_into().unwrap());
            log.lock().unwrap().push(sequence);
        }
    });
}

async fn broadcast_with_slow_subscribers(overflow: Overflow) -> (Hub, Vec<Arc<Mutex<Vec<u32>>>>, u32) {
    // The proof at full size: 10 of 1,000 subscribers stop reading.
    const FAST: usize = 990;
    const SLOW: usize = 10;
    const MESSAGES: u32 = 500;
    let hub = Hub::new({
        let mut config = HubConfig::default();
        config.max_buffered = 64 << 10;
        config.overflow = overflow;
        config
    });
    let url = hub_server(hub.clone(), Config::default().with_keepalive(None, None)).await;
    let mut logs = Vec::new();
    for _ in 0..FAST {
        let log = Arc::new(Mutex::new(Vec::new()));
        record(tether::connect(&url).await.unwrap(), log.clone());
        logs.push(log);
    }
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(stalled_client(&url).await);
    }
    wait_for("all registered", Duration::from_secs(10), || hub.count() == FAST + SLOW).await;
    // Published as fast as the fast subscribers take them: in rounds of 100.
    let mut payload = vec![0u8; 512];
    for sequence in 0..MESSAGES {
        payload[..4].copy_from_slice(&sequence.to_be_bytes());
        hub.broadcast(&Message::from(payload.clone()));
        if sequence % 100 == 99 {
            let done = sequence as usize + 1;
            wait_for("the fast ones", Duration::from_secs(20), || {
                logs.iter().all(|log| log.lock().unwrap().len() >= done)
            })
            .await;
        }
    }
    drop(slow);
    (hub, logs, MESSAGES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_subscribers_get_every_broadcast_once_in_order_while_slow_ones_are_bounded() {
    let (hub, logs, messages) = broadcast_with_slow_subscribers(Overflow::DropOldest).await;
    let expected: Vec<u32> = (0..messages).collect();
    for log in &logs {
        assert_eq!(*log.lock().unwrap(), expected, "exactly once, in order");
    }
    let dropped = hub.dropped();
    println!("slow subscribers: {dropped} messages dropped (oldest first)");
    assert!(dropped > 0, "the stalled subscribers overflowed");
    for info in hub.list() {
        assert!(hub.buffered(info.id).unwrap_or(0) <= 64 << 10, "a mailbox over its bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_policy_drops_slow_subscribers_and_spares_the_rest() {
    let (hub, logs, messages) = broadcast_with_slow_subscribers(Overflow::Close(CloseCode(1013))).await;
    for log in &logs {
        assert_eq!(log.lock().unwrap().len(), messages as usize);
    }
    wait_for("the slow ones to leave", Duration::from_secs(20), || hub.count() == logs.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_reach_their_subscribers_only() {
    let hub = Hub::default();
    let url = hub_server(hub.clone(), Config::default()).await;
    let mut news = tether::connect(&format!("{url}?topics=news")).await.unwrap();
    let mut both = tether::connect(&format!("{url}?topics=news,sport")).await.unwrap();
    let mut sport = tether::connect(&format!("{url}?topics=sport")).await.unwrap();
    wait_for("subscriptions", Duration::from_secs(5), || {
        hub.list().iter().filter(|c| !c.topics.is_empty()).count() == 3
    })
    .await;
    assert_eq!(hub.publish("news", &Message::from("headline")).queued, 2);
    assert_eq!(hub.publish("sport", &Message::from("score")).queued, 2);
    assert_eq!(hub.publish("weather", &Message::from("rain")).queued, 0);
    assert_eq!(news.recv().await.unwrap(), Some(Message::from("headline")));
    assert_eq!(both.recv().await.unwrap(), Some(Message::from("headline")));
    assert_eq!(both.recv().await.unwrap(), Some(Message::from("score")));
    assert_eq!(sport.recv().await.unwrap(), Some(Message::from("score")));
    let quiet = tokio::time::timeout(Duration::from_millis(200), news.recv()).await;
    assert!(quiet.is_err(), "news got sport: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_sends_1001_to_everyone_and_the_registry_empties() {
    let hub = Hub::default();
    let url = hub_server(hub.clone(), Config::default()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(tether::connect(&url).await.unwrap());
    }
    wait_for("all registered", Duration::from_secs(5), || hub.count() == 50).await;
    hub.close_all(CloseCode::GOING_AWAY, "server shutting down");
    for ws in &mut clients {
        assert_eq!(ws.recv().await.unwrap(), None);
        let frame = ws.close_frame().unwrap();
        assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::GOING_AWAY, "server shutting down"));
    }
    assert!(hub.wait_empty(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_until_stops_accepting_closes_everyone_with_1001_and_returns() {
    let hub = Hub::default();
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(
        |mut ws: WebSocket| async move { while let Ok(Some(_)) = ws.recv().await {} },
        async {
            let _ = stopped.await;
        },
    ));
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(tether::connect(&url).await.unwrap());
    }
    wait_for("all registered", Duration::from_secs(5), || hub.count() == 20).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let _ = ws.recv().await;
                ws.close_frame().map(|frame| frame.code)
            })
        })
        .collect();
    assert!(serving.await.unwrap().unwrap(), "every connection closed in time");
    println!("graceful shutdown of 20 connections in {:?}", started.elapsed());
    for reader in readers {
        assert_eq!(reader.await.unwrap(), Some(CloseCode::GOING_AWAY));
    }
    assert!(tether::connect(&url).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_messages_and_round_trips_in_prometheus_text() {
    let hub = Hub::default();
    let metrics = tether::metrics::Metrics::new().with_hub(hub.clone());
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    config.metrics = Some(metrics);
    config.protocol = Config::default().with_keepalive(Some(Duration::from_millis(50)), Some(Duration::from_secs(2)));
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Ok(Some(message)) = ws.recv().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    let url = format!("ws://{addr}/");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = tether::connect(&url).await.unwrap();
        for text in ["one", "two!"] {
            ws.send(text).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(Message::from(text)));
        }
        clients.push(ws);
    }
    // Keep one reading (so pongs are answered and timed), close one, drop one.
    let mut kept = clients.pop().unwrap();
    let reader = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_millis(300), kept.recv()).await;
        kept
    });
    clients.pop().unwrap().close(CloseCode::NORMAL, "").await.unwrap();
    drop(clients.pop());
    wait_for("two gone", Duration::from_secs(5), || hub.count() == 1).await;
    let _kept = reader.await.unwrap();

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    println!("{answer}");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    for line in [
        "tether_connections_opened_total 3",
        "tether_connections_open 1",
        "tether_connections_closed_total{code=\"1000\"} 1",
        "tether_connections_closed_total{code=\"1006\"} 1",
        "tether_messages_received_total 6",
        "tether_messages_sent_total 6",
        "tether_received_bytes_total 21",
        "tether_hub_clients 1",
        "# TYPE tether_keepalive_rtt_seconds histogram",
    ] {
        assert!(answer.contains(&format!("{line}\n")), "{line:?} missing");
    }
    let count: u64 = answer
        .lines()
        .find_map(|line| line.strip_prefix("tether_keepalive_rtt_seconds_count "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(count > 0, "pongs were timed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_can_have_its_own_overflow_policy_and_drops_are_counted_by_policy() {
    let hub = Hub::new({
        let mut config = HubConfig::default();
        config.max_buffered = 8 << 10;
        config.overflow = Overflow::DropOldest;
        config
    });
    let url = hub_server(hub.clone(), Config::default().with_keepalive(None, None)).await;
    let _history = stalled_client(&url).await;
    let _dashboard = stalled_client(&url).await;
    wait_for("both registered", Duration::from_secs(5), || hub.count() == 2).await;
    let mut ids: Vec<u64> = hub.list().iter().map(|client| client.id).collect();
    ids.sort_unstable();
    let (history, dashboard) = (ids[0], ids[1]);
    assert!(hub.set_overflow(dashboard, Overflow::KeepLatest));
    // Far more than kernel buffers and mailboxes hold.
    for _ in 0..2_000 {
        hub.broadcast(&Message::from(vec![1u8; 1000]));
        tokio::task::yield_now().await;
    }
    let drops = hub.drops();
    println!("{drops:?}");
    assert!(drops.drop_oldest > 0 && drops.keep_latest > 0);
    assert_eq!((drops.drop_newest, drops.close, drops.closed_connections), (0, 0, 0));
    assert_eq!(hub.dropped_for(history), Some(drops.drop_oldest));
    assert_eq!(hub.dropped_for(dashboard), Some(drops.keep_latest));
    assert_eq!(hub.dropped(), drops.total());
    let text = tether::metrics::Metrics::new().with_hub(hub.clone()).render();
    for line in [
        format!("tether_hub_dropped_total{{policy=\"drop_oldest\"}} {}", drops.drop_oldest),
        format!("tether_hub_dropped_total{{policy=\"keep_latest\"}} {}", drops.keep_latest),
        "tether_hub_dropped_total{policy=\"close\"} 0".to_owned(),
        "tether_hub_overflow_closed_total 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_close_keeps_the_client_counted_until_its_close_handshake_is_done() {
    // Unlike a close by the overflow policy, which takes the client out of
    // the registry at once: `wait_empty` must mean "everyone has closed".
    use std::io::{Read, Write};
    let hub = Hub::default();
    let url = hub_server(hub.clone(), Config::default()).await;
    let addr = url.trim_start_matches("ws://").trim_end_matches('/').to_owned();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    wait_for("the client to join", Duration::from_secs(5), || hub.count() == 1).await;
    hub.close_all(CloseCode::GOING_AWAY, "server shutting down");
    assert!(!hub.wait_empty(Duration::from_millis(300)).await, "counted while its close is unanswered");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 512];
    while !seen.windows(2).any(|pair| pair == [0x88, 22]) {
        let read = tcp.read(&mut chunk).unwrap();
        assert!(read > 0, "the server's close frame never came");
        seen.extend_from_slice(&chunk[..read]);
    }
    // Our close answer, masked with a zero key: code 1000.
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).unwrap();
    assert!(hub.wait_empty(Duration::from_secs(5)).await, "gone once the handshake is done");
}
