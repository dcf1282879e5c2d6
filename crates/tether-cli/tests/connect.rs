//! `tether connect` as people and programs use it: at a real terminal (a
//! pty) with a prompt that incoming messages do not break, and in pipes
//! with `--jsonl`, `--base64`, `--binary`, `--origin`, `--timings`,
//! `--ping-interval`, `--reconnect` and `-v`.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{serve, Running};

/// `tether connect args…` with its standard streams piped; `input` is
/// written and standard input closed; what it printed and how it ended.
fn connect(args: &[&str], input: &str) -> (String, String, std::process::ExitStatus) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = wait_output(child, Duration::from_secs(20));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status,
    )
}

fn wait_output(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    finished
        .recv_timeout(limit)
        .unwrap_or_else(|_| {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
            panic!("tether connect did not exit within {limit:?}")
        })
        .unwrap()
}

fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect()
}

#[test]
fn jsonl_gives_one_object_per_event_with_time_type_and_size() {
    let (_server, url) = serve(&[]);
    let (stdout, stderr, status) = connect(&["--jsonl", &url], "hello\nκόσμε\n");
    assert!(status.success(), "{status}: {stderr}");
    let events = events(&stdout);
    let kinds: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["open", "text", "text", "close"], "{stdout}");
    assert_eq!((events[1]["data"].as_str(), events[1]["size"].as_u64()), (Some("hello"), Some(5)));
    assert_eq!((events[2]["data"].as_str(), events[2]["size"].as_u64()), (Some("κόσμε"), Some(10)));
    assert_eq!(events[3]["code"], 1000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(events.iter().all(|event| (now - event["time"].as_f64().unwrap()).abs() < 60.0));
}

#[test]
fn base64_lines_go_as_binary_and_binary_comes_back_as_base64() {
    let (_server, url) = serve(&[]);
    let (stdout, stderr, _) = connect(&["--base64", &url], "aGVsbG8=\nnot base64!\nAAEC/w==\n");
    assert_eq!(stdout, "< aGVsbG8=\n< AAEC/w==\n", "{stderr}");
    assert!(stderr.contains("Not base64"), "a bad line is said, not sent: {stderr}");
    let (stdout, _, _) = connect(&["--binary", "--jsonl", &url], "bytes\n");
    let echoed = &events(&stdout)[1];
    assert_eq!((echoed["type"].as_str(), echoed["base64"].as_str()), (Some("binary"), Some("Ynl0ZXM=")));
}

#[test]
fn origin_is_sent_and_an_origin_the_server_refuses_is_a_403() {
    let (_server, url) = serve(&["--allowed-origin", "https://good.example"]);
    let (stdout, stderr, status) = connect(&["--origin", "https://good.example", &url], "hi\n");
    assert_eq!(stdout, "< hi\n", "{stderr}");
    assert!(status.success());
    let (_, stderr, status) = connect(&["--origin", "https://evil.example", &url], "hi\n");
    assert!(!status.success() && stderr.contains("403"), "{status}: {stderr}");
}

#[test]
fn timings_show_each_step_of_connecting_and_when_messages_came() {
    let (_server, url) = serve(&[]);
    let (stdout, stderr, _) = connect(&["--timings", &url], "hi\n");
    let connected = stderr.lines().find(|line| line.starts_with("Connected to")).expect(&stderr);
    for step in ["DNS ", "TCP ", "handshake ", " ms"] {
        assert!(connected.contains(step), "{connected}");
    }
    assert!(stdout.starts_with("[+0.") && stdout.contains(" s] < hi"), "{stdout}");
}

#[test]
fn ping_interval_sends_keepalive_pings_whose_pongs_are_shown_in_jsonl() {
    let (_server, url) = serve(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", "--jsonl", "--ping-interval", "0.1", "--ping-timeout", "5", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    drop(stdin);
    let output = wait_output(child, Duration::from_secs(20));
    let pongs = events(&String::from_utf8_lossy(&output.stdout)).iter().filter(|event| event["type"] == "pong").count();
    assert!(pongs >= 3, "{pongs} pongs in 0.6 s at 0.1 s intervals");
}

#[test]
fn v_shows_the_handshake_and_frames() {
    let (_server, url) = serve(&[]);
    let (_, stderr, _) = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["-v", "connect", &url])
        .stdin(Stdio::null())
        .output()
        .map(|output| (output.stdout, String::from_utf8_lossy(&output.stderr).into_owned(), output.status))
        .unwrap();
    assert!(stderr.contains("GET / HTTP/1.1") && stderr.contains("101"), "{stderr}");
}

