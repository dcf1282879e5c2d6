//! Independent receiving and sending halves of one [`WebSocket`].
//!
//! Both halves share the connection behind a mutex that is only ever held
//! inside a poll, never across an await. The transport keeps a single
//! waker per direction, and both halves may wait on the same direction (the
//! reader writes pong replies too), so every poll goes through a waker that
//! wakes both halves: a wakeup is never lost, at worst one is spurious.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tether_proto::{CloseCode, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Result;
use crate::websocket::{Pong, WebSocket};

#[derive(Default)]
struct HalfWakers {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl HalfWakers {
    fn register(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|current| current.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for HalfWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.reader, &self.writer] {
            if let Some(waker) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                waker.wake();
            }
        }
    }
}

struct Shared<S> {
    socket: Mutex<WebSocket<S>>,
    wakers: Arc<HalfWakers>,
    waker: Waker,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, WebSocket<S>> {
        self.socket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn split<S>(socket: WebSocket<S>) -> (WebSocketReader<S>, WebSocketWriter<S>) {
    let wakers = Arc::new(HalfWakers::default());
    let shared = Arc::new(Shared { socket: Mutex::new(socket), waker: Waker::from(wakers.clone()), wakers });
    (WebSocketReader { shared: shared.clone() }, WebSocketWriter { shared })
}

/// The receiving half of a split [`WebSocket`].
pub struct WebSocketReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`].
pub struct WebSocketWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        HalfWakers::register(&self.shared.wakers.reader, cx.waker());
        let mut shared_cx = Context::from_waker(&self.shared.waker);
        self.shared.lock().poll_recv(&mut shared_cx)
    }

    /// The next message, or `Ok(None)` after a clean close. See [`WebSocket::recv`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        HalfWakers::register(&self.shared.wakers.writer, cx.waker());
        let mut shared_cx = Context::from_waker(&self.shared.waker);
        self.shared.lock().poll_send_out(&mut shared_cx)
    }

    /// Sends a message and writes it out.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.shared.lock().queue(&message.into(), true)?;
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Sends a ping; its [`Pong`] resolves once the reader has read the
    /// answer. See [`WebSocket::ping`].
    ///
    /// # Errors
    /// As [`WebSocket::ping`].
    pub async fn ping(&mut self, payload: impl AsRef<[u8]>) -> Result<Pong> {
        let pong = self.shared.lock().queue_ping(payload.as_ref())?;
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await?;
        Ok(pong)
    }

    /// Sends a close frame and writes it out; the reader sees the peer's
    /// answer and then the end of the stream.
    ///
    /// # Errors
    /// An invalid code or reason, or a transport error.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.lock().start_close(code, reason)?;
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_recv(cx).map(Result::transpose)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<S> {
    type Error = crate::Error;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<()> {
        self.shared.lock().queue(&message, true)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_write_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        {
            let mut socket = self.shared.lock();
            if socket.connection().state() == tether_proto::State::Open {
                socket.start_close(CloseCode::NORMAL, "")?;
            }
        }
        self.poll_write_out(cx)
    }
}
