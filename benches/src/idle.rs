//! `tether-bench idle`: many idle connections held by `tether serve` (the
//! CLI binary) through at least two keepalive periods.
//!
//! The server pings every client every 20 s and drops those that do not
//! answer within 20 s. The client (one current-thread runtime, one CPU)
//! opens N connections from many source addresses (~28k ephemeral ports
//! each), ramping with a bounded number of opens at once, answers every
//! ping with a masked pong of the same payload, and records when each
//! ping arrived. A ping's lateness is the time since the previous ping on
//! its connection (for the first, since the connection opened) minus the
//! interval: how late the server's timers fire when it holds many
//! connections, and whether its heartbeat round costs anything.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::wire::{self, opcode, FrameReader};

/// Connections per source address (of ~28k ephemeral ports).
const PER_SOURCE: usize = 20_000;

/// How long opening all connections may take.
const RAMP_TIMEOUT: Duration = Duration::from_secs(180);

/// Which server holds the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum IdleServer {
    /// `tether serve --no-compression` (the CLI: multi-thread runtime, on one CPU).
    Cli,
    /// The `tether` echo server of this benchmark (current-thread runtime).
    Echo,
}

impl IdleServer {
    fn name(self) -> &'static str {
        match self {
            IdleServer::Cli => "tether serve",
            IdleServer::Echo => "tether echo (bench)",
        }
    }
}

/// Flags of `tether-bench idle`.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 100_000)]
    conns: usize,
    /// Seconds to hold them once all are open (at least two ping periods
    /// to see every connection's heartbeat twice).
    #[arg(long, default_value_t = 50.0)]
    hold_secs: f64,
    /// Opening handshakes in progress at once while ramping up.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// The server's keepalive interval, seconds (lateness is measured against it).
    #[arg(long, default_value_t = 20.0)]
    ping_interval_secs: f64,
    /// Servers to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cli")]
    servers: Vec<IdleServer>,
    /// The `tether` binary (default: next to this one, e.g. target/release/tether).
    #[arg(long)]
    tether_bin: Option<PathBuf>,
    /// RLIMIT_NOFILE (soft and hard) set before the server starts.
    #[arg(long, default_value_t = 250_000)]
    nofile: u64,
    /// CPU the load client is pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// CPU the server is pinned to.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
}

/// Starts `tether serve` on a free port, pinned to `cpu`, killed with us.
fn spawn_cli(bin: &PathBuf, cpu: usize) -> io::Result<crate::ServerGuard> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(bin);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--no-compression"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes two system calls (sched_setaffinity, prctl); it allocates
    // nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            crate::sys::die_with_parent();
            crate::sys::pin_to_cpu(cpu)
        });
    }
    let mut child = command
        .spawn()
        .map_err(|error| io::Error::new(error.kind(), format!("cannot start {}: {error}", bin.display())))?;
    let stderr = child.stderr.take().ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let mut guard = crate::ServerGuard { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
    let mut lines = BufReader::new(stderr);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    // "tether: echo server listening on ws://127.0.0.1:PORT/"
    let addr: SocketAddr = line
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.trim().trim_end_matches('/').parse().ok())
        .ok_or_else(|| io::Error::other(format!("tether serve did not start (said {line:?})")))?;
    guard.addr = addr;
    // Forward the rest of its stderr, so a full pipe never blocks it.
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            eprintln!("  [tether serve] {line}");
        }
    });
    Ok(guard)
}

/// State shared by the connections of one run.
struct Shared {
    interval_us: i64,
    /// Pings received so far.
    pings: Cell<u64>,
    /// Pings whose lateness was negative (early), and the earliest, µs.
    early: Cell<u64>,
    earliest_us: Cell<i64>,
    /// Lateness of each connection's first ping, µs (early ones as 0):
    /// measured from when the client saw the `101`, so it also holds how
    /// late the client was to see it while ramping up.
    first: RefCell<Histogram<u64>>,
    /// Lateness of every later ping, µs (early ones as 0): the gap between
    /// two pings of one connection, both timed by the same client clock.
    later: RefCell<Histogram<u64>>,
    /// Connections ended by the server or an error.
    lost: Cell<usize>,
    /// Close frames the server sent.
    closes: Cell<u64>,
    first_error: RefCell<Option<String>>,
    read_buf: RefCell<Box<[u8]>>,
}