#[test]
fn reconnect_connects_again_after_the_server_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let start = || {
        Running(
            Command::new(env!("CARGO_BIN_EXE_tether"))
                .args(["serve", "--listen", &listen])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let server = start();
    let url = format!("ws://{listen}/");
    wait_for(|| std::net::TcpStream::connect(&listen).is_ok());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", "--reconnect", "--jsonl", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    stdin.write_all(b"before\n").unwrap();
    wait_for(|| stdout.lock().unwrap().contains("\"before\""));
    drop(server);
    wait_for(|| stdout.lock().unwrap().contains("\"reconnect\""));
    let _server = start();
    wait_for(|| stdout.lock().unwrap().matches("\"open\"").count() == 2);
    stdin.write_all(b"after\n").unwrap();
    wait_for(|| stdout.lock().unwrap().contains("\"after\""));
    drop(stdin);
    let output = wait_output(child, Duration::from_secs(20));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything `from` gives, as it comes.
fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// A pseudo-terminal of 24 rows and 100 columns: the side a program
/// reads and writes as its terminal, and ours.
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut ours, mut theirs) = (0, 0);
    let size = libc::winsize { ws_row: 24, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty(3) writes two descriptors, which we then own.
    let made = unsafe { libc::openpty(&mut ours, &mut theirs, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(made, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are open descriptors nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(ours), OwnedFd::from_raw_fd(theirs)) }
}

/// At a terminal: a prompt with line editing; a message that arrives
/// while a line is half typed is printed above the prompt, and the half
/// line is still there to finish; the history recalls the last line;
/// Ctrl-D closes normally.
#[test]
fn at_a_terminal_messages_do_not_break_the_line_being_typed() {
    let (_server, url) = serve(&["--broadcast"]);
    let (ours, theirs) = pty();
    let stdio = || Stdio::from(theirs.try_clone().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &url])
        .env("TERM", "xterm")
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut keyboard = Keyboard(std::fs::File::from(ours.try_clone().unwrap()));
    let screen = collect(std::fs::File::from(ours));
    let shown = || strip_escapes(&screen.lock().unwrap());
    let wait_screen = |what: &str, done: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        while !done(&shown()) {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}: {:?}", screen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_screen("a prompt", &|shown| shown.contains("> "));
    keyboard.write_all(b"first line\r").unwrap();
    wait_screen("contains('< first line')", &|shown| shown.contains("< first line"));
    keyboard.write_all(b"half typ").unwrap();
    wait_screen("ends_with('half typ')", &|shown| shown.ends_with("half typ"));
    // Another client speaks: its message comes while "half typ" is on the prompt.
    let (other, _, _) = connect(&[&url], "from elsewhere\n");
    assert_eq!(other, "< from elsewhere\n");
    wait_screen("contains('< from elsewhere')", &|shown| shown.contains("< from elsewhere"));
    let after = shown();
    let tail = &after[after.rfind("< from elsewhere").unwrap()..];
    assert!(tail.contains("> half typ"), "the half line is drawn again below the message: {tail:?}");
    keyboard.write_all(b"ed\r").unwrap();
    wait_screen("contains('< half typed')", &|shown| shown.contains("< half typed"));
    // Up arrow: the last line again.
    keyboard.write_all(b"\x1b[A\r").unwrap();
    wait_screen("matches('< half typed').count() == 2", &|shown| shown.matches("< half typed").count() == 2);
    keyboard.write_all(b"\x04").unwrap();
    let started = Instant::now();
    let mut child = child;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "Ctrl-D did not end it: {:?}", shown());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {:?}", shown());
    assert!(shown().contains("Connection closed: 1000"), "{:?}", shown());
}

/// The keys typed into the terminal, all at once as a paste or a fast
/// typist gives them (rustyline 17 read one and lost the rest while it
/// could print above its prompt: its issue 976).
struct Keyboard(std::fs::File);

impl Keyboard {
    fn write_all(&mut self, keys: &[u8]) -> std::io::Result<()> {
        self.0.write_all(keys)
    }
}

/// The screen's text without terminal control sequences (colours, cursor
/// moves, line clearing) and carriage returns.
fn strip_escapes(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.next_if_eq(&'[').is_some() {
                    // CSI: parameters, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => text.push(c),
        }
    }
    text
}
