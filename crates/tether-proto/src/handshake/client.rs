//! The client's side of the opening handshake (RFC 6455 §4.1): writing the
//! upgrade request and checking the server's answer.

use std::fmt;

use super::{accept_key, generate_key, HeadError, Headers, Response, Target};
use crate::deflate::{parse_extensions, DeflateConfig, DeflateError, DeflateParams, ExtensionParseError};

/// What a client asks for in the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientHandshakeConfig {
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (`Origin`, `Cookie`, `Authorization`, …). A
    /// `Host` or `User-Agent` here replaces ours; the WebSocket fields
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-*`) cannot be replaced.
    pub headers: Vec<(String, String)>,
    /// permessage-deflate to offer, if any.
    pub deflate: Option<DeflateConfig>,
}

/// The server's answer is not a valid acceptance.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The response head is malformed or too large.
    Head(HeadError),
    /// The server answered with a status other than 101.
    Status {
        /// The status, e.g. 403 or 503.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The response headers (e.g. `Location`, `Retry-After`).
        headers: Headers,
    },
    /// A redirect that was not followed (see [`RedirectError`](super::RedirectError)).
    Redirect(super::RedirectError),
    /// `Upgrade: websocket` is missing from a 101 answer.
    MissingUpgrade,
    /// `Connection: Upgrade` is missing from a 101 answer.
    MissingConnection,
    /// `Sec-WebSocket-Accept` does not answer our key.
    AcceptMismatch,
    /// The server chose a subprotocol we did not offer.
    UnexpectedProtocol(String),
    /// A malformed `Sec-WebSocket-Extensions` answer.
    ExtensionSyntax(ExtensionParseError),
    /// A permessage-deflate answer that breaks our offer.
    Deflate(DeflateError),
    /// A request header given to us has a forbidden character or name.
    InvalidRequestHeader(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Head(error) => write!(f, "{error}"),
            HandshakeError::Status { status, reason, .. } => {
                write!(f, "server answered {status} {reason}")
            }
            HandshakeError::Redirect(error) => write!(f, "{error}"),
            HandshakeError::MissingUpgrade => f.write_str("101 answer lacks Upgrade: websocket"),
            HandshakeError::MissingConnection => f.write_str("101 answer lacks Connection: Upgrade"),
            HandshakeError::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match our key"),
            HandshakeError::UnexpectedProtocol(protocol) => {
                write!(f, "server chose subprotocol {protocol:?}, not offered")
            }
            HandshakeError::ExtensionSyntax(error) => write!(f, "{error}"),
            HandshakeError::Deflate(error) => write!(f, "{error}"),
            HandshakeError::InvalidRequestHeader(name) => {
                write!(f, "invalid request header {name:?}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What the server agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAccepted {
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// The negotiated permessage-deflate parameters.
    pub deflate: Option<DeflateParams>,
    /// The response, for the application (cookies, server name).
    pub response: Response,
}

/// One client handshake: the request sent and what to check the answer against.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    config: ClientHandshakeConfig,
}

const RESERVED_REQUEST_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ClientHandshake {
    /// Builds the upgrade request for `target`, with a fresh random key.
    ///
    /// # Errors
    /// A header in `config` with a name that is not a token, a value with
    /// CR, LF or NUL (header injection), or a reserved WebSocket field.
    pub fn new(target: &Target, config: ClientHandshakeConfig) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
        Self::with_key(target, config, generate_key())
    }

    /// As [`new`](Self::new) with a given key, for tests.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_key(
        target: &Target,
        config: ClientHandshakeConfig,
        key: String,
    ) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
        for (name, value) in &config.headers {
            if !is_token(name)
                || value.contains(['\r', '\n', '\0'])
                || RESERVED_REQUEST_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            {
                return Err(HandshakeError::InvalidRequestHeader(name.clone()));
            }
        }
        for protocol in &config.protocols {
            if !is_token(protocol) {
                return Err(HandshakeError::InvalidRequestHeader(format!("Sec-WebSocket-Protocol: {protocol}")));
            }
        }
        let has = |name: &str| config.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut request = format!("GET {} HTTP/1.1\r\n", target.resource);
        if !has("Host") {
            request.push_str(&format!("Host: {}\r\n", target.host_header()));
        }
        request.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
        request.push_str(&format!("Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"));
        if !config.protocols.is_empty() {
            request.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", config.protocols.join(", ")));
        }
        if let Some(deflate) = &config.deflate {
            request.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", deflate.to_offer_header()));
        }
        if !has("User-Agent") {
            request.push_str(concat!("User-Agent: tether/", env!("CARGO_PKG_VERSION"), "\r\n"));
        }
        // Credentials in the URI, unless the caller set the header itself.
        if let Some(credentials) = target.credentials.as_ref().filter(|_| !has("Authorization")) {
            request.push_str(&format!("Authorization: {}\r\n", credentials.basic()));
        }
        for (name, value) in &config.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok((ClientHandshake { expected_accept: accept_key(key.as_bytes()), config }, request.into_bytes()))
    }

    /// Checks the server's answer (RFC 6455 §4.1, items 1–6 of the
    /// client's validation).
    ///
    /// # Errors
    /// Any failed check; the client MUST then fail the connection.
    pub fn verify(&self, response: Response) -> Result<ClientAccepted, HandshakeError> {
        if response.status != 101 {
            return Err(HandshakeError::Status {
                status: response.status,
                reason: response.reason,
                headers: response.headers,
            });
        }
        let headers = &response.headers;
        if !headers.has_token("Upgrade", "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !headers.has_token("Connection", "upgrade") {
            return Err(HandshakeError::MissingConnection);
        }
        if headers.count("Sec-WebSocket-Accept") != 1
            || headers.get("Sec-WebSocket-Accept").map(<[u8]>::trim_ascii) != Some(self.expected_accept.as_bytes())
        {
            return Err(HandshakeError::AcceptMismatch);
        }
        let protocol = match headers.joined("Sec-WebSocket-Protocol") {
            None => None,
            Some(chosen) => {
                let chosen = String::from_utf8_lossy(chosen.trim_ascii()).into_owned();
                if !self.config.protocols.contains(&chosen) {
                    return Err(HandshakeError::UnexpectedProtocol(chosen));
                }
                Some(chosen)
            }
        };
        let extensions = match headers.joined("Sec-WebSocket-Extensions") {
            None => Vec::new(),
            Some(value) => parse_extensions(&value).map_err(HandshakeError::ExtensionSyntax)?,
        };
        let deflate = match &self.config.deflate {
            Some(deflate) => deflate.accept_response(&extensions).map_err(HandshakeError::Deflate)?,
            None if extensions.is_empty() => None,
            None => return Err(HandshakeError::Deflate(DeflateError::UnexpectedExtension(extensions[0].name.clone()))),
        };
        Ok(ClientAccepted { protocol, deflate, response })
    }
}
