//! Seed 000 (f), the short connection: `create_connection(url)`, send
//! `Hello, World`, receive the answer, close. No async runtime.
//!
//! Run: `cargo run --example seed000_short -- ws://127.0.0.1:9001/`.

fn main() -> tether::Result<()> {
    let url = std::env::args().nth(1).unwrap_or("ws://127.0.0.1:9001/".into());
    let ws = tether::blocking::connect(&url)?;
    println!("Sending 'Hello, World'...");
    ws.send("Hello, World")?;
    println!("Sent");
    println!("Receiving...");
    let result = ws.recv()?;
    println!("Received '{}'", result.as_ref().and_then(|m| m.as_text()).unwrap_or(""));
    ws.close(tether::CloseCode::NORMAL, "")?;
    Ok(())
}
