//! Whether a lost connection or a failed attempt is worth another try,
//! decided here and nowhere else.
//!
//! | what happened | verdict | why |
//! |---|---|---|
//! | I/O error: refused, reset, unreachable; closed without a close frame (1006) | retry | the network or the server is down for now |
//! | a deadline: opening handshake, keepalive pong, app heartbeat, close, idle | retry | a dead or overloaded peer may come back |
//! | HTTP 5xx, 408 Request Timeout, 429 Too Many Requests | retry | the server says "later" |
//! | the proxy answers 5xx (502: it cannot reach the server), a SOCKS5 failure | retry | the way to the server is down for now |
//! | the proxy wants other credentials, refuses with 4xx, or its URL is bad | stop | it will answer the same again |
//! | the server closes with 1001, 1011, 1012, 1013, 1014 | retry | going away, internal error, restarting, try again later, bad gateway |
//! | the server closes with 1000 | as configured (default: stop) | it finished the conversation on purpose |
//! | other HTTP statuses (4xx, 3xx) | stop | the request itself is refused: trying again gets the same answer |
//! | TLS failure (certificate verification) | stop | retrying cannot make an untrusted certificate trusted |
//! | a protocol violation, an invalid handshake answer | stop | the peer does not speak WebSocket as we do |
//! | the server closes with any other code (1002, 1003, 1007–1010, 3000–4999) | stop | it refused us or our data, deliberately |
//! | a bad URL or configuration | stop | nothing will change by waiting |

use tether_proto::{CloseCode, CloseFrame};

use tether_proto::proxy::ProxyError;

use crate::error::{Error, Kind};

/// Whether to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Reconnect after the backoff delay.
    Retry,
    /// Give up: trying again would fail the same way.
    Stop,
}

/// The verdict for an error (a failed attempt, or a connection that failed).
#[must_use]
pub fn classify_error(error: &Error) -> Verdict {
    use tether_proto::handshake::HandshakeError;
    match &error.kind {
        Kind::Io(_) | Kind::AbnormalClosure | Kind::Timeout(_) => Verdict::Retry,
        Kind::Handshake(HandshakeError::Status { status, .. }) => match status {
            500..=599 | 408 | 429 => Verdict::Retry,
            _ => Verdict::Stop,
        },
        Kind::Closed(frame) => classify_close(frame.as_ref(), false),
        Kind::Proxy(ProxyError::Refused { status: 500..=599, .. } | ProxyError::Socks(_)) => Verdict::Retry,
        Kind::Proxy(_) => Verdict::Stop,
        Kind::Tls(_)
        | Kind::Protocol(_)
        | Kind::Handshake(_)
        | Kind::Rejected(_)
        | Kind::Uri(_)
        | Kind::Usage(_)
        | Kind::Config(_) => Verdict::Stop,
    }
}

/// The verdict for a close frame from the server (`None`: it sent no
/// code). `on_normal_close` is the answer for 1000 and for no code.
#[must_use]
pub fn classify_close(frame: Option<&CloseFrame>, on_normal_close: bool) -> Verdict {
    let retry_if = |yes: bool| if yes { Verdict::Retry } else { Verdict::Stop };
    match frame.map(|frame| frame.code) {
        None | Some(CloseCode::NORMAL) => retry_if(on_normal_close),
        Some(CloseCode(1001 | 1006 | 1011 | 1012 | 1013 | 1014)) => Verdict::Retry,
        Some(_) => Verdict::Stop,
    }
}

impl Error {
    /// Whether reconnecting could help (see [`reconnect`](crate::reconnect)
    /// for the full table).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        classify_error(self) == Verdict::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::handshake::HandshakeError;
    use tether_proto::{ProtocolError, Timeout};

    fn status(status: u16) -> Error {
        Error::new(Kind::Handshake(HandshakeError::Status {
            status,
            reason: String::new(),
            headers: Default::default(),
        }))
    }

    #[test]
    fn transient_failures_are_retried() {
        let io = Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        for error in
            [io, Error::new(Kind::AbnormalClosure), Error::timed_out(Timeout::Ping), Error::timed_out(Timeout::Open)]
        {
            assert_eq!(classify_error(&error), Verdict::Retry, "{error}");
        }
        for code in [500, 502, 503, 408, 429] {
            assert_eq!(classify_error(&status(code)), Verdict::Retry, "{code}");
        }
    }

    #[test]
    fn refusals_are_final() {
        for code in [400, 401, 403, 404, 301] {
            assert_eq!(classify_error(&status(code)), Verdict::Stop, "{code}");
        }
        assert_eq!(classify_error(&Error::from(ProtocolError::MaskedServerFrame)), Verdict::Stop);
        assert_eq!(classify_error(&Error::config("bad")), Verdict::Stop);
    }

    #[test]
    fn close_codes_say_whether_the_server_wants_us_back() {
        let frame = |code| CloseFrame::new(CloseCode(code), "");
        for code in [1001, 1011, 1012, 1013, 1014] {
            assert_eq!(classify_close(Some(&frame(code)), false), Verdict::Retry, "{code}");
        }
        for code in [1002, 1003, 1007, 1008, 1009, 1010, 4001] {
            assert_eq!(classify_close(Some(&frame(code)), true), Verdict::Stop, "{code}");
        }
        assert_eq!(classify_close(Some(&frame(1000)), false), Verdict::Stop);
        assert_eq!(classify_close(Some(&frame(1000)), true), Verdict::Retry);
        assert_eq!(classify_close(None, true), Verdict::Retry);
    }
}
