//! Topic history and recovery in `tether serve --topics --history N`, on
//! both engines: a client that reconnects with the last offset it saw gets
//! what it missed, in order, exactly once, then the live publications; or
//! it is told that recovery failed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tether::{CloseCode, WebSocket};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(engine: &str, extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0", "--topics", "--engine", engine])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|word| word.starts_with("ws://")).expect(&line).to_owned();
    (Running(child), url)
}

async fn next(ws: &mut WebSocket) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.expect("a message in time");
    let message = message.unwrap().expect("open");
    serde_json::from_str(message.as_text().unwrap()).unwrap()
}

async fn subscribe(url: &str, topic: &str, recover: Option<&Value>) -> (WebSocket, Value) {
    let mut ws = tether::connect(url).await.unwrap();
    let mut request = json!({ "op": "subscribe", "topic": topic });
    if let Some(position) = recover {
        request["recover"] = position.clone();
    }
    ws.send(request.to_string()).await.unwrap();
    let answer = next(&mut ws).await;
    assert_eq!(answer["op"], "subscribed", "{answer}");
    (ws, answer)
}

async fn publish(publisher: &mut WebSocket, topic: &str, data: Value) {
    publisher.send(json!({ "op": "publish", "topic": topic, "data": data }).to_string()).await.unwrap();
}

fn position(publication: &Value) -> Value {
    json!({ "offset": publication["offset"], "epoch": publication["epoch"] })
}

async fn recovers_what_it_missed_in_order_exactly_once(engine: &str) {
    let (_server, url) = serve(engine, &["--history", "100"]);
    let mut publisher = tether::connect(&url).await.unwrap();
    let (mut ws, answer) = subscribe(&url, "room", None).await;
    assert_eq!(answer["offset"], 0, "an empty stream: {answer}");
    publish(&mut publisher, "room", json!("first")).await;
    let first = next(&mut ws).await;
    assert_eq!((first["data"].clone(), first["offset"].clone()), (json!("first"), json!(1)));
    assert_eq!(first["epoch"], answer["epoch"]);
    // The client goes away; five publications happen without it.
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    for n in 2..=6 {
        publish(&mut publisher, "room", json!(n)).await;
    }
    // Publications keep coming while it recovers: each arrives once, after
    // the missed ones, in offset order.
    let (mut ws, answer) = subscribe(&url, "room", Some(&position(&first))).await;
    assert_eq!(answer["recovered"], true, "{answer}");
    for n in 7..=9 {
        publish(&mut publisher, "room", json!(n)).await;
    }
    let mut offsets = Vec::new();
    let mut data = Vec::new();
    while offsets.last() != Some(&9) {
        let publication = next(&mut ws).await;
        offsets.push(publication["offset"].as_u64().unwrap());
        data.push(publication["data"].clone());
    }
    // Whether 2..=6 were published before it came back (replayed) or after
    // (live), it gets each once, right after its own position.
    assert_eq!(offsets, (2..=9).collect::<Vec<u64>>(), "engine {engine}");
    assert_eq!(data, (2..=9).map(|n| json!(n)).collect::<Vec<_>>());
}

async fn a_position_the_history_cannot_serve_fails_recovery(engine: &str) {
    let (_server, url) = serve(engine, &["--history", "2", "--metrics"]);
    // Subscribed itself, the publisher knows when its publications are done.
    let (mut publisher, _) = subscribe(&url, "room", None).await;
    let (mut ws, _) = subscribe(&url, "room", None).await;
    publish(&mut publisher, "room", json!("seen")).await;
    let seen = next(&mut ws).await;
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    for n in 0..3 {
        publish(&mut publisher, "room", json!(n)).await;
    }
    for expected in [json!("seen"), json!(0), json!(1), json!(2)] {
        assert_eq!(next(&mut publisher).await["data"], expected);
    }
    // The history holds what it may, and says so.
    let metrics = common::scrape_metrics(&url);
    assert!(metrics.contains("tether_history_topics 1\n"), "{metrics}");
    assert!(metrics.contains("tether_history_publications 2\n"), "{metrics}");
    // Three missed, two kept: recovery fails, and nothing is replayed.
    let (mut ws, answer) = subscribe(&url, "room", Some(&position(&seen))).await;
    assert_eq!((answer["recovered"].clone(), answer["offset"].clone()), (json!(false), json!(4)), "{answer}");
    publish(&mut publisher, "room", json!("live")).await;
    let live = next(&mut ws).await;
    assert_eq!((live["data"].clone(), live["offset"].clone()), (json!("live"), json!(5)), "the live stream goes on");
    // Another epoch (a restarted server's, say): failed too.
    let stale = json!({ "offset": 1, "epoch": "not-this-one" });
    let (_ws, answer) = subscribe(&url, "room", Some(&stale)).await;
    assert_eq!(answer["recovered"], false, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactor_recovers_what_a_client_missed_in_order_exactly_once() {
    recovers_what_it_missed_in_order_exactly_once("reactor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_recovers_what_a_client_missed_in_order_exactly_once() {
    recovers_what_it_missed_in_order_exactly_once("tokio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactor_fails_recovery_it_cannot_serve() {
    a_position_the_history_cannot_serve_fails_recovery("reactor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_fails_recovery_it_cannot_serve() {
    a_position_the_history_cannot_serve_fails_recovery("tokio").await;
}
