//! Who gets in: the server's decisions before a request becomes a
//! connection. In order: plain HTTP requests (a health check) are answered
//! on the same port; the path must have a route; the `Origin` must be on
//! the allow-list, if there is one; the request must be a valid WebSocket
//! upgrade; then the program's hook sees path, query, headers and peer
//! address and accepts (choosing a subprotocol, adding headers, attaching
//! per-connection state) or refuses with the status, headers and body it
//! chooses. A cap on concurrent connections is checked before any of it.
//!
//! The authentication helpers compare secrets in constant time.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use tether_proto::handshake::{Rejection, Request};

/// What the handshake hook sees of a request.
#[derive(Clone, Copy, Debug)]
pub struct Handshake<'a> {
    /// The upgrade request: path, query, headers.
    pub request: &'a Request,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Handshake<'_> {
    /// The path, without the query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// The query, without the `?`.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.request.query()
    }

    /// A header's value, if present once and valid UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.headers.get_str(name)
    }

    /// The subprotocols the client offered, in its order.
    #[must_use]
    pub fn offered_protocols(&self) -> Vec<&str> {
        self.request
            .headers
            .get_str("Sec-WebSocket-Protocol")
            .map(|list| list.split(',').map(str::trim).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// The hook's decision.
#[derive(Debug)]
pub enum Admission {
    /// Open the connection.
    Accept(Acceptance),
    /// Refuse it with this HTTP answer.
    Reject(Refusal),
}

/// Per-connection state the hook attaches (read it with
/// [`Session::state`](crate::session::Session::state)).
pub type State = Arc<dyn Any + Send + Sync>;

/// How to accept.
#[derive(Default)]
pub struct Acceptance {
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) state: Option<State>,
}

impl std::fmt::Debug for Acceptance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptance")
            .field("protocol", &self.protocol)
            .field("headers", &self.headers)
            .field("state", &self.state.is_some())
            .finish()
    }
}

impl Admission {
    /// Accept, with the server's usual subprotocol choice.
    #[must_use]
    pub fn accept() -> Admission {
        Admission::Accept(Acceptance::default())
    }

    /// Refuse with `status` and a plain-text `body`.
    #[must_use]
    pub fn reject(status: u16, body: impl Into<String>) -> Admission {
        Admission::Reject(Refusal::new(status, body))
    }
}

impl Acceptance {
    /// Speak this subprotocol (it must be one the client offered).
    #[must_use]
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Add a header to the `101` answer.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Attach state to the connection (a user id, a room, a session).
    #[must_use]
    pub fn state(mut self, state: impl Any + Send + Sync) -> Self {
        self.state = Some(Arc::new(state));
        self
    }
}

impl From<Acceptance> for Admission {
    fn from(acceptance: Acceptance) -> Admission {
        Admission::Accept(acceptance)
    }
}

/// A refusal: status, headers, a plain-text body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub(crate) Rejection);

impl Refusal {
    /// Refuse with `status` and a plain-text `body`.
    #[must_use]
    pub fn new(status: u16, body: impl Into<String>) -> Refusal {
        Refusal(Rejection::new(status, body))
    }

    /// Add a response header (`WWW-Authenticate`, `Retry-After`…).
    #[must_use]
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Refusal {
        Refusal(self.0.with_header(name, value))
    }
}

impl From<Refusal> for Admission {
    fn from(refusal: Refusal) -> Admission {
        Admission::Reject(refusal)
    }
}

