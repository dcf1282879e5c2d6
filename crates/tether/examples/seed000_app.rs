//! Seed 000 (a, b) and 001 (a): `WebSocketApp(url, on_message=…, on_error=…,
//! on_close=…)`, `on_open` set afterwards, every option of the constructor,
//! and `run_forever(ping_interval=60, ping_timeout=5)`.
//!
//! Run: `cargo run --example seed000_app -- ws://127.0.0.1:9001/ [--messages N]
//! [--ping-interval SECS] [--ping-timeout SECS]` (against `tether serve`).

use std::time::Duration;

use tether::{App, Message};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let url = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or("ws://127.0.0.1:9001/".into());
    let messages: usize = arg("--messages").map_or(1, |n| n.parse().expect("--messages N"));
    let interval: f64 = arg("--ping-interval").map_or(60.0, |s| s.parse().expect("seconds"));
    let timeout: f64 = arg("--ping-timeout").map_or(5.0, |s| s.parse().expect("seconds"));
    let mut received = 0;

    let app = App::new(url)
        // The constructor's options (seed 001): headers, cookie, subprotocols, mask keys.
        .header("X-Client", "tether-seed-000")
        .cookie("session=demo")
        .subprotocols(["chat"])
        .mask_key(rand_mask)
        .on_message(move |app, message: Message| {
            println!("message: {}", message.as_text().unwrap_or("<binary>"));
            received += 1;
            if received >= messages {
                app.close();
            }
        })
        .on_error(|_, error| println!("error: {error}"))
        .on_close(|_, frame| match frame {
            Some(frame) => println!("### closed ### {} {}", frame.code, frame.reason),
            None => println!("### closed ###"),
        })
        .on_ping(|_, payload| println!("ping: {payload:?}"))
        .on_pong(|_, payload| println!("pong: {} bytes", payload.len()))
        .on_cont_message(|_, data, fin| println!("continuation: {} bytes, final: {fin}", data.len()))
        .on_data(|_, data, opcode, fin| println!("data: {opcode:?}, {} bytes, final: {fin}", data.len()))
        .keepalive(Some(Duration::from_secs_f64(interval)), Some(Duration::from_secs_f64(timeout)));
    // As in the seed, `on_open` is attached after the app is built.
    let app = app.on_open(move |app| {
        println!("opened");
        for i in 0..messages {
            app.send(format!("Hello {i}")).expect("queued");
        }
    });
    let stopped = app.run_forever();
    println!("stopped: {:?}", stopped.reason);
}

/// Any source of mask keys will do (`get_mask_key`); this one counts.
fn rand_mask() -> [u8; 4] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0x5eed_0000);
    NEXT.fetch_add(0x9e37_79b9, Ordering::Relaxed).to_be_bytes()
}
