//! What the reactor's test files share.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Polls `condition` every 5 ms until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An upgrade by hand on a blocking socket, read a byte at a time so that
/// nothing after the `101` is consumed; returns the socket. It holds no
/// heap memory (what the memory test counts is the server's).
pub fn raw_client(url: &str) -> std::net::TcpStream {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let mut have = 0;
    while !head[..have].ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut head[have..=have]).unwrap();
        have += 1;
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head[..have]));
    tcp
}
