//! Seed 001: the callback app used "to simulate customers' behaviour":
//! many clients in one program, each with keepalive (`run_forever(
//! ping_interval=…)`), each sending a few messages and reading the echoes.
//! (`tether bench` is the full load generator; this is the seed's shape.)
//!
//! Run: `cargo run --example seed001_customers -- ws://127.0.0.1:9001/
//! [--clients 50] [--messages 5] [--ping-interval SECS]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::App;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect(name))
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or("ws://127.0.0.1:9001/".into());
    let clients = arg("--clients", 50.0) as usize;
    let messages = arg("--messages", 5.0) as usize;
    let interval = Duration::from_secs_f64(arg("--ping-interval", 20.0));
    let echoed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut customers = Vec::new();
    for customer in 0..clients {
        let echoed = echoed.clone();
        let mut left = messages;
        let app = App::new(url.clone())
            .keepalive(Some(interval), Some(interval))
            .on_open(move |app| {
                for i in 0..messages {
                    app.send(format!("customer {customer} order {i}")).expect("queued");
                }
            })
            .on_message(move |app, _| {
                echoed.fetch_add(1, Ordering::Relaxed);
                left -= 1;
                if left == 0 {
                    app.close();
                }
            });
        customers.push(tokio::spawn(app.run()));
    }
    let mut failed = 0;
    for customer in customers {
        if !matches!(customer.await.expect("the app task").reason, tether::app::StopReason::Closed) {
            failed += 1;
        }
    }
    println!(
        "{clients} customers, {} messages echoed, {failed} failed, in {:.2} s",
        echoed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
