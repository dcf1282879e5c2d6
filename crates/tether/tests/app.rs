//! The callback `App` (websocket-client's `WebSocketApp`): callbacks in
//! order, a handle that sends and closes from another thread, ping, pong
//! and fragment callbacks, and reconnection: a server killed and
//! restarted, queued messages delivered exactly once, what cannot be
//! delivered handed back, fatal answers not retried, and a thousand
//! clients that do not all come back in the same second.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::app::{Cause, SendRefusal, StopReason, WhileDown};
use tether::proto::backoff::BackoffPolicy;
use tether::{App, CloseCode, Config, Message, Reconnect, Server, ServerConfig, WebSocket};
use tether_test_support as support;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::default()
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

async fn echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

/// A tether echo server on its own runtime, so that dropping it kills
/// every connection at once, as a crashed process would.
struct ServerThread {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl ServerThread {
    /// Binds `addr` (port 0 for a free one) and serves `handler`; records
    /// the time of each accepted connection in `accepted` if given.
    fn start<H, F>(addr: SocketAddr, handler: H) -> ServerThread
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        ServerThread::start_with(addr, Config::default().with_keepalive(None, None), handler)
    }

    fn start_with<H, F>(addr: SocketAddr, protocol: Config, handler: H) -> ServerThread
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // Built on a thread of its own: a runtime cannot be started from
        // within the test's runtime.
        let (runtime, addr) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let mut config = ServerConfig::default();
            config.protocol = protocol;
            let server = runtime.block_on(async {
                // The port of a killed server may take a moment to be free again.
                for _ in 0..50 {
                    if let Ok(server) = Server::bind(addr, config.clone()).await {
                        return server;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("cannot bind {addr}");
            });
            let addr = server.local_addr().unwrap();
            runtime.spawn(server.serve(handler));
            (runtime, addr)
        })
        .join()
        .unwrap();
        ServerThread { runtime: Some(runtime), addr }
    }

    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quick_backoff(max_retries: Option<u32>) -> Reconnect {
    Reconnect::default().with_backoff(
        BackoffPolicy::new(Duration::from_millis(100), Duration::from_millis(400)).with_max_retries(max_retries),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_in_order_open_message_close() {
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let events = log();
    let (on_open, on_message, on_close) = (events.clone(), events.clone(), events.clone());
    let stopped = App::new(url(server.addr))
        .on_open(move |app| {
            on_open.lock().unwrap().push("open".into());
            app.send("hello").unwrap();
        })
        .on_message(move |app, message| {
            on_message.lock().unwrap().push(format!("message {}", message.as_text().unwrap()));
            app.close_with(CloseCode::NORMAL, "bye");
        })
        .on_close(move |_, frame| on_close.lock().unwrap().push(format!("close {:?}", frame.map(|f| f.code.0))))
        .run()
        .await;
    assert!(matches!(stopped.reason, StopReason::Closed), "{stopped:?}");
    assert!(stopped.undelivered.is_empty());
    assert_eq!(entries(&events), ["open", "message hello", "close Some(1000)"]);
}

#[test]
fn run_forever_blocks_while_another_thread_sends_and_closes() {
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let received = log();
    let sink = received.clone();
    let app = App::new(url(server.addr)).on_message(move |_, message| {
        sink.lock().unwrap().push(message.as_text().unwrap().to_owned());
    });
    let handle = app.handle();
    let runner = std::thread::spawn(move || app.run_forever());
    let start = Instant::now();
    while !handle.is_connected() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..3 {
        handle.send(format!("from another thread {i}")).unwrap();
    }
    while received.lock().unwrap().len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.close();
    let stopped = runner.join().unwrap();
    assert!(matches!(stopped.reason, StopReason::Closed));
    assert_eq!(entries(&received), ["from another thread 0", "from another thread 1", "from another thread 2"]);
    let refused = handle.send("after the end").unwrap_err();
    assert_eq!(refused.reason, SendRefusal::Stopped);
    assert_eq!(refused.message, Message::from("after the end"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_fragment_callbacks_see_each_frame() {
    let fragmenting = Config::default().with_keepalive(None, None).with_fragment_size(4);
    let server =
        ServerThread::start_with("127.0.0.1:0".parse().unwrap(), fragmenting, |mut ws: WebSocket| async move {
            // Wait for the client's "go", then ping it and send one message in
            // three fragments (the server fragments at 4 bytes).
            let _ = ws.recv().await;
            let _ = ws.ping("from the server").await;
            let _ = ws.send_uncompressed("0123456789").await;
            while let Ok(Some(_)) = ws.recv().await {}
        });
    let events = log();
    let (a, b, c, d, e) = (events.clone(), events.clone(), events.clone(), events.clone(), events.clone());
    let app = App::new(url(server.addr))
        .keepalive(Some(Duration::from_millis(100)), Some(Duration::from_secs(5)))
        .on_open(|app| app.send("go").unwrap())
        .on_ping(move |_, payload| a.lock().unwrap().push(format!("ping {}", String::from_utf8_lossy(payload))))
        .on_pong(move |_, _| {
            let mut log = b.lock().unwrap();
            if !log.contains(&"pong".to_owned()) {
                log.push("pong".into());
            }
        })
        .on_data(move |_, data, opcode, fin| {
            c.lock().unwrap().push(format!("data {opcode:?} {} {fin}", String::from_utf8_lossy(data)));
        })
        .on_cont_message(move |_, data, fin| {
            d.lock().unwrap().push(format!("cont {} {fin}", String::from_utf8_lossy(data)))
        })
        .on_message(move |app, message| {
            e.lock().unwrap().push(format!("message {}", message.as_text().unwrap()));
            app.close();
        });
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    // The message closes the app; keep it open until a pong was seen too.
    let stopped = runner.await.unwrap();
    assert!(matches!(stopped.reason, StopReason::Closed), "{stopped:?}");
    let seen = entries(&events);
    let frames: Vec<&String> = seen.iter().filter(|line| !line.starts_with("pong")).collect();
    assert_eq!(
        frames,
        [
            "ping from the server",
            "data Text 0123 false",
            "data Continuation 4567 false",
            "cont 4567 false",
            "data Continuation 89 true",
            "cont 89 true",
            "message 0123456789",
        ]
    );
    drop(handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pongs_reach_on_pong_and_measure_the_round_trip() {
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let pongs = Arc::new(Mutex::new(0u32));
    let counter = pongs.clone();
    let app = App::new(url(server.addr))
        .keepalive(Some(Duration::from_millis(100)), Some(Duration::from_secs(2)))
        .on_pong(move |_, _| *counter.lock().unwrap() += 1);
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    wait_for("three pongs", Duration::from_secs(10), || *pongs.lock().unwrap() >= 3).await;
    assert!(handle.round_trip().expect("measured").smoothed < Duration::from_millis(500));
    handle.close();
    assert!(matches!(runner.await.unwrap().reason, StopReason::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_process_is_reconnected_and_the_conversation_goes_on() {
    let port = support::free_port();
    let start_server = || support::python_echo_server(port);
    let mut server = start_server();
    let events = log();
    let opens = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (on_message, on_open, on_reconnect) = (events.clone(), opens.clone(), events.clone());
    let backoff = BackoffPolicy::new(Duration::from_millis(500), Duration::from_secs(2));
    let app = App::new(format!("ws://127.0.0.1:{port}/"))
        .reconnect(Reconnect::default().with_backoff(backoff.clone()))
        .on_open(move |app| {
            let mut opens = on_open.lock().unwrap();
            opens.push(Instant::now());
            app.send(format!("conversation {}", opens.len())).unwrap();
        })
        .on_message(move |_, message| on_message.lock().unwrap().push(message.as_text().unwrap().to_owned()))
        .on_reconnect(move |_, reconnecting| {
            on_reconnect.lock().unwrap().push(format!("reconnect attempt {}", reconnecting.attempt));
        });
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    wait_for("the first echo", Duration::from_secs(10), || entries(&events).contains(&"conversation 1".into())).await;

    server.kill();
    wait_for("the disconnect", Duration::from_secs(10), || !handle.is_connected()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server = start_server();
    let restarted = Instant::now();
    wait_for("the reconnection", Duration::from_secs(15), || opens.lock().unwrap().len() >= 2).await;
    let reconnected_after = opens.lock().unwrap()[1].saturating_duration_since(restarted);
    wait_for("the second echo", Duration::from_secs(10), || entries(&events).contains(&"conversation 2".into())).await;
    handle.send("and it goes on").unwrap();
    wait_for("the third echo", Duration::from_secs(10), || entries(&events).contains(&"and it goes on".into())).await;
    handle.close();
    let stopped = runner.await.unwrap();
    println!("reconnected {reconnected_after:?} after the restart; {:?}", entries(&events));
    assert!(matches!(stopped.reason, StopReason::Closed));
    // Every attempt waits at most the cap (2 s), plus the attempt itself.
    assert!(reconnected_after <= backoff.max_delay + Duration::from_millis(500), "{reconnected_after:?}");
    assert!(entries(&events).iter().any(|line| line.starts_with("reconnect attempt 1")));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_down_arrive_exactly_once_in_order_after_reconnecting() {
    let received_by_server = log();
    let record = received_by_server.clone();
    let handler = move |mut ws: WebSocket| {
        let record = record.clone();
        async move {
            while let Ok(Some(message)) = ws.recv().await {
                record.lock().unwrap().push(message.as_text().unwrap_or("?").to_owned());
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
    };
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), handler.clone());
    let addr = server.addr;
    let echoed = log();
    let sink = echoed.clone();
    let app = App::new(url(addr))
        .keepalive(None, None)
        .reconnect(quick_backoff(None))
        .on_message(move |_, message| sink.lock().unwrap().push(message.as_text().unwrap().to_owned()));
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    wait_for("the connection", Duration::from_secs(10), || handle.is_connected()).await;
    server.kill();
    wait_for("the disconnect", Duration::from_secs(10), || !handle.is_connected()).await;
    let expected: Vec<String> = (0..10).map(|i| format!("queued {i}")).collect();
    for message in &expected {
        handle.send(message.as_str()).unwrap();
    }
    assert_eq!(handle.queued(), 10);
    let _server = ServerThread::start(addr, handler);
    wait_for("ten echoes", Duration::from_secs(10), || entries(&echoed).len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // room for a duplicate to show up
    assert_eq!(entries(&received_by_server), expected, "each exactly once, in order");
    assert_eq!(entries(&echoed), expected);
    handle.close();
    assert!(runner.await.unwrap().undelivered.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_could_not_be_delivered_comes_back_when_reconnection_gives_up() {
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let attempts = log();
    let sink = attempts.clone();
    let app = App::new(url(server.addr)).keepalive(None, None).reconnect(quick_backoff(Some(3))).on_reconnect(
        move |_, reconnecting| {
            sink.lock().unwrap().push(format!("{} after {}", reconnecting.attempt, cause_kind(reconnecting.cause)));
        },
    );
    let handle = app.handle();
    let runner = tokio::spawn(app.run());
    wait_for("the connection", Duration::from_secs(10), || handle.is_connected()).await;
    server.kill();
    wait_for("the disconnect", Duration::from_secs(10), || !handle.is_connected()).await;
    handle.send("first").unwrap();
    handle.send(vec![2u8]).unwrap();
    let stopped = runner.await.unwrap();
    assert!(matches!(stopped.reason, StopReason::GaveUp(ref error) if error.is_io()), "{stopped:?}");
    assert_eq!(stopped.undelivered, [Message::from("first"), Message::from(vec![2u8])]);
    let attempts = entries(&attempts);
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[0].starts_with("1 after"), "{attempts:?}");
}

fn cause_kind(cause: &Cause) -> &'static str {
    match cause {
        Cause::ServerClosed(_) => "server close",
        Cause::Failed(error) if error.is_io() => "io",
        Cause::Failed(_) => "other",
    }
}

/// A raw HTTP server answering every request with `status`; counts them.
async fn http_status_server(status: &'static str) -> (SocketAddr, Arc<Mutex<u32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_final_and_a_server_error_is_retried() {
    let (forbidden, forbidden_count) = http_status_server("403 Forbidden").await;
    let stopped = App::new(url(forbidden)).reconnect(quick_backoff(Some(5))).run().await;
    assert!(matches!(stopped.reason, StopReason::Failed(ref error) if error.http_status() == Some(403)), "{stopped:?}");
    assert_eq!(*forbidden_count.lock().unwrap(), 1, "403 is not retried");

    let (unavailable, unavailable_count) = http_status_server("503 Service Unavailable").await;
    let stopped = App::new(url(unavailable)).reconnect(quick_backoff(Some(2))).run().await;
    assert!(matches!(stopped.reason, StopReason::GaveUp(ref error) if error.http_status() == Some(503)), "{stopped:?}");
    assert_eq!(*unavailable_count.lock().unwrap(), 3, "503: the first attempt and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_close_by_the_server_stops_unless_asked_to_reconnect() {
    let closing = |mut ws: WebSocket| async move {
        let _ = ws.close(CloseCode::NORMAL, "come back later").await;
    };
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), closing);
    let stopped = App::new(url(server.addr)).reconnect(quick_backoff(None)).run().await;
    match stopped.reason {
        StopReason::ServerClosed(Some(frame)) => assert_eq!(frame.code, CloseCode::NORMAL),
        other => panic!("{other:?}"),
    }

    let opens = Arc::new(Mutex::new(0));
    let counter = opens.clone();
    let app = App::new(url(server.addr)).reconnect(quick_backoff(None).after_normal_close(true)).on_open(move |app| {
        let mut opens = counter.lock().unwrap();
        *opens += 1;
        if *opens == 3 {
            app.close();
        }
    });
    let stopped = app.run().await;
    assert_eq!(*opens.lock().unwrap(), 3);
    assert!(matches!(stopped.reason, StopReason::Closed), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_down_messages_can_be_refused_instead_of_queued() {
    let port = support::free_port();
    let app =
        App::new(format!("ws://127.0.0.1:{port}/")).reconnect(quick_backoff(Some(1)).while_down(WhileDown::Refuse));
    let handle = app.handle();
    let refused = handle.send("nobody is there").unwrap_err();
    assert_eq!(refused.reason, SendRefusal::NotConnected);
    assert_eq!(refused.message, Message::from("nobody is there"));
    let stopped = app.run().await;
    assert!(stopped.undelivered.is_empty());

    let bounded = App::new(format!("ws://127.0.0.1:{port}/"))
        .reconnect(quick_backoff(Some(1)).while_down(WhileDown::Queue { max_messages: 2, max_bytes: 1 << 20 }));
    let handle = bounded.handle();
    handle.send("one").unwrap();
    handle.send("two").unwrap();
    assert_eq!(handle.send("three").unwrap_err().reason, SendRefusal::QueueFull);
    let stopped = bounded.run().await;
    assert_eq!(stopped.undelivered, [Message::from("one"), Message::from("two")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_dropped_at_once_do_not_all_come_back_in_the_same_second() {
    const CLIENTS: usize = 1000;
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let addr = server.addr;
    let mut handles = Vec::new();
    let mut runners = Vec::new();
    for _ in 0..CLIENTS {
        // The default policy: full jitter under a 6 s first ceiling.
        let app = App::new(url(addr)).keepalive(None, None).reconnect(Reconnect::default());
        handles.push(app.handle());
        runners.push(tokio::spawn(app.run()));
    }
    wait_for("all connected", Duration::from_secs(30), || handles.iter().all(tether::AppHandle::is_connected)).await;

    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = accepted.clone();
    server.kill();
    let dropped_at = Instant::now();
    wait_for("all dropped", Duration::from_secs(30), || handles.iter().all(|handle| !handle.is_connected())).await;
    let _server = ServerThread::start(addr, move |ws: WebSocket| {
        record.lock().unwrap().push(Instant::now());
        echo(ws)
    });
    wait_for("all back", Duration::from_secs(30), || handles.iter().all(tether::AppHandle::is_connected)).await;
    let mut offsets: Vec<f64> =
        accepted.lock().unwrap().iter().map(|at| at.saturating_duration_since(dropped_at).as_secs_f64()).collect();
    offsets.sort_by(f64::total_cmp);
    let busiest_second = offsets
        .iter()
        .enumerate()
        .map(|(i, start)| offsets[i..].iter().take_while(|at| **at < start + 1.0).count())
        .max()
        .unwrap();
    println!(
        "{} reconnections from {:.2} s to {:.2} s after the drop; busiest second: {busiest_second}",
        offsets.len(),
        offsets[0],
        offsets[offsets.len() - 1]
    );
    assert!(offsets.len() >= CLIENTS);
    // RELIABILITY 31: no one-second window holds more than a quarter.
    assert!(busiest_second <= CLIENTS / 4, "{busiest_second} of {CLIENTS} in one second");
    for handle in &handles {
        handle.close();
    }
    for runner in runners {
        let _ = runner.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_heartbeat_is_answered_by_a_tether_server_and_kept_out_of_on_message() {
    let runtime = tokio::runtime::Handle::current();
    let mut config = ServerConfig::default();
    config.heartbeat_responder = Some(tether::heartbeat::json_responder());
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.serve(echo));
    for deliver in [false, true] {
        let events = log();
        let (beats, messages) = (events.clone(), events.clone());
        let heartbeat = tether::heartbeat::Heartbeat::json(Duration::from_millis(100), Duration::from_secs(1))
            .deliver_answers(deliver);
        let stopped = App::new(url(addr))
            .heartbeat(heartbeat)
            .on_heartbeat(move |app, rtt| {
                let mut log = beats.lock().unwrap();
                log.push(format!("beat {}", rtt < Duration::from_millis(500)));
                if log.iter().filter(|line| line.starts_with("beat")).count() == 3 {
                    app.close();
                }
            })
            .on_message(move |_, message| {
                let text = message.as_text().unwrap_or("").to_owned();
                messages.lock().unwrap().push(format!("message {}", text.contains("\"pong\"")));
            })
            .run()
            .await;
        assert!(matches!(stopped.reason, StopReason::Closed), "{stopped:?}");
        let seen = entries(&events);
        assert_eq!(seen.iter().filter(|line| *line == "beat true").count(), 3, "{seen:?}");
        let delivered = seen.iter().filter(|line| *line == "message true").count();
        assert_eq!(delivered > 0, deliver, "answers reach on_message only when asked: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_heartbeat_ends_the_connection_and_reconnection_follows() {
    // A plain echo server sends our ping back: a ping, not a pong.
    let server = ServerThread::start("127.0.0.1:0".parse().unwrap(), echo);
    let causes = log();
    let sink = causes.clone();
    let started = Instant::now();
    let stopped = App::new(url(server.addr))
        .heartbeat(tether::heartbeat::Heartbeat::json(Duration::from_millis(100), Duration::from_millis(200)))
        .reconnect(quick_backoff(Some(1)))
        .on_reconnect(move |_, next| {
            if let Cause::Failed(error) = next.cause {
                sink.lock().unwrap().push(format!("{:?} {:?}", error.timeout(), error.close_code()));
            }
        })
        .run()
        .await;
    assert!(
        matches!(stopped.reason, StopReason::GaveUp(ref error) if error.timeout() == Some(tether::Timeout::Heartbeat))
    );
    assert_eq!(entries(&causes), ["Some(Heartbeat) Some(CloseCode(1011))"]);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
