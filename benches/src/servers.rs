//! The four echo servers, each run in its own child process
//! (`tether-bench server <kind> <port>`) on a current-thread runtime pinned
//! to one CPU.
//!
//! Each is written the way its library's own documentation or examples
//! write an echo server, with `TCP_NODELAY` on every accepted socket (tether
//! sets it itself).

use std::io::{self, Write};
use std::net::SocketAddr;

use clap::ValueEnum;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Which echo server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum ServerKind {
    /// Plain tokio TCP echo: read what arrived, write it back. The ceiling.
    Raw,
    /// `tether::Server` with the default `ServerConfig`: a tokio task per
    /// connection.
    Tether,
    /// `tether::reactor::Reactor` (what `tether serve` runs on): one event
    /// loop for every connection, the default `ServerConfig`.
    #[value(name = "tether-reactor", alias = "reactor")]
    TetherReactor,
    /// `tokio-tungstenite`'s `accept_async` and its `Stream`/`Sink`.
    #[value(name = "tokio-tungstenite", alias = "tungstenite")]
    Tungstenite,
    /// `fastwebsockets`, upgraded through hyper as in its `echo_server` example.
    #[value(name = "fastwebsockets", alias = "fws")]
    Fastwebsockets,
}

impl ServerKind {
    /// The name used in flags and in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Raw => "raw TCP",
            ServerKind::Tether => "tether",
            ServerKind::TetherReactor => "tether reactor",
            ServerKind::Tungstenite => "tokio-tungstenite",
            ServerKind::Fastwebsockets => "fastwebsockets",
        }
    }

    /// The name on the command line (`server <kind> <port>`).
    #[must_use]
    pub fn arg(self) -> &'static str {
        match self {
            ServerKind::Raw => "raw",
            ServerKind::Tether => "tether",
            ServerKind::TetherReactor => "tether-reactor",
            ServerKind::Tungstenite => "tokio-tungstenite",
            ServerKind::Fastwebsockets => "fastwebsockets",
        }
    }

    /// Whether clients must do a WebSocket handshake and frame their data.
    #[must_use]
    pub fn is_websocket(self) -> bool {
        self != ServerKind::Raw
    }
}

/// Default read size of the raw server: as large as any peer's reads
/// (fastwebsockets reads a whole 1 MiB payload at once), so that the raw
/// server stays the ceiling for large messages too.
pub const DEFAULT_RAW_CHUNK: usize = 1 << 20;

/// Runs the `kind` echo server on `127.0.0.1:port` (0: any port) forever, on
/// a current-thread runtime on the calling thread. Prints `PORT <n>` on
/// stdout once listening, which is how the parent learns the port.
/// `raw_chunk` is the raw server's read size.
///
/// # Errors
/// The runtime cannot be built or the port bound.
pub fn run(kind: ServerKind, port: u16, raw_chunk: usize, threads: usize) -> io::Result<()> {
    let _ = RAW_CHUNK.set(raw_chunk.max(1));
    if kind == ServerKind::TetherReactor {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let reactor = tether::reactor::Reactor::bind_threads(addr, tether::ServerConfig::default(), threads.max(1))?;
        announce(reactor.local_addr()?)?;
        return reactor.run_with(|_| {
            |conn: &mut tether::reactor::Conn<'_>, message: tether::Message| {
                let _ = conn.send(&message);
            }
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match kind {
            ServerKind::Tether => {
                let server = tether::Server::bind(addr, tether::ServerConfig::default()).await?;
                announce(server.local_addr()?)?;
                server
                    .serve(|mut ws: tether::WebSocket| async move {
                        while let Ok(Some(message)) = ws.recv().await {
                            if ws.send(message).await.is_err() {
                                break;
                            }
                        }
                    })
                    .await
            }
            // Served above, on this thread without a runtime.
            ServerKind::TetherReactor => Ok(()),
            ServerKind::Raw => accept_loop(addr, raw_echo).await,
            ServerKind::Tungstenite => accept_loop(addr, tungstenite_echo).await,
            ServerKind::Fastwebsockets => accept_loop(addr, fastwebsockets_echo).await,
        }
    })
}

/// Prints `PORT <n>` on stdout: how the parent learns the port.
pub(crate) fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "PORT {}", addr.port())?;
    out.flush()
}

/// Accepts forever, spawning `handler` on each connection.
async fn accept_loop<F, Fut>(addr: SocketAddr, handler: F) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    announce(listener.local_addr()?)?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handler(tcp));
    }
}

/// How much one read of the raw server takes at most (set once by [`run`]).
static RAW_CHUNK: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

thread_local! {
    /// The raw server's read buffer, shared by all connections of the
    /// (single) runtime thread, so an idle connection holds none.
    static RAW_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; *RAW_CHUNK.get_or_init(|| DEFAULT_RAW_CHUNK)].into_boxed_slice());
}

/// Echoes bytes: wait readable, read into the shared buffer, write back as
/// much as the socket takes at once, and only if it does not take it all
/// copy the rest into a per-connection buffer and wait to write that.
async fn raw_echo(mut tcp: TcpStream) {
    let mut rest: Vec<u8> = Vec::new();
    loop {
        if tcp.readable().await.is_err() {
            return;
        }
        let outcome = RAW_BUF.with_borrow_mut(|buf| -> io::Result<Option<usize>> {
            let n = match tcp.try_read(buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Some(0)),
                Err(error) => return Err(error),
            };
            let written = match tcp.try_write(&buf[..n]) {
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                Err(error) => return Err(error),
            };
            rest.extend_from_slice(&buf[written..n]);
            Ok(Some(n))
        });
        match outcome {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
        if !rest.is_empty() {
            if tcp.write_all(&rest).await.is_err() {
                return;
            }
            rest.clear();
        }
    }
}

/// tokio-tungstenite: the echo loop of its README, `next` and `send`.
async fn tungstenite_echo(tcp: TcpStream) {
    use futures_util::{SinkExt, StreamExt};
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// fastwebsockets: hyper serves the upgrade request, then the echo loop of
/// its `examples/echo_server.rs` (including its `unconstrained` task).
async fn fastwebsockets_echo(tcp: TcpStream) {
    use fastwebsockets::{upgrade, OpCode, WebSocketError};
    use http_body_util::Empty;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    async fn handle(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn upgrade_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            let _ = tokio::task::unconstrained(handle(fut)).await;
        });
        Ok(response)
    }

    let io = hyper_util::rt::TokioIo::new(tcp);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, hyper::service::service_fn(upgrade_request))
        .with_upgrades()
        .await;
}
