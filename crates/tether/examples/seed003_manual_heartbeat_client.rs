//! Seed 003 (c): an application-level heartbeat. Every 20 s the client
//! sends `{"type":"ping","timestamp":…}`; the server answers
//! `{"type":"pong","timestamp":…}`; no answer within 30 s means the server
//! is gone. Other messages are business as usual.
//!
//! Run: `cargo run --example seed003_manual_heartbeat_client -- ws://127.0.0.1:8765/
//! [--interval 20] [--timeout 30] [--count N]`. Prints `PONG rtt_ms=…` per
//! answer; exits 2 with `TIMEOUT` when an answer does not come.

use std::time::Duration;

use tether::app::StopReason;
use tether::heartbeat::Heartbeat;
use tether::{App, Timeout};

fn arg(name: &str) -> Option<f64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(|v| v.parse().expect(name))
}

fn main() {
    let url = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or("ws://127.0.0.1:8765/".into());
    let interval = Duration::from_secs_f64(arg("--interval").unwrap_or(20.0));
    let timeout = Duration::from_secs_f64(arg("--timeout").unwrap_or(30.0));
    let count = arg("--count").map(|n| n as u32);
    let mut answered = 0;
    let stopped = App::new(url)
        .heartbeat(Heartbeat::json(interval, timeout))
        .on_open(|_| println!("CONNECTED"))
        .on_heartbeat(move |app, rtt| {
            println!("PONG rtt_ms={:.3}", rtt.as_secs_f64() * 1000.0);
            answered += 1;
            if count.is_some_and(|count| answered >= count) {
                app.close();
            }
        })
        .on_message(|_, message| println!("MESSAGE {}", message.as_text().unwrap_or("<binary>")))
        .run_forever();
    match stopped.reason {
        StopReason::Closed => println!("DONE"),
        StopReason::Failed(error) if error.timeout() == Some(Timeout::Heartbeat) => {
            println!("TIMEOUT");
            std::process::exit(2);
        }
        other => {
            println!("ENDED {other:?}");
            std::process::exit(1);
        }
    }
}