/// Holds one connection: answers pings, records their lateness.
async fn hold(mut tcp: TcpStream, leftover: Vec<u8>, opened: Instant, shared: Rc<Shared>) {
    let mut reader = FrameReader::default();
    let mut last = opened;
    let mut first = true;
    let mut pongs = Vec::new();
    let mut handle = |data: &[u8], pongs: &mut Vec<u8>| {
        let now = Instant::now();
        reader.feed(data, |frame| match frame.opcode {
            opcode::PING => {
                let gap = i64::try_from(now.duration_since(last).as_micros()).unwrap_or(i64::MAX);
                let late = gap - shared.interval_us;
                last = now;
                shared.pings.set(shared.pings.get() + 1);
                if late < 0 {
                    shared.early.set(shared.early.get() + 1);
                    shared.earliest_us.set(shared.earliest_us.get().min(late));
                }
                let histogram = if first { &shared.first } else { &shared.later };
                histogram.borrow_mut().saturating_record(late.max(0).unsigned_abs());
                first = false;
                wire::push_masked(pongs, opcode::PONG, frame.head);
            }
            opcode::CLOSE => shared.closes.set(shared.closes.get() + 1),
            _ => {}
        });
    };
    handle(&leftover, &mut pongs);
    let error = loop {
        if !pongs.is_empty() {
            if let Err(error) = tcp.write_all(&pongs).await {
                break error;
            }
            pongs.clear();
        }
        if let Err(error) = tcp.readable().await {
            break error;
        }
        let mut buf = shared.read_buf.borrow_mut();
        match tcp.try_read(&mut buf) {
            Ok(0) => break io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"),
            Ok(n) => handle(&buf[..n], &mut pongs),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => break error,
        }
    };
    shared.lost.set(shared.lost.get() + 1);
    shared.first_error.borrow_mut().get_or_insert_with(|| error.to_string());
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    opened: usize,
    open_failures: usize,
    open_secs: f64,
    held: usize,
    rss_before: u64,
    rss_opened: u64,
    rss_after: u64,
    rss_peak: u64,
    hold_secs: f64,
    hold_server_cpu: f64,
    hold_client_cpu: f64,
    /// CPU seconds other processes used during the hold (near 0 on a quiet machine).
    hold_other_cpu: f64,
    ramp_server_cpu: f64,
    pings_in_hold: u64,
    pings: u64,
    early: u64,
    earliest_us: i64,
    closes: u64,
    first: Histogram<u64>,
    later: Histogram<u64>,
    first_error: Option<String>,
}

