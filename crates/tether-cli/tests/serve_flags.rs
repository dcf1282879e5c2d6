//! `tether serve` exposes what the library has, on both engines: the
//! event loop (`--engine reactor`, the default) and the tokio server.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{printed, serve, serve_logged};

const ENGINES: [&str; 2] = ["reactor", "tokio"];

/// A raw HTTP request to the server at `url`; its whole answer.
fn http(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

fn upgrade(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// `tether connect URL` fed `input`; (stdout, stderr, exit status).
fn connect(url: &str, args: &[&str], input: &str) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("connect")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (text(&output.stdout), text(&output.stderr), output.status.success())
}

#[test]
fn tether_trace_on_the_server_prints_its_handshakes_and_frames_on_both_engines() {
    for engine in ENGINES {
        let (_server, url, lines) = serve_logged(&["--engine", engine], &[("TETHER_TRACE", "1")]);
        let (stdout, stderr, _) = connect(&url, &[], "traced\n");
        assert_eq!(stdout, "< traced\n", "{engine}: {stderr}");
        let trace = printed(&lines, Duration::from_millis(500));
        for expected in
            ["request:", "GET / HTTP/1.1", "response:", "HTTP/1.1 101", "< TEXT fin=1", "> TEXT fin=1", "\"traced\""]
        {
            assert!(trace.contains(expected), "{engine}: {expected:?} missing from the server's trace:\n{trace}");
        }
    }
}

#[test]
fn a_wss_client_at_a_plain_port_is_told_what_happened() {
    let (_server, url) = serve(&[]);
    let (_, stderr, ok) = connect(&url.replace("ws://", "wss://"), &[], "");
    assert!(!ok);
    assert!(stderr.contains("plain text") && stderr.contains("ws://"), "{stderr}");
}

#[test]
fn a_failure_is_one_line_without_a_backtrace_even_with_rust_backtrace_set() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens there now
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &format!("ws://127.0.0.1:{port}/")])
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.starts_with("error: ") && stderr.contains("refused"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line, causes joined:\n{stderr}");
}

#[test]
fn health_auth_origins_and_subprotocols_from_flags_on_both_engines() {
    for engine in ENGINES {
        let (_server, url) = serve(&[
            "--engine",
            engine,
            "--health",
            "/healthz",
            "--bearer-token",
            "s3cret",
            "--allowed-origin",
            "https://app.example",
            "--subprotocol",
            "chat.v2",
        ]);
        assert!(http(&url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200"), "{engine}");
        let anonymous = http(&url, &upgrade(""));
        assert!(
            anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("WWW-Authenticate: Bearer"),
            "{engine}: {anonymous}"
        );
        let foreign = http(&url, &upgrade("Authorization: Bearer s3cret\r\nOrigin: https://evil.example\r\n"));
        assert!(foreign.starts_with("HTTP/1.1 403"), "{engine}: {foreign}");
        let welcome =
            http(&url, &upgrade("Authorization: Bearer s3cret\r\nSec-WebSocket-Protocol: chat.v1, chat.v2\r\n"));
        assert!(welcome.starts_with("HTTP/1.1 101"), "{engine}: {welcome}");
        assert!(welcome.contains("Sec-WebSocket-Protocol: chat.v2"), "{engine}: {welcome}");
        let (stdout, stderr, _) = connect(&url, &["-H", "Authorization: Bearer s3cret"], "authorised\n");
        assert_eq!(stdout, "< authorised\n", "{engine}: {stderr}");
    }
}

#[test]
fn basic_auth_from_a_flag() {
    let (_server, url) = serve(&["--basic-auth", "ada:lovelace"]);
    assert!(http(&url, &upgrade("")).starts_with("HTTP/1.1 401"));
    // "ada:lovelace" in base64.
    assert!(http(&url, &upgrade("Authorization: Basic YWRhOmxvdmVsYWNl\r\n")).starts_with("HTTP/1.1 101"));
    // Credentials in the URL are sent as Basic authentication, as the
    // Python clients do.
    let with_credentials = url.replace("ws://", "ws://ada:lovelace@");
    let (stdout, stderr, _) = connect(&with_credentials, &[], "in\n");
    assert_eq!(stdout, "< in\n", "{stderr}");
    let (_, stderr, _) = connect(&url.replace("ws://", "ws://ada:wrong@"), &[], "out\n");
    assert!(stderr.contains("401"), "a wrong password is refused: {stderr}");
}

#[test]
fn metrics_on_their_own_address_are_not_on_the_websocket_port() {
    let (_server, url, lines) = serve_logged(&["--metrics-listen", "127.0.0.1:0"], &[]);
    let said = printed(&lines, Duration::from_millis(300));
    let metrics_url = said
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no metrics address in {said:?}"));
    let (stdout, _, _) = connect(&url, &[], "counted\n");
    assert_eq!(stdout, "< counted\n");
    let metrics_addr = metrics_url.trim_start_matches("http://").trim_end_matches("/metrics");
    let scraped = http(&format!("ws://{metrics_addr}/"), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(scraped.contains("tether_messages_received_total 1\n"), "{scraped}");
    let public = http(&url, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!public.contains("tether_messages_received_total"), "{public}");
}

#[test]
fn a_host_name_is_a_valid_listen_address() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "localhost:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stderr.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on ws://"), "{line}");
}

#[test]
fn impossible_keepalive_flags_are_refused_with_the_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0", "--ping-interval", "off", "--ping-timeout", "5"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ping_interval"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0", "--ping-interval", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("positive"));
}

#[test]
fn refusals_are_logged_at_debug_as_json_lines_on_both_engines() {
    for engine in ENGINES {
        let (_server, url, lines) = serve_logged(&["-vv", "--log-format", "json", "--engine", engine], &[]);
        // Plain HTTP without an upgrade: refused with 426, logged at debug.
        assert!(http(&url, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 426"));
        let logged = printed(&lines, Duration::from_millis(300));
        let refusal = logged
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|error| panic!("{error}: {line}"))
            })
            .find(|entry| entry["fields"]["message"] == "request refused")
            .unwrap_or_else(|| panic!("{engine}: no refusal in\n{logged}"));
        assert_eq!(refusal["level"], "DEBUG", "{refusal}");
        assert_eq!(refusal["fields"]["status"], 426, "{refusal}");
        let (stdout, _, _) = connect(&url, &[], "quiet\n");
        assert_eq!(stdout, "< quiet\n", "{engine}");
        let quiet = printed(&lines, Duration::from_millis(200));
        assert!(quiet.lines().all(|line| line.starts_with('{')), "{engine}: a line that is not JSON:\n{quiet}");
    }
}

#[test]
fn idle_clients_are_closed_with_1001_at_the_idle_timeout() {
    let (_server, url) = serve(&["--idle-timeout", "0.3", "--ping-interval", "off", "--ping-timeout", "off"]);
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1001"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
