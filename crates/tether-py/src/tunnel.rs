//! `Tunnel`: a client's way through a proxy (HTTP `CONNECT` or SOCKS5),
//! without I/O, for the asyncio client.
//!
//! The proxy is chosen as tether's other clients choose it (the `proxy`
//! option, else the environment's `https_proxy`/`http_proxy`/`all_proxy`
//! with `no_proxy` honoured), and the exchange is `tether_proto::proxy`'s:
//! the Python side only connects to the proxy, writes what it is given
//! and reads at most as many bytes as it is told, until told zero.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tether::proto::handshake::{HeadReader, Response, Target};
use tether::proto::proxy::{
    check_connect_response, connect_request, ProxyError, ProxyKind, Socks5Handshake, Socks5Step,
};
use tether::proto::HandshakeLimits;

use crate::error::to_py;
use crate::options::ClientOptions;

/// How much of an HTTP proxy's answer is asked for at once.
const HEAD_CHUNK: usize = 4096;

enum Exchange {
    /// The `CONNECT` request is out; its answer is read.
    Http { request: Vec<u8>, reader: HeadReader },
    /// SOCKS5: the step under way and the bytes of a read gathered so far.
    Socks { handshake: Socks5Handshake, step: Socks5Step, gathered: Vec<u8> },
}

/// The exchange that opens a tunnel to the target through the proxy.
#[pyclass(module = "tether._tether", unsendable)]
pub struct Tunnel {
    exchange: Exchange,
}

fn fail(error: ProxyError) -> PyErr {
    to_py(&tether::Error::from(error))
}

#[pymethods]
impl Tunnel {
    /// The proxy for `url` under `options`: `None` to go straight to the
    /// server, else `(tunnel, proxy host, proxy port)`.
    #[staticmethod]
    fn open(url: &str, options: ClientOptions) -> PyResult<Option<(Tunnel, String, u16)>> {
        let config = options.config()?;
        let target = Target::parse(url).map_err(|error| to_py(&tether::Error::from(error)))?;
        let Some(proxy) = config.proxy.resolve(&target).map_err(|error| to_py(&error))? else { return Ok(None) };
        let exchange = match proxy.kind {
            ProxyKind::Http => Exchange::Http {
                request: connect_request(&target.host, target.port, proxy.credentials.as_ref()),
                reader: HeadReader::new(HandshakeLimits::default()),
            },
            ProxyKind::Socks5 => {
                let mut handshake = Socks5Handshake::new(&target.host, target.port, proxy.credentials.clone());
                let step = handshake.start();
                Exchange::Socks { handshake, step, gathered: Vec::new() }
            }
        };
        Ok(Some((Tunnel { exchange }, proxy.host, proxy.port)))
    }

    /// The first bytes to write, and how many to read at most next.
    fn start<'py>(&mut self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        match &mut self.exchange {
            Exchange::Http { request, .. } => Ok((PyBytes::new(py, &std::mem::take(request)), HEAD_CHUNK)),
            Exchange::Socks { .. } => self.advance(py),
        }
    }

    /// What the proxy sent (`b""`: it closed the connection): the bytes
    /// to write next and how many to read at most; zero once the tunnel is
    /// open. A refusal raises.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        match &mut self.exchange {
            Exchange::Http { reader, .. } => {
                if data.is_empty() {
                    let eof =
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the proxy closed before answering");
                    return Err(to_py(&tether::Error::from(eof)));
                }
                let Some(used) = reader.feed(data).map_err(|error| to_py(&tether::Error::from(error)))? else {
                    return Ok((PyBytes::new(py, b""), HEAD_CHUNK));
                };
                let response = Response::parse(reader).map_err(|error| to_py(&tether::Error::from(error)))?;
                // A refusal may carry a body; a tunnel carries nothing before we speak.
                check_connect_response(&response).map_err(fail)?;
                if used < data.len() {
                    return Err(fail(ProxyError::Refused {
                        status: 200,
                        reason: "data after the tunnel answer".into(),
                    }));
                }
                Ok((PyBytes::new(py, b""), 0))
            }
            Exchange::Socks { handshake, step, gathered } => {
                if data.is_empty() {
                    return Err(fail(handshake.closed_early()));
                }
                gathered.extend_from_slice(data);
                let Socks5Step::Read(wanted) = *step else { return Ok((PyBytes::new(py, b""), 0)) };
                if gathered.len() < wanted {
                    return Ok((PyBytes::new(py, b""), wanted - gathered.len()));
                }
                let input = std::mem::take(gathered);
                *step = handshake.next(&input).map_err(fail)?;
                self.advance(py)
            }
        }
    }
}

impl Tunnel {
    /// SOCKS5: runs the steps that need no reading; what to write and how
    /// much to read next.
    fn advance<'py>(&mut self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let Exchange::Socks { handshake, step, .. } = &mut self.exchange else { unreachable!("SOCKS5 only") };
        let mut out = Vec::new();
        loop {
            match step {
                Socks5Step::Write(bytes) => {
                    out.append(bytes);
                    *step = handshake.next(&[]).map_err(fail)?;
                }
                Socks5Step::Read(wanted) => return Ok((PyBytes::new(py, &out), *wanted)),
                Socks5Step::Done => return Ok((PyBytes::new(py, &out), 0)),
            }
        }
    }
}
