//! At the open-file limit (the kernel's `EMFILE`), on both engines: past
//! the limit new clients are told 503 at once, never left hanging in the
//! accept backlog, and once clients leave the server accepts again by
//! itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `tether serve` with an open-file limit of `limit` (soft and hard, so
/// that it cannot raise it); its address.
fn serve_with_file_limit(engine: &str, limit: u32) -> (Running, String) {
    let tether = env!("CARGO_BIN_EXE_tether");
    let script = format!("ulimit -n {limit} && exec {tether} serve --listen 127.0.0.1:0 {engine}");
    let mut child = Command::new("sh").args(["-c", &script]).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stderr.take().unwrap()), &mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("ws://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    (Running(child), addr)
}

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends an upgrade request; the status the server answers with, or
/// `None` if it said nothing within `limit`.
fn request(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(UPGRADE).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn past_the_open_file_limit_clients_get_503_at_once_and_the_server_recovers_when_they_leave() {
    for engine in ["--engine reactor --threads 1", "--engine reactor --threads 2", "--engine tokio"] {
        let (_server, addr) = serve_with_file_limit(engine, 64);
        let started = Instant::now();
        let mut open = Vec::new();
        let mut busy = 0;
        for _ in 0..120 {
            let mut client = TcpStream::connect(&addr).unwrap();
            match request(&mut client, Duration::from_secs(3)) {
                Some(101) => open.push(client),
                Some(503) => busy += 1,
                other => panic!("{engine}: a client past the limit got {other:?} (after {} open)", open.len()),
            }
        }
        println!("{engine}: {} open, {busy} told 503, in {:?}", open.len(), started.elapsed());
        assert!(open.len() >= 20, "{engine}: only {} connections under a limit of 64", open.len());
        assert!(busy >= 40, "{engine}: the limit was never reached ({busy} refused)");
        // Everyone leaves; the server must take new clients without help.
        drop(open);
        let recovered = Instant::now();
        let mut again = Vec::new();
        while again.len() < 10 {
            let mut client = TcpStream::connect(&addr).unwrap();
            match request(&mut client, Duration::from_secs(3)) {
                Some(101) => again.push(client),
                Some(503) => {
                    // Departures still being processed: a moment, then retry.
                    assert!(
                        recovered.elapsed() < Duration::from_secs(2),
                        "{engine}: still refusing after clients left"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!("{engine}: after clients left, a new one got {other:?}"),
            }
        }
        println!("{engine}: accepting again {:?} after the crowd left", recovered.elapsed());
    }
}