/// The handshake hook: runs for every valid upgrade request that passed
/// the route and origin checks, before the `101` is sent.
pub type Hook = Arc<dyn Fn(&Handshake<'_>) -> Admission + Send + Sync>;

/// An answer to a plain HTTP request on the WebSocket port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status, e.g. 200.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection: close`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a body of `content_type`.
    #[must_use]
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    /// A plain-text response.
    #[must_use]
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// The bytes on the wire; the connection closes after them.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = tether_proto::handshake::reason_phrase(self.status);
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Answers plain HTTP requests (no upgrade) on the WebSocket port;
/// `None` leaves the request to the WebSocket handshake (426).
pub type HttpHandler = Arc<dyn Fn(&Request) -> Option<HttpResponse> + Send + Sync>;

/// A plain-HTTP handler answering `GET path` with `200 ok` (a health
/// check for load balancers) and leaving every other request to the
/// WebSocket handshake.
#[must_use]
pub fn health_check(path: impl Into<String>) -> HttpHandler {
    let path = path.into();
    Arc::new(move |request: &Request| (request.path() == path).then(|| HttpResponse::text(200, "ok\n")))
}

/// Most bytes [`static_files`] keeps in memory.
pub const STATIC_FILES_LIMIT: u64 = 64 << 20;

/// A plain-HTTP handler serving the files under `root` (`/` is
/// `index.html`); hidden files and paths with `..` are not served, missing
/// files are 404.
///
/// The files are read once, now, and served from memory: a server's event
/// loop must never wait for a disk. Restart to serve changed files. Meant
/// for a demo or a small site, so at most [`STATIC_FILES_LIMIT`] bytes.
///
/// # Errors
/// `root` cannot be read, or holds more than the limit.
pub fn static_files(root: impl Into<std::path::PathBuf>) -> std::io::Result<HttpHandler> {
    let root = root.into();
    let mut files = std::collections::HashMap::new();
    let mut total = 0;
    let mut folders = vec![(root.clone(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push((entry.path(), format!("{path}/")));
            } else if kind.is_file() {
                total += entry.metadata()?.len();
                if total > STATIC_FILES_LIMIT {
                    let why = format!("{} holds more than {STATIC_FILES_LIMIT} bytes of files", root.display());
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
                }
                files.insert(path, std::fs::read(entry.path())?);
            }
        }
    }
    Ok(Arc::new(move |request: &Request| {
        if request.method != "GET" {
            return None;
        }
        let path = request.path().trim_start_matches('/');
        let path = if path.is_empty() { "index.html" } else { path };
        Some(match files.get(path) {
            Some(body) => HttpResponse::new(200, content_type(path), body.clone()),
            None => HttpResponse::text(404, "not found\n"),
        })
    }))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub fn is_upgrade(request: &Request) -> bool {
    request.headers.has_token("Upgrade", "websocket")
}

/// The `Origin` check: `None` allows all; with a list, a request with an
/// `Origin` not on it is refused with 403. Requests without `Origin` (not
/// from a browser) pass: the header protects browsers' users from other
/// sites, it proves nothing about other clients.
pub fn check_origin(allowed: Option<&[String]>, request: &Request) -> Result<(), Refusal> {
    let (Some(allowed), Some(origin)) = (allowed, request.headers.get_str("Origin")) else { return Ok(()) };
    if allowed.iter().any(|entry| entry.eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(Refusal::new(403, format!("origin {origin} is not allowed")))
    }
}

// ---- authentication ----------------------------------------------------------------

/// Compares two secrets in time that depends only on their lengths, so a
/// wrong guess does not reveal how many leading bytes were right.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or(0), b.get(i).copied().unwrap_or(0));
        difference |= std::hint::black_box(x ^ y);
    }
    difference == 0
}

/// A hook accepting only requests with HTTP Basic credentials `user` and
/// `password` (401 with `WWW-Authenticate: Basic` otherwise).
#[must_use]
pub fn basic_auth(realm: &str, user: &str, password: &str) -> Hook {
    let expected = format!("{user}:{password}").into_bytes();
    let challenge = format!("Basic realm=\"{realm}\"");
    Arc::new(move |handshake: &Handshake<'_>| {
        let given = handshake
            .header("Authorization")
            .and_then(|value| value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")))
            .and_then(|token| base64::engine::general_purpose::STANDARD.decode(token.trim()).ok());
        match given {
            Some(given) if constant_time_eq(&given, &expected) => Admission::accept(),
            _ => Refusal::new(401, "credentials required").header("WWW-Authenticate", challenge.clone()).into(),
        }
    })
}

/// A hook accepting only requests with `Authorization: Bearer <token>`
/// (401 with `WWW-Authenticate: Bearer` otherwise).
#[must_use]
pub fn bearer_auth(token: &str) -> Hook {
    let expected = token.as_bytes().to_vec();
    Arc::new(move |handshake: &Handshake<'_>| {
        let given = handshake.header("Authorization").and_then(|value| value.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given.trim().as_bytes(), &expected) => Admission::accept(),
            _ => Refusal::new(401, "a bearer token is required").header("WWW-Authenticate", "Bearer").into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
