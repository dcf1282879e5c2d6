//! One exception type crosses from Rust into Python: `tether._tether.Error`,
//! carrying what kind of failure it is and its particulars as attributes.
//! Each Python API turns it into its own library's exception names
//! (`websocket.WebSocketTimeoutException`, `websockets.exceptions.
//! InvalidStatus`, …), so the Rust side knows neither.
//!
//! Attributes: `kind` (`"timeout"`, `"closed"`, `"status"`, `"handshake"`,
//! `"protocol"`, `"tls"`, `"proxy"`, `"config"`, `"io"`),
//! `status` and `headers` for a refused handshake, `code` and `reason`
//! for a closed connection, `timeout` (which deadline) for a timeout.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(
    _tether,
    Error,
    PyException,
    "A failure of tether's core; its `kind` attribute says which (see tether._tether)."
);

/// The Python exception for `error`.
pub fn to_py(error: &tether::Error) -> PyErr {
    Python::attach(|py| match build(py, error) {
        Ok(err) => err,
        Err(err) => err,
    })
}

fn build(py: Python<'_>, error: &tether::Error) -> PyResult<PyErr> {
    let err = Error::new_err(error.to_string());
    let value = err.value(py);
    let kind = kind(error);
    value.setattr("kind", kind)?;
    value.setattr("status", error.http_status())?;
    let headers = PyDict::new(py);
    if let Some(tether::proto::handshake::HandshakeError::Status { headers: answer, .. }) = error.handshake_error() {
        for (name, field) in answer.iter() {
            headers.set_item(name.to_ascii_lowercase(), String::from_utf8_lossy(field))?;
        }
    }
    value.setattr("headers", headers)?;
    let frame = error.close_frame();
    value.setattr("code", error.close_code().map(|code| code.0))?;
    value.setattr("reason", frame.map_or(String::new(), |frame| frame.reason.to_string()))?;
    value.setattr("timeout", error.timeout().map(|which| format!("{which:?}").to_lowercase()))?;
    Ok(err)
}

fn kind(error: &tether::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.http_status().is_some() && error.handshake_error().is_some() {
        "status"
    } else if error.is_handshake() {
        "handshake"
    } else if error.is_closed() {
        "closed"
    } else if error.is_protocol() {
        "protocol"
    } else if error.is_tls() {
        "tls"
    } else if error.is_proxy() {
        "proxy"
    } else if error.is_config() {
        "config"
    } else {
        "io"
    }
}
