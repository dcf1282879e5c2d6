//! `tether-bench handshakes`: opening handshakes per second.
//!
//! C clients (default 50) each loop: connect (from 127.0.0.2, .3, … in
//! turn, so that the ephemeral ports of one address never run out), send
//! the fixed upgrade request, read the `101` head, send a masked close
//! frame (1000), read the server's close frame, wait for the server's FIN
//! (read returns 0), close. A connection's whole life is counted, not
//! only the upgrade: that is what a reconnect storm costs a server.
//!
//! The servers are the echo servers of `servers.rs`, pinned to one CPU.
//! Runs are interleaved and the median is reported.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::servers::ServerKind;
use crate::wire::{self, opcode, FrameReader};

/// How long one connection's whole life may take: one still going at the
/// end of a run after this long counts as failed. (Checked once at the
/// end rather than with a timer per connection, which would cost the
/// client a timer insertion and removal per handshake.)
const STUCK_AFTER: Duration = Duration::from_secs(5);

/// Flags of `tether-bench handshakes`.
#[derive(clap::Args, Debug)]
pub struct HandshakeArgs {
    /// Servers to measure, comma-separated (WebSocket servers only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tether-reactor,tether,tokio-tungstenite,fastwebsockets"
    )]
    servers: Vec<ServerKind>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Source addresses to rotate over (127.0.0.2 and up).
    #[arg(long, default_value_t = 16)]
    sources: usize,
    #[command(flatten)]
    run: crate::Rounds,
}

