//! Fan-out across server processes through a real `redis-server`: three
//! `tether serve --topics --redis …` processes; a message published on A
//! reaches the subscribers on A, B and C once each. Redis killed while
//! clients are connected: no crash, local clients still served, the loss
//! reported; Redis back: fan-out resumes.
//!
//! Every test runs once per engine (`name::on_reactor`, `name::on_tokio`).
//! Where a test has several servers, the one under test runs the engine of
//! the run and the others the other engine, so both engines play every part
//! and each run also shows the two sharing one Redis.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::{CloseCode, Message, WebSocket};
use tether_test_support::{RedisCluster, RedisServer};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server implementations `tether serve` offers.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Reactor,
    Tokio,
}

impl Engine {
    fn flag(self) -> &'static str {
        match self {
            Engine::Reactor => "reactor",
            Engine::Tokio => "tokio",
        }
    }

    fn other(self) -> Engine {
        match self {
            Engine::Reactor => Engine::Tokio,
            Engine::Tokio => Engine::Reactor,
        }
    }
}

/// One test per engine for each `test(engine)` listed: `test::on_reactor`
/// and `test::on_tokio`.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_reactor() {
                    super::$test(super::Engine::Reactor).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_tokio() {
                    super::$test(super::Engine::Tokio).await;
                }
            }
        )*
    };
}

on_both_engines!(
    a_publication_reaches_every_process_once_and_survives_a_redis_restart,
    with_history_a_client_recovers_on_another_server_what_it_missed,
    a_thousand_clients_recover_from_redis_on_a_restarted_server,
    an_app_resubscribes_from_its_last_offset_after_its_server_restarts,
    with_sharded_pub_sub_a_server_follows_only_its_clients_topics_and_recovery_still_works,
);

fn start_redis(port: u16) -> RedisServer {
    RedisServer::start(port, &[])
}

/// What a server wrote to stderr so far, line by line.
type Stderr = Arc<Mutex<Vec<String>>>;

/// `tether serve --engine … --topics --metrics --redis …` on a free port,
/// at its default log level; its URL, and its stderr as it comes.
fn start_tether(engine: Engine, redis_port: u16) -> (Running, String, Stderr) {
    start_tether_with(engine, redis_port, &[])
}

fn start_tether_with(engine: Engine, redis_port: u16, extra: &[&str]) -> (Running, String, Stderr) {
    start_tether_on(engine, "127.0.0.1:0", redis_port, extra)
}

fn start_tether_on(engine: Engine, listen: &str, redis_port: u16, extra: &[&str]) -> (Running, String, Stderr) {
    start_tether_at(engine, listen, &format!("redis://127.0.0.1:{redis_port}"), extra)
}

fn start_tether_at(engine: Engine, listen: &str, redis: &str, extra: &[&str]) -> (Running, String, Stderr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--engine", engine.flag(), "--listen", listen, "--topics", "--metrics"])
        .args(["--redis-health-ms", "200", "--redis", redis])
        .args(extra)
        .env_remove("TETHER_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|word| word.starts_with("ws://")).expect(&line).to_owned();
    let lines = Stderr::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (Running(child), url, lines)
}

fn metric(url: &str, name: &str) -> Option<u64> {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).ok()?;
    answer.lines().find_map(|line| line.strip_prefix(&format!("{name} "))).and_then(|value| value.parse().ok())
}

