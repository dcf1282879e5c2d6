//! `App`: tether's long-lived client (`tether::App`: keepalive, reconnect
//! with backoff, a queue while down) under `websocket.WebSocketApp`.
//!
//! Reconnecting, keepalive and the order of callbacks are decided once, in
//! Rust; this layer only carries each event into Python, through one
//! callable, `dispatch(kind, *args)`, which the Python class routes to the
//! user's callbacks (and their exceptions to `on_error`, as
//! websocket-client does).
//!
//! `run` blocks the calling thread with the interpreter released; the
//! callbacks run on that same thread (the app's runtime is a
//! current-thread one), each one taking the interpreter back. Signals are
//! looked at every 100 ms: Ctrl-C closes the app (1000) and `run` returns
//! `"interrupted"`.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use tether::app::StopReason;
use tether::proto::backoff::BackoffPolicy;
use tether::{AppHandle, CloseCode, Message, Reconnect};

use crate::options::ClientOptions;

/// How often a running app lets Python look at its signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// A long-lived client; `run` once.
#[pyclass(module = "tether._tether", frozen)]
pub struct App {
    url: String,
    options: ClientOptions,
    /// Seconds between reconnection attempts; `None` or 0: no reconnection.
    reconnect: Option<f64>,
    handle: AppHandle,
    /// The app, until `run` takes it.
    app: Mutex<Option<tether::App>>,
}

fn message_to_py(py: Python<'_>, message: &Message) -> (u8, Py<PyAny>) {
    match message {
        Message::Text(text) => (1, PyString::new(py, text).into_any().unbind()),
        Message::Binary(bytes) => (2, PyBytes::new(py, bytes).into_any().unbind()),
    }
}

/// The Python side of a running app: the callable every event goes to,
/// and what escaped it.
struct Dispatcher {
    dispatch: Py<PyAny>,
    handle: AppHandle,
    /// A `KeyboardInterrupt` or `SystemExit` raised in a callback (Ctrl-C
    /// while Python code runs): the app is closed and `run` reports it.
    escaped: Mutex<Option<PyErr>>,
}

/// Calls `dispatch(*args)` with the interpreter. An `Exception` escaping it
/// (the Python side routes the user's own to `on_error`) is printed; a
/// `BaseException` (Ctrl-C, `sys.exit`) closes the app and is kept for `run`.
fn call<F>(dispatcher: &Dispatcher, args: F)
where
    F: for<'py> FnOnce(Python<'py>) -> Result<Bound<'py, PyTuple>, PyErr>,
{
    Python::attach(|py| {
        let result = args(py).and_then(|args| dispatcher.dispatch.call1(py, args));
        if let Err(err) = result {
            if err.is_instance_of::<pyo3::exceptions::PyException>(py) {
                err.print(py);
            } else {
                dispatcher.escaped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(err);
                dispatcher.handle.close();
            }
        }
    });
}

#[pymethods]
impl App {
    /// An app for `url`; `reconnect` is websocket-client's: the seconds
    /// between attempts (0 or `None`: do not reconnect).
    #[new]
    #[pyo3(signature = (url, options, reconnect = None))]
    fn new(url: String, options: ClientOptions, reconnect: Option<f64>) -> PyResult<App> {
        let config = options.config()?;
        let app = tether::App::new(url.clone()).config(config);
        Ok(App { url, options, reconnect, handle: app.handle(), app: Mutex::new(Some(app)) })
    }

