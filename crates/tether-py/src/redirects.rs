//! `Redirects`: where the asyncio client connects, redirect after
//! redirect, decided by tether's own `client::Redirects` (the bound, no
//! `wss://` to `ws://`, secret headers only to the first origin), so that
//! every tether client follows the same redirects.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tether::proto::handshake::{HandshakeError, Target};

use crate::error::to_py;
use crate::options::ClientOptions;
use crate::protocol::Protocol;

/// The asyncio client's way to its server.
#[pyclass(module = "tether._tether", unsendable)]
pub struct Redirects {
    inner: tether::client::Redirects,
}

#[pymethods]
impl Redirects {
    /// Starts at `url`, with `options` (`max_redirects`, 10 unless told).
    #[new]
    fn new(url: &str, options: ClientOptions) -> PyResult<Redirects> {
        let config = options.config()?;
        let first = Target::parse(url).map_err(|error| PyValueError::new_err(error.to_string()))?;
        Ok(Redirects { inner: tether::client::Redirects::new(first, config) })
    }

    /// The URL to connect to now (without credentials).
    #[getter]
    fn url(&self) -> String {
        self.inner.target().to_string()
    }

    #[getter]
    fn host(&self) -> String {
        self.inner.target().host.clone()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.inner.target().port
    }

    #[getter]
    fn secure(&self) -> bool {
        self.inner.target().secure
    }

    /// A client protocol for where to connect now, and its request.
    fn open<'py>(&self, py: Python<'py>) -> PyResult<(Protocol, Bound<'py, PyBytes>)> {
        Protocol::client_for(py, self.inner.target().clone(), self.inner.config())
    }

    /// `protocol`'s opening was refused: whether it was a redirect to
    /// follow (then `url` is the next place to try). A redirect refused
    /// (too many, `wss://` to `ws://`, a bad `Location`) raises.
    fn follow(&mut self, protocol: &mut Protocol) -> PyResult<bool> {
        let Some(rejection) = protocol.rejection.take() else { return Ok(false) };
        match self.inner.follow(rejection) {
            Ok(()) => Ok(true),
            Err(error) if matches!(error.handshake_error(), Some(HandshakeError::Redirect(_))) => Err(to_py(&error)),
            // The refusal itself, no redirect: it stands as reported.
            Err(_) => Ok(false),
        }
    }
}