async fn wait_metric(url: &str, name: &str, value: u64) {
    let started = Instant::now();
    while metric(url, name) != Some(value) {
        if started.elapsed() > Duration::from_secs(15) {
            let addr = url.trim_start_matches("ws://").trim_end_matches('/');
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            let _ = tcp.read_to_string(&mut answer);
            panic!("{url}: {name} never became {value}:\n{answer}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn subscriber(url: &str, topic: &str) -> WebSocket {
    let mut ws = tether::connect(url).await.unwrap();
    ws.send(format!(r#"{{"op":"subscribe","topic":"{topic}"}}"#)).await.unwrap();
    let ack = ws.recv().await.unwrap().unwrap();
    assert!(ack.as_text().unwrap().contains("subscribed"), "{ack:?}");
    ws
}

async fn publish(url: &str, topic: &str, text: &str) {
    let mut ws = tether::connect(url).await.unwrap();
    ws.send(format!(r#"{{"op":"publish","topic":"{topic}","data":"{text}"}}"#)).await.unwrap();
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

/// What a subscriber receives within `window`.
async fn received(ws: &mut WebSocket, window: Duration) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(Ok(Some(message))) = tokio::time::timeout(window, ws.recv()).await {
        texts.push(message.as_text().unwrap_or("").to_owned());
    }
    texts
}

fn stderr_of(server: &(Running, String, Stderr)) -> String {
    server.2.lock().unwrap().join("\n")
}

fn publication(topic: &str, text: &str) -> String {
    Message::from(format!(r#"{{"data":"{text}","topic":"{topic}"}}"#)).as_text().unwrap().to_owned()
}

/// Server 1, which publishes during the outage, runs `engine`.
async fn a_publication_reaches_every_process_once_and_survives_a_redis_restart(engine: Engine) {
    let redis_port = tether_test_support::free_port();
    let mut redis = start_redis(redis_port);
    let servers: Vec<(Running, String, Stderr)> =
        [engine.other(), engine, engine.other()].into_iter().map(|engine| start_tether(engine, redis_port)).collect();
    let urls: Vec<&str> = servers.iter().map(|(_, url, _)| url.as_str()).collect();
    for url in &urls {
        wait_metric(url, "tether_redis_up", 1).await;
    }
    let mut subscribers = Vec::new();
    for url in &urls {
        subscribers.push(subscriber(url, "room").await);
    }
    publish(urls[0], "room", "hello everyone").await;
    for (index, ws) in subscribers.iter_mut().enumerate() {
        let texts = received(ws, Duration::from_millis(500)).await;
        assert_eq!(texts, [publication("room", "hello everyone")], "server {index}: once, from Redis");
    }

    // Redis dies: every process keeps serving its own clients.
    drop(redis);
    for url in &urls {
        wait_metric(url, "tether_redis_up", 0).await;
    }
    publish(urls[1], "room", "during the outage").await;
    let during: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for ws in &mut subscribers {
            all.push(received(ws, Duration::from_millis(300)).await);
        }
        all
    };
    assert_eq!(during[1], [publication("room", "during the outage")], "local clients still served");
    assert!(during[0].is_empty() && during[2].is_empty(), "no fan-out without Redis: {during:?}");
    // Counted either way: refused while the publishing link was known to be
    // down (local only), or taken and then lost with the link (unconfirmed).
    let counted = metric(urls[1], "tether_redis_local_only_total").unwrap()
        + metric(urls[1], "tether_redis_unconfirmed_total").unwrap();
    assert_eq!(counted, 1, "and it says so");
    assert!(metric(urls[0], "tether_redis_outages_total").unwrap() >= 1);
    for (_, url, stderr) in &servers {
        let said = stderr.lock().unwrap().join("\n");
        assert!(said.contains("WARN") && said.contains("redis: fan-out down"), "{url} at its default level:\n{said}");
    }

    // Redis is back: fan-out resumes.
    redis = start_redis(redis_port);
    for url in &urls {
        wait_metric(url, "tether_redis_up", 1).await;
    }
    for (_, url, stderr) in &servers {
        let said = stderr.lock().unwrap().join("\n");
        assert!(said.contains("redis: fan-out back"), "{url}: the recovery is logged at the default level:\n{said}");
    }
    let said = stderr_of(&servers[1]);
    assert!(said.contains("local_only_total=1") || said.contains("unconfirmed_total=1"), "{said}");
    publish(urls[2], "room", "back again").await;
    for (index, ws) in subscribers.iter_mut().enumerate() {
        let texts = received(ws, Duration::from_millis(500)).await;
        assert_eq!(texts, [publication("room", "back again")], "server {index}");
    }
    drop(redis);
}

async fn next_json(ws: &mut WebSocket) -> serde_json::Value {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.expect("in time").unwrap().unwrap();
    serde_json::from_str(message.as_text().unwrap()).unwrap()
}

/// Two `tether serve --topics --history 100` sharing the Redis on
/// `redis_port`, both with fan-out up: A on the other engine, B on `engine`.
async fn two_servers_with_history(
    engine: Engine,
    redis_port: u16,
) -> ((Running, String, Stderr), (Running, String, Stderr)) {
    let a = start_tether_with(engine.other(), redis_port, &["--history", "100"]);
    let b = start_tether_with(engine, redis_port, &["--history", "100"]);
    for url in [&a.1, &b.1] {
        wait_metric(url, "tether_redis_up", 1).await;
    }
    (a, b)
}

/// With `--history`, offsets come from Redis: a client that saw a
/// publication on one server recovers what it missed on another (B, on
/// `engine`).
async fn with_history_a_client_recovers_on_another_server_what_it_missed(engine: Engine) {
    let redis_port = tether_test_support::free_port();
    let _redis = start_redis(redis_port);
    let (a, b) = two_servers_with_history(engine, redis_port).await;
    let mut on_a = subscriber(&a.1, "room").await;
    publish(&b.1, "room", "one").await;
    let one = next_json(&mut on_a).await;
    assert_eq!((one["data"].clone(), one["offset"].clone()), (serde_json::json!("one"), serde_json::json!(1)));
    on_a.close(CloseCode::NORMAL, "").await.unwrap();
    // Published on A while the client is away: B mirrors them too.
    let mut watcher = subscriber(&b.1, "room").await;
    for text in ["two", "three"] {
        publish(&a.1, "room", text).await;
        assert_eq!(next_json(&mut watcher).await["data"], text);
    }
    let mut on_b = tether::connect(&b.1).await.unwrap();
    let recover =
        serde_json::json!({ "op": "subscribe", "topic": "room", "recover": { "offset": 1, "epoch": one["epoch"] } });
    on_b.send(recover.to_string()).await.unwrap();
    let answer = next_json(&mut on_b).await;
    assert_eq!(
        (answer["recovered"].clone(), answer["offset"].clone()),
        (serde_json::json!(true), serde_json::json!(3)),
        "{answer}"
    );
    for (text, offset) in [("two", 2), ("three", 3)] {
        let publication = next_json(&mut on_b).await;
        assert_eq!(
            (publication["data"].clone(), publication["offset"].clone()),
            (serde_json::json!(text), serde_json::json!(offset))
        );
    }
}

/// Redis's count of calls to `command`, from `INFO commandstats`.
fn redis_calls(redis_port: u16, command: &str) -> u64 {
    let output =
        Command::new("redis-cli").args(["-p", &redis_port.to_string(), "INFO", "commandstats"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// A server restarts; a thousand clients come back to it at once, each
/// with the last position it saw: every one recovers what was published
/// meanwhile (on another server) from Redis's history, in order, exactly
/// once, though the restarted server (on `engine`) never saw it.
async fn a_thousand_clients_recover_from_redis_on_a_restarted_server(engine: Engine) {
    const CLIENTS: usize = 1000;
    const MISSED: u64 = 20;
    let redis_port = tether_test_support::free_port();
    let _redis = start_redis(redis_port);
    let (a, b) = two_servers_with_history(engine, redis_port).await;
    let mut watcher = subscriber(&a.1, "room").await;
    // B hears A's publications through Redis a moment later: a watcher on
    // B shows when B has seen all ten.
    let mut on_b = subscriber(&b.1, "room").await;
    for n in 1..=10 {
        publish(&a.1, "room", &format!("before {n}")).await;
        assert_eq!(next_json(&mut watcher).await["offset"], n);
        assert_eq!(next_json(&mut on_b).await["offset"], n);
    }
    drop(on_b);
    // The clients are on B, where the stream is at offset 10.
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = tether::connect(&b.1).await.unwrap();
        ws.send(r#"{"op":"subscribe","topic":"room"}"#).await.unwrap();
        clients.push(ws);
    }
    let mut position = None;
    for ws in &mut clients {
        let answer = next_json(ws).await;
        assert_eq!(answer["offset"], 10, "{answer}");
        position = Some(serde_json::json!({ "offset": 10, "epoch": answer["epoch"] }));
    }
    let position = position.unwrap();
    drop(clients);
    drop(b); // B goes down
    for n in 1..=MISSED {
        publish(&a.1, "room", &format!("missed {n}")).await;
        assert_eq!(next_json(&mut watcher).await["offset"], 10 + n);
    }
    let b = start_tether_with(engine, redis_port, &["--history", "100"]);
    wait_metric(&b.1, "tether_redis_up", 1).await;
    let (scripts, ranges) =
        (redis_calls(redis_port, "evalsha") + redis_calls(redis_port, "eval"), redis_calls(redis_port, "xrange"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, position) = (b.1.clone(), position.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = tether::connect(&url).await.unwrap();
            let recover = serde_json::json!({ "op": "subscribe", "topic": "room", "recover": position });
            ws.send(recover.to_string()).await.unwrap();
            let answer = next_json(&mut ws).await;
            assert_eq!(answer["recovered"], true, "{answer}");
            let mut offsets = Vec::new();
            for _ in 0..MISSED {
                offsets.push(next_json(&mut ws).await["offset"].as_u64().unwrap());
            }
            assert_eq!(offsets, (11..=10 + MISSED).collect::<Vec<u64>>());
            ws
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    let took = started.elapsed();
    let scripts = redis_calls(redis_port, "evalsha") + redis_calls(redis_port, "eval") - scripts;
    let ranges = redis_calls(redis_port, "xrange") - ranges;
    println!(
        "{CLIENTS} clients reconnected to a restarted server and recovered {MISSED} publications each in {took:?}; \
         Redis served {scripts} script calls and {ranges} XRANGE reads"
    );
    // Most clients are served from what the first reads brought in.
    assert!(ranges < CLIENTS as u64 / 2, "{ranges} reads for {CLIENTS} clients");
    // Live publications go on after the recovered ones.
    publish(&a.1, "room", "live").await;
    for ws in clients.iter_mut().take(10) {
        assert_eq!(next_json(ws).await["offset"], 10 + MISSED + 1);
    }
}

/// What a `Topics` app saw.
#[derive(Default)]
struct Seen {
    publications: Vec<(u64, String)>,
    subscribed: Vec<Option<bool>>,
    failed: usize,
}

struct Collect(Arc<Mutex<Seen>>);

impl tether::topics::TopicsHandler for Collect {
    fn on_publication(&mut self, _: &tether::AppHandle, publication: tether::topics::Publication) {
        let offset = publication.position.map_or(0, |position| position.offset);
        self.0.lock().unwrap().publications.push((offset, publication.data.as_str().unwrap_or("").to_owned()));
    }
    fn on_subscribed(&mut self, _: &tether::AppHandle, _: &str, recovered: Option<bool>) {
        self.0.lock().unwrap().subscribed.push(recovered);
    }
    fn on_recovery_failed(&mut self, _: &tether::AppHandle, _: &str) {
        self.0.lock().unwrap().failed += 1;
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An `App` with `Topics` on a server that restarts: it reconnects,
/// resubscribes from the last offset it saw, and gets every publication
/// once, in order — the ones made on another server while its own was
/// down included. The app's server runs `engine`.
async fn an_app_resubscribes_from_its_last_offset_after_its_server_restarts(engine: Engine) {
    let redis_port = tether_test_support::free_port();
    let _redis = start_redis(redis_port);
    let a = start_tether_with(engine.other(), redis_port, &["--history", "100"]);
    let b_listen = format!("127.0.0.1:{}", tether_test_support::free_port());
    let mut b = start_tether_on(engine, &b_listen, redis_port, &["--history", "100"]);
    for url in [&a.1, &b.1] {
        wait_metric(url, "tether_redis_up", 1).await;
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let topics = tether::topics::Topics::new(Collect(seen.clone())).subscribe("room");
    let backoff = tether::proto::backoff::BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(200));
    let app =
        tether::App::new(b.1.clone()).reconnect(tether::Reconnect::default().with_backoff(backoff)).handler(topics);
    let handle = app.handle();
    let running = tokio::spawn(app.run());
    wait_for("subscribed", || seen.lock().unwrap().subscribed.len() == 1).await;
    for n in 1..=5 {
        publish(&a.1, "room", &format!("p{n}")).await;
    }
    wait_for("five", || seen.lock().unwrap().publications.len() == 5).await;
    drop(b); // its server goes down
    for n in 6..=10 {
        publish(&a.1, "room", &format!("p{n}")).await;
    }
    b = start_tether_on(engine, &b_listen, redis_port, &["--history", "100"]);
    wait_for("resubscribed with recovery", || seen.lock().unwrap().subscribed.len() == 2).await;
    wait_for("ten", || seen.lock().unwrap().publications.len() == 10).await;
    publish(&a.1, "room", "p11").await;
    wait_for("eleven", || seen.lock().unwrap().publications.len() == 11).await;
    {
        let seen = seen.lock().unwrap();
        let expected: Vec<(u64, String)> = (1..=11).map(|n| (n, format!("p{n}"))).collect();
        assert_eq!(seen.publications, expected, "each once, in order, with its offset");
        assert_eq!(seen.subscribed, [None, Some(true)]);
        assert_eq!(seen.failed, 0);
    }
    handle.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
    drop(b);
}

/// Sharded pub/sub behind two servers: a server subscribes to a topic's
/// shard channel while it has subscribers to it and lets go when the last
/// leaves; a client that comes back recovers, from the stream, what was
/// published while its server (B, on `engine`) did not follow the topic
/// at all.
async fn with_sharded_pub_sub_a_server_follows_only_its_clients_topics_and_recovery_still_works(engine: Engine) {
    let cluster = RedisCluster::start(3);
    let sharded = ["--redis-cluster", "--redis-sharded", "--history", "100"];
    let a = start_tether_at(engine.other(), "127.0.0.1:0", &cluster.url(), &sharded);
    let b = start_tether_at(engine, "127.0.0.1:0", &cluster.url(), &sharded);
    for url in [&a.1, &b.1] {
        wait_metric(url, "tether_redis_up", 1).await;
    }
    let followers = || -> u64 {
        cluster
            .cli_all(&["PUBSUB", "SHARDNUMSUB", "tether:t:{room}"])
            .iter()
            .filter_map(|listed| listed.lines().nth(1).and_then(|count| count.trim().parse::<u64>().ok()))
            .sum()
    };
    assert_eq!(followers(), 0, "no subscriber, no subscription");
    let mut on_b = subscriber(&b.1, "room").await;
    assert_eq!(followers(), 1, "B follows room once its client is subscribed");
    publish(&a.1, "room", "one").await;
    let one = next_json(&mut on_b).await;
    assert_eq!((one["data"].clone(), one["offset"].clone()), (serde_json::json!("one"), serde_json::json!(1)));
    on_b.close(CloseCode::NORMAL, "").await.unwrap();
    wait_for("B lets room go", || followers() == 0).await;

    // Published while no server follows room: only the stream has them.
    for text in ["two", "three"] {
        publish(&a.1, "room", text).await;
    }
    let mut back = tether::connect(&b.1).await.unwrap();
    let recover =
        serde_json::json!({ "op": "subscribe", "topic": "room", "recover": { "offset": 1, "epoch": one["epoch"] } });
    back.send(recover.to_string()).await.unwrap();
    let answer = next_json(&mut back).await;
    assert_eq!(
        (answer["recovered"].clone(), answer["offset"].clone()),
        (serde_json::json!(true), serde_json::json!(3)),
        "{answer}"
    );
    for (text, offset) in [("two", 2), ("three", 3)] {
        let publication = next_json(&mut back).await;
        assert_eq!(
            (publication["data"].clone(), publication["offset"].clone()),
            (serde_json::json!(text), serde_json::json!(offset))
        );
    }
    // Live ones follow, once, in order; a second subscriber on B shares
    // the subscription.
    let mut second = subscriber(&b.1, "room").await;
    assert_eq!(followers(), 1);
    publish(&a.1, "room", "four").await;
    for ws in [&mut back, &mut second] {
        let four = next_json(ws).await;
        assert_eq!((four["data"].clone(), four["offset"].clone()), (serde_json::json!("four"), serde_json::json!(4)));
    }
    assert!(received(&mut back, Duration::from_millis(300)).await.is_empty(), "nothing twice");
}
