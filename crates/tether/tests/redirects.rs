//! Redirects from the opening handshake are followed, by both clients, as
//! Python `websockets` and `websocket-client` follow them: to the
//! `Location`, at most `max_redirects` in a row, with secrets only for the
//! first URL's origin.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use tether::admission::{Admission, Handshake, Refusal};
use tether::{ClientConfig, ServerConfig};

/// A server that answers every request with `status` and `Location:
/// location` (`{port}` in it is its own port), until the test ends.
fn redirector(status: u16, location: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let location = location.replace("{port}", &addr.port().to_string());
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().map_while(Result::ok) {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let answer = format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            let _ = tcp.write_all(answer.as_bytes());
        }
    });
    addr
}

/// A WebSocket server that sends each client one message: the path it
/// asked for and the `Authorization` header it sent (or `-`); it sends a
/// request for `/old` to `/chat` with a `301`.
async fn reporter() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::default();
    config.hook = Some(Arc::new(|handshake: &Handshake<'_>| {
        if handshake.path() == "/old" {
            Refusal::new(301, "moved").header("Location", "/chat").into()
        } else {
            Admission::accept()
        }
    }));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tether::accept(tcp, &config).await else { return };
                let request = ws.request().unwrap();
                let authorization = request.headers.get_str("Authorization").unwrap_or("-").to_owned();
                let report = format!("{} {authorization}", request.target);
                let _ = ws.send(report).await;
                let _ = ws.recv().await;
            });
        }
    });
    addr
}

async fn report(url: &str, config: &ClientConfig) -> tether::Result<String> {
    let mut ws = tether::connect_with(url, config).await?;
    let message = ws.recv().await?.expect("a report");
    Ok(message.as_text().unwrap().to_owned())
}

#[tokio::test]
async fn a_chain_of_redirects_is_followed_to_the_websocket_server() {
    let server = reporter().await;
    let last = redirector(308, &format!("ws://127.0.0.1:{}/chat?room=1", server.port()));
    let first = redirector(302, &format!("http://127.0.0.1:{}/ignored", last.port()));
    let config = ClientConfig::default().header("Authorization", "Bearer secret");
    // 127.0.0.1 on other ports is another origin: the token stays behind.
    assert_eq!(report(&format!("ws://127.0.0.1:{}/", first.port()), &config).await.unwrap(), "/chat?room=1 -");
    // The blocking client follows the same way.
    let url = format!("ws://127.0.0.1:{}/", first.port());
    let blocking = tokio::task::spawn_blocking(move || {
        let ws = tether::blocking::connect(&url).unwrap();
        ws.recv().unwrap().unwrap().as_text().unwrap().to_owned()
    });
    assert_eq!(blocking.await.unwrap(), "/chat?room=1 -");
}

#[tokio::test]
async fn secrets_go_along_within_the_first_origin() {
    let server = reporter().await;
    let config = ClientConfig::default().header("Authorization", "Bearer secret");
    assert_eq!(
        report(&format!("ws://127.0.0.1:{}/old", server.port()), &config).await.unwrap(),
        "/chat Bearer secret",
        "the same origin: the header goes along"
    );
    // The URL's user and password too (sent as Basic authentication).
    assert_eq!(
        report(&format!("ws://ada:lovelace@127.0.0.1:{}/old", server.port()), &ClientConfig::default()).await.unwrap(),
        "/chat Basic YWRhOmxvdmVsYWNl"
    );
    let url = format!("ws://ada:lovelace@127.0.0.1:{}/", redirector(302, "/again").port());
    let error = report(&url, &{
        let mut config = ClientConfig::default();
        config.max_redirects = 2;
        config
    })
    .await
    .unwrap_err();
    assert!(error.to_string().ends_with("more than 2 redirects"), "a redirect to itself ends: {error}");
}

#[tokio::test]
async fn a_loop_ends_at_the_bound_and_zero_follows_none() {
    let looping = redirector(307, "ws://127.0.0.1:{port}/round");
    let url = format!("ws://127.0.0.1:{}/", looping.port());
    let error = report(&url, &ClientConfig::default()).await.unwrap_err();
    assert!(error.is_handshake() && error.to_string().contains("more than 10 redirects"), "{error}");
    let mut none = ClientConfig::default();
    none.max_redirects = 0;
    let error = report(&url, &none).await.unwrap_err();
    assert!(error.to_string().ends_with("more than 0 redirects"), "{error}");
    let blocking = tokio::task::spawn_blocking(move || tether::blocking::connect(&url).err().unwrap().to_string());
    assert!(blocking.await.unwrap().contains("more than 10 redirects"));
    // A redirect without a Location is a refusal like any other.
    let nowhere = redirector(302, "");
    let error = report(&format!("ws://127.0.0.1:{}/", nowhere.port()), &ClientConfig::default()).await.unwrap_err();
    assert_eq!(error.http_status(), Some(302), "{error}");
}
