//! `SyncConnection`: tether's blocking client (`tether::blocking`) for
//! Python threads, under `websocket.create_connection`.
//!
//! Every call that may wait (connect, send, recv, close) lets go of the
//! interpreter while it waits, so other Python threads run. A signal that
//! interrupts the wait (Ctrl-C) is handed to Python's handlers, and the
//! call goes on if they did not raise: `KeyboardInterrupt` works as it
//! does with a Python socket.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tether::blocking::WebSocket;
use tether::{CloseCode, Event, Message};

use crate::error::to_py;
use crate::options::ClientOptions;

/// Opcodes, as websocket-client's `ABNF` numbers them.
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// One blocking client connection. Threads share it: one may wait in
/// `recv` while another sends (the lock here is held only to take the
/// connection out, never while waiting).
#[pyclass(module = "tether._tether", frozen)]
pub struct SyncConnection {
    /// `None` once closed or aborted here.
    ws: Mutex<Option<Arc<WebSocket>>>,
    /// The answer's status, headers and subprotocol, read once.
    headers: Py<PyDict>,
    subprotocol: Option<String>,
    /// Whether the peer's close frame was handed out already.
    close_reported: Mutex<bool>,
}

impl SyncConnection {
    /// Runs `operation` on the connection with the interpreter released;
    /// an interruption by a signal runs Python's handlers, then retries.
    fn with_ws<T: Send>(
        &self,
        py: Python<'_>,
        operation: impl FnMut(&WebSocket) -> tether::Result<T> + Send,
    ) -> PyResult<T> {
        self.try_with_ws(py, operation)?.map_err(|error| to_py(&error))
    }

    /// `with_ws` for a send: the frame is queued once. A signal that
    /// interrupts the write comes after the queueing, so the retry only
    /// writes what is left (sending again would send the frame twice).
    fn sending(&self, py: Python<'_>, send: impl Fn(&WebSocket) -> tether::Result<()> + Send + Sync) -> PyResult<()> {
        let mut queued = false;
        self.with_ws(py, move |ws| if std::mem::replace(&mut queued, true) { ws.flush_queued() } else { send(ws) })
    }

    /// As `with_ws`, with tether's own error handed back, for a caller
    /// that acts on what kind it is. The outer error: the connection was
    /// closed already, or a signal handler raised.
    fn try_with_ws<T: Send>(
        &self,
        py: Python<'_>,
        mut operation: impl FnMut(&WebSocket) -> tether::Result<T> + Send,
    ) -> PyResult<tether::Result<T>> {
        let Some(ws) = self.current() else { return Err(crate::error::closed(py)) };
        loop {
            match py.detach(|| operation(&ws)) {
                Err(error) if error.is_interrupted() => py.check_signals()?,
                result => return Ok(result),
            }
        }
    }
}

fn close_payload(frame: Option<&tether::CloseFrame>) -> Vec<u8> {
    frame.map_or_else(Vec::new, |frame| {
        let mut payload = frame.code.0.to_be_bytes().to_vec();
        payload.extend_from_slice(frame.reason.as_bytes());
        payload
    })
}

#[pymethods]
impl SyncConnection {
    /// Opens a connection to `url` (`ws://` or `wss://`), following
    /// redirects, through the environment's proxy unless told otherwise.
    #[new]
    #[pyo3(signature = (url, options))]
    fn new(py: Python<'_>, url: String, options: ClientOptions) -> PyResult<SyncConnection> {
        let config = options.config()?;
        // Opening is bounded by the open timeout (10 s unless told).
        let ws = py.detach(|| tether::blocking::connect_with(&url, &config)).map_err(|error| to_py(&error))?;
        ws.set_interruptible(true);
        if let Some(timeout) = options.open_timeout {
            ws.set_timeout(Duration::try_from_secs_f64(timeout).ok());
        }
        let headers = PyDict::new(py);
        for (name, value) in ws.response().headers.iter() {
            headers.set_item(name.to_ascii_lowercase(), String::from_utf8_lossy(value))?;
        }
        Ok(SyncConnection {
            subprotocol: ws.protocol().map(str::to_owned),
            ws: Mutex::new(Some(Arc::new(ws))),
            headers: headers.unbind(),
            close_reported: Mutex::new(false),
        })
    }

    /// The response headers, names in lower case.
    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<PyDict> {
        self.headers.clone_ref(py)
    }

    /// The subprotocol the server chose.
    #[getter]
    fn subprotocol(&self) -> Option<String> {
        self.subprotocol.clone()
    }

