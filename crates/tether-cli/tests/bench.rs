//! `tether bench`, the load generator of seed 001, as its users run it:
//! against `tether serve` and against a server that records what it was
//! offered. The report is read as JSON (`--json`); the exit status is 0
//! only when every connection opened and none was lost.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::serve;

/// Runs `tether bench` on `urls` with `args` and `--json --quiet`: the
/// parsed report and whether it exited 0.
fn bench_run(urls: &[&str], args: &[&str]) -> (serde_json::Value, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("bench")
        .args(urls)
        .args(["--json", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{error}: {} {}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    });
    let code = output.status.code();
    assert!(matches!(code, Some(0 | 1)), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    (report, code == Some(0))
}

/// A run that must succeed.
fn bench(url: &str, args: &[&str]) -> serde_json::Value {
    let (report, success) = bench_run(&[url], args);
    assert!(success, "exit status 1: {report}");
    report
}

/// A run in which connections fail: it must exit 1.
fn bench_failing(url: &str, args: &[&str]) -> serde_json::Value {
    let (report, success) = bench_run(&[url], args);
    assert!(!success, "failures, yet exit status 0: {report}");
    report
}

#[test]
fn bench_simulates_many_clients_and_reports_throughput_and_latency() {
    let (_server, url) = serve(&[]);
    let report = bench(&url, &["--clients", "20", "--pipeline", "4", "--messages", "2000", "--duration", "20"]);
    assert_eq!(report["connections"]["established"], 20, "{report}");
    assert_eq!(report["connections"]["failed"], 0);
    assert!(report["messages"]["echoed"].as_u64().unwrap() >= 2000, "{report}");
    assert!(report["messages"]["per_second"].as_f64().unwrap() > 0.0);
    let latency = &report["latency_ms"];
    let (p50, p99, max) =
        (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap(), latency["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["negotiated"], serde_json::json!({"protocol": null, "compression": false}));
}

#[test]
fn bench_reconnect_storms_and_failures_are_counted() {
    let (_server, url) = serve(&[]);
    let report = bench(&url, &["--clients", "10", "--rate", "50", "--duration", "2", "--reconnect-every", "0.7"]);
    assert!(report["connections"]["reconnects"].as_u64().unwrap() >= 10, "{report}");
    assert!(report["messages"]["echoed"].as_u64().unwrap() > 100, "{report}");

    let port = tether_test_support::free_port();
    let report = bench_failing(&format!("ws://127.0.0.1:{port}/"), &["--clients", "3", "--duration", "0.5"]);
    assert_eq!(report["connections"]["established"], 0, "{report}");
    assert!(report["connections"]["failed"].as_u64().unwrap() >= 3);
    assert!(report["errors"]["io"].as_u64().unwrap() >= 3, "{report}");
}

#[test]
fn bench_speaks_wss_with_the_certificate_it_is_told_to_trust_and_counts_tls_refusals() {
    let cert = tether_test_support::TestCert::new();
    let (cert_path, key_path, ca_path) =
        (cert.cert_path().to_str().unwrap(), cert.key_path().to_str().unwrap(), cert.ca_path().to_str().unwrap());
    let (_server, url) = serve(&["--tls-cert", cert_path, "--tls-key", key_path]);
    assert!(url.starts_with("wss://"), "{url}");
    let report = bench(
        &url,
        &["--clients", "4", "--pipeline", "2", "--messages", "400", "--duration", "20", "--cafile", ca_path],
    );
    assert_eq!(report["connections"]["established"], 4, "{report}");
    assert!(report["messages"]["echoed"].as_u64().unwrap() >= 400, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}));

    // Without --cafile the self-signed certificate is not trusted.
    let report = bench_failing(&url, &["--clients", "2", "--duration", "0.5"]);
    assert_eq!(report["connections"]["established"], 0, "{report}");
    assert!(report["errors"]["tls"].as_u64().unwrap() >= 2, "{report}");
}

#[test]
fn bench_counts_what_a_broadcast_server_relays_from_the_other_clients() {
    let (_server, url) = serve(&["--broadcast"]);
    let report = bench(&url, &["--clients", "3", "--rate", "20", "--duration", "1.5"]);
    assert_eq!(report["connections"]["established"], 3, "{report}");
    // Each message comes back to its sender (timed) and to the two others.
    let echoed = report["messages"]["echoed"].as_u64().unwrap();
    let others = report["messages"]["from_others"].as_u64().unwrap();
    assert!(echoed > 30, "{report}");
    assert!(others >= echoed, "{report}");
}

#[test]
fn bench_gives_up_on_a_server_that_stops_answering_with_the_timeout_that_noticed() {
    // A server that accepts but never answers the upgrade: the open timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let report = bench_failing(&url, &["--clients", "2", "--open-timeout", "0.3", "--duration", "1"]);
    assert_eq!(report["connections"]["established"], 0, "{report}");
    assert!(report["errors"]["open timeout"].as_u64().unwrap() >= 2, "{report}");
    drop(listener);

    // A server that answers, then freezes: keepalive notices, and the
    // connections lost make the run a failure.
    let (server, url) = serve(&[]);
    let pid = server.0.id() as i32;
    let freezer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: plain kill(2) on our own child, which is still running.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    });
    let report = bench_failing(&url, &["--clients", "2", "--rate", "5", "--ping-interval", "0.3", "--duration", "3"]);
    freezer.join().unwrap();
    // SAFETY: as above; the child is resumed so that dropping it can reap it.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(report["connections"]["established"], 2, "{report}");
    assert!(report["messages"]["echoed"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["errors"]["keepalive timeout"].as_u64().unwrap() >= 2, "{report}");
}

