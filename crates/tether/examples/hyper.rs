//! tether inside a hyper server: hyper speaks HTTP (here a health check at
//! `/health`), and hands the connections it upgrades to tether, which
//! decides the upgrade as its own servers do and runs a chat: every
//! message goes to every client through the hub.
//!
//! `cargo run -p tether --example hyper [-- --port N]`; prints
//! `LISTENING <port>`.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tether::upgrade::request_from_http;
use tether::{Hub, ServerConfig, Upgrader, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().skip_while(|arg| arg != "--port").nth(1).unwrap_or_else(|| "0".to_owned());
    let mut config = ServerConfig::default();
    config.hub = Some(Hub::default());
    let upgrader = Upgrader::new(config)?;
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    loop {
        let (tcp, peer) = listener.accept().await?;
        let upgrader = upgrader.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, peer, upgrader.clone()));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            // `with_upgrades`: hyper lets go of the connection after a 101.
            if let Err(error) = connection.with_upgrades().await {
                eprintln!("{peer}: {error}");
            }
        });
    }
}

async fn answer(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    upgrader: Upgrader,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/health" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
    }
    let answer = match upgrader.upgrade(request_from_http(&request), peer) {
        Ok(upgrade) => {
            let switching = upgrade.answer();
            let upgraded = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                match upgraded.await {
                    Ok(upgraded) => chat(upgrade.into_websocket(TokioIo::new(upgraded))).await,
                    Err(error) => eprintln!("{peer}: the upgrade failed: {error}"),
                }
            });
            switching
        }
        Err(refusal) => refusal,
    };
    Ok(answer.into_http().map(|body| Full::new(Bytes::from(body))))
}

/// Every message to every client, through the hub.
async fn chat<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Ok(Some(message)) = ws.recv().await {
        if let Some(hub) = ws.hub() {
            hub.broadcast(&message);
        }
    }
}
