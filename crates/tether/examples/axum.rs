//! tether inside an axum application: axum routes (`/health`, and `/chat`
//! for WebSockets), tether decides the upgrade as its own servers do and
//! runs a chat: every message goes to every client through the hub, and
//! the hub's client count is an ordinary axum route (`/clients`).
//!
//! `cargo run -p tether --example axum [-- --port N]`; prints
//! `LISTENING <port>`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use tether::upgrade::request_from_http;
use tether::{Hub, ServerConfig, Upgrader, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().skip_while(|arg| arg != "--port").nth(1).unwrap_or_else(|| "0".to_owned());
    let mut config = ServerConfig::default();
    config.hub = Some(Hub::default());
    let upgrader = Upgrader::new(config)?;
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/clients", get(clients))
        .route("/chat", get(chat))
        .with_state(upgrader);
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

async fn clients(State(upgrader): State<Upgrader>) -> String {
    let count = upgrader.config().hub.as_ref().map_or(0, Hub::count);
    format!("{count}\n")
}

async fn chat(
    State(upgrader): State<Upgrader>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let answer = match upgrader.upgrade(request_from_http(&request), peer) {
        Ok(upgrade) => {
            let switching = upgrade.answer();
            let upgraded = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                match upgraded.await {
                    Ok(upgraded) => relay(upgrade.into_websocket(TokioIo::new(upgraded))).await,
                    Err(error) => eprintln!("{peer}: the upgrade failed: {error}"),
                }
            });
            switching
        }
        Err(refusal) => refusal,
    };
    answer.into_http().map(Body::from)
}

/// Every message to every client, through the hub.
async fn relay<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Ok(Some(message)) = ws.recv().await {
        if let Some(hub) = ws.hub() {
            hub.broadcast(&message);
        }
    }
}
