//! `tether._tether`: the Rust half of the `tether` Python package.
//!
//! The Python modules (`tether.websocket`, websocket-client's API, and
//! `tether.websockets`, websockets' asyncio API)
//! are thin: they shape arguments and exceptions as each library's users
//! expect, and every decision (framing, limits, keepalive, reconnecting,
//! TLS, proxies, redirects) is made here, by tether's core and clients.
//!
//! - `SyncConnection` (`sync.rs`): the blocking client (`create_connection`).
//! - `App` (`app.rs`): the long-lived client with callbacks (`WebSocketApp`).
//! - `Protocol` (`protocol.rs`): the sans-I/O core for asyncio (`tether.websockets`).
//! - `Error` (`error.rs`): the one exception raised from Rust.

use pyo3::prelude::*;

mod app;
mod error;
mod options;
mod protocol;
mod redirects;
mod sync;
mod tunnel;

/// Turns the trace of handshakes and frames on or off (`enableTrace`);
/// with a `logger`, each line goes to its `debug` method (Python
/// `logging`), else to standard error.
#[pyfunction]
#[pyo3(signature = (on, logger = None))]
fn enable_trace(on: bool, logger: Option<Py<PyAny>>) {
    tether::trace::enable(on);
    let sink = logger.filter(|_| on).map(|logger| {
        Box::new(move |line: &str| {
            Python::attach(|py| {
                if let Err(err) = logger.call_method1(py, "debug", (line,)) {
                    err.print(py);
                }
            });
        }) as tether::trace::TraceSink
    });
    tether::trace::set_sink(sink);
}

/// The module `tether._tether`.
#[pymodule]
fn _tether(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<sync::SyncConnection>()?;
    m.add_class::<app::App>()?;
    m.add_class::<protocol::Protocol>()?;
    m.add_class::<protocol::Prepared>()?;
    m.add_class::<tunnel::Tunnel>()?;
    m.add_class::<redirects::Redirects>()?;
    for (name, value) in [
        ("EV_TEXT", protocol::EV_TEXT),
        ("EV_BINARY", protocol::EV_BINARY),
        ("EV_CLOSE", protocol::EV_CLOSE),
        ("EV_PING", protocol::EV_PING),
        ("EV_PONG", protocol::EV_PONG),
        ("EV_OPEN", protocol::EV_OPEN),
        ("EV_REJECTED", protocol::EV_REJECTED),
        ("EV_REQUEST", protocol::EV_REQUEST),
        ("EV_BAD_REQUEST", protocol::EV_BAD_REQUEST),
        ("EV_FAILED", protocol::EV_FAILED),
        ("EV_TIMEOUT", protocol::EV_TIMEOUT),
    ] {
        m.add(name, value)?;
    }
    m.add("Error", m.py().get_type::<error::Error>())?;
    m.add_function(wrap_pyfunction!(enable_trace, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
