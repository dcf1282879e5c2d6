//! Reading an HTTP/1.1 head (request or status line, then header fields)
//! from a stream, linearly and within limits.
//!
//! Each byte is looked at once as it arrives: the reader tracks the current
//! line's length, the number of lines and the total, and only when the blank
//! line ending the head is seen does it hand the head to `httparse`, once.
//! A head dripped one byte per read therefore costs O(n), not O(n²), and an
//! oversized head is refused at the limit, not after it has all been read.

use std::fmt;

use super::Headers;
use crate::config::HandshakeLimits;

/// Why a head was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head exceeds `max_head_bytes`.
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More than `max_headers` header fields.
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A line longer than `max_line_len`.
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// Not HTTP/1.1 syntax.
    Malformed(String),
    /// Not HTTP at all: a byte that cannot be part of a request or status
    /// line, seen in the first line. Refused at that byte, not after the
    /// open timeout: a TLS handshake sent to a plain port, or any binary
    /// protocol, is answered at once.
    NotHttp {
        /// The first byte that cannot be HTTP.
        byte: u8,
        /// Where it was, from the start of the head.
        offset: usize,
    },
}

impl HeadError {
    /// The status a server answers with: 431 for the size limits (RFC 6585
    /// §5), 400 for bad syntax.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. } | HeadError::LineTooLong { .. } => 431,
            HeadError::Malformed(_) | HeadError::NotHttp { .. } => 400,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge { limit } => write!(f, "HTTP head exceeds {limit} bytes"),
            HeadError::TooManyHeaders { limit } => write!(f, "more than {limit} header fields"),
            HeadError::LineTooLong { limit } => write!(f, "HTTP head line exceeds {limit} bytes"),
            HeadError::Malformed(why) => write!(f, "malformed HTTP head: {why}"),
            HeadError::NotHttp { byte: 0x16, offset: 0 } => {
                f.write_str("not HTTP: this is a TLS handshake (a wss:// peer on a plain ws:// port?)")
            }
            HeadError::NotHttp { byte, offset } => {
                write!(f, "not HTTP: byte 0x{byte:02x} at offset {offset} cannot be part of an HTTP/1.1 head")
            }
        }
    }
}

impl std::error::Error for HeadError {}

/// Accumulates a head from reads of any size.
#[derive(Debug)]
pub struct HeadReader {
    limits: HandshakeLimits,
    buf: Vec<u8>,
    line_len: usize,
    lines: usize,
    complete: bool,
}

impl HeadReader {
    /// A reader enforcing `limits`.
    #[must_use]
    pub fn new(limits: HandshakeLimits) -> HeadReader {
        HeadReader { limits, buf: Vec::new(), line_len: 0, lines: 0, complete: false }
    }

    /// Takes bytes from `data` up to the end of the head.
    ///
    /// Returns `Ok(Some(n))` once the head is complete, `n` being how many
    /// bytes of `data` belonged to it: the rest is already the next
    /// protocol's (frames after a 101) and must be kept by the caller.
    /// Returns `Ok(None)` while more is needed.
    ///
    /// # Errors
    /// A limit is exceeded; nothing past the limit is buffered.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HeadError> {
        debug_assert!(!self.complete, "feed after the head was complete");
        for (index, &byte) in data.iter().enumerate() {
            if self.buf.len() == self.limits.max_head_bytes {
                return Err(HeadError::TooLarge { limit: self.limits.max_head_bytes });
            }
            self.buf.push(byte);
            match byte {
                b'\n' => {
                    if self.line_len == 0 && self.lines > 0 {
                        self.complete = true;
                        return Ok(Some(index + 1));
                    }
                    self.lines += 1;
                    // The first line is the request or status line, not a header.
                    if self.lines > self.limits.max_headers + 1 {
                        return Err(HeadError::TooManyHeaders { limit: self.limits.max_headers });
                    }
                    self.line_len = 0;
                }
                b'\r' => {}
                // RFC 9112 §3 and §4: the request and status lines are
                // visible ASCII, spaces and (tolerated) tabs. Anything else
                // there means the peer is not speaking HTTP.
                _ if self.lines == 0 && !(byte.is_ascii_graphic() || byte == b' ' || byte == b'\t') => {
                    return Err(HeadError::NotHttp { byte, offset: self.buf.len() - 1 });
                }
                _ => {
                    self.line_len += 1;
                    if self.line_len > self.limits.max_line_len {
                        return Err(HeadError::LineTooLong { limit: self.limits.max_line_len });
                    }
                }
            }
        }
        Ok(None)
    }

    /// The complete head's bytes.
    #[must_use]
    pub fn head(&self) -> &[u8] {
        &self.buf
    }

    /// How many bytes are buffered so far.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn header_storage(&self) -> Vec<httparse::Header<'static>> {
        vec![httparse::EMPTY_HEADER; self.lines.max(1)]
    }
}

