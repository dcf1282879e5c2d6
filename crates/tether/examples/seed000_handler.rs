//! Seed 000 (e), "example 2": the callbacks as methods of one type (Python
//! subclasses `WebSocketApp`; Rust implements [`tether::Handler`]). When the
//! connection opens, a thread sends `Hello 0`, `Hello 1`, `Hello 2` a second
//! apart, waits a second, closes, and says `Thread terminating...`.
//!
//! Run: `cargo run --example seed000_handler -- ws://127.0.0.1:9001/ [--pause-ms 1000]`.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tether::{App, AppHandle, CloseFrame, Handler, Message};

struct EchoClient {
    pause: Duration,
    /// The sending thread, joined before the program ends (Python waits
    /// for its non-daemon thread too).
    sender: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Handler for EchoClient {
    fn on_open(&mut self, app: &AppHandle) {
        let (app, pause) = (app.clone(), self.pause);
        let thread = std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(pause);
                app.send(format!("Hello {i}")).expect("queued");
            }
            std::thread::sleep(pause);
            app.close();
            println!("Thread terminating...");
        });
        *self.sender.lock().unwrap() = Some(thread);
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
    let sender = Arc::default();
    let client = EchoClient { pause: Duration::from_millis(pause_ms), sender: Arc::clone(&sender) };
    let stopped = App::new(url).keepalive(None, None).handler(client).run_forever();
    if let Some(thread) = sender.lock().unwrap().take() {
        thread.join().expect("the sending thread");
    }
    println!("stopped: {:?}", stopped.reason);
}