async fn run(addr: SocketAddr, pid: u32, args: &IdleArgs) -> io::Result<Measured> {
    // Settle the server: one connection opened and closed, so one-time
    // allocations are in the baseline.
    drop(wire::open_ws(addr, wire::source_ip(0), "/").await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = crate::sys::rss_bytes(pid)?;
    let shared = Rc::new(Shared {
        interval_us: (args.ping_interval_secs * 1e6) as i64,
        pings: Cell::new(0),
        early: Cell::new(0),
        earliest_us: Cell::new(0),
        first: RefCell::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(io::Error::other)?),
        later: RefCell::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(io::Error::other)?),
        lost: Cell::new(0),
        closes: Cell::new(0),
        first_error: RefCell::new(None),
        read_buf: RefCell::new(vec![0; 64 << 10].into_boxed_slice()),
    });
    let sources = args.conns.div_ceil(PER_SOURCE).max(1);
    let mut held = JoinSet::new();
    let ramp_started = Instant::now();
    let server_cpu0 = crate::sys::cpu_seconds(pid)?;
    let mut opening = JoinSet::new();
    let (mut started, mut opened, mut failures) = (0usize, 0usize, 0usize);
    let ramp = async {
        while opened + failures < args.conns {
            while started < args.conns && opening.len() < args.concurrency.max(1) {
                let source = wire::source_ip(started % sources);
                opening.spawn_local(async move {
                    wire::open_ws(addr, source, "/").await.map(|(tcp, rest)| (tcp, rest, Instant::now()))
                });
                started += 1;
            }
            match opening.join_next().await {
                Some(Ok(Ok((tcp, leftover, at)))) => {
                    held.spawn_local(hold(tcp, leftover, at, shared.clone()));
                    opened += 1;
                    if opened % 10_000 == 0 {
                        eprintln!("  {opened} connections open ({:.1} s)", ramp_started.elapsed().as_secs_f64());
                    }
                }
                Some(Ok(Err(error))) => {
                    failures += 1;
                    shared.first_error.borrow_mut().get_or_insert_with(|| format!("opening: {error}"));
                }
                Some(Err(error)) => {
                    failures += 1;
                    shared.first_error.borrow_mut().get_or_insert_with(|| format!("opening: {error}"));
                }
                None => break,
            }
        }
    };
    if tokio::time::timeout(RAMP_TIMEOUT, ramp).await.is_err() {
        eprintln!("  ramp-up timed out after {} s", RAMP_TIMEOUT.as_secs());
    }
    opening.abort_all();
    let open_secs = ramp_started.elapsed().as_secs_f64();
    let server_cpu1 = crate::sys::cpu_seconds(pid)?;
    let rss_opened = crate::sys::rss_bytes(pid)?;
    eprintln!(
        "  {opened} open in {open_secs:.1} s ({failures} failed); server RSS {:.1} MB; holding {:.0} s",
        rss_opened as f64 / 1e6,
        args.hold_secs
    );

    let pings0 = shared.pings.get();
    let (t0, client0) = (Instant::now(), crate::sys::cpu_seconds(std::process::id())?);
    let machine0 = crate::sys::machine_busy_seconds()?;
    let hold_for = Duration::from_secs_f64(args.hold_secs);
    let mut next_report = t0 + Duration::from_secs(10);
    while t0.elapsed() < hold_for {
        let step = next_report.min(t0 + hold_for);
        tokio::time::sleep_until(step.into()).await;
        if step == next_report {
            eprintln!(
                "  hold {:.0} s: {} pings answered, {} connections lost",
                t0.elapsed().as_secs_f64(),
                shared.pings.get(),
                shared.lost.get()
            );
            next_report += Duration::from_secs(10);
        }
    }
    let hold_secs = t0.elapsed().as_secs_f64();
    let server_cpu2 = crate::sys::cpu_seconds(pid)?;
    let client1 = crate::sys::cpu_seconds(std::process::id())?;
    let machine1 = crate::sys::machine_busy_seconds()?;
    let rss_after = crate::sys::rss_bytes(pid)?;
    let rss_peak = crate::sys::status_bytes(pid, "VmHWM").unwrap_or(0);
    let measured = Measured {
        opened,
        open_failures: failures,
        open_secs,
        held: opened.saturating_sub(shared.lost.get()),
        rss_before,
        rss_opened,
        rss_after,
        rss_peak,
        hold_secs,
        hold_server_cpu: server_cpu2 - server_cpu1,
        hold_client_cpu: client1 - client0,
        hold_other_cpu: ((machine1 - machine0) - (client1 - client0) - (server_cpu2 - server_cpu1)).max(0.0),
        ramp_server_cpu: server_cpu1 - server_cpu0,
        pings_in_hold: shared.pings.get() - pings0,
        pings: shared.pings.get(),
        early: shared.early.get(),
        earliest_us: shared.earliest_us.get(),
        closes: shared.closes.get(),
        first: shared.first.borrow().clone(),
        later: shared.later.borrow().clone(),
        first_error: shared.first_error.borrow_mut().take(),
    };
    held.abort_all();
    Ok(measured)
}

