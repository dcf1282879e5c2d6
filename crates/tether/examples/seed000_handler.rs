//! Seed 000 (e), "example 2": the callbacks as methods of one type (Python
//! subclasses `WebSocketApp`; Rust implements [`tether::Handler`]). When the
//! connection opens, a thread sends `Hello 0`, `Hello 1`, `Hello 2` a second
//! apart, waits a second, closes, and says `Thread terminating...`.
//!
//! Run: `cargo run --example seed000_handler -- ws://127.0.0.1:9001/ [--pause-ms 1000]`.

use std::time::Duration;

use tether::{App, AppHandle, CloseFrame, Handler, Message};

struct EchoClient {
    pause: Duration,
}

impl Handler for EchoClient {
    fn on_open(&mut self, app: &AppHandle) {
        let (app, pause) = (app.clone(), self.pause);
        std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(pause);
                app.send(format!("Hello {i}")).expect("queued");
            }
            std::thread::sleep(pause);
            app.close();
            println!("Thread terminating...");
        });
    }

    fn on_message(&mut self, _: &AppHandle, message: Message) {
        println!("{}", message.as_text().unwrap_or("<binary>"));
    }

    fn on_error(&mut self, _: &AppHandle, error: &tether::Error) {
        println!("{error}");
    }

    fn on_close(&mut self, _: &AppHandle, _: Option<CloseFrame>) {
        println!("### closed ###");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).filter(|a| !a.starts_with("--")).cloned().unwrap_or("ws://127.0.0.1:9001/".into());
    let pause_ms = args
        .iter()
        .position(|a| a == "--pause-ms")
        .and_then(|i| args.get(i + 1))
        .map_or(1000, |ms| ms.parse().expect("--pause-ms MILLISECONDS"));
    if std::env::var_os("TETHER_TRACE").is_none() {
        tether::trace::enable(true);
    }
    let stopped = App::new(url)
        .keepalive(None, None)
        .handler(EchoClient { pause: Duration::from_millis(pause_ms) })
        .run_forever();
    println!("stopped: {:?}", stopped.reason);
}
