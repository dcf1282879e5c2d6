//! One simulated client's socket, plain or TLS, non-blocking: bytes of the
//! WebSocket stream in and out, with TLS (rustls, driven by hand) in
//! between for `wss://`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

/// Why a transport failed, as the report counts it.
#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    Tls(rustls::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Io(error)
    }
}

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    tcp: TcpStream,
    tls: rustls::ClientConnection,
}

impl Transport {
    /// Wraps a socket (connected or still connecting); with TLS when
    /// `tls` names a configuration and a server name.
    pub fn new(
        tcp: TcpStream,
        tls: Option<&(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    ) -> Result<Transport, Failure> {
        Ok(match tls {
            None => Transport::Plain(tcp),
            Some((config, name)) => {
                let tls = rustls::ClientConnection::new(Arc::clone(config), name.clone()).map_err(Failure::Tls)?;
                Transport::Tls(Box::new(TlsStream { tcp, tls }))
            }
        })
    }

    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(stream) => &mut stream.tcp,
        }
    }

    /// Reads stream bytes into `buf`: `Ok(0)` at the end, `WouldBlock`
    /// when nothing more has arrived.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Failure> {
        match self {
            Transport::Plain(tcp) => Ok(tcp.read(buf)?),
            Transport::Tls(stream) => stream.read(buf),
        }
    }

    /// Writes stream bytes; how many were taken (`WouldBlock` if none could be).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Failure> {
        match self {
            Transport::Plain(tcp) => Ok(tcp.write(data)?),
            Transport::Tls(stream) => {
                // rustls takes it all (encrypted as records), then as much as
                // the socket accepts goes out; the rest on the next writable.
                let n = stream.tls.writer().write(data)?;
                stream.send_records()?;
                if n == 0 && !data.is_empty() {
                    // Its buffer is full: wait for the socket to drain it.
                    return Err(io::Error::from(io::ErrorKind::WouldBlock).into());
                }
                Ok(n)
            }
        }
    }

    /// Sends what TLS still holds (records, handshake messages).
    pub fn flush(&mut self) -> Result<(), Failure> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(stream) => stream.send_records(),
        }
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Failure> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error.into()),
            }
            // No plaintext buffered: decrypt what the socket has.
            if self.tcp_read()? == 0 {
                return Ok(0);
            }
            self.tls.process_new_packets().map_err(Failure::Tls)?;
            // The handshake, or a key update, may have something to say.
            self.send_records()?;
        }
    }

    fn tcp_read(&mut self) -> Result<usize, Failure> {
        loop {
            match self.tls.read_tls(&mut self.tcp) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return Ok(result?),
            }
        }
    }

    fn send_records(&mut self) -> Result<(), Failure> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}
