//! Seed 003 (a): a client with protocol keepalive (`connect(uri,
//! ping_interval=20, ping_timeout=30, close_timeout=2)`) that sends each
//! line typed on standard input and prints each message received, until
//! `exit`; when the connection is lost it says why and reconnects after
//! 5 seconds (the seed's commented-out reconnect, done).
//!
//! Run: `cargo run --example seed003_heartbeat_client -- ws://127.0.0.1:8765/
//! [--ping-interval 20] [--ping-timeout 30] [--close-timeout 2] [--reconnect-after 5]`.

use std::time::Duration;

use tether::{ClientConfig, CloseCode, Event};
use tokio::io::AsyncBufReadExt;

fn arg(name: &str, default: f64) -> Duration {
    let args: Vec<String> = std::env::args().collect();
    Duration::from_secs_f64(
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect(name)),
    )
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or("ws://127.0.0.1:8765/".into());
    let config = ClientConfig::default()
        .keepalive(Some(arg("--ping-interval", 20.0)), Some(arg("--ping-timeout", 30.0)))
        .close_timeout(arg("--close-timeout", 2.0));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    loop {
        match tether::connect_with(&url, &config).await {
            Ok(mut ws) => {
                println!("connected to {url}");
                let ended = loop {
                    tokio::select! {
                        line = lines.next_line(), if input_open => match line {
                            Ok(Some(line)) if line.trim().eq_ignore_ascii_case("exit") => {
                                let _ = ws.close(CloseCode::NORMAL, "").await;
                                println!("bye");
                                return;
                            }
                            Ok(Some(line)) => {
                                if let Err(error) = ws.send(line).await {
                                    break error.to_string();
                                }
                            }
                            _ => input_open = false,
                        },
                        event = ws.recv_event() => match event {
                            Ok(Some(Event::Message(message))) => {
                                println!("received: {}", message.as_text().unwrap_or("<binary>"));
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break format!("closed by the server: {:?}", ws.close_frame()),
                            Err(error) => break error.to_string(),
                        },
                    }
                };
                println!("connection lost: {ended}");
            }
            Err(error) => println!("cannot connect: {error}"),
        }
        let pause = arg("--reconnect-after", 5.0);
        println!("reconnecting in {:.1} s", pause.as_secs_f64());
        tokio::time::sleep(pause).await;
    }
}
