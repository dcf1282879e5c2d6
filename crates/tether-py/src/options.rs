//! What every Python entry point may say about a client connection, turned
//! into tether's `ClientConfig` in one place, so that `create_connection`,
//! `WebSocketApp` and the asyncio client agree on every default.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tether::proto::proxy::Proxy;
use tether::proxy::ProxyChoice;
use tether::{ClientConfig, TrustRoots};

/// The client options, as the Python layers pass them (a dict; absent
/// keys and `None` take the defaults).
#[derive(Debug, Default)]
pub struct ClientOptions {
    /// Extra request headers, as (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// Seconds the opening (TCP, proxy, TLS, upgrade) may take.
    pub open_timeout: Option<f64>,
    /// A PEM file of certificate authorities to trust for `wss://`.
    pub cafile: Option<String>,
    /// Accept any certificate (testing only: `sslopt={"cert_reqs": CERT_NONE}`).
    pub insecure: bool,
    /// Offer permessage-deflate.
    pub compression: bool,
    /// The largest message accepted, in bytes; `None` keeps tether's default.
    pub max_size: Option<usize>,
    /// `None`: the proxy the environment names; `""`: none; else a proxy URL.
    pub proxy: Option<String>,
    /// Keepalive: seconds between pings, and how long a pong may take.
    pub ping_interval: Option<f64>,
    pub ping_timeout: Option<f64>,
    /// The payload of keepalive pings.
    pub ping_payload: Option<Vec<u8>>,
    /// Seconds to wait for the peer's close frame after ours.
    pub close_timeout: Option<f64>,
    /// Report every data frame as it arrives (`on_data`, `on_cont_message`).
    pub fragment_events: bool,
    /// Redirects followed at most (tether's default: 10).
    pub max_redirects: Option<usize>,
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{what} must be a number of seconds >= 0")))
}

impl<'a, 'py> FromPyObject<'a, 'py> for ClientOptions {
    type Error = PyErr;

    fn extract(options: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let options = options.cast::<PyDict>()?;
        let known = [
            "headers",
            "subprotocols",
            "open_timeout",
            "cafile",
            "insecure",
            "compression",
            "max_size",
            "proxy",
            "ping_interval",
            "ping_timeout",
            "ping_payload",
            "close_timeout",
            "fragment_events",
            "max_redirects",
        ];
        for key in options.keys() {
            let key: String = key.extract()?;
            if !known.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!("unknown client option {key:?}")));
            }
        }
        Ok(ClientOptions {
            headers: get(&options, "headers")?.unwrap_or_default(),
            subprotocols: get(&options, "subprotocols")?.unwrap_or_default(),
            open_timeout: get(&options, "open_timeout")?,
            cafile: get(&options, "cafile")?,
            insecure: get(&options, "insecure")?.unwrap_or(false),
            compression: get(&options, "compression")?.unwrap_or(false),
            max_size: get(&options, "max_size")?,
            proxy: get(&options, "proxy")?,
            ping_interval: get(&options, "ping_interval")?,
            ping_timeout: get(&options, "ping_timeout")?,
            ping_payload: get(&options, "ping_payload")?,
            close_timeout: get(&options, "close_timeout")?,
            fragment_events: get(&options, "fragment_events")?.unwrap_or(false),
            max_redirects: get(&options, "max_redirects")?,
        })
    }
}

/// `options[key]`, converted; `None` when absent or `None`.
fn get<T>(options: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<T>>
where
    T: for<'a, 'py> FromPyObject<'a, 'py>,
    for<'a, 'py> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    match options.get_item(key)? {
        Some(value) if !value.is_none() => value.extract::<T>().map(Some).map_err(|err| {
            let err: PyErr = err.into();
            PyValueError::new_err(format!("client option {key:?}: {err}"))
        }),
        _ => Ok(None),
    }
}

impl ClientOptions {
    /// The tether configuration these options describe.
    pub fn config(&self) -> PyResult<ClientConfig> {
        let mut config = ClientConfig::default();
        config.headers.clone_from(&self.headers);
        config.protocols.clone_from(&self.subprotocols);
        if let Some(timeout) = self.open_timeout {
            config.open_timeout = Some(seconds(timeout, "timeout")?);
        }
        config.trust = match (&self.cafile, self.insecure) {
            (_, true) => TrustRoots::InsecureAcceptAny,
            (Some(path), false) => TrustRoots::CaFile(path.into()),
            (None, false) => TrustRoots::default(),
        };
        config.proxy = match self.proxy.as_deref() {
            None => ProxyChoice::FromEnvironment,
            Some("") => ProxyChoice::Direct,
            Some(url) => ProxyChoice::Via(Proxy::parse(url).map_err(|error| PyValueError::new_err(error.to_string()))?),
        };
        if let Some(redirects) = self.max_redirects {
            config.max_redirects = redirects;
        }
        let mut protocol = config.protocol.clone();
        if !self.compression {
            protocol = protocol.with_deflate(None);
        }
        if let Some(bytes) = self.max_size {
            protocol = protocol.with_max_message_size(bytes);
        }
        let interval = self.ping_interval.map(|s| seconds(s, "ping_interval")).transpose()?;
        let timeout = self.ping_timeout.map(|s| seconds(s, "ping_timeout")).transpose()?;
        protocol = protocol.with_keepalive(interval.filter(|d| !d.is_zero()), timeout.filter(|d| !d.is_zero()));
        if let Some(payload) = &self.ping_payload {
            protocol = protocol.with_ping_payload(payload.clone());
        }
        if let Some(close) = self.close_timeout {
            protocol = protocol.with_close_timeout(seconds(close, "close_timeout")?);
        }
        protocol.fragment_events = self.fragment_events;
        protocol.validate().map_err(|error| PyValueError::new_err(error.to_string()))?;
        config.protocol = protocol;
        Ok(config)
    }
}
