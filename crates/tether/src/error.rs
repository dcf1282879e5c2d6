//! The one error type of the public API.

use std::{fmt, io};

use tether_proto::handshake::{HandshakeError, HeadError, Rejection, UriError};
use tether_proto::{CloseCode, CloseFrame, ConfigError, ProtocolError, Timeout, UsageError};

/// Everything that can go wrong with a WebSocket connection.
///
/// Opaque on purpose: ask it questions ([`is_io`](Error::is_io),
/// [`is_timeout`](Error::is_timeout), [`close_code`](Error::close_code), …).
/// A clean close is not an error: `recv` returns `Ok(None)` then.
///
/// Its `Display` is one whole sentence, the cause's words included ("I/O
/// error: Connection refused"), since that is what most programs print.
/// [`source`](std::error::Error::source) therefore goes on from *below*
/// those words, so a printed chain of causes (anyhow's `{:#}`, `Caused
/// by:`) never says one twice.
pub struct Error {
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Io(io::Error),
    Tls(io::Error),
    Protocol(ProtocolError),
    Usage(UsageError),
    Handshake(HandshakeError),
    Rejected(Rejection),
    Uri(UriError),
    Timeout(Timeout),
    /// The peer closed the transport without a close frame (1006).
    AbnormalClosure,
    /// The connection closed normally earlier; this operation came after.
    Closed(Option<CloseFrame>),
    Config(ConfigError),
    /// The proxy refused the tunnel or answered nonsense.
    Proxy(tether_proto::proxy::ProxyError),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error { kind }
    }

    pub(crate) fn timed_out(which: Timeout) -> Error {
        Error::new(Kind::Timeout(which))
    }

    pub(crate) fn config(why: impl Into<String>) -> Error {
        Error::new(Kind::Config(ConfigError(why.into())))
    }

    /// The connection is closed (normally, or after a failure) and the
    /// operation could not be done.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed(_) | Kind::AbnormalClosure | Kind::Usage(UsageError::Closed))
    }

    /// A deadline passed: opening handshake, keepalive pong, idle limit,
    /// close handshake ([`timeout`](Error::timeout) says which).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// Which deadline passed, if that is what this is. A peer that stopped
    /// answering pings is [`Timeout::Ping`]: the connection was closed
    /// with 1011 "keepalive ping timeout".
    #[must_use]
    pub fn timeout(&self) -> Option<Timeout> {
        match self.kind {
            Kind::Timeout(which) => Some(which),
            _ => None,
        }
    }

    /// The proxy refused the tunnel (credentials, a refused target) or
    /// answered nonsense.
    #[must_use]
    pub fn is_proxy(&self) -> bool {
        matches!(self.kind, Kind::Proxy(_))
    }

    /// The configuration cannot work (the message says why).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// The peer broke the WebSocket protocol or exceeded a limit.
    #[must_use]
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// The transport failed (connection refused or reset, …).
    #[must_use]
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_) | Kind::AbnormalClosure)
    }

    /// A signal interrupted a blocking call that was told to report it
    /// ([`blocking::WebSocket::set_interruptible`](crate::blocking::WebSocket::set_interruptible)):
    /// nothing failed, and the call can be made again.
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        matches!(&self.kind, Kind::Io(cause) if cause.kind() == io::ErrorKind::Interrupted)
    }

    /// TLS failed (certificate verification, handshake).
    #[must_use]
    pub fn is_tls(&self) -> bool {
        matches!(self.kind, Kind::Tls(_))
    }

    /// The opening handshake failed: a non-101 answer, a bad answer, or (on
    /// a server) a refused request.
    #[must_use]
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake(_) | Kind::Rejected(_) | Kind::Uri(_))
    }

    /// The HTTP status of a refused handshake (client: the server's answer;
    /// server: what we answered), or of an HTTP proxy's refused tunnel.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match &self.kind {
            Kind::Handshake(HandshakeError::Status { status, .. }) => Some(*status),
            Kind::Handshake(HandshakeError::Head(head)) => Some(head.status()),
            Kind::Rejected(rejection) => Some(rejection.status),
            Kind::Proxy(tether_proto::proxy::ProxyError::Refused { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// The close code this error closed the connection with: the one we
    /// sent for a protocol error, 1006 for an abnormal closure.
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match &self.kind {
            Kind::Protocol(error) => Some(error.close_code()),
            Kind::AbnormalClosure => Some(CloseCode::ABNORMAL),
            Kind::Closed(frame) => frame.as_ref().map(|frame| frame.code),
            Kind::Timeout(Timeout::Ping | Timeout::Heartbeat) => Some(CloseCode::INTERNAL_ERROR),
            Kind::Timeout(Timeout::Idle) => Some(CloseCode::GOING_AWAY),
            _ => None,
        }
    }

    /// Why the server's answer to the opening handshake was refused (its
    /// status, headers, a missing field…), if that is what this is.
    #[must_use]
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match &self.kind {
            Kind::Handshake(error) => Some(error),
            _ => None,
        }
    }

    /// The peer's close frame, when the connection had closed before the
    /// operation that failed (the code and reason it gave).
    #[must_use]
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match &self.kind {
            Kind::Closed(frame) => frame.as_ref(),
            _ => None,
        }
    }

    /// The protocol violation, if that is what this is.
    #[must_use]
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        match &self.kind {
            Kind::Protocol(error) => Some(error),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.kind, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Io(error) => write!(f, "I/O error: {error}"),
            Kind::Tls(error) => {
                write!(f, "TLS error: {error}")?;
                if is_plaintext_answer(error) {
                    f.write_str(" (the server answered in plain text: is it serving ws:// rather than wss://?)")?;
                }
                Ok(())
            }
            Kind::Protocol(error) => write!(f, "protocol error: {error} (closed with {})", error.close_code()),
            Kind::Usage(error) => write!(f, "{error}"),
            Kind::Handshake(error) => write!(f, "opening handshake failed: {error}"),
            Kind::Rejected(rejection) => write!(f, "handshake refused: {rejection}"),
            Kind::Uri(error) => write!(f, "{error}"),
            Kind::Timeout(which @ (Timeout::Ping | Timeout::Idle | Timeout::Heartbeat)) => {
                write!(f, "{which} (closed with {})", self.close_code().unwrap_or(CloseCode::INTERNAL_ERROR))
            }
            Kind::Timeout(which) => write!(f, "{which}"),
            Kind::AbnormalClosure => f.write_str("connection closed without a close frame (1006)"),
            Kind::Closed(Some(frame)) => write!(f, "connection closed ({frame})"),
            Kind::Closed(None) => f.write_str("connection closed"),
            Kind::Config(why) => write!(f, "invalid configuration: {why}"),
            Kind::Proxy(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {
    /// The cause below what `Display` already says (see [`Error`]).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(error) | Kind::Tls(error) => error.source(),
            Kind::Protocol(error) => error.source(),
            Kind::Usage(error) => error.source(),
            Kind::Handshake(error) => error.source(),
            Kind::Rejected(error) => error.source(),
            Kind::Uri(error) => error.source(),
            Kind::Timeout(which) => which.source(),
            Kind::Config(error) => error.source(),
            Kind::Proxy(error) => error.source(),
            _ => None,
        }
    }
}

/// Whether a TLS failure is the server answering our ClientHello with
/// something that is not TLS at all, almost always an HTTP answer from a
/// plain `ws://` server.
fn is_plaintext_answer(error: &io::Error) -> bool {
    let rustls = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(rustls, Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)))
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        // tokio-rustls reports TLS failures as io::Error wrapping rustls::Error.
        let is_tls = error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
        Error::new(if is_tls { Kind::Tls(error) } else { Kind::Io(error) })
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        Error::new(Kind::Protocol(error))
    }
}

impl From<UsageError> for Error {
    fn from(error: UsageError) -> Self {
        Error::new(Kind::Usage(error))
    }
}

impl From<HandshakeError> for Error {
    fn from(error: HandshakeError) -> Self {
        Error::new(Kind::Handshake(error))
    }
}

impl From<HeadError> for Error {
    fn from(error: HeadError) -> Self {
        Error::new(Kind::Handshake(HandshakeError::Head(error)))
    }
}

impl From<Rejection> for Error {
    fn from(error: Rejection) -> Self {
        Error::new(Kind::Rejected(error))
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::new(Kind::Config(error))
    }
}

impl From<UriError> for Error {
    fn from(error: UriError) -> Self {
        Error::new(Kind::Uri(error))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
