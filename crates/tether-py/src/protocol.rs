//! `Protocol`: tether's sans-I/O core for asyncio, under `tether.websockets`.
//!
//! Python's `websockets` is built the same way: a protocol object that
//! takes bytes and gives back events and bytes, driven by an
//! `asyncio.Protocol` on the event loop's own transport. Here the protocol
//! object is tether's core (`tether_proto::Connection` and the opening
//! handshakes): no thread, no runtime, no copy beyond the one into the
//! Python object handed out. Time is read when a call is made; the next
//! deadline (keepalive ping, pong timeout, close timeout) is handed back as
//! seconds from now for the loop's `call_later`.
//!
//! Events are tuples whose first item says what they are (the `EV_*`
//! constants of the module): `(EV_TEXT, str)`, `(EV_BINARY, bytes)`,
//! `(EV_PING, bytes)`, `(EV_PONG, bytes)`, `(EV_CLOSE, code | None,
//! reason)`, `(EV_OPEN, status, headers, subprotocol)` (client),
//! `(EV_REJECTED, status, reason, headers, body)` (client),
//! `(EV_REQUEST, method, target, headers)` (server), `(EV_BAD_REQUEST,
//! status, message)` (server), `(EV_FAILED, message, code)` (a protocol
//! violation: the close is queued), `(EV_TIMEOUT, which)`.

use std::time::Instant;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};
use tether::proto::handshake::{accept_request, ClientHandshake, HeadReader, Request, ServerHandshakeConfig, Target};
use tether::proto::{CloseCode, Config, Connection, Event, Message, PreparedMessage, Role, State};
use tether::ClientConfig;

use crate::options::ClientOptions;

/// Event kinds (see the module docs).
pub const EV_TEXT: u8 = 1;
pub const EV_BINARY: u8 = 2;
pub const EV_CLOSE: u8 = 8;
pub const EV_PING: u8 = 9;
pub const EV_PONG: u8 = 10;
pub const EV_OPEN: u8 = 20;
pub const EV_REJECTED: u8 = 21;
pub const EV_REQUEST: u8 = 22;
pub const EV_BAD_REQUEST: u8 = 23;
pub const EV_FAILED: u8 = 24;
pub const EV_TIMEOUT: u8 = 25;

enum Phase {
    /// A client waiting for the answer to its request.
    ClientOpening(Box<ClientOpening>),
    /// A server reading the request.
    ServerReading { reader: HeadReader },
    /// A server that has the request and waits for the program's verdict.
    ServerDeciding { request: Box<Request> },
    /// Frames flow.
    Open(Box<Connection>),
    /// The opening failed; nothing more happens.
    Failed,
}

/// A message framed once for many server connections (`broadcast`): its
/// one unmasked frame, shared, and its compressed form, made by the first
/// connection that needs it and shared by the others.
#[pyclass(module = "tether._tether", frozen)]
pub struct Prepared {
    inner: PreparedMessage,
    frame: Py<PyBytes>,
}

#[pymethods]
impl Prepared {
    /// Frames `message`: a `str` as text, anything bytes-like as binary.
    #[new]
    fn new(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Prepared> {
        let message = if let Ok(text) = message.cast::<PyString>() {
            Message::from(text.to_str()?)
        } else {
            Message::from(with_bytes(message, <[u8]>::to_vec)?)
        };
        let inner = PreparedMessage::new(&message);
        let frame = PyBytes::new(py, inner.frame()).unbind();
        Ok(Prepared { inner, frame })
    }

    /// The whole uncompressed frame, to write as is to a server connection
    /// without permessage-deflate.
    #[getter]
    fn frame(&self, py: Python<'_>) -> Py<PyBytes> {
        self.frame.clone_ref(py)
    }
}

/// Runs `f` on the bytes of a bytes-like object (`bytes`, `bytearray`,
/// `memoryview` or any other buffer) in place: a payload is copied once,
/// into the frame.
fn with_bytes<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(f(bytes.as_bytes()));
    }
    // A bytearray too goes through the buffer protocol: its export keeps
    // it from being resized while it is read (`f` may call Python code: a
    // trace logger, which may let another thread run).
    if let Ok(buffer) = PyBuffer::<u8>::get(data) {
        if buffer.is_c_contiguous() {
            // SAFETY: the buffer is exported (held) until `buffer` drops, so
            // it is neither resized nor freed while `f` reads it; it is
            // contiguous and `len_bytes` long.
            let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes()) };
            return Ok(f(bytes));
        }
        return Ok(f(&buffer.to_vec(data.py())?));
    }
    // Anything else `bytes()` takes (a buffer of other item types).
    let bytes = data.py().get_type::<PyBytes>().call1((data,))?;
    Ok(f(bytes.cast::<PyBytes>()?.as_bytes()))
}

