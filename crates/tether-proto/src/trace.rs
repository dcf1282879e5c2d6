//! Trace, `websocket-client`'s `enableTrace(True)`: the opening handshake's
//! request and response heads and every frame sent and received
//! (direction, opcode, fin, length, payload shortened), as `tracing`
//! events at target `tether::trace`, level INFO.
//!
//! One switch turns it on for every connection opened afterwards: call
//! [`enable`], or set `TETHER_TRACE=1` in the environment. A program with
//! a `tracing` subscriber gets the events there; one without gets them on
//! stderr, so a trace is seen without any setup. Nothing global is
//! installed either way.
//!
//! The protocol core never traces by itself: the I/O layers attach
//! [`frame_observer`] and call [`handshake`] (behind the `trace` feature).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::frame::{FrameHeader, OpCode};
use crate::{Direction, FrameObserver};

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

/// A destination for trace lines, one call per line (see [`set_sink`]).
pub type TraceSink = Box<dyn Fn(&str) + Send + Sync>;

/// Where trace lines go when a program says so (`set_sink`).
type Sink = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

static SINK: std::sync::RwLock<Option<Sink>> = std::sync::RwLock::new(None);

/// Sends every trace line to `sink` instead (`None`: back to the default:
/// the `tracing` subscriber, or stderr). For a program with a logging
/// system of its own: the Python package hands the lines to Python's
/// `logging`, as websocket-client's `enableTrace` does.
pub fn set_sink(sink: Option<TraceSink>) {
    let sink = sink.map(Sink::from);
    *SINK.write().unwrap_or_else(std::sync::PoisonError::into_inner) = sink;
}

/// Emits one trace line: to the sink the program set, else to its
/// `tracing` subscriber if it has one, else straight to stderr. A library
/// must not install a global subscriber (that is the program's choice),
/// yet a trace asked for and printed nowhere would be useless.
fn emit(line: std::fmt::Arguments<'_>) {
    // Taken out of the lock first: the sink may itself trace or reset it.
    let sink = SINK.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if let Some(sink) = sink {
        sink(&line.to_string());
        return;
    }
    let silent = tracing::dispatcher::get_default(|dispatch| dispatch.is::<tracing::subscriber::NoSubscriber>());
    if silent {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        tracing::info!(target: "tether::trace", "{line}");
    }
}

/// Traces one side of an opening handshake: `what` is "request" or
/// "response", `head` the HTTP head's bytes.
pub fn handshake(peer: &str, what: &str, head: &[u8]) {
    let head = String::from_utf8_lossy(head);
    emit(format_args!("{peer} {what}:\n{}", head.trim_end()));
}

/// An observer that traces every frame of one connection (set it with
/// [`Connection::set_frame_observer`](crate::Connection::set_frame_observer)).
#[must_use]
pub fn frame_observer(peer: String) -> Box<dyn FrameObserver> {
    Box::new(move |direction: Direction, header: &FrameHeader, payload: &[u8]| {
        emit(format_args!("{peer} {}", describe_frame(direction, header, payload)));
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