fn collect_headers(parsed: &[httparse::Header<'_>]) -> Headers {
    let mut headers = Headers::new();
    for header in parsed {
        headers.push(header.name, header.value);
    }
    headers.shrink_to_fit();
    headers
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query, e.g. `/chat?room=1`.
    pub target: String,
    /// The HTTP minor version (1 for HTTP/1.1).
    pub minor_version: u8,
    /// The header fields.
    pub headers: Headers,
}

impl Request {
    /// Parses the complete head held by `reader`.
    ///
    /// # Errors
    /// Bad HTTP syntax.
    pub fn parse(reader: &HeadReader) -> Result<Request, HeadError> {
        let mut storage = reader.header_storage();
        let mut request = httparse::Request::new(&mut storage);
        match request.parse(reader.head()) {
            Ok(httparse::Status::Complete(_)) => Ok(Request {
                method: request.method.unwrap_or_default().to_owned(),
                target: request.path.unwrap_or_default().to_owned(),
                minor_version: request.version.unwrap_or(0),
                headers: collect_headers(request.headers),
            }),
            Ok(httparse::Status::Partial) => Err(HeadError::Malformed("incomplete request".into())),
            Err(error) => Err(HeadError::Malformed(error.to_string())),
        }
    }

    /// The path part of the target (before any `?`).
    #[must_use]
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The query part of the target (after `?`), if any.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 101.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl Response {
    /// Parses the complete head held by `reader`.
    ///
    /// # Errors
    /// Bad HTTP syntax.
    pub fn parse(reader: &HeadReader) -> Result<Response, HeadError> {
        let mut storage = reader.header_storage();
        let mut response = httparse::Response::new(&mut storage);
        match response.parse(reader.head()) {
            Ok(httparse::Status::Complete(_)) => Ok(Response {
                status: response.code.unwrap_or_default(),
                reason: response.reason.unwrap_or_default().to_owned(),
                headers: collect_headers(response.headers),
            }),
            Ok(httparse::Status::Partial) => Err(HeadError::Malformed("incomplete response".into())),
            Err(error) => Err(HeadError::Malformed(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\nFRAME";

    #[test]
    fn a_head_fed_byte_by_byte_completes_at_the_blank_line() {
        let mut reader = HeadReader::new(HandshakeLimits::default());
        let head_len = REQUEST.len() - b"FRAME".len();
        for (i, byte) in REQUEST.iter().enumerate() {
            match reader.feed(std::slice::from_ref(byte)).unwrap() {
                None => assert!(i + 1 < head_len),
                Some(used) => {
                    assert_eq!((i + 1, used), (head_len, 1));
                    break;
                }
            }
        }
        let request = Request::parse(&reader).unwrap();
        assert_eq!((request.method.as_str(), request.path(), request.query()), ("GET", "/chat", Some("x=1")));
        assert_eq!(request.headers.get_str("host"), Some("example.com"));
    }

    #[test]
    fn bytes_after_the_head_are_left_to_the_caller() {
        let mut reader = HeadReader::new(HandshakeLimits::default());
        let used = reader.feed(REQUEST).unwrap().unwrap();
        assert_eq!(&REQUEST[used..], b"FRAME");
    }

    #[test]
    fn header_count_limit_is_inclusive() {
        let limits = HandshakeLimits { max_headers: 3, ..HandshakeLimits::default() };
        let head = |count: usize| {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..count {
                head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            head
        };
        assert!(HeadReader::new(limits.clone()).feed(&head(3)).unwrap().is_some());
        let err = HeadReader::new(limits).feed(&head(4)).unwrap_err();
        assert_eq!((err.clone(), err.status()), (HeadError::TooManyHeaders { limit: 3 }, 431));
    }

    #[test]
    fn oversized_heads_and_lines_are_refused_at_the_limit() {
        let limits = HandshakeLimits { max_head_bytes: 1024, max_line_len: 100, max_headers: 128 };
        let mut reader = HeadReader::new(limits.clone());
        let mut err = None;
        for _ in 0..1000 {
            if let Err(e) = reader.feed(b"X-Filler: 0123456789\r\n") {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(HeadError::TooLarge { limit: 1024 }));
        assert!(reader.buffered() <= 1024);
        let long_line = [b'a'; 101];
        assert_eq!(HeadReader::new(limits).feed(&long_line), Err(HeadError::LineTooLong { limit: 100 }));
    }

    #[test]
    fn status_line_and_headers_parse() {
        let mut reader = HeadReader::new(HandshakeLimits::default());
        reader.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").unwrap().unwrap();
        let response = Response::parse(&reader).unwrap();
        assert_eq!((response.status, response.reason.as_str()), (101, "Switching Protocols"));
    }
}
