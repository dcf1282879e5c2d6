//! Seed 002 (b): a server that answers each message with
//! `Data received as "<message>".  time: <now>`, one handler per connection
//! (`websockets.serve(handler, "localhost", 9999)`).
//!
//! Run: `cargo run --example seed002_reply_server -- [--listen 127.0.0.1:9999]`;
//! it prints `LISTENING <port>` once ready.

use std::time::{SystemTime, UNIX_EPOCH};

use tether::{Server, ServerConfig, WebSocket};

async fn handler(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        let text = message.as_text().map_or_else(|| format!("{} bytes", message.len()), str::to_owned);
        let reply = format!("Data received as \"{text}\".  time: {}", now());
        println!("{reply}");
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen =
        args.iter().position(|a| a == "--listen").and_then(|i| args.get(i + 1)).map_or("127.0.0.1:9999", |s| s);
    let server = Server::bind(listen, ServerConfig::default()).await?;
    println!("LISTENING {}", server.local_addr()?.port());
    server.serve(handler).await
}

/// The time as Python's `str(datetime.now())` prints it (UTC here):
/// `YYYY-MM-DD HH:MM:SS.ffffff`.
fn now() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, seconds) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since.subsec_micros()
    )
}