/// What a recording server saw: per connection the `X-Bench` header, the
/// subprotocol and whether deflate was on; per message its kind and text.
#[derive(Debug, Default)]
struct Seen {
    headers: Vec<Option<String>>,
    protocols: Vec<Option<String>>,
    compressed: Vec<bool>,
    texts: Vec<String>,
    binaries: usize,
}

/// An echo server on its own thread that records what it sees; it speaks
/// `chat` and permessage-deflate when offered.
fn recording_server() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let recorder = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut config = tether::ServerConfig::default();
            config.protocols = vec!["chat".into()];
            let config = Arc::new(config);
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (config, seen) = (config.clone(), recorder.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tether::accept(tcp, &config).await else { return };
                    {
                        let mut seen = seen.lock().unwrap();
                        let header = ws.request().and_then(|request| request.headers.get("x-bench"));
                        seen.headers.push(header.map(|value| String::from_utf8_lossy(value).into_owned()));
                        seen.protocols.push(ws.protocol().map(str::to_owned));
                        seen.compressed.push(ws.connection().is_compressed());
                    }
                    while let Ok(Some(message)) = ws.recv().await {
                        {
                            let mut seen = seen.lock().unwrap();
                            match message.as_text() {
                                Some(text) => seen.texts.push(text.to_owned()),
                                None => seen.binaries += 1,
                            }
                        }
                        if ws.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    (url, seen)
}

#[test]
fn bench_offers_headers_a_subprotocol_and_compression_and_sends_text_from_a_file() {
    let (url, seen) = recording_server();
    let payload = tempfile_with("ένα κείμενο — a text payload\n");
    let report = bench(
        &url,
        &[
            "--clients",
            "3",
            "--messages",
            "60",
            "--duration",
            "20",
            "-H",
            "X-Bench: from the command line",
            "--protocol",
            "other",
            "--protocol",
            "chat",
            "--compression",
            "--text",
            "--payload-file",
            payload.to_str().unwrap(),
        ],
    );
    assert_eq!(report["connections"]["established"], 3, "{report}");
    assert!(report["messages"]["echoed"].as_u64().unwrap() >= 60, "{report}");
    assert_eq!(report["negotiated"], serde_json::json!({"protocol": "chat", "compression": true}));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.headers, vec![Some("from the command line".to_owned()); 3]);
    assert_eq!(seen.protocols, vec![Some("chat".to_owned()); 3]);
    assert_eq!(seen.compressed, vec![true; 3]);
    assert_eq!(seen.binaries, 0, "every message went as text");
    assert!(seen.texts.len() >= 60);
    for text in &seen.texts {
        assert!(text.starts_with("tbt1") && text.ends_with("ένα κείμενο — a text payload\n"), "{text:?}");
        assert_eq!(text.len(), 44 + "ένα κείμενο — a text payload\n".len());
    }
}

#[test]
fn bench_refuses_a_text_payload_that_is_not_utf8_and_a_size_smaller_than_the_stamp() {
    let (url, _seen) = recording_server();
    let file = tempfile_with_bytes(&[0xff, 0xfe, b'x']);
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", &url, "--text", "--payload-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("UTF-8"), "{stderr}");
    let output =
        Command::new(env!("CARGO_BIN_EXE_tether")).args(["bench", &url, "--text", "--size", "30"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("at least 44"), "{stderr}");
}

#[test]
fn bench_spreads_its_clients_over_several_servers() {
    let (_first, first) = serve(&["--metrics"]);
    let (_second, second) = serve(&["--metrics", "--engine", "tokio"]);
    let (report, success) = bench_run(&[&first, &second], &["--clients", "6", "--rate", "20", "--duration", "1.5"]);
    assert!(success, "{report}");
    assert_eq!(report["connections"]["established"], 6, "{report}");
    assert_eq!(report["urls"], serde_json::json!([first, second]));
    // Each server saw its three clients: ask their metrics.
    for url in [&first, &second] {
        let metrics = common::scrape_metrics(url);
        assert!(metrics.contains("tether_connections_opened_total 3\n"), "{url}: {metrics}");
    }
}

#[test]
fn bench_plots_latency_and_throughput_over_time_as_svg() {
    let (_server, url) = serve(&[]);
    let plot = tether_test_support::unique_temp_dir("tether-plot").join("run.svg");
    let report =
        bench(&url, &["--clients", "4", "--rate", "50", "--duration", "2.5", "--plot", plot.to_str().unwrap()]);
    assert!(report["messages"]["echoed"].as_u64().unwrap() > 300, "{report}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    // One line per latency series and one for throughput, over at least
    // the two whole seconds (three samples with the last part-second).
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    let points = svg.split("<polyline").nth(4).unwrap().matches(',').count();
    assert!(points >= 3, "{svg}");
}

/// A file in a fresh temporary directory holding `text`.
fn tempfile_with(text: &str) -> std::path::PathBuf {
    tempfile_with_bytes(text.as_bytes())
}

fn tempfile_with_bytes(bytes: &[u8]) -> std::path::PathBuf {
    let path = tether_test_support::unique_temp_dir("tether-payload").join("payload");
    std::fs::write(&path, bytes).unwrap();
    path
}