/// Counters shared by the clients of one run.
struct Shared {
    /// When each client's current connection began (`None` between two).
    attempt_started: Vec<Cell<Option<Instant>>>,
    done: Cell<u64>,
    failed: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

/// One connection's life; `buf` is the client's read buffer.
async fn one(
    addr: SocketAddr,
    source: std::net::IpAddr,
    request: &[u8],
    close: &[u8],
    buf: &mut [u8],
) -> io::Result<()> {
    let mut tcp = wire::connect_from(addr, source).await?;
    tcp.write_all(request).await?;
    let mut head = Vec::with_capacity(256);
    let leftover = loop {
        let n = tcp.read(buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = wire::upgrade_answer_end(&head)? {
            break head.split_off(end);
        }
    };
    tcp.write_all(close).await?;
    let mut reader = FrameReader::default();
    let mut closed = false;
    let mut on_frame = |frame: wire::Frame<'_>| closed |= frame.opcode == opcode::CLOSE;
    reader.feed(&leftover, &mut on_frame);
    loop {
        let n = tcp.read(buf).await?;
        if n == 0 {
            break;
        }
        reader.feed(&buf[..n], &mut on_frame);
    }
    if closed {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed TCP without a close frame"))
    }
}

/// One client: connections one after the other, forever (until aborted).
async fn client(addr: SocketAddr, index: usize, sources: usize, shared: Rc<Shared>) {
    let request = wire::upgrade_request(addr, "/");
    let close = wire::close_frame();
    let mut buf = vec![0u8; 4096];
    for round in 0usize.. {
        let source = wire::source_ip((index + round) % sources.max(1));
        shared.attempt_started[index].set(Some(Instant::now()));
        match one(addr, source, &request, &close, &mut buf).await {
            Ok(()) => shared.done.set(shared.done.get() + 1),
            Err(error) => {
                shared.failed.set(shared.failed.get() + 1);
                shared.first_error.borrow_mut().get_or_insert_with(|| error.to_string());
            }
        }
        shared.attempt_started[index].set(None);
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    per_sec: f64,
    failed: u64,
    server_cpu: f64,
    client_cpu: f64,
    /// CPUs' worth of time other processes used meanwhile (near 0 on a quiet machine).
    other_cpu: f64,
}

async fn run(addr: SocketAddr, server_pid: u32, args: &HandshakeArgs) -> io::Result<(Measured, Option<String>)> {
    let clients = args.clients.max(1);
    let shared = Rc::new(Shared {
        attempt_started: (0..clients).map(|_| Cell::new(None)).collect(),
        done: Cell::new(0),
        failed: Cell::new(0),
        first_error: RefCell::new(None),
    });
    let mut tasks = JoinSet::new();
    for index in 0..clients {
        tasks.spawn_local(client(addr, index, args.sources, shared.clone()));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.run.warmup_secs)).await;
    let (done0, failed0, t0) = (shared.done.get(), shared.failed.get(), Instant::now());
    let (client0, server0) = (crate::sys::cpu_seconds(std::process::id())?, crate::sys::cpu_seconds(server_pid)?);
    let machine0 = crate::sys::machine_busy_seconds()?;
    tokio::time::sleep(Duration::from_secs_f64(args.run.duration_secs)).await;
    let (done1, failed1, t1) = (shared.done.get(), shared.failed.get(), Instant::now());
    let (client1, server1) = (crate::sys::cpu_seconds(std::process::id())?, crate::sys::cpu_seconds(server_pid)?);
    let machine1 = crate::sys::machine_busy_seconds()?;
    tasks.abort_all();
    let stuck =
        shared.attempt_started.iter().filter(|at| at.get().is_some_and(|at| at.elapsed() > STUCK_AFTER)).count();
    if stuck > 0 {
        shared.first_error.borrow_mut().get_or_insert_with(|| format!("{stuck} connections took over 5 s"));
    }
    let secs = (t1 - t0).as_secs_f64();
    let error = shared.first_error.borrow_mut().take();
    Ok((
        Measured {
            per_sec: (done1 - done0) as f64 / secs,
            failed: failed1 - failed0 + stuck as u64,
            server_cpu: (server1 - server0) / secs,
            client_cpu: (client1 - client0) / secs,
            other_cpu: ((machine1 - machine0) - (client1 - client0) - (server1 - server0)).max(0.0) / secs,
        },
        error,
    ))
}

/// Runs `tether-bench handshakes`.
///
/// # Errors
/// Setting up the client failed.
pub fn bench(args: &HandshakeArgs) -> io::Result<()> {
    if let Err(error) = crate::sys::pin_to_cpu(args.run.client_cpu) {
        eprintln!("warning: cannot pin the client to CPU {}: {error}", args.run.client_cpu);
    }
    crate::sys::raise_nofile_to(65_536)?;
    let mut servers: Vec<ServerKind> = Vec::new();
    for &kind in &args.servers {
        if !kind.is_websocket() {
            eprintln!("note: {} is not a WebSocket server; skipped", kind.name());
        } else if !servers.contains(&kind) {
            servers.push(kind);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let began = Instant::now();
    let mut results: Vec<(ServerKind, Measured)> = Vec::new();
    for rep in 1..=args.run.reps {
        for &kind in &servers {
            let server = crate::ServerGuard::spawn_threads(kind, args.run.server_cpu, 64, args.run.server_threads)?;
            let local = tokio::task::LocalSet::new();
            let outcome = runtime.block_on(local.run_until(run(server.addr, server.pid(), args)));
            drop(local);
            drop(server);
            match outcome {
                Ok((measured, error)) => {
                    eprintln!(
                        "[{:>5.1}s] rep {rep} {:<17} {:>8.0} handshakes/s, {} failed (cpu: server {:.0}%, client {:.0}%, others {:.0}%)",
                        began.elapsed().as_secs_f64(),
                        kind.name(),
                        measured.per_sec,
                        measured.failed,
                        measured.server_cpu * 100.0,
                        measured.client_cpu * 100.0,
                        measured.other_cpu * 100.0
                    );
                    if let Some(error) = error {
                        eprintln!("  first failure: {error}");
                    }
                    results.push((kind, measured));
                }
                Err(error) => eprintln!("rep {rep} {}: FAILED: {error}", kind.name()),
            }
            // Let TIME_WAIT sockets and freed memory settle between runs.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!("total time {:.1}s", began.elapsed().as_secs_f64());
    print!("{}", report(args, &servers, &results));
    Ok(())
}

fn report(args: &HandshakeArgs, servers: &[ServerKind], results: &[(ServerKind, Measured)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nHandshakes: {} concurrent clients, each connect → upgrade → close handshake → server FIN, in a loop; medians of {} runs of {:.1} s after {:.1} s warm-up; server on CPU {}, client on CPU {}.\n",
        args.clients, args.run.reps, args.run.duration_secs, args.run.warmup_secs, args.run.server_cpu, args.run.client_cpu
    );
    let _ = writeln!(
        out,
        "| server | handshakes/s | failures (all runs) | server CPU | client CPU | handshakes per server CPU-second |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for &kind in servers {
        let runs: Vec<Measured> = results.iter().filter(|(k, _)| *k == kind).map(|(_, m)| *m).collect();
        if runs.is_empty() {
            let _ = writeln!(out, "| {} | failed | | | | |", kind.name());
            continue;
        }
        let median = |f: fn(&Measured) -> f64| crate::median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
        let rate = median(|m| m.per_sec);
        let per_cpu = median(|m| if m.server_cpu > 0.0 { m.per_sec / m.server_cpu } else { 0.0 });
        medians.push((kind, rate));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} % | {:.0} % | {:.0} |",
            kind.name(),
            rate,
            runs.iter().map(|m| m.failed).sum::<u64>(),
            median(|m| m.server_cpu) * 100.0,
            median(|m| m.client_cpu) * 100.0,
            per_cpu
        );
    }
    let max_other = results.iter().map(|(_, m)| m.other_cpu).fold(0.0, f64::max);
    let _ = writeln!(out, "\nOther processes took up to {:.0} % of a CPU during a counted window.", max_other * 100.0);
    if max_other > 0.1 {
        let _ = writeln!(out, "WARNING: the machine was not quiet; these numbers are disturbed.");
    }
    for ours in [ServerKind::TetherReactor, ServerKind::Tether] {
        let Some(&(_, our_rate)) = medians.iter().find(|(k, _)| *k == ours) else { continue };
        let ratios: Vec<String> = medians
            .iter()
            .filter(|(k, rate)| !matches!(k, ServerKind::Tether | ServerKind::TetherReactor) && *rate > 0.0)
            .map(|(k, rate)| format!("{}/{} {:.2}", ours.name(), k.name(), our_rate / rate))
            .collect();
        if !ratios.is_empty() {
            let _ = writeln!(out, "\nRatios of handshakes/s: {}.", ratios.join(", "));
        }
    }
    out
}