/// What a client keeps until the server's answer is read.
struct ClientOpening {
    handshake: ClientHandshake,
    reader: HeadReader,
    target: Target,
    config: ClientConfig,
}

/// One WebSocket connection's protocol state, without I/O.
#[pyclass(module = "tether._tether", unsendable)]
pub struct Protocol {
    phase: Phase,
    /// The protocol settings of the connection to come (server side).
    config: Config,
    server: ServerHandshakeConfig,
    /// Bytes to write before the connection is open (the request, the
    /// answer), and bytes read past the head, for the connection.
    out: Vec<u8>,
    leftover: Vec<u8>,
    /// Whether a violation was reported already.
    failure_reported: bool,
    /// Client: the server's refusal, kept for `Redirects.follow`.
    pub(crate) rejection: Option<tether::Error>,
}

fn headers_list<'py>(py: Python<'py>, headers: &tether::proto::handshake::Headers) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (name, value) in headers.iter() {
        list.append((name, String::from_utf8_lossy(value)))?;
    }
    Ok(list)
}

fn event<'py, T>(py: Python<'py>, items: T) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>,
    T::Error: Into<PyErr>,
{
    items.into_pyobject(py).map(Bound::into_any).map_err(Into::into)
}

/// An HTTP answer other than 101 (`process_request`'s, or a refusal):
/// status, headers and body, with `Connection: close`.
fn http_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", tether::proto::handshake::reason_phrase(status));
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl Protocol {
    fn open(&mut self) -> PyResult<&mut Connection> {
        match &mut self.phase {
            Phase::Open(connection) => Ok(connection),
            _ => Err(PyRuntimeError::new_err("the connection is not open")),
        }
    }

    /// Every event the core holds, appended to `events`.
    fn drain(&mut self, py: Python<'_>, events: &Bound<'_, PyList>) -> PyResult<()> {
        let Phase::Open(connection) = &mut self.phase else { return Ok(()) };
        // Only while events wait: the poll that finds none releases a close
        // deferred behind them, which `events_taken` does once the program
        // has read them (its answers go out first).
        while connection.has_events() {
            let Some(happened) = connection.poll_event() else { break };
            let item = match happened {
                Event::Message(Message::Text(text)) => event(py, (EV_TEXT, PyString::new(py, &text)))?,
                Event::Message(Message::Binary(bytes)) => event(py, (EV_BINARY, PyBytes::new(py, &bytes)))?,
                Event::Ping(payload) => event(py, (EV_PING, PyBytes::new(py, &payload)))?,
                Event::Pong(payload) => event(py, (EV_PONG, PyBytes::new(py, &payload)))?,
                Event::Close(frame) => {
                    let code = frame.as_ref().map(|frame| frame.code.0);
                    let reason = frame.as_ref().map_or(String::new(), |frame| frame.reason.to_string());
                    event(py, (EV_CLOSE, code, reason))?
                }
                Event::Fragment { .. } => continue,
            };
            events.append(item)?;
        }
        if !self.failure_reported {
            if let Some(error) = connection.error() {
                self.failure_reported = true;
                events.append(event(py, (EV_FAILED, error.to_string(), error.close_code().0))?)?;
            }
        }
        Ok(())
    }

    /// A client for `target` with `config`: the protocol, and the request
    /// to write.
    pub(crate) fn client_for<'py>(
        py: Python<'py>,
        target: Target,
        config: &tether::ClientConfig,
    ) -> PyResult<(Protocol, Bound<'py, PyBytes>)> {
        let (handshake, request) =
            tether::client::opening_request(&target, config).map_err(|error| crate::error::to_py(&error))?;
        let protocol = Protocol {
            phase: Phase::ClientOpening(Box::new(ClientOpening {
                handshake,
                reader: HeadReader::new(config.limits.clone()),
                target,
                config: config.clone(),
            })),
            config: config.protocol.clone(),
            server: ServerHandshakeConfig::default(),
            out: Vec::new(),
            leftover: Vec::new(),
            failure_reported: false,
            rejection: None,
        };
        Ok((protocol, PyBytes::new(py, &request)))
    }

    /// Feeds `data` to the open connection; a violation becomes an event.
    fn feed_open(&mut self, py: Python<'_>, data: &[u8], events: &Bound<'_, PyList>) -> PyResult<()> {
        if let Phase::Open(connection) = &mut self.phase {
            // A violation queues the close; it is reported by `drain`.
            let _ = connection.handle_read(data);
        }
        self.drain(py, events)
    }
}

