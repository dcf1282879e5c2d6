//! Seed 000 (d), "example 1": trace on; when the connection opens, another
//! thread sends `hello1`, waits a second and closes; keepalive 60/5;
//! `on_close` gets the close code and reason.
//!
//! Run: `cargo run --example seed000_thread_send -- ws://127.0.0.1:9001/ [--pause-ms 1000]`.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tether::App;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or("ws://127.0.0.1:9001/".into());
    let pause = args
        .iter()
        .position(|a| a == "--pause-ms")
        .and_then(|i| args.get(i + 1))
        .map_or(1000, |ms| ms.parse().expect("--pause-ms MILLISECONDS"));
    tether::trace::enable(true); // websocket.enableTrace(True)
                                 // Python waits for its non-daemon thread before exiting; so do we.
    let sender: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let started = sender.clone();

    let app = App::new(url)
        .on_message(|_, message| println!("{}", message.as_text().unwrap_or("<binary>")))
        .on_error(|_, error| println!("{error}"))
        .on_close(|_, frame| {
            let (code, reason) = frame.map_or((None, String::new()), |f| (Some(f.code.0), f.reason));
            println!("### closed ### code={code:?} reason={reason:?}");
        })
        .on_open(move |app| {
            let app = app.clone();
            let thread = std::thread::spawn(move || {
                app.send("hello1").expect("queued");
                std::thread::sleep(Duration::from_millis(pause));
                app.close();
                println!("thread terminating...");
            });
            *started.lock().unwrap() = Some(thread);
        })
        .keepalive(Some(Duration::from_secs(60)), Some(Duration::from_secs(5)));
    let stopped = app.run_forever();
    if let Some(thread) = sender.lock().unwrap().take() {
        thread.join().expect("the sending thread");
    }
    println!("stopped: {:?}", stopped.reason);
}
