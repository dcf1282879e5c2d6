//! What the CLI's test files share: running `tether serve` as a child
//! process that cannot outlive its test, and reading its metrics. Not
//! every test file uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// A child process killed when dropped, so a failing test leaks nothing.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tether serve` on a free port and returns it with its URL.
pub fn serve(extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("ws://") || word.starts_with("wss://"))
        .expect(&line)
        .to_owned();
    (Running(child), url)
}

// Not every test binary that includes this module uses what follows.
#[allow(dead_code)]
/// Starts `tether serve` with `env` and keeps reading its standard error:
/// returns it, its URL, and its stderr lines as they come.
pub fn serve_logged(extra: &[&str], env: &[(&str, &str)]) -> (Running, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        let mut line = String::new();
        while matches!(stderr.read_line(&mut line), Ok(n) if n > 0) {
            if lines.send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });
    let running = Running(child);
    let first = received.recv_timeout(std::time::Duration::from_secs(20)).expect("tether serve said nothing");
    let url = first
        .split_whitespace()
        .find(|word| word.starts_with("ws://") || word.starts_with("wss://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    (running, url, received)
}

#[allow(dead_code)]
/// What a server printed within `limit` (it keeps running).
pub fn printed(lines: &mpsc::Receiver<String>, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    let mut out = String::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => out.push_str(&line),
            Err(_) => break,
        }
    }
    out
}

#[allow(dead_code)]
/// `GET /metrics` from a `tether serve --metrics` at `url` (a `ws://` URL):
/// the whole HTTP answer.
pub fn scrape_metrics(url: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}
