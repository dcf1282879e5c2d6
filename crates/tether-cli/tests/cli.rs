//! The `tether` command as users and outside checks run it:
//! `tether serve --listen HOST:PORT --max-message-size BYTES` and
//! `tether connect URL` with lines on standard input.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{serve, Running};

fn connect(url: &str, input: &str) -> (String, String) {
    connect_with_env(url, input, &[])
}

/// `tether connect URL` with every standard stream piped.
fn spawn_connect(url: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", url])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn connect_with_env(url: &str, input: &str, env: &[(&str, &str)]) -> (String, String) {
    let (stdout, stderr, _) = run_connect(spawn_connect(url, env), input);
    (stdout, stderr)
}

/// Feeds `input` to a `tether connect` and waits for it: what it printed,
/// and how it exited.
fn run_connect(mut child: Child, input: &str) -> (String, String, std::process::ExitStatus) {
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tether connect did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (stdout, stderr, status)
}

#[test]
fn connect_sends_each_line_and_prints_each_echo_then_closes_cleanly() {
    let (_server, url) = serve(&[]);
    let (stdout, stderr) = connect(&url, "hello\nκόσμε\n");
    assert_eq!(stdout, "< hello\n< κόσμε\n", "stderr: {stderr}");
    assert!(stderr.contains("Connected to"), "{stderr}");
    assert!(stderr.contains("Connection closed: 1000"), "{stderr}");
}

#[test]
fn serve_enforces_max_message_size_with_1009() {
    let (_server, url) = serve(&["--max-message-size", "10"]);
    let (stdout, stderr, status) = run_connect(spawn_connect(&url, &[]), "0123456789\n01234567890\n");
    assert_eq!(stdout, "< 0123456789\n", "stderr: {stderr}");
    assert!(stderr.contains("1009"), "{stderr}");
    assert!(!status.success(), "a close that is not normal is a failure for scripts: {status}");
}

