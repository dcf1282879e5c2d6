//! What an idle connection costs the reactor: its heap, measured by a
//! counting allocator around 2,000 connections held open.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::{raw_client, wait_for};

use tether::hub::Hub;
use tether::reactor::{Conn, Reactor};
use tether::{Message, ServerConfig};

/// Counts the whole process's heap in use (the reactor runs on a thread
/// of its own), to measure what a connection holds. Alone in its test
/// binary, so no other test's allocations are counted.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller keeps `alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from System with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as `dealloc`, and `new_size` is the caller's promise.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn an_idle_connection_holds_no_buffers_and_under_600_bytes_of_heap() {
    const CONNECTIONS: usize = 2000;
    let hub = Hub::default();
    let mut config = ServerConfig::default();
    config.hub = Some(hub.clone());
    // Measured once the opening deadlines have passed: an idle connection
    // in its steady state.
    config.open_timeout = Duration::from_millis(500);
    let reactor = Reactor::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let url = format!("ws://{}/", reactor.local_addr().unwrap());
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || {
        reactor.run(|conn: &mut Conn<'_>, message: Message| {
            let _ = conn.send(&message);
        })
    });
    // Warm up what the loop allocates once (its read buffer, tables).
    let warm: Vec<_> = (0..50).map(|_| raw_client(&url)).collect();
    wait_for("warm-up", Duration::from_secs(5), || hub.count() == 50);
    drop(warm);
    wait_for("warm-up to leave", Duration::from_secs(5), || hub.count() == 0);
    let before = LIVE.load(Ordering::Relaxed);
    let clients: Vec<_> = (0..CONNECTIONS).map(|_| raw_client(&url)).collect();
    wait_for("all registered", Duration::from_secs(10), || hub.count() == CONNECTIONS);
    std::thread::sleep(Duration::from_millis(700));
    let per_connection = (LIVE.load(Ordering::Relaxed) - before) / CONNECTIONS as isize;
    println!("heap per idle connection (hub, keepalive on): {per_connection} B");
    // 538 B on 2026-12-04: the slot (264 B: the session and the
    // connection's 168 B, its buffers and frame state given back), the
    // hub's member (its entry and mailbox, 192 B), the registry's and the
    // slot table's entries, a deadline or two (16 B each). No waker, no
    // path, no copy of the settings of its own.
    assert!(per_connection < 600, "{per_connection} B");

    // A busy connection keeps its buffers between turns, and gives them
    // back once it has been quiet a while: after an exchange, idle
    // connections cost what they did before it.
    let mut clients = clients;
    let masked_hello = [0x82, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
    for client in &mut clients {
        client.write_all(&masked_hello).unwrap();
    }
    for client in &mut clients {
        let mut echo = [0u8; 7];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"\x82\x05hello");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_exchange = (LIVE.load(Ordering::Relaxed) - before) / CONNECTIONS as isize;
    println!("heap per idle connection after an exchange: {after_exchange} B");
    assert!(after_exchange <= per_connection + 64, "{after_exchange} B, {per_connection} B before");

    // A subscriber that only receives gives its buffers back at the end
    // of the turn that wrote the mail: a broadcast to thousands does not
    // leave each of them holding an output buffer.
    let news = "n".repeat(1000);
    hub.broadcast(&Message::from(news.as_str()));
    for client in &mut clients {
        let mut frame = [0u8; 1004];
        client.read_exact(&mut frame).unwrap();
        assert_eq!(frame[..4], [0x81, 126, 0x03, 0xe8]);
        assert_eq!(&frame[4..], news.as_bytes());
    }
    std::thread::sleep(Duration::from_millis(30));
    let after_broadcast = (LIVE.load(Ordering::Relaxed) - before) / CONNECTIONS as isize;
    println!("heap per idle connection just after a broadcast: {after_broadcast} B");
    assert!(after_broadcast <= per_connection + 128, "{after_broadcast} B, {per_connection} B before");
    drop(clients);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}
