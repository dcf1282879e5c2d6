//! The client side of the Autobahn TestSuite: runs every case the
//! fuzzingserver offers, echoing each message, then asks it to write its
//! reports. Used by `conformance/run.sh`.
//!
//! `autobahn_client --url ws://127.0.0.1:9001 --agent tether`

use std::time::Duration;

use tether::{ClientConfig, Message};

fn argument(name: &str, default: &str) -> String {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == name {
            return args.next().unwrap_or_default();
        }
    }
    default.to_owned()
}

async fn case_count(base: &str) -> tether::Result<usize> {
    let mut socket = tether::connect(&format!("{base}/getCaseCount")).await?;
    let mut count = 0;
    while let Some(message) = socket.recv().await? {
        if let Some(text) = message.as_text() {
            count = text.trim().parse().unwrap_or(0);
        }
    }
    Ok(count)
}

async fn run_case(base: &str, case: usize, agent: &str, config: &ClientConfig) -> tether::Result<()> {
    let mut socket = tether::connect_with(&format!("{base}/runCase?case={case}&agent={agent}"), config).await?;
    while let Some(message) = socket.recv().await? {
        let message: Message = message;
        socket.send(message).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base = argument("--url", "ws://127.0.0.1:9001");
    let agent = argument("--agent", "tether");
    let count = match case_count(&base).await {
        Ok(count) => count,
        Err(error) => {
            eprintln!("autobahn_client: cannot get the case count: {error}");
            std::process::exit(1);
        }
    };
    eprintln!("autobahn_client: {count} cases");
    let mut config = ClientConfig::default();
    config.protocol.close_timeout = Duration::from_secs(5);
    for case in 1..=count {
        if let Err(error) = run_case(&base, case, &agent, &config).await {
            eprintln!("autobahn_client: case {case}: {error}");
        }
    }
    let mut config = ClientConfig::default();
    config.open_timeout = Some(Duration::from_secs(600));
    match tether::connect_with(&format!("{base}/updateReports?agent={agent}"), &config).await {
        Ok(mut socket) => while let Ok(Some(_)) = socket.recv().await {},
        Err(error) => {
            eprintln!("autobahn_client: updateReports: {error}");
            std::process::exit(1);
        }
    }
}
