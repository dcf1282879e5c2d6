//! Hostile or broken peers over real loopback sockets: every limit and
//! deadline answers with a clear status or close code, and nothing hangs.

use std::time::{Duration, Instant};

use tether::proto::handshake::accept_key;
use tether::{ClientConfig, CloseCode, Server, ServerConfig, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An echo server on a free port, with `config`.
async fn echo_server(config: ServerConfig) -> std::net::SocketAddr {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut socket: WebSocket| async move {
        while let Ok(Some(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    }));
    addr
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` and returns the whole answer the server gives before closing.
async fn answer_to(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_without_upgrade_is_answered_426() {
    let addr = echo_server(ServerConfig::default()).await;
    let answer = answer_to(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{answer}");
}

#[tokio::test]
async fn a_wrong_version_is_answered_426_naming_version_13() {
    let addr = echo_server(ServerConfig::default()).await;
    let answer = answer_to(addr, &upgrade_request("").replace("Version: 13", "Version: 12")).await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
}

#[tokio::test]
async fn a_bad_key_is_answered_400_with_a_reason() {
    let addr = echo_server(ServerConfig::default()).await;
    let answer = answer_to(addr, &upgrade_request("").replace(KEY, "short")).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Key"), "{answer}");
}

#[tokio::test]
async fn too_many_headers_are_answered_431() {
    let addr = echo_server(ServerConfig::default()).await;
    let filler: String = (0..2001).map(|i| format!("X-{i}: y\r\n")).collect();
    let answer = answer_to(addr, &format!("GET / HTTP/1.1\r\nHost: a\r\n{filler}Upgrade: websocket\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn an_endless_header_is_answered_431_long_before_it_ends() {
    let addr = echo_server(ServerConfig::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let chunk = format!("X-Fill: {}\r\n", "a".repeat(1014));
    let write_all = async {
        let mut written = 0usize;
        writer.write_all(b"GET / HTTP/1.1\r\n").await.ok();
        while written < 20 << 20 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    };
    let read_answer = async {
        let mut answer = vec![0u8; 64];
        let n = reader.read(&mut answer).await.unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    let (written, answer) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(write_all, read_answer) })
            .await
            .expect("the server must answer, not wait for 20 MB");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(written < 20 << 20, "the server read all {written} bytes");
}

#[tokio::test]
async fn a_request_dripped_one_byte_per_write_is_accepted() {
    let addr = echo_server(ServerConfig::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in upgrade_request("").as_bytes() {
        stream.write_all(std::slice::from_ref(byte)).await.unwrap();
    }
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains(&accept_key(KEY.as_bytes())));
}

#[tokio::test]
async fn a_slowloris_client_is_dropped_at_the_open_timeout_however_steadily_it_drips() {
    let mut config = ServerConfig::default();
    config.open_timeout = Duration::from_millis(300);
    let addr = echo_server(config).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut dropped_after = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stream.write_all(b"X").await.is_err() {
            dropped_after = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            dropped_after = Some(start.elapsed());
            break;
        }
    }
    let dropped_after = dropped_after.expect("the server must drop the connection");
    assert!(
        dropped_after >= Duration::from_millis(250) && dropped_after < Duration::from_millis(1500),
        "{dropped_after:?}"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_closed_with_1009_at_once() {
    let mut config = ServerConfig::default();
    config.protocol = tether::Config::default().with_max_message_size(1 << 20);
    let addr = echo_server(config).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(upgrade_request("").as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let _ = stream.read(&mut head).await.unwrap();
    // A masked binary frame header declaring 64 MiB, and no payload.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(64u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&header).await.unwrap();
    let mut frame = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut frame)).await.unwrap().unwrap();
    assert!(n >= 4 && frame[0] == 0x88, "expected a close frame, got {:?}", &frame[..n]);
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1009);
}

#[tokio::test]
async fn a_close_read_together_with_control_frames_is_answered_at_once() {
    // Autobahn 2.7/2.8: an unsolicited pong, then a close, in one write.
    // Every event before the close is taken, so the close echo goes out at
    // once (a regression once left it waiting behind the pong event).
    let mut config = ServerConfig::default();
    config.hub = Some(tether::Hub::default());
    config.metrics = Some(tether::metrics::Metrics::new());
    for config in [ServerConfig::default(), config] {
        let addr = echo_server(config).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(upgrade_request("").as_bytes()).await.unwrap();
        let mut head = vec![0u8; 1024];
        let _ = stream.read(&mut head).await.unwrap();
        // Masked with a zero key: payloads stay readable.
        let mut frames = vec![0x8a, 0x80, 0, 0, 0, 0]; // pong, empty
        frames.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]); // ping, empty
        frames.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]); // close 1000
        stream.write_all(&frames).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server did not answer the close and end the connection");
        // The pong to the ping, then the close echo.
        assert_eq!(answer, [0x8a, 0x00, 0x88, 0x02, 0x03, 0xe8]);
    }
}

// ---- the client against broken servers ------------------------------------------

/// A one-shot raw server that reads the request and answers with `reply(key)`.
async fn raw_server<F>(reply: F) -> String
where
    F: FnOnce(&str) -> Vec<u8> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&request).into_owned();
        let key = text
            .lines()
            .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let _ = stream.write_all(&reply(&key)).await;
        // Hold the connection open, reading and ignoring, until the client leaves.
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    format!("ws://{addr}/")
}

fn switching(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[tokio::test]
async fn the_client_reports_a_refusal_with_its_status() {
    let url = raw_server(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let error = tether::connect(&url).await.unwrap_err();
    assert!(error.is_handshake(), "{error}");
    assert_eq!(error.http_status(), Some(403));
}

#[tokio::test]
async fn the_client_rejects_a_wrong_accept_key() {
    let url = raw_server(|_| switching("a different key")).await;
    let error = tether::connect(&url).await.unwrap_err();
    assert!(error.is_handshake() && error.to_string().contains("Accept"), "{error}");
}

#[tokio::test]
async fn the_client_stops_reading_an_endless_response_head_at_the_limit() {
    let url = raw_server(|_| {
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b"X-Spam: 0123456789abcdef\r\n".iter().copied(), 200_000).flatten());
        endless
    })
    .await;
    let error = tokio::time::timeout(Duration::from_secs(5), tether::connect(&url)).await.unwrap().unwrap_err();
    assert_eq!(error.http_status(), Some(431), "{error}");
}

#[tokio::test]
async fn a_masked_frame_from_the_server_fails_the_client_with_1002() {
    let url = raw_server(|key| {
        let mut reply = switching(key);
        reply.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        reply
    })
    .await;
    let mut socket = tether::connect(&url).await.unwrap();
    let error = socket.recv().await.unwrap_err();
    assert!(error.is_protocol(), "{error}");
    assert_eq!(error.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[tokio::test]
async fn a_frame_in_the_same_write_as_the_101_is_received() {
    let url = raw_server(|key| {
        let mut reply = switching(key);
        reply.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        reply
    })
    .await;
    let mut socket = tether::connect(&url).await.unwrap();
    assert_eq!(socket.recv().await.unwrap(), Some(tether::Message::from("hi")));
}

#[tokio::test]
async fn close_returns_at_the_close_timeout_when_the_peer_ignores_it() {
    let url = raw_server(switching).await;
    let mut config = ClientConfig::default();
    config.protocol.close_timeout = Duration::from_millis(300);
    let mut socket = tether::connect_with(&url, &config).await.unwrap();
    let start = Instant::now();
    let error = socket.close(CloseCode::NORMAL, "").await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
}

#[tokio::test]
async fn eof_in_the_middle_of_a_message_is_an_abnormal_closure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().trim().to_owned();
        let mut reply = switching(&key);
        reply.extend_from_slice(&[0x01, 0x03, b'p', b'a', b'r']); // a first fragment, then nothing
        stream.write_all(&reply).await.unwrap();
    });
    let mut socket = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    let error = socket.recv().await.unwrap_err();
    assert_eq!(error.close_code(), Some(CloseCode::ABNORMAL), "{error}");
}

#[tokio::test]
async fn connecting_to_a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ClientConfig::default();
    config.open_timeout = Some(Duration::from_millis(200));
    let error = tether::connect_with(&format!("ws://{addr}/"), &config).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    drop(listener);
}