#[pymethods]
impl Protocol {
    /// A client for `url`: the protocol, and the request to write.
    #[staticmethod]
    fn client<'py>(py: Python<'py>, url: &str, options: ClientOptions) -> PyResult<(Protocol, Bound<'py, PyBytes>)> {
        let config = options.config()?;
        let target = Target::parse(url).map_err(|error| PyValueError::new_err(error.to_string()))?;
        Protocol::client_for(py, target, &config)
    }

    /// A server connection: reads a request, then `accept` or `reject`.
    /// `subprotocols` are those the server speaks; `headers` go into
    /// every 101 answer.
    #[staticmethod]
    #[pyo3(signature = (options, subprotocols, headers))]
    fn server(options: ClientOptions, subprotocols: Vec<String>, headers: Vec<(String, String)>) -> PyResult<Protocol> {
        let config = options.config()?;
        let mut server = ServerHandshakeConfig::default();
        server.protocols = subprotocols;
        server.deflate.clone_from(&config.protocol.deflate);
        server.headers = headers;
        Ok(Protocol {
            phase: Phase::ServerReading { reader: HeadReader::new(config.limits.clone()) },
            config: config.protocol,
            server,
            out: Vec::new(),
            leftover: Vec::new(),
            failure_reported: false,
            rejection: None,
        })
    }

    /// Takes bytes read from the transport; returns the events they made.
    fn receive_data<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let events = PyList::empty(py);
        match &mut self.phase {
            Phase::Open(_) => {
                if !self.leftover.is_empty() {
                    let leftover = std::mem::take(&mut self.leftover);
                    self.feed_open(py, &leftover, &events)?;
                }
                self.feed_open(py, data, &events)?;
            }
            Phase::ClientOpening(opening) => {
                let used = match opening.reader.feed(data) {
                    Ok(Some(used)) => used,
                    Ok(None) => return Ok(events),
                    Err(error) => {
                        events.append(event(
                            py,
                            (EV_REJECTED, error.status(), error.to_string(), PyList::empty(py), PyBytes::new(py, b"")),
                        )?)?;
                        self.phase = Phase::Failed;
                        return Ok(events);
                    }
                };
                let Phase::ClientOpening(opening) = std::mem::replace(&mut self.phase, Phase::Failed) else {
                    unreachable!("matched above")
                };
                let ClientOpening { handshake, reader, target, config } = *opening;
                let rest = &data[used..];
                match tether::client::open_connection(&target, &config, handshake, &reader) {
                    Ok((mut connection, accepted)) => {
                        connection.handle_timeout(Instant::now());
                        let headers = headers_list(py, &accepted.response.headers)?;
                        events.append(event(py, (EV_OPEN, accepted.response.status, headers, accepted.protocol))?)?;
                        self.phase = Phase::Open(Box::new(connection));
                        self.feed_open(py, rest, &events)?;
                    }
                    Err(error) => {
                        let (status, reason, headers) = match error.handshake_error() {
                            Some(tether::proto::handshake::HandshakeError::Status { status, reason, headers }) => {
                                (*status, reason.clone(), headers_list(py, headers)?)
                            }
                            _ => (error.http_status().unwrap_or(0), error.to_string(), PyList::empty(py)),
                        };
                        events.append(event(py, (EV_REJECTED, status, reason, headers, PyBytes::new(py, rest)))?)?;
                        self.rejection = Some(error);
                    }
                }
            }
            Phase::ServerReading { reader } => {
                let used = match reader.feed(data) {
                    Ok(Some(used)) => used,
                    Ok(None) => return Ok(events),
                    Err(error) => {
                        events.append(event(py, (EV_BAD_REQUEST, error.status(), error.to_string()))?)?;
                        self.phase = Phase::Failed;
                        return Ok(events);
                    }
                };
                match Request::parse(reader) {
                    Ok(request) => {
                        let headers = headers_list(py, &request.headers)?;
                        events.append(event(
                            py,
                            (EV_REQUEST, request.method.clone(), request.target.clone(), headers),
                        )?)?;
                        self.leftover.extend_from_slice(&data[used..]);
                        self.phase = Phase::ServerDeciding { request: Box::new(request) };
                    }
                    Err(error) => {
                        events.append(event(py, (EV_BAD_REQUEST, error.status(), error.to_string()))?)?;
                        self.phase = Phase::Failed;
                    }
                }
            }
            Phase::ServerDeciding { .. } => self.leftover.extend_from_slice(data),
            Phase::Failed => {}
        }
        Ok(events)
    }

    /// The program has taken every message handed out: a close frame
    /// deferred behind them (the peer's close, or a violation, that came
    /// in the same read) is queued now. Call it when the program asks for
    /// a message and none waits, or when none waited to begin with.
    /// Returns the bytes to write then (the close frame), if any.
    fn events_taken<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if let Phase::Open(connection) = &mut self.phase {
            if !connection.has_events() {
                let _ = connection.poll_event();
            }
        }
        self.data_to_send(py)
    }

    /// `receive_data`, `data_to_send` and `finished` in one call (the
    /// asyncio connection's per-read path): (events, bytes to write or
    /// None, whether the transport should now be closed).
    #[allow(clippy::type_complexity)]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyBytes>>, bool)> {
        let events = self.receive_data(py, data)?;
        let out = self.data_to_send(py);
        Ok((events, out, self.finished()))
    }

    /// `feed` for asyncio's `BufferedProtocol`: the first `n` bytes of the
    /// connection's own read buffer (a `bytearray` the transport read into,
    /// so no `bytes` object is made per read).
    #[allow(clippy::type_complexity)]
    fn feed_from<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &Bound<'py, PyByteArray>,
        n: usize,
    ) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyBytes>>, bool)> {
        // SAFETY: the bytearray is this thread's own read buffer (one per
        // thread, see connection.py), handed to no one else: nothing resizes
        // or writes it while this runs, even if a trace logger runs Python
        // code meanwhile.
        let bytes = unsafe { buffer.as_bytes() };
        let data = bytes.get(..n).ok_or_else(|| PyValueError::new_err("n is past the end of the buffer"))?;
        self.feed(py, data)
    }

    /// The transport reached its end; returns the events (a close without
    /// a close frame is a failure, 1006).
    fn receive_eof<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = PyList::empty(py);
        if let Phase::Open(connection) = &mut self.phase {
            connection.handle_eof();
        }
        self.drain(py, &events)?;
        Ok(events)
    }

    /// Server: accepts the request (checked against RFC 6455 and
    /// negotiated: subprotocol, permessage-deflate) with `headers` added to
    /// the 101 answer, which is returned to be written. A request that is
    /// not a valid upgrade gets its rejection instead, and the second item
    /// is False.
    #[pyo3(signature = (headers = Vec::new()))]
    fn accept<'py>(
        &mut self,
        py: Python<'py>,
        headers: Vec<(String, String)>,
    ) -> PyResult<(Bound<'py, PyBytes>, bool, Option<String>)> {
        let Phase::ServerDeciding { request } = &self.phase else {
            return Err(PyRuntimeError::new_err("accept() needs a request read and not yet answered"));
        };
        match accept_request(request, &self.server) {
            Ok(accepted) => {
                let mut extra = self.server.headers.clone();
                extra.extend(headers);
                let answer = accepted.response(&extra);
                let mut connection = Connection::new(Role::Server, self.config.clone(), accepted.deflate);
                if tether::trace::is_enabled() {
                    let peer = format!("server {}", request.target);
                    tether::trace::handshake(&peer, "response", &answer);
                    connection.set_frame_observer(tether::trace::frame_observer(peer));
                }
                connection.handle_timeout(Instant::now());
                self.phase = Phase::Open(Box::new(connection));
                Ok((PyBytes::new(py, &answer), true, accepted.protocol))
            }
            Err(rejection) => {
                self.phase = Phase::Failed;
                Ok((PyBytes::new(py, &rejection.to_bytes()), false, None))
            }
        }
    }

    /// Server: refuses the request being decided; the bytes to write.
    fn reject<'py>(
        &mut self,
        py: Python<'py>,
        status: u16,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Bound<'py, PyBytes> {
        self.phase = Phase::Failed;
        PyBytes::new(py, &http_response(status, &headers, body))
    }

    /// Bytes to write now, if any (each call takes them).
    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            return Some(PyBytes::new(py, &out));
        }
        let Phase::Open(connection) = &mut self.phase else { return None };
        let chunk = connection.pending_transmit();
        if chunk.is_empty() {
            return None;
        }
        // Usually one run of bytes: straight into the Python object.
        let first = PyBytes::new(py, chunk);
        let n = chunk.len();
        connection.advance_transmit(n);
        if !connection.wants_transmit() {
            return Some(first);
        }
        let mut collected = first.as_bytes().to_vec();
        loop {
            let chunk = connection.pending_transmit();
            if chunk.is_empty() {
                break;
            }
            collected.extend_from_slice(chunk);
            let n = chunk.len();
            connection.advance_transmit(n);
        }
        Some(PyBytes::new(py, &collected))
    }

    /// Queues a text message; returns the bytes to write.
    fn send_text<'py>(&mut self, py: Python<'py>, text: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.queue_text(py, text)?;
        Ok(self.data_to_send(py))
    }

    /// Queues a binary message (any bytes-like object); the bytes to write.
    fn send_binary<'py>(&mut self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.queue_binary(py, data)?;
        Ok(self.data_to_send(py))
    }

    /// Queues a text message without taking the bytes out (they leave with
    /// the next `data_to_send`); returns how many bytes wait.
    fn queue_text(&mut self, py: Python<'_>, text: &str) -> PyResult<usize> {
        let connection = self.open()?;
        connection.send_text(text).map_err(|_| crate::error::closed(py))?;
        Ok(connection.unsent_len())
    }

    /// `queue_text` for a binary message (any bytes-like object).
    fn queue_binary(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let connection = self.open()?;
        with_bytes(data, |data| connection.send_binary(data))?.map_err(|_| crate::error::closed(py))?;
        Ok(connection.unsent_len())
    }

    /// Queues a message framed once for many (see `Prepared`) without
    /// taking the bytes out: they leave with the next `data_to_send` (a
    /// broadcast writes each connection once per loop turn, whatever the
    /// number of messages). Returns how many bytes wait.
    fn queue_prepared(&mut self, py: Python<'_>, prepared: &Prepared) -> PyResult<usize> {
        let connection = self.open()?;
        connection.send_prepared(&prepared.inner).map_err(|_| crate::error::closed(py))?;
        Ok(connection.unsent_len())
    }

    /// Whether permessage-deflate was negotiated.
    #[getter]
    fn compressed(&self) -> bool {
        matches!(&self.phase, Phase::Open(connection) if connection.is_compressed())
    }

    /// Queues a ping; the bytes to write.
    fn send_ping<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.open()?.send_ping(payload).map_err(|error| match error {
            tether::proto::UsageError::Closed => crate::error::closed(py),
            other => PyValueError::new_err(other.to_string()),
        })?;
        Ok(self.data_to_send(py))
    }

    /// Queues a pong; the bytes to write.
    fn send_pong<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.open()?.send_pong(payload).map_err(|error| match error {
            tether::proto::UsageError::Closed => crate::error::closed(py),
            other => PyValueError::new_err(other.to_string()),
        })?;
        Ok(self.data_to_send(py))
    }

    /// Starts the closing handshake; the bytes to write. Closing twice is
    /// harmless.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close<'py>(&mut self, py: Python<'py>, code: u16, reason: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if let Phase::Open(connection) = &mut self.phase {
            if connection.state() == State::Open {
                connection.close(CloseCode(code), reason).map_err(|error| PyValueError::new_err(error.to_string()))?;
            }
        }
        Ok(self.data_to_send(py))
    }

    /// Seconds until the core's next deadline (keepalive, pong, close),
    /// or None.
    fn timeout(&self) -> Option<f64> {
        let Phase::Open(connection) = &self.phase else { return None };
        connection.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// Acts on deadlines that passed (a keepalive ping is queued, a
    /// timeout closes); returns the events.
    fn handle_timeout<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = PyList::empty(py);
        if let Phase::Open(connection) = &mut self.phase {
            if let Some(which) = connection.handle_timeout(Instant::now()) {
                events.append(event(py, (EV_TIMEOUT, format!("{which:?}").to_lowercase()))?)?;
            }
        }
        self.drain(py, &events)?;
        Ok(events)
    }

    /// "connecting", "open", "closing" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        match &self.phase {
            Phase::Open(connection) => match connection.state() {
                State::Open => "open",
                State::Closing => "closing",
                State::Closed => "closed",
            },
            Phase::Failed => "closed",
            _ => "connecting",
        }
    }

    /// Whether the transport should be closed now (the closing handshake
    /// is over, or the connection failed, and everything was written).
    #[getter]
    fn finished(&self) -> bool {
        match &self.phase {
            Phase::Open(connection) => connection.is_finished(),
            Phase::Failed => self.out.is_empty(),
            _ => false,
        }
    }

    /// The close frame we sent: (code, reason), if any.
    #[getter]
    fn close_sent(&self) -> Option<(u16, String)> {
        let Phase::Open(connection) = &self.phase else { return None };
        connection.close_sent().map(|frame| (frame.code.0, frame.reason.to_string()))
    }

    /// The close frame received: (code, reason); (None, "") for a close
    /// frame without a code; None if none came.
    #[getter]
    fn close_received(&self) -> Option<(Option<u16>, String)> {
        let Phase::Open(connection) = &self.phase else { return None };
        connection.close_received().map(|frame| {
            (frame.map(|frame| frame.code.0), frame.map_or(String::new(), |frame| frame.reason.to_string()))
        })
    }

    /// The latest keepalive round trip, in seconds (0 before any).
    #[getter]
    fn latency(&self) -> f64 {
        let Phase::Open(connection) = &self.phase else { return 0.0 };
        connection.round_trip().map_or(0.0, |rtt| rtt.last.as_secs_f64())
    }
}