#[test]
fn connect_exits_zero_after_a_normal_close_and_prints_raw_messages_for_pipes() {
    let (_server, url) = serve(&[]);
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", "--raw", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = run_connect(child, "plain\n{\"json\": 1}\n");
    assert_eq!(stdout, "plain\n{\"json\": 1}\n", "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn connect_reports_a_refused_connection_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (_, stderr) = connect(&format!("ws://127.0.0.1:{port}/"), "");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn tether_trace_prints_the_handshake_and_every_frame() {
    let (_server, url) = serve(&[]);
    let (stdout, stderr) = connect_with_env(&url, "traced\n", &[("TETHER_TRACE", "1")]);
    assert_eq!(stdout, "< traced\n", "stderr: {stderr}");
    for expected in [
        "request",
        "GET / HTTP/1.1",
        "Sec-WebSocket-Key",
        "HTTP/1.1 101",
        "> TEXT fin=1",
        "\"traced\"",
        "< TEXT fin=1",
        "> CLOSE",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from the trace:\n{stderr}");
    }
    let (_, quiet) = connect(&url, "quiet\n");
    assert!(!quiet.contains("> TEXT"), "no trace without the switch:\n{quiet}");
}

#[test]
fn connect_honours_http_proxy_from_the_environment() {
    let mut command = tether_test_support::python_peer("proxy.py");
    command.args(["--kind", "http", "--engine", "tinyproxy", "--user", "alice", "--password", "s3cret"]);
    let proxy = tether_test_support::Peer::server(command, Duration::from_secs(20)).unwrap();
    let (_server, url) = serve(&[]);
    let proxy_url = format!("http://alice:s3cret@127.0.0.1:{}", proxy.port());
    // no_proxy is set (to something else), so loopback is not exempt.
    let env = [("http_proxy", proxy_url.as_str()), ("no_proxy", "example.invalid")];
    let (stdout, stderr) = connect_with_env(&url, "via the proxy\n", &env);
    assert_eq!(stdout, "< via the proxy\n", "stderr: {stderr}");
    let port = url.trim_end_matches('/').rsplit(':').next().unwrap();
    assert!(proxy.stderr().contains(&format!("127.0.0.1:{port}")), "the proxy saw the tunnel: {}", proxy.stderr());

    let wrong = format!("http://alice:wrong@127.0.0.1:{}", proxy.port());
    let (_, stderr) = connect_with_env(&url, "", &[("http_proxy", wrong.as_str()), ("no_proxy", "example.invalid")]);
    assert!(stderr.contains("proxy"), "{stderr}");
}

#[test]
fn connect_k_accepts_a_certificate_nobody_vouches_for_and_says_it_only_when_asked() {
    let cert = tether_test_support::TestCert::new();
    let (cert_path, key_path) = (cert.cert_path().to_str().unwrap(), cert.key_path().to_str().unwrap());
    let (_server, url) = serve(&["--tls-cert", cert_path, "--tls-key", key_path]);
    let run = |flags: &[&str]| {
        let child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("connect")
            .args(flags)
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        run_connect(child, "over tls\n")
    };
    let (stdout, stderr, status) = run(&["-k"]);
    assert_eq!(stdout, "< over tls\n", "{stderr}");
    assert!(status.success(), "{stderr}");
    // Without -k the self-signed certificate is refused, and said so.
    let (stdout, stderr, status) = run(&[]);
    assert!(stdout.is_empty() && !status.success(), "{stdout}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}

#[test]
fn shutdown_closes_every_client_with_1001_and_exits() {
    let (mut server, url) = serve(&["--close-timeout", "2"]);
    let mut clients: Vec<_> = (0..3)
        .map(|_| {
            let mut child = spawn_connect(&url, &[]);
            let mut line = String::new();
            BufReader::new(child.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
            assert!(line.starts_with("Connected"), "{line}");
            Running(child)
        })
        .collect();
    let started = Instant::now();
    // Stop the server the way an operator would.
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    while server.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    for client in &mut clients {
        let mut stderr = String::new();
        client.0.wait().unwrap();
        client.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(stderr.contains("1001"), "each client saw 1001: {stderr}");
    }
}

#[test]
fn broadcast_sends_each_message_to_every_client() {
    let (_server, url) = serve(&["--broadcast"]);
    let mut listener = spawn_connect(&url, &[]);
    let mut line = String::new();
    BufReader::new(listener.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let stdout = listener.stdout.take().unwrap();
    let _listener = Running(listener);
    let (heard_tx, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = heard_tx.send(line);
    });
    let (stdout, _) = connect(&url, "to everyone\n");
    assert_eq!(stdout, "< to everyone\n", "the sender gets it too");
    assert_eq!(heard.recv_timeout(Duration::from_secs(10)).unwrap(), "< to everyone\n", "and the other client");
}

#[test]
fn topics_subscribe_and_publish_with_json() {
    let (_server, url) = serve(&["--topics"]);
    let mut subscriber = spawn_connect(&url, &[]);
    let mut input = subscriber.stdin.take().unwrap();
    let mut lines = BufReader::new(subscriber.stdout.take().unwrap()).lines();
    let _subscriber = Running(subscriber);
    writeln!(input, r#"{{"op":"subscribe","topic":"room1"}}"#).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), r#"< {"op":"subscribed","topic":"room1"}"#);
    // Another client publishes to room1 and room2; only room1 arrives.
    let (stdout, _) = connect(
        &url,
        "{\"op\":\"publish\",\"topic\":\"room2\",\"data\":\"no\"}\n{\"op\":\"publish\",\"topic\":\"room1\",\"data\":{\"text\":\"hi\"}}\nnonsense\n",
    );
    assert!(stdout.contains(r#""op":"error""#), "bad input is answered: {stdout}");
    assert_eq!(lines.next().unwrap().unwrap(), r#"< {"data":{"text":"hi"},"topic":"room1"}"#);
}

#[test]
fn serve_metrics_answers_prometheus_text_on_the_same_port() {
    let (_server, url) = serve(&["--metrics"]);
    let (stdout, _) = connect(&url, "counted\n");
    assert_eq!(stdout, "< counted\n");
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("tether_messages_received_total 1\n"), "{answer}");
    assert!(answer.contains("tether_connections_closed_total{code=\"1000\"} 1\n"), "{answer}");
}

#[test]
fn the_demo_chat_works_between_two_chromium_pages_and_is_photographed() {
    let (_server, url) = serve(&["--demo"]);
    let page = url.replace("ws://", "http://");
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-chat.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut command = tether_test_support::python_peer("chromium_demo.py");
    command.arg(&page).arg("--screenshot").arg(&screenshot).arg("--chromium").arg(tether_test_support::chromium());
    let output = tether_test_support::run_client(command, Duration::from_secs(90)).unwrap();
    assert!(output.stdout.starts_with("OK"), "{}\n{}", output.stdout, output.stderr);
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "a real screenshot");
    println!("screenshot: {}", screenshot.display());
}

#[test]
fn static_files_are_served_on_the_same_port_without_escaping_the_directory() {
    let dir = tether_test_support::unique_temp_dir("tether-static");
    std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("app.js"), "let x = 1;").unwrap();
    let (_server, url) = serve(&["--static", dir.to_str().unwrap()]);
    let addr = url.trim_start_matches("ws://").trim_end_matches('/').to_owned();
    let get = |path: &str| {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    };
    let home = get("/");
    assert!(
        home.starts_with("HTTP/1.1 200 OK") && home.contains("text/html") && home.ends_with("<h1>home</h1>"),
        "{home}"
    );
    assert!(get("/app.js").contains("text/javascript"));
    assert!(get("/missing.txt").starts_with("HTTP/1.1 404"));
    assert!(get("/../etc/passwd").starts_with("HTTP/1.1 404"), "no escaping the directory");
    let (stdout, _) = connect(&url, "still a websocket\n");
    assert_eq!(stdout, "< still a websocket\n");
}
