//! `ping()` gives back a [`Pong`] that resolves with the round trip when
//! the answer comes, as `await ws.ping()` does in Python `websockets`
//! (seed 003). The peer here is written by hand on the other end of an
//! in-memory pipe, so which pongs it sends, and when, is up to the test.

use std::time::Duration;

use tether::proto::{Connection, Role};
use tether::{Config, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A client over one end of a pipe; the other end is the "server".
fn client() -> (WebSocket<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(4096);
    (WebSocket::from_raw(ours, Connection::new(Role::Client, Config::default(), None)), theirs)
}

/// An unmasked pong frame from the server.
fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x8a, u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(payload);
    frame
}

/// Reads whatever the client wrote (its pings), so the pipe never fills.
async fn drain(server: &mut DuplexStream) {
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(50), server.read(&mut buf)).await;
}

#[tokio::test]
async fn a_pong_resolves_its_ping_with_the_round_trip_and_every_earlier_one() {
    let (ws, mut server) = client();
    let (mut reader, mut writer) = ws.split();
    let reading = tokio::spawn(async move { reader.recv().await.map(|message| message.is_none()) });
    let first = writer.ping(b"one").await.unwrap();
    let second = writer.ping(b"two").await.unwrap();
    let third = writer.ping(b"three").await.unwrap();
    drain(&mut server).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A pong that answers no ping (an unsolicited heartbeat) resolves none.
    server.write_all(&pong_frame(b"nobody's")).await.unwrap();
    // The answer to the second answers the first too (RFC 6455 5.5.3).
    server.write_all(&pong_frame(b"two")).await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(first >= Duration::from_millis(20) && first < Duration::from_secs(5), "{first:?}");
    assert!(second >= Duration::from_millis(20) && second <= first, "{second:?} after {first:?}");
    let still_waiting = tokio::time::timeout(Duration::from_millis(100), third).await;
    assert!(still_waiting.is_err(), "the third ping has had no answer");
    drop(server);
    let _ = reading.await;
}

#[tokio::test]
async fn a_pong_waited_for_when_the_connection_ends_is_an_error_not_a_hang() {
    let (ws, mut server) = client();
    let (mut reader, mut writer) = ws.split();
    let pong = writer.ping(b"").await.unwrap();
    drain(&mut server).await;
    drop(server); // the peer goes away without answering
    assert!(reader.recv().await.is_err(), "an abnormal closure");
    let error = tokio::time::timeout(Duration::from_secs(5), pong).await.expect("not a hang").unwrap_err();
    assert!(error.is_closed(), "{error}");
}

#[tokio::test]
async fn on_one_socket_the_pong_is_read_by_recv_and_a_dropped_waiter_costs_nothing() {
    let (mut ws, mut server) = client();
    let forgotten = ws.ping(b"a").await.unwrap();
    drop(forgotten);
    let pong = ws.ping(b"b").await.unwrap();
    drain(&mut server).await;
    server.write_all(&pong_frame(b"b")).await.unwrap();
    server.write_all(&[0x81, 2, b'h', b'i']).await.unwrap();
    let message = ws.recv().await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("hi"));
    assert!(pong.await.unwrap() < Duration::from_secs(5));
}
