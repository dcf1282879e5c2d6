//! Seed 002 (d): 39 short connections in a row, each opened as a scoped
//! resource (`async with connect(url)`), one message `[i] - 客户端 → 服务端.`
//! sent and one answer received, then closed; a pause between rounds.
//!
//! Run: `cargo run --example seed002_short_loop -- ws://127.0.0.1:9999/
//! [--rounds 39] [--pause-ms 1000]` (against `seed002_reply_server`).

use std::time::Duration;

use tether::CloseCode;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect(name))
}

#[tokio::main]
async fn main() -> tether::Result<()> {
    let url = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or("ws://127.0.0.1:9999/".into());
    for i in 1..=arg("--rounds", 39) {
        let mut ws = tether::connect(&url).await?;
        ws.send(format!("[{i}] - 客户端 → 服务端.")).await?;
        let answer = ws.recv().await?;
        ws.close(CloseCode::NORMAL, "").await?;
        println!("{}", answer.as_ref().and_then(|m| m.as_text()).unwrap_or("<none>"));
        tokio::time::sleep(Duration::from_millis(arg("--pause-ms", 1000))).await;
    }
    Ok(())
}
