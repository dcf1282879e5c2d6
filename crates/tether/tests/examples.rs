//! Every seed example's Rust counterpart (`crates/tether/examples/seed*.rs`,
//! listed in `docs/seed-examples.md`) run as a program against a real peer:
//! Python `websockets` servers and clients, the seed's own JSON heartbeat
//! pair (`tests/peers/seed_heartbeat_*.py`), or tether's `serve`.
//!
//! The examples are built by `cargo test` (as every example is); run
//! `cargo build -p tether --examples` first when running this file alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether_test_support::{self as support, Peer};

fn example_path(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build -p tether --examples` first", path.display());
    path
}

fn example(name: &str) -> Command {
    let mut command = Command::new(example_path(name));
    command.env_remove("TETHER_TRACE");
    command
}

/// Runs a client example to its end; returns (status code, stdout, stderr).
fn run(mut command: Command, stdin: &str, limit: Duration) -> (i32, String, String) {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    let guard = Killer(child);
    let start = Instant::now();
    let mut child = guard;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < limit, "the example did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(input);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// Kills a child on drop, so a failed assertion leaks nothing.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server example started on a free port (its `LISTENING <port>` line).
fn server_example(name: &str, args: &[&str]) -> Peer {
    let mut command = example(name);
    command.args(["--listen", "127.0.0.1:0"]).args(args);
    Peer::server(command, Duration::from_secs(15)).unwrap()
}

fn python_echo() -> Peer {
    support::python_echo_server(0)
}

fn ws_url(peer: &Peer) -> String {
    format!("ws://127.0.0.1:{}/", peer.port())
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn seed000_app_runs_every_callback_against_python_websockets() {
    let server = python_echo();
    let mut command = example("seed000_app");
    command.args([&ws_url(&server), "--messages", "3"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for line in
        ["opened", "message: Hello 0", "message: Hello 1", "message: Hello 2", "### closed ### 1000", "stopped: Closed"]
    {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(stdout.contains("data: Text"), "on_data sees each message:\n{stdout}");
}

#[test]
fn seed000_thread_send_traces_sends_from_a_thread_and_closes() {
    let server = python_echo();
    let mut command = example("seed000_thread_send");
    command.args([&ws_url(&server), "--pause-ms", "400"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("hello1\n"), "{stdout}");
    assert!(stdout.contains("### closed ### code=Some(1000)"), "{stdout}");
    assert!(stdout.contains("thread terminating..."), "{stdout}");
    assert!(stderr.contains("GET / HTTP/1.1") && stderr.contains("> TEXT fin=1"), "trace on stderr:\n{stderr}");
}

#[test]
fn seed000_handler_implements_the_callbacks_as_one_type() {
    let server = python_echo();
    let mut command = example("seed000_handler");
    command.args([&ws_url(&server), "--pause-ms", "300"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Hello 0\nHello 1\nHello 2\n"), "{stdout}");
    assert!(stdout.contains("Thread terminating...") && stdout.contains("### closed ###"), "{stdout}");
}

#[test]
fn seed000_short_is_a_blocking_request_and_answer() {
    let server = python_echo();
    let mut command = example("seed000_short");
    command.arg(ws_url(&server));
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "Sending 'Hello, World'...\nSent\nReceiving...\nReceived 'Hello, World'\n");
}

#[test]
fn seed001_customers_simulates_many_clients() {
    let server = python_echo();
    let mut command = example("seed001_customers");
    command.args([&ws_url(&server), "--clients", "40", "--messages", "5", "--ping-interval", "1"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("40 customers, 200 messages echoed, 0 failed"), "{stdout}");
}

#[test]
fn seed002_reply_server_answers_python_websockets_and_the_short_loop() {
    let server = server_example("seed002_reply_server", &[]);
    // A client we did not write: Python websockets, one request.
    let mut python = Command::new(support::python());
    python.args([
        "-c",
        "import sys, asyncio\nfrom websockets.asyncio.client import connect\n\
         async def main():\n    async with connect(sys.argv[1]) as ws:\n        await ws.send('hi')\n        print(await ws.recv())\n\
         asyncio.run(main())",
        &ws_url(&server),
    ]);
    let (code, stdout, stderr) = run(python, "", LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let shape = regex_like(&stdout);
    assert!(shape, "the seed's reply format: {stdout:?}");

    let mut command = example("seed002_short_loop");
    command.args([&ws_url(&server), "--rounds", "3", "--pause-ms", "50"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[2].starts_with("Data received as \"[3] - 客户端 → 服务端.\".  time: 20"), "{stdout}");
}

/// `Data received as "hi".  time: YYYY-MM-DD HH:MM:SS.ffffff`.
fn regex_like(line: &str) -> bool {
    let Some(time) = line.trim_end().strip_prefix("Data received as \"hi\".  time: ") else { return false };
    let shape: String = time.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    shape == "9999-99-99 99:99:99.999999"
}

#[test]
fn seed003_heartbeat_client_sends_lines_until_exit_and_reconnects_after_a_loss() {
    let server = python_echo();
    let mut command = example("seed003_heartbeat_client");
    command.args([&ws_url(&server), "--ping-interval", "0.3", "--ping-timeout", "1", "--reconnect-after", "0.2"]);
    let (code, stdout, stderr) = run(command, "hello\nexit\n", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("connected to") && stdout.ends_with("bye\n"), "{stdout}");

    // The server goes away and comes back: the client reconnects and goes on.
    let port = support::free_port();
    let start_server = || support::python_echo_server(port);
    let mut server = start_server();
    let mut command = example("seed003_heartbeat_client");
    command.args([
        &format!("ws://127.0.0.1:{port}/"),
        "--ping-interval",
        "0.3",
        "--ping-timeout",
        "1",
        "--reconnect-after",
        "0.3",
    ]);
    let mut child = Killer(command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut expect = |prefix: &str| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("no line starting with {prefix:?}");
    };
    expect("connected");
    server.kill();
    let lost = expect("connection lost");
    server = start_server();
    expect("connected");
    writeln!(stdin, "after the reconnect").unwrap();
    assert_eq!(expect("received"), "received: after the reconnect");
    writeln!(stdin, "exit").unwrap();
    expect("bye");
    println!("reported: {lost}");
    drop(server);
}

#[test]
fn seed003_heartbeat_server_drops_a_frozen_client_from_its_set() {
    let server = server_example("seed003_heartbeat_server", &["--ping-interval", "0.5", "--ping-timeout", "0.5"]);
    let mut client = Peer::spawn({
        let mut command = support::python_peer("py_quiet_client.py");
        command.arg(ws_url(&server));
        command
    })
    .unwrap();
    client.wait_line("CONNECTED", Duration::from_secs(15)).unwrap();
    server.wait_line("joined", Duration::from_secs(5)).unwrap();
    client.freeze();
    let left = server.wait_line("left", Duration::from_secs(5)).unwrap();
    assert!(left.contains("keepalive ping timeout") && left.trim_end().ends_with("(0 connected)"), "{left}");
}

#[test]
fn seed003_manual_heartbeat_client_against_the_seeds_python_server() {
    let server = Peer::server(support::python_peer("seed_heartbeat_server.py"), Duration::from_secs(15)).unwrap();
    let mut command = example("seed003_manual_heartbeat_client");
    command.args([&ws_url(&server), "--interval", "0.2", "--timeout", "1", "--count", "3"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("PONG rtt_ms=").count(), 3, "{stdout}");
    assert!(!stdout.contains("MESSAGE"), "heartbeat answers are not delivered as messages:\n{stdout}");

    // A server that stops answering: the client declares it gone.
    let mut quiet = support::python_peer("seed_heartbeat_server.py");
    quiet.args(["--max-pongs", "1"]);
    let server = Peer::server(quiet, Duration::from_secs(15)).unwrap();
    let mut command = example("seed003_manual_heartbeat_client");
    command.args([&ws_url(&server), "--interval", "0.2", "--timeout", "0.5"]);
    let started = Instant::now();
    let (code, stdout, _) = run(command, "", LIMIT);
    assert_eq!((code, stdout.matches("PONG").count()), (2, 1), "{stdout}");
    assert!(stdout.contains("TIMEOUT"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn seed003_manual_heartbeat_server_answers_the_seeds_python_client() {
    let server = server_example("seed003_manual_heartbeat_server", &[]);
    let mut client = support::python_peer("seed_heartbeat_client.py");
    client.args([&ws_url(&server), "--interval", "0.2", "--timeout", "2", "--count", "3"]);
    let output = support::run_client(client, LIMIT).unwrap();
    assert!(output.stdout.contains("DONE pongs=3"), "{}", output.stdout);
    assert_eq!(output.stdout.matches("PONG rtt_ms=").count(), 3);

    // And the Rust pair together.
    let mut command = example("seed003_manual_heartbeat_client");
    command.args([&ws_url(&server), "--interval", "0.2", "--timeout", "1", "--count", "2"]);
    let (code, stdout, stderr) = run(command, "", LIMIT);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("PONG rtt_ms=").count(), 2, "{stdout}");
}
