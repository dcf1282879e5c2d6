//! The server's side of the opening handshake (RFC 6455 §4.2): checking an
//! upgrade request, choosing a subprotocol and extensions, and writing the
//! `101` answer or an HTTP error.

use std::fmt;

use super::{accept_key, is_valid_key, Request};
use crate::deflate::{parse_extensions, DeflateConfig, DeflateParams};

/// The request was refused: the HTTP answer to send before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status, e.g. 400, 426, 431.
    pub status: u16,
    /// Why, in words; sent as the plain-text body.
    pub reason: String,
    /// Extra response headers, e.g. `Sec-WebSocket-Version: 13` with a 426.
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    /// A rejection with `status` and a plain-text `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection { status, reason: reason.into(), headers: Vec::new() }
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Rejection {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The complete HTTP response. `Connection: close`, since the
    /// connection ends after it.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = format!("{}\n", self.reason);
        let mut response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            body.len()
        );
        for (name, value) in &self.headers {
            push_header(&mut response, name, value);
        }
        response.push_str("\r\n");
        response.push_str(&body);
        response.into_bytes()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, reason_phrase(self.status), self.reason)
    }
}

impl std::error::Error for Rejection {}

/// The standard reason phrase for the statuses a WebSocket server answers with.
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends `name: value\r\n`, dropping CR and LF from both so a header can
/// never smuggle another one in.
fn push_header(out: &mut String, name: &str, value: &str) {
    out.extend(name.chars().filter(|c| !matches!(c, '\r' | '\n')));
    out.push_str(": ");
    out.extend(value.chars().filter(|c| !matches!(c, '\r' | '\n')));
    out.push_str("\r\n");
}

/// What the server offers in the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerHandshakeConfig {
    /// Subprotocols the server speaks. The first one in the *client's*
    /// list (its order of preference, RFC 6455 §4.1) that is also here
    /// is chosen; none if there is no overlap.
    pub protocols: Vec<String>,
    /// permessage-deflate, if the server accepts it.
    pub deflate: Option<DeflateConfig>,
    /// Headers added to every `101` answer (e.g. `Server`).
    pub headers: Vec<(String, String)>,
}

/// A valid upgrade request and what the server agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The chosen subprotocol.
    pub protocol: Option<String>,
    /// The negotiated permessage-deflate parameters.
    pub deflate: Option<DeflateParams>,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
}

impl Accepted {
    /// The `101 Switching Protocols` answer, with `extra` headers appended.
    #[must_use]
    pub fn response(&self, extra: &[(String, String)]) -> Vec<u8> {
        let mut response =
            String::from("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        push_header(&mut response, "Sec-WebSocket-Accept", &self.accept);
        if let Some(protocol) = &self.protocol {
            push_header(&mut response, "Sec-WebSocket-Protocol", protocol);
        }
        if let Some(deflate) = &self.deflate {
            push_header(&mut response, "Sec-WebSocket-Extensions", &deflate.to_response_header());
        }
        for (name, value) in extra {
            push_header(&mut response, name, value);
        }
        response.push_str("\r\n");
        response.into_bytes()
    }
}

/// Checks an upgrade request against RFC 6455 §4.2.1 and negotiates.
///
/// # Errors
/// A [`Rejection`] with the status to answer: 400 for a malformed request,
/// 426 (with `Sec-WebSocket-Version: 13` or `Upgrade: websocket`) for the
/// wrong protocol or version.
pub fn accept_request(request: &Request, config: &ServerHandshakeConfig) -> Result<Accepted, Rejection> {
    let headers = &request.headers;
    if request.method != "GET" {
        return Err(Rejection::new(400, format!("method must be GET, not {}", request.method)));
    }
    if request.minor_version < 1 {
        return Err(Rejection::new(400, "HTTP/1.1 or later is required"));
    }
    if headers.count("Host") != 1 {
        return Err(Rejection::new(400, "exactly one Host header is required"));
    }
    if !headers.has_token("Upgrade", "websocket") || !headers.has_token("Connection", "upgrade") {
        return Err(Rejection::new(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade",
        )
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade"));
    }
    match headers.get("Sec-WebSocket-Version") {
        None => return Err(Rejection::new(400, "missing Sec-WebSocket-Version")),
        Some(b"13") if headers.count("Sec-WebSocket-Version") == 1 => {}
        Some(_) => {
            return Err(Rejection::new(426, "unsupported WebSocket version: only 13 is supported")
                .with_header("Sec-WebSocket-Version", "13"));
        }
    }
    let key = match (headers.get("Sec-WebSocket-Key"), headers.count("Sec-WebSocket-Key")) {
        (Some(key), 1) if is_valid_key(key) => key,
        (None, _) => return Err(Rejection::new(400, "missing Sec-WebSocket-Key")),
        _ => return Err(Rejection::new(400, "Sec-WebSocket-Key must be one base64-encoded 16-byte value")),
    };
    if headers.count("Origin") > 1 {
        return Err(Rejection::new(400, "more than one Origin header"));
    }
    let deflate = match (&config.deflate, headers.joined("Sec-WebSocket-Extensions")) {
        (Some(deflate), Some(offers)) => {
            let offers = parse_extensions(&offers)
                .map_err(|error| Rejection::new(400, format!("invalid Sec-WebSocket-Extensions: {error}")))?;
            deflate.accept_offer(&offers)
        }
        _ => None,
    };
    let protocol = headers
        .list_items("Sec-WebSocket-Protocol")
        .find_map(|offered| config.protocols.iter().find(|ours| ours.as_bytes() == offered))
        .cloned();
    Ok(Accepted { protocol, deflate, accept: accept_key(key) })
}
