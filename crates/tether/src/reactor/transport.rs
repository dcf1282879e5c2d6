//! What lies between a reactor connection's socket and its session: the
//! bytes themselves (`ws://`), or TLS (`wss://`) with rustls driven by
//! hand, so that a TLS connection costs the event loop no task and no
//! thread either.
//!
//! The loop only ever asks three things, whatever the transport: read
//! stream bytes, write stream bytes, and push out what TLS still holds
//! (handshake messages, alerts, records the socket did not take yet).

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use tether_server::session::PLAIN_TEXT_ON_A_TLS_PORT;

/// How a connection's stream bytes travel.
pub(super) enum Transport {
    Plain,
    /// Boxed: rustls's state is large, and most servers speak plain TCP.
    Tls(Box<rustls::ServerConnection>),
}

impl Transport {
    /// A transport for a newly accepted connection: TLS if `tls` is set.
    pub(super) fn new(tls: Option<&Arc<rustls::ServerConfig>>) -> io::Result<Transport> {
        Ok(match tls {
            None => Transport::Plain,
            Some(config) => {
                let connection = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                Transport::Tls(Box::new(connection))
            }
        })
    }

    /// Whether stream bytes are the socket's bytes (no TLS).
    pub(super) fn is_plain(&self) -> bool {
        matches!(self, Transport::Plain)
    }

    /// Reads stream bytes into `buf`: `Ok(0)` at the end, `WouldBlock`
    /// when nothing more is there. A TLS failure is `InvalidData`, after
    /// the alert (or, to a plain HTTP client, a plain 400) is sent.
    pub(super) fn read(&mut self, socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match self {
            Transport::Plain => return socket.read(buf),
            Transport::Tls(tls) => tls,
        };
        loop {
            match tls.reader().read(buf) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            // No plaintext buffered: decrypt what the socket has.
            match tls.read_tls(socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
            if let Err(error) = tls.process_new_packets() {
                let plain_http =
                    matches!(error, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
                        && tls.is_handshaking();
                if plain_http {
                    let _ = socket.write(PLAIN_TEXT_ON_A_TLS_PORT);
                } else {
                    let _ = tls.write_tls(socket);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Writes stream bytes from `slices`; how many were taken.
    /// `WouldBlock` if none could be (the socket, or TLS's bounded
    /// buffer, is full: wait for writability).
    pub(super) fn write(&mut self, socket: &mut TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            // One slice (small frames, the common case) goes by `send`, which
            // skips `writev`'s file-position lock and iovec copy in the kernel.
            Transport::Plain if slices.len() == 1 => socket.write(&slices[0]),
            Transport::Plain => socket.write_vectored(slices),
            Transport::Tls(tls) => {
                let taken = tls.writer().write_vectored(slices)?;
                if taken == 0 && slices.iter().any(|slice| !slice.is_empty()) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(taken)
            }
        }
    }

    /// Writes what TLS holds for the socket; `Ok(true)` once nothing is
    /// left, `Ok(false)` if the socket is full.
    pub(super) fn push(&mut self, socket: &mut TcpStream) -> io::Result<bool> {
        let Transport::Tls(tls) = self else { return Ok(true) };
        while tls.wants_write() {
            match tls.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// Writes all of `bytes` now, if the socket takes them (a handshake
    /// answer on a fresh socket always fits).
    pub(super) fn write_all_now(&mut self, socket: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.write(socket, &[IoSlice::new(bytes)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock && !self.push(socket)? => return Err(error),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        if self.push(socket)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// Ends the sending side: TLS's `close_notify`, then the socket's FIN.
    pub(super) fn shutdown(&mut self, socket: &mut TcpStream) {
        if let Transport::Tls(tls) = self {
            tls.send_close_notify();
            let _ = self.push(socket);
        }
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }

    /// Whether this is TLS.
    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Whether TLS holds records not yet written to the socket.
    pub(super) fn has_records(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.wants_write())
    }
}