    /// Sets how long `recv` waits (`None`: as long as the connection lives).
    fn set_timeout(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout
            .map(|seconds| {
                Duration::try_from_secs_f64(seconds).map_err(|_| PyValueError::new_err("timeout must be >= 0"))
            })
            .transpose()?;
        self.with_ws(py, |ws| {
            ws.set_timeout(timeout);
            Ok(())
        })
    }

    /// Sends a text message.
    fn send_text(&self, py: Python<'_>, text: &str) -> PyResult<()> {
        let message = Message::from(text);
        self.sending(py, |ws| ws.send(message.clone()))
    }

    /// Sends a binary message (any bytes-like object).
    fn send_binary(&self, py: Python<'_>, data: Vec<u8>) -> PyResult<()> {
        let message = Message::from(data);
        self.sending(py, |ws| ws.send(message.clone()))
    }

    /// Sends a ping.
    fn ping(&self, py: Python<'_>, payload: Vec<u8>) -> PyResult<()> {
        self.sending(py, |ws| ws.ping(&payload))
    }

    /// Sends an unsolicited pong.
    fn pong(&self, py: Python<'_>, payload: Vec<u8>) -> PyResult<()> {
        self.sending(py, |ws| ws.pong(&payload))
    }

    /// The next frame as (opcode, payload): a text message as `str`, a
    /// binary one as `bytes`, a close as `bytes` (code and reason). Pings
    /// and pongs only with `control_frame` (pings are answered anyway).
    /// After the close, `ConnectionClosed`.
    #[pyo3(signature = (control_frame = false))]
    fn recv_data(&self, py: Python<'_>, control_frame: bool) -> PyResult<(u8, Py<PyAny>)> {
        loop {
            let event = match self.try_with_ws(py, WebSocket::recv_event)? {
                Ok(event) => event,
                // The connection ended without a close frame to hand out:
                // the close is reported once, as websocket-client does.
                Err(error) if error.is_closed() && !self.take_close_report() => {
                    return Ok((CLOSE, PyBytes::new(py, b"").into_any().unbind()));
                }
                Err(error) => return Err(to_py(&error)),
            };
            return Ok(match event {
                Some(Event::Message(Message::Text(text))) => (TEXT, PyString::new(py, &text).into_any().unbind()),
                Some(Event::Message(Message::Binary(bytes))) => (BINARY, PyBytes::new(py, &bytes).into_any().unbind()),
                Some(Event::Ping(payload)) if control_frame => (PING, PyBytes::new(py, &payload).into_any().unbind()),
                Some(Event::Pong(payload)) if control_frame => (PONG, PyBytes::new(py, &payload).into_any().unbind()),
                Some(Event::Close(frame)) => {
                    self.take_close_report();
                    (CLOSE, PyBytes::new(py, &close_payload(frame.as_ref())).into_any().unbind())
                }
                Some(_) => continue,
                None => {
                    if self.take_close_report() {
                        return Err(crate::error::closed(py));
                    }
                    (CLOSE, PyBytes::new(py, b"").into_any().unbind())
                }
            });
        }
    }

    /// Closes with `code` and `reason`, waiting (at most the close timeout)
    /// for the server's close frame.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        let code = CloseCode(code);
        let result = self.try_with_ws(py, |ws| ws.close(code, reason));
        self.ws.lock().unwrap_or_else(PoisonError::into_inner).take();
        match result {
            // Closed already (here, or by the peer): nothing left to do.
            Err(err) if err.is_instance_of::<crate::error::Error>(py) => Ok(()),
            Err(err) => Err(err),
            Ok(Err(error)) if !error.is_closed() => Err(to_py(&error)),
            Ok(_) => Ok(()),
        }
    }

    /// Ends the connection without a close handshake; a thread waiting
    /// in `recv` wakes with the connection closed.
    fn abort(&self) {
        if let Some(ws) = self.ws.lock().unwrap_or_else(PoisonError::into_inner).take() {
            ws.abort();
        }
    }

    /// Whether the connection is still usable.
    #[getter]
    fn connected(&self) -> bool {
        self.current().is_some_and(|ws| ws.state() == tether::proto::State::Open)
    }

    /// The peer's address, as (host, port).
    #[getter]
    fn peer(&self) -> PyResult<Option<(String, u16)>> {
        Ok(self.current().and_then(|ws| ws.peer_addr()).map(|addr| (addr.ip().to_string(), addr.port())))
    }
}

impl SyncConnection {
    /// The connection, unless closed or aborted here.
    fn current(&self) -> Option<Arc<WebSocket>> {
        self.ws.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Marks the close as handed out; whether it already was.
    fn take_close_report(&self) -> bool {
        std::mem::replace(&mut *self.close_reported.lock().unwrap_or_else(PoisonError::into_inner), true)
    }
}
