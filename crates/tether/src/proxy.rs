//! Connecting through an HTTP (`CONNECT`) or SOCKS5 proxy, chosen
//! explicitly or from the environment. The exchanges themselves are the
//! core's ([`tether_proto::proxy`]); this drives them over a TCP stream.

use std::time::Duration;

use tether_proto::handshake::{HeadReader, Response, Target};
use tether_proto::proxy::{check_connect_response, connect_request, Socks5Handshake, Socks5Step};
pub use tether_proto::proxy::{Credentials, Proxy, ProxyError, ProxyKind};
use tether_proto::HandshakeLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Kind, Result};
use crate::handshake::{read_head, HeadReadError};

/// Which proxy a client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxyChoice {
    /// The one the environment names (`http_proxy`, `https_proxy`,
    /// `all_proxy`, `no_proxy`), if any; never for loopback hosts. The
    /// default, as in `websocket-client` and `websockets`.
    #[default]
    FromEnvironment,
    /// None: connect directly.
    Direct,
    /// This one.
    Via(Proxy),
}

impl ProxyChoice {
    /// The proxy to use for `target`, if any.
    ///
    /// # Errors
    /// The environment names a proxy URL that cannot be used.
    pub fn resolve(&self, target: &Target) -> Result<Option<Proxy>> {
        match self {
            ProxyChoice::Direct => Ok(None),
            ProxyChoice::Via(proxy) => Ok(Some(proxy.clone())),
            ProxyChoice::FromEnvironment => {
                Proxy::from_env(target, |name| std::env::var(name).ok()).transpose().map_err(Error::from)
            }
        }
    }
}

impl From<ProxyError> for Error {
    fn from(error: ProxyError) -> Self {
        Error::new(Kind::Proxy(error))
    }
}

/// Opens a TCP connection to `target`, through `proxy` if given.
/// A TCP connection to the target, or a tunnel to it through the proxy;
/// without a proxy, how long resolving the name took too.
pub(crate) async fn open_tcp(target: &Target, proxy: Option<&Proxy>) -> Result<(TcpStream, Option<Duration>)> {
    let Some(proxy) = proxy else {
        let started = std::time::Instant::now();
        let addresses: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((target.host.as_str(), target.port)).await?.collect();
        let resolved = started.elapsed();
        // Each address in turn, as `TcpStream::connect` does.
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(tcp) => return Ok((tcp, Some(resolved))),
                Err(error) => last = Some(error),
            }
        }
        let error = last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} has no address", target.host))
        });
        return Err(error.into());
    };
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port)).await?;
    match proxy.kind {
        ProxyKind::Http => {
            tcp.write_all(&connect_request(&target.host, target.port, proxy.credentials.as_ref())).await?;
            let mut reader = HeadReader::new(HandshakeLimits::default());
            let leftover = read_head(&mut tcp, &mut reader).await.map_err(|error| match error {
                HeadReadError::Io(error) => Error::from(error),
                HeadReadError::Head(error) => Error::from(error),
            })?;
            check_connect_response(&Response::parse(&reader)?)?;
            if !leftover.is_empty() {
                // Neither the server (it waits for our request) nor TLS (the
                // client speaks first) sends anything yet.
                return Err(ProxyError::Refused { status: 200, reason: "data after the tunnel answer".into() }.into());
            }
        }
        ProxyKind::Socks5 => {
            let mut socks = Socks5Handshake::new(&target.host, target.port, proxy.credentials.clone());
            let mut step = socks.start();
            let mut buf = [0u8; 300];
            loop {
                step = match step {
                    Socks5Step::Write(bytes) => {
                        tcp.write_all(&bytes).await?;
                        socks.next(&[])?
                    }
                    Socks5Step::Read(n) => match tcp.read_exact(&mut buf[..n]).await {
                        Ok(_) => socks.next(&buf[..n])?,
                        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Err(socks.closed_early().into())
                        }
                        Err(error) => return Err(error.into()),
                    },
                    Socks5Step::Done => break,
                };
            }
        }
    }
    Ok((tcp, None))
}
