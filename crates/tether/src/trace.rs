//! Trace, `websocket-client`'s `enableTrace(True)`: the opening handshake's
//! request and response heads and every frame sent and received
//! (direction, opcode, fin, length, payload shortened), as `tracing`
//! events at target `tether::trace`, level INFO.
//!
//! One switch turns it on for every connection opened afterwards: call
//! [`enable`], or set `TETHER_TRACE=1` in the environment. Either way, if
//! the program has installed no `tracing` subscriber, one that prints to
//! stderr is installed, so a trace is seen without any setup; a program
//! with its own subscriber gets the events there instead.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use tether_proto::frame::{FrameHeader, OpCode};
use tether_proto::{Direction, FrameObserver};

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// How much of a payload a trace line shows.
const SHOWN_TEXT: usize = 80;
const SHOWN_BYTES: usize = 32;

/// Turns trace on (or off) for connections opened from now on.
pub fn enable(on: bool) {
    STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
    if on {
        install_stderr_subscriber();
    }
}

/// Whether trace is on: [`enable`] was called, or `TETHER_TRACE` is set
/// to anything but `0`, `false`, `off` or empty.
#[must_use]
pub fn is_enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("TETHER_TRACE")
                .is_ok_and(|value| !matches!(value.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "off"));
            // Another thread may have called `enable` meanwhile: it wins.
            let _ = STATE.compare_exchange(UNKNOWN, if on { ON } else { OFF }, Ordering::Relaxed, Ordering::Relaxed);
            STATE.load(Ordering::Relaxed) == ON
        }
    }
}

fn install_stderr_subscriber() {
    // Fails harmlessly when the program already has a subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("tether::trace=info"))
        .with_writer(std::io::stderr)
        .with_target(false)
        .log_internal_errors(false)
        .try_init();
}

/// Traces one side of the opening handshake. The first trace installs the
/// stderr subscriber if the program has none by then.
pub(crate) fn handshake(peer: &str, what: &str, head: &[u8]) {
    static OUTPUT: std::sync::Once = std::sync::Once::new();
    OUTPUT.call_once(install_stderr_subscriber);
    let head = String::from_utf8_lossy(head);
    tracing::info!(target: "tether::trace", "{peer} {what}:\n{}", head.trim_end());
}

/// An observer that traces every frame of one connection.
pub(crate) fn frame_observer(peer: String) -> Box<dyn FrameObserver> {
    Box::new(move |direction: Direction, header: &FrameHeader, payload: &[u8]| {
        tracing::info!(target: "tether::trace", "{peer} {}", describe_frame(direction, header, payload));
    })
}

/// One trace line: `> TEXT fin=1 rsv1=0 len=5 "hello"`.
#[must_use]
pub fn describe_frame(direction: Direction, header: &FrameHeader, payload: &[u8]) -> String {
    let arrow = match direction {
        Direction::Incoming => '<',
        Direction::Outgoing => '>',
    };
    let mut line = format!(
        "{arrow} {} fin={} rsv1={} len={}",
        header.opcode,
        u8::from(header.fin),
        u8::from(header.rsv1),
        payload.len()
    );
    if payload.is_empty() {
        return line;
    }
    line.push(' ');
    let text = matches!(header.opcode, OpCode::Text | OpCode::Continuation | OpCode::Close);
    match std::str::from_utf8(payload) {
        Ok(valid) if text || valid.chars().all(|c| !c.is_control()) => {
            let shown: String = valid.chars().take(SHOWN_TEXT).collect();
            let _ = write!(line, "{shown:?}");
            if shown.len() < valid.len() {
                let _ = write!(line, "…(+{} bytes)", valid.len() - shown.len());
            }
        }
        _ => {
            for byte in payload.iter().take(SHOWN_BYTES) {
                let _ = write!(line, "{byte:02x}");
            }
            if payload.len() > SHOWN_BYTES {
                let _ = write!(line, "…(+{} bytes)", payload.len() - SHOWN_BYTES);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_line_names_direction_opcode_flags_length_and_a_short_payload() {
        let text = FrameHeader::new(OpCode::Text, 5);
        assert_eq!(describe_frame(Direction::Outgoing, &text, b"hello"), r#"> TEXT fin=1 rsv1=0 len=5 "hello""#);
        let ping = FrameHeader::new(OpCode::Ping, 4);
        assert_eq!(describe_frame(Direction::Incoming, &ping, &[0, 0, 0, 1]), "< PING fin=1 rsv1=0 len=4 00000001");
        let long = "x".repeat(100);
        let line = describe_frame(Direction::Incoming, &FrameHeader::new(OpCode::Text, 100), long.as_bytes());
        assert!(line.ends_with("\"…(+20 bytes)"), "{line}");
        let binary = vec![0xab; 40];
        let line = describe_frame(Direction::Incoming, &FrameHeader::new(OpCode::Binary, 40), &binary);
        assert!(line.ends_with("abab…(+8 bytes)"), "{line}");
    }
}
