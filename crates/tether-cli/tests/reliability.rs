//! `tether serve` under the load patterns of `RELIABILITY.md` that need a
//! whole server process: its memory is read from `/proc`, as an operator
//! would.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::serve;

use tether::{Message, WebSocket};

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// One value from the server's `/metrics`.
fn metric(url: &str, name: &str) -> f64 {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(name)).expect(name);
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A compressible message of about 1 KiB, different for each client.
fn chatter(client: usize) -> Message {
    Message::from(format!("client {client} says: {}", "the quick brown fox jumps over the lazy dog ".repeat(24)))
}

/// Opens a client (permessage-deflate on, as by default), has one message
/// echoed so both compression contexts exist on both ends, then sends one
/// more and leaves it in flight.
async fn compressed_client(url: String, client: usize) -> WebSocket {
    let mut ws = tether::connect(&url).await.unwrap();
    ws.send(chatter(client)).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(chatter(client)));
    ws.send(chatter(client)).await.unwrap();
    ws
}

/// RELIABILITY 25, `mass_disconnect_cleanup` (after `ws` issue 1617, where
/// compression contexts outlived their connections): 10,000 compressed
/// connections vanish at once with messages in flight; the server's open
/// gauge returns to 0 and, 5 s later, its memory to within 10 % of what it
/// held before.
#[test]
fn mass_disconnect_cleanup() {
    const CLIENTS: usize = 10_000;
    const WARM_UP: usize = 250;
    let (server, url) = serve(&["--metrics"]);
    let pid = server.0.id();
    // The baseline is a server that has already served (and lost) one
    // smaller wave the same way: its runtime threads, per-thread buffers
    // and allocator arenas exist. What the test looks for is memory that
    // each wave leaves behind.
    let (_, _) = wave(&url, pid, WARM_UP);
    let baseline = rss(pid);
    let (peak, emptied) = wave(&url, pid, CLIENTS);
    std::thread::sleep(Duration::from_secs(5));
    let after = rss(pid);
    println!(
        "RSS: baseline {:.1} MB, with {CLIENTS} connections {:.1} MB, 5 s after they left {:.1} MB \
         (all gone from the gauge in {emptied:?})",
        baseline as f64 / 1e6,
        peak as f64 / 1e6,
        after as f64 / 1e6
    );
    assert!(after as f64 <= baseline as f64 * 1.1, "the memory of closed connections was not returned");
}

/// Opens `clients` compressed connections, 250 at a time, then drops them
/// all at once, without a close frame, mid-message; waits until the gauge
/// says none is open. Returns the server's RSS at the peak and how long the
/// gauge took to reach 0.
fn wave(url: &str, pid: u32, clients: usize) -> (u64, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let open = runtime.block_on(async {
        let mut open = Vec::with_capacity(clients);
        for batch in (0..clients).collect::<Vec<_>>().chunks(250) {
            let opening: Vec<_> =
                batch.iter().map(|&client| tokio::spawn(compressed_client(url.to_owned(), client))).collect();
            for task in opening {
                open.push(task.await.unwrap());
            }
        }
        open
    });
    assert_eq!(metric(url, "tether_connections_open"), clients as f64);
    let peak = rss(pid);
    drop(open);
    drop(runtime);
    let start = Instant::now();
    while metric(url, "tether_connections_open") != 0.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "connections still open after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let emptied = start.elapsed();
    // The server gives memory back once a wave has passed (within 2 s).
    std::thread::sleep(Duration::from_millis(2500));
    (peak, emptied)
}
