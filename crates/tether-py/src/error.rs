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
    let headers = PyDict::new(py);
    if let Some(tether::proto::handshake::HandshakeError::Status { headers: answer, .. }) = error.handshake_error() {
        for (name, field) in answer.iter() {
            headers.set_item(name.to_ascii_lowercase(), String::from_utf8_lossy(field))?;
        }
    }
    let particulars = Particulars {
        status: error.http_status(),
        headers,
        code: error.close_code().map(|code| code.0),
        reason: error.close_frame().map_or(String::new(), |frame| frame.reason.to_string()),
        timeout: error.timeout().map(|which| format!("{which:?}").to_lowercase()),
    };
    with_attributes(py, error.to_string(), kind(error), particulars)
}

/// The exception for an operation on a connection that is closed already.
pub fn closed(py: Python<'_>) -> PyErr {
    let particulars =
        Particulars { status: None, headers: PyDict::new(py), code: None, reason: String::new(), timeout: None };
    with_attributes(py, "the connection is closed".to_owned(), "closed", particulars).unwrap_or_else(|err| err)
}

/// What an `Error` says beyond its kind (see the module docs).
struct Particulars<'py> {
    status: Option<u16>,
    headers: Bound<'py, PyDict>,
    code: Option<u16>,
    reason: String,
    timeout: Option<String>,
}

fn with_attributes(py: Python<'_>, message: String, kind: &str, particulars: Particulars<'_>) -> PyResult<PyErr> {
    let err = Error::new_err(message);
    let value = err.value(py);
    value.setattr("kind", kind)?;
    value.setattr("status", particulars.status)?;
    value.setattr("headers", particulars.headers)?;
    value.setattr("code", particulars.code)?;
    value.setattr("reason", particulars.reason)?;
    value.setattr("timeout", particulars.timeout)?;
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