/// Runs `tether-bench idle`.
///
/// # Errors
/// The client could not be set up or the server not started.
pub fn bench(args: &IdleArgs) -> io::Result<()> {
    if let Err(error) = crate::sys::pin_to_cpu(args.client_cpu) {
        eprintln!("warning: cannot pin the client to CPU {}: {error}", args.client_cpu);
    }
    let nofile = crate::sys::raise_nofile_to(args.nofile)?;
    // Server and client each hold one end of every connection, plus a few
    // more descriptors: without CAP_SYS_RESOURCE the hard limit cannot be
    // raised, and the run holds as many connections as fit.
    let fit = usize::try_from(nofile.saturating_sub(100)).unwrap_or(usize::MAX);
    let capped;
    let args = if args.conns > fit {
        eprintln!(
            "warning: RLIMIT_NOFILE could only be raised to {nofile} (raising the hard limit needs CAP_SYS_RESOURCE): holding {fit} connections, not {}",
            args.conns
        );
        capped = IdleArgs { conns: fit, ..args.clone() };
        &capped
    } else {
        args
    };
    let bin = match &args.tether_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("tether"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut results = Vec::new();
    let mut servers = args.servers.clone();
    servers.dedup();
    for &server_kind in &servers {
        eprintln!("{}: opening {} connections", server_kind.name(), args.conns);
        let server = match server_kind {
            IdleServer::Cli => spawn_cli(&bin, args.server_cpu)?,
            IdleServer::Echo => crate::ServerGuard::spawn(crate::servers::ServerKind::Tether, args.server_cpu, 64)?,
        };
        let local = tokio::task::LocalSet::new();
        let outcome = runtime.block_on(local.run_until(run(server.addr, server.pid(), args)));
        // Kill the server first: closing 100k sockets on its side is then the kernel's job.
        drop(server);
        drop(local);
        match outcome {
            Ok(measured) => {
                if let Some(error) = &measured.first_error {
                    eprintln!("  first failure: {error}");
                }
                results.push((server_kind, measured));
            }
            Err(error) => eprintln!("{}: FAILED: {error}", server_kind.name()),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    print!("{}", report(args, &results));
    Ok(())
}

fn report(args: &IdleArgs, results: &[(IdleServer, Measured)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nIdle: {} connections opened ({} at a time), then held {:.0} s; server pings every {:.0} s; server on CPU {}, client on CPU {}.\n",
        args.conns, args.concurrency, args.hold_secs, args.ping_interval_secs, args.server_cpu, args.client_cpu
    );
    let _ = writeln!(
        out,
        "| server | held / opened (failed) | ramp-up | RSS before → opened → after hold (peak) | RSS per conn | server CPU during hold | pings in hold | server CPU per 100k pings | later pings: lateness p50 / p99 / max | first pings: lateness p50 / p99 / max | early pings |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (kind, m) in results {
        let per_conn =
            if m.opened > 0 { m.rss_after.saturating_sub(m.rss_before) as f64 / m.opened as f64 } else { 0.0 };
        let per_100k = if m.pings_in_hold > 0 { m.hold_server_cpu / m.pings_in_hold as f64 * 1e5 } else { 0.0 };
        let _ = writeln!(
            out,
            "| {} | {} / {} ({}) | {:.1} s ({:.1} CPU-s) | {:.1} → {:.1} → {:.1} MB ({:.1}) | {:.0} B | {:.2} s of {:.1} s ({:.1} %) | {} | {:.3} s | {} | {} | {} (earliest {:.1} ms) |",
            kind.name(),
            m.held,
            m.opened,
            m.open_failures,
            m.open_secs,
            m.ramp_server_cpu,
            m.rss_before as f64 / 1e6,
            m.rss_opened as f64 / 1e6,
            m.rss_after as f64 / 1e6,
            m.rss_peak as f64 / 1e6,
            per_conn,
            m.hold_server_cpu,
            m.hold_secs,
            m.hold_server_cpu / m.hold_secs * 100.0,
            m.pings_in_hold,
            per_100k,
            lateness(&m.later),
            lateness(&m.first),
            m.early,
            m.earliest_us as f64 / 1e3,
        );
    }
    for (kind, m) in results {
        let _ = writeln!(
            out,
            "\n{}: {} pings answered in all ({:.2} per connection); client CPU during hold {:.2} s; other processes {:.2} CPU-s ({:.0} % of a CPU); close frames from the server {}.",
            kind.name(),
            m.pings,
            if m.opened > 0 { m.pings as f64 / m.opened as f64 } else { 0.0 },
            m.hold_client_cpu,
            m.hold_other_cpu,
            m.hold_other_cpu / m.hold_secs * 100.0,
            m.closes
        );
        if m.hold_other_cpu / m.hold_secs > 0.1 {
            let _ =
                writeln!(out, "WARNING: the machine was not quiet during the hold; lateness and CPU are disturbed.");
        }
        if m.held < m.opened {
            let _ = writeln!(out, "WARNING: {} connections were lost during the run.", m.opened - m.held);
        }
    }
    out
}

/// "p50 / p99 / max" of a lateness histogram (µs), in ms; "–" if empty.
fn lateness(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return format!("– ({} pings)", 0);
    }
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        "{:.1} / {:.1} / {:.1} ms ({} pings)",
        ms(histogram.value_at_quantile(0.5)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
        histogram.len()
    )
}