    /// The URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Runs until the app stops, calling `dispatch(kind, *args)` for each
    /// event: `("open",)`, `("message", opcode, data)`, `("data", opcode,
    /// data, fin)`, `("cont", data, fin)`, `("ping", data)`, `("pong",
    /// data)`, `("error", exception)`, `("close", code, reason)`,
    /// `("reconnect", attempt, delay)`. Returns why it stopped: `"closed"`
    /// (by the program), `"server"` (the server closed), `"failed"`,
    /// `"gave up"` or `"interrupted"` (Ctrl-C).
    fn run(&self, py: Python<'_>, dispatch: Py<PyAny>) -> PyResult<&'static str> {
        let app = self
            .app
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this app has run already"))?;
        let dispatcher =
            std::sync::Arc::new(Dispatcher { dispatch, handle: self.handle.clone(), escaped: Mutex::new(None) });
        let app = self.attach_callbacks(py, app, &dispatcher);
        let handle = self.handle.clone();
        let interrupted = std::sync::atomic::AtomicBool::new(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| PyRuntimeError::new_err(error.to_string()))?;
        let stopped = py.detach(|| {
            runtime.block_on(async {
                let run = app.run();
                tokio::pin!(run);
                let mut ticks = tokio::time::interval(SIGNAL_CHECK);
                loop {
                    tokio::select! {
                        stopped = &mut run => break stopped,
                        _ = ticks.tick() => {
                            if Python::attach(|py| py.check_signals()).is_err() {
                                // Ctrl-C (KeyboardInterrupt): close, as
                                // websocket-client does, and say so.
                                interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
                                handle.close();
                            }
                        }
                    }
                }
            })
        });
        let escaped = dispatcher.escaped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(err) = escaped {
            if !err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                return Err(err);
            }
            return Ok("interrupted");
        }
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok("interrupted");
        }
        Ok(match stopped.reason {
            StopReason::Closed => "closed",
            StopReason::ServerClosed(_) => "server",
            StopReason::Failed(_) => "failed",
            StopReason::GaveUp(_) => "gave up",
        })
    }

    /// Sends a text (`str`) or binary (bytes-like) message; queued while
    /// the app reconnects. Returns False when refused (stopped, queue full).
    fn send_text(&self, text: &str) -> bool {
        self.handle.send(text).is_ok()
    }

    /// Sends a binary message; as `send_text`.
    fn send_binary(&self, data: Vec<u8>) -> bool {
        self.handle.send(data).is_ok()
    }

    /// Closes (1000 unless told otherwise) and stops the app.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, code: u16, reason: &str) {
        self.handle.close_with(CloseCode(code), reason);
    }

    /// Whether a connection is open now.
    #[getter]
    fn connected(&self) -> bool {
        self.handle.is_connected()
    }

    /// The latest keepalive round trip, in seconds.
    #[getter]
    fn round_trip(&self) -> Option<f64> {
        self.handle.round_trip().map(|rtt| rtt.last.as_secs_f64())
    }
}

impl App {
    /// The app with a callback for each event, each one a call to `dispatch`.
    fn attach_callbacks(
        &self,
        _py: Python<'_>,
        mut app: tether::App,
        dispatcher: &std::sync::Arc<Dispatcher>,
    ) -> tether::App {
        if let Some(delay) = self.reconnect.filter(|delay| *delay > 0.0) {
            // websocket-client waits the same delay before every attempt.
            let delay = Duration::from_secs_f64(delay);
            let mut backoff = BackoffPolicy::default();
            backoff.initial_delay = delay;
            backoff.multiplier = 1.0;
            backoff.max_delay = delay;
            backoff.jitter = 0.0;
            app = app.reconnect(Reconnect::default().with_backoff(backoff).after_normal_close(false));
        }
        let d = dispatcher.clone();
        app = app.on_open(move |_| call(&d, |py| ("open",).into_pyobject(py)));
        let d = dispatcher.clone();
        app = app.on_message(move |_, message| {
            call(&d, |py| {
                let (opcode, data) = message_to_py(py, &message);
                ("message", opcode, data).into_pyobject(py)
            });
        });
        let d = dispatcher.clone();
        app = app.on_error(move |_, error| {
            call(&d, |py| ("error", crate::error::to_py(error).into_value(py)).into_pyobject(py));
        });
        let d = dispatcher.clone();
        app = app.on_close(move |_, frame| {
            call(&d, |py| {
                let code = frame.as_ref().map(|frame| frame.code.0);
                let reason = frame.as_ref().map(|frame| frame.reason.to_string());
                ("close", code, reason).into_pyobject(py)
            });
        });
        let d = dispatcher.clone();
        app = app.on_ping(move |_, payload| call(&d, |py| ("ping", PyBytes::new(py, payload)).into_pyobject(py)));
        let d = dispatcher.clone();
        app = app.on_pong(move |_, payload| call(&d, |py| ("pong", PyBytes::new(py, payload)).into_pyobject(py)));
        let d = dispatcher.clone();
        app = app.on_reconnect(move |_, reconnecting| {
            let (attempt, delay) = (reconnecting.attempt, reconnecting.delay.as_secs_f64());
            call(&d, |py| ("reconnect", attempt, delay).into_pyobject(py));
        });
        if self.options.fragment_events {
            let d = dispatcher.clone();
            app = app.on_cont_message(move |_, payload, fin| {
                call(&d, |py| ("cont", PyBytes::new(py, payload), fin).into_pyobject(py));
            });
            let d = dispatcher.clone();
            app = app.on_data(move |_, payload, opcode, fin| {
                let opcode = opcode.as_u8();
                call(&d, |py| ("data", opcode, PyBytes::new(py, payload), fin).into_pyobject(py));
            });
        }
        app
    }
}
