//! The transport under a WebSocket: plain TCP or TLS over TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// TCP, or TLS over TCP on either side. Boxed TLS state keeps a plain
/// connection small.
#[derive(Debug)]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`, client side.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// `wss://`, server side.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP stream underneath.
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(tcp) => tcp,
            MaybeTlsStream::ClientTls(tls) => tls.get_ref().0,
            MaybeTlsStream::ServerTls(tls) => tls.get_ref().0,
        }
    }

    /// Whether this is TLS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTlsStream::Plain(_))
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTlsStream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTlsStream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTlsStream::ServerTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::ClientTls(s) => s.is_write_vectored(),
            MaybeTlsStream::ServerTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTlsStream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTlsStream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
