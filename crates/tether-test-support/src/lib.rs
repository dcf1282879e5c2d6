//! Test harness for tether's interop tests: where the third-party peers and
//! their runtimes live, a guard that runs a peer as a child process and
//! never leaks it, and a throw-away TLS certificate.
//!
//! The peers are the scripts in the repository's `tests/peers` (see its
//! README). Their dependencies are installed by `scripts/install-deps.sh`
//! under [`deps_dir`]; the helpers here never skip a test when something is
//! missing, they fail it with a message naming that script.
//!
//! Unix only: peers run in their own process group, which is signalled as a
//! whole when the guard is dropped.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// The message every "dependency missing" failure ends with.
const INSTALL_HINT: &str = "run `scripts/install-deps.sh` (it installs every interop peer under \
                            $TETHER_DEPS, default ~/.cache/tether-deps)";

/// How long a peer gets to exit after SIGTERM before its process group is
/// killed with SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// How many lines of a peer's stderr an error message quotes.
const STDERR_TAIL_LINES: usize = 40;

// ---- where things are -----------------------------------------------------------

/// The directory `scripts/install-deps.sh` installs into: `$TETHER_DEPS`, or
/// `~/.cache/tether-deps`.
///
/// # Panics
/// Neither `TETHER_DEPS` nor `HOME` is set.
#[must_use]
pub fn deps_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TETHER_DEPS").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let home =
        std::env::var_os("HOME").unwrap_or_else(|| panic!("neither TETHER_DEPS nor HOME is set; {INSTALL_HINT}"));
    PathBuf::from(home).join(".cache").join("tether-deps")
}

/// The Python 3 interpreter of the peers' virtualenv (`$DEPS/py3/bin/python`,
/// which has `websockets` and `websocket-client`; the system `python3` does not).
///
/// # Panics
/// The interpreter is missing: the message names `scripts/install-deps.sh`.
#[must_use]
#[track_caller]
pub fn python() -> PathBuf {
    require_file(deps_dir().join("py3").join("bin").join("python"), "the Python 3 venv of the interop peers")
}

/// The `NODE_PATH` for the Node peers (`$DEPS/node/node_modules`, which has `ws`).
///
/// # Panics
/// `ws` is not installed there: the message names `scripts/install-deps.sh`.
#[must_use]
#[track_caller]
pub fn node_path() -> PathBuf {
    let modules = deps_dir().join("node").join("node_modules");
    require_file(modules.join("ws").join("package.json"), "Node's `ws` package");
    modules
}

/// The `node` executable, found on `PATH`.
///
/// # Panics
/// There is none: the message names `scripts/install-deps.sh`.
#[must_use]
#[track_caller]
pub fn node() -> PathBuf {
    find_on_path("node").unwrap_or_else(|| panic!("`node` is not on PATH; {INSTALL_HINT}"))
}

/// The Chromium executable the Chromium peer drives (`/usr/bin/chromium`).
///
/// # Panics
/// It is missing: the message names `scripts/install-deps.sh`.
#[must_use]
#[track_caller]
pub fn chromium() -> PathBuf {
    require_file(PathBuf::from("/usr/bin/chromium"), "Chromium")
}

/// The repository's `tests/peers` directory, found from this crate's
/// `CARGO_MANIFEST_DIR` (`<repo>/crates/tether-test-support`).
///
/// # Panics
/// The directory does not exist (the crate was moved).
#[must_use]
pub fn peers_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    let dir = dir.canonicalize().unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    assert!(dir.join("README.md").is_file(), "{} does not look like tests/peers", dir.display());
    dir
}

/// The Python `websockets` echo server (`py_websockets_server.py`) on
/// `port` (0: a free one), started and listening.
///
/// # Panics
/// It does not start within 15 s (the panic quotes its stderr).
#[must_use]
pub fn python_echo_server(port: u16) -> Peer {
    let mut command = python_peer("py_websockets_server.py");
    command.args(["--port", &port.to_string()]);
    Peer::server(command, Duration::from_secs(15)).unwrap_or_else(|error| panic!("{error}"))
}

/// The forwarder that can go silent (`stall_proxy.py`), forwarding to
/// `127.0.0.1:target_port`, started and listening.
///
/// # Panics
/// It does not start within 15 s.
#[must_use]
pub fn stall_proxy(target_port: u16) -> Peer {
    let mut command = python_peer("stall_proxy.py");
    command.arg("--target").arg(format!("127.0.0.1:{target_port}"));
    Peer::server(command, Duration::from_secs(15)).unwrap_or_else(|error| panic!("{error}"))
}

/// A loopback port nothing listens on now (bound, then released).
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).map_or(0, |addr| addr.port())
}

/// A command running the Python peer `script` (a file name in
/// [`peers_dir`]) with the venv's interpreter, `-u` (unbuffered).
///
/// # Panics
/// As [`python`], or the script does not exist.
#[must_use]
#[track_caller]
pub fn python_peer(script: &str) -> Command {
    let mut command = Command::new(python());
    command.arg("-u").arg(require_file(peers_dir().join(script), "the peer script"));
    command
}

/// A command running the Node peer `script` (a file name in [`peers_dir`])
/// with `NODE_PATH` set to [`node_path`].
///
/// # Panics
/// As [`node`] and [`node_path`], or the script does not exist.
#[must_use]
#[track_caller]
pub fn node_peer(script: &str) -> Command {
    let mut command = Command::new(node());
    command.env("NODE_PATH", node_path()).arg(require_file(peers_dir().join(script), "the peer script"));
    command
}

#[track_caller]
fn require_file(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.exists(), "{what} is missing: {} does not exist; {INSTALL_HINT}", path.display());
    path
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

// ---- errors -----------------------------------------------------------------------

/// Why a peer failed: what ran, what happened, and the end of its stderr.
#[derive(Debug)]
pub struct PeerError {
    command: String,
    what: String,
    stdout: String,
    stderr: String,
}

impl PeerError {
    fn new(command: &str, what: impl Into<String>, stdout: &[u8], stderr: &[u8]) -> PeerError {
        PeerError {
            command: command.to_owned(),
            what: what.into(),
            stdout: String::from_utf8_lossy(stdout).into_owned(),
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        }
    }

    /// The peer's whole stderr as captured when the error happened.
    #[must_use]
    pub fn stderr(&self) -> &str {
        &self.stderr
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "peer {}: {}", self.command, self.what)?;
        if !self.stdout.trim().is_empty() {
            writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        }
        let lines: Vec<&str> = self.stderr.lines().collect();
        let skipped = lines.len().saturating_sub(STDERR_TAIL_LINES);
        write!(f, "--- stderr")?;
        if skipped > 0 {
            write!(f, " (last {STDERR_TAIL_LINES} of {} lines)", lines.len())?;
        }
        write!(f, " ---")?;
        for line in &lines[skipped..] {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PeerError {}

// ---- the child guard ----------------------------------------------------------------

/// A peer running as a child process in its own process group.
///
/// Dropping it ends the peer: SIGTERM to the whole group, a grace period of
/// a few seconds, then SIGKILL to whatever of the group is left. So a test
/// that panics never leaks a peer, and a peer that cleans up after itself
/// on SIGTERM (the Chromium client kills its browser) gets the chance to.
///
/// Its stdout and stderr are captured by background threads; stdin is null.
pub struct Peer {
    child: Child,
    command: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Complete stdout lines as they arrive; ends when stdout closes.
    lines: mpsc::Receiver<String>,
    /// One message per capture thread when its pipe has closed.
    eof: mpsc::Receiver<()>,
    port: Option<u16>,
    /// The exit status, once the leader has been reaped.
    status: Option<ExitStatus>,
    /// Stopped by [`Peer::freeze`].
    frozen: bool,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("pid", &self.child.id())
            .field("command", &self.command)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts `command` in a new process group, capturing its output.
    ///
    /// # Errors
    /// The program cannot be started (the message names `scripts/install-deps.sh`).
    pub fn spawn(mut command: Command) -> Result<Peer, PeerError> {
        let description = describe(&command);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child = command.spawn().map_err(|error| {
            PeerError::new(&description, format!("cannot start: {error}; {INSTALL_HINT}"), b"", b"")
        })?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, lines) = mpsc::channel();
        let (eof_tx, eof) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let err_pipe = child.stderr.take().expect("stderr is piped");
        capture_stdout(out_pipe, stdout.clone(), line_tx, eof_tx.clone());
        capture_stderr(err_pipe, stderr.clone(), eof_tx);
        Ok(Peer { child, command: description, stdout, stderr, lines, eof, port: None, status: None, frozen: false })
    }

    /// Starts a peer server and waits up to `timeout` for its
    /// `LISTENING <port>` line on stdout.
    ///
    /// # Errors
    /// It cannot be started, exits, or prints no such line in time; the
    /// error quotes its stderr. The process is ended in every case.
    pub fn server(command: Command, timeout: Duration) -> Result<Peer, PeerError> {
        let mut peer = Peer::spawn(command)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match peer.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.trim().strip_prefix("LISTENING ") {
                        let port = port.trim().parse().map_err(|_| peer.error(format!("bad line {line:?}")))?;
                        peer.port = Some(port);
                        return Ok(peer);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(peer.error(format!("no `LISTENING <port>` line within {timeout:?}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the server is exiting. Give it a moment
                    // so the error can carry its status.
                    let status = peer.wait_exit(Duration::from_secs(2));
                    let status = status.map_or_else(|| "still running".to_owned(), |status| status.to_string());
                    return Err(peer.error(format!("closed stdout before `LISTENING <port>` ({status})")));
                }
            }
        }
    }

    /// Waits up to `timeout` for a stdout line starting with `prefix`;
    /// returns it.
    ///
    /// # Errors
    /// No such line in time, or stdout closed first.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> Result<String, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(self.error(format!("no line starting with {prefix:?} within {timeout:?}"))),
            }
        }
    }

    /// The port from the server's `LISTENING <port>` line.
    ///
    /// # Panics
    /// The peer was not started with [`Peer::server`].
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.expect("Peer::port is only known for peers started with Peer::server")
    }

    /// The process ID (also the process group ID).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the peer wrote to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }

    /// Everything the peer wrote to stdout so far.
    #[must_use]
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }

    /// An error about this peer quoting its output so far.
    #[must_use]
    pub fn error(&self, what: impl Into<String>) -> PeerError {
        PeerError::new(&self.command, what, self.stdout().as_bytes(), self.stderr().as_bytes())
    }

    /// Waits up to `timeout` for the peer to exit by itself. On exit, kills
    /// what is left of its process group and reaps it; returns the status.
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.leader_exited() {
                // The unreaped leader still holds the group ID, so this
                // signals only what is ours.
                self.signal_group(libc::SIGKILL);
                self.status = self.child.wait().ok();
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the group leader has exited, without reaping it.
    fn leader_exited(&self) -> bool {
        let pid = libc::id_t::from(self.child.id());
        // SAFETY: `info` is a plain C struct for which all-zero bytes are a
        // valid value; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid out-pointer; WNOWAIT leaves the child
        // waitable, so `Child::wait` still reaps it later.
        let result =
            unsafe { libc::waitid(libc::P_PID, pid, &raw mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if result != 0 {
            // ECHILD: already reaped (cannot happen unless someone else
            // waited); treat as exited.
            return true;
        }
        // SAFETY: waitid filled `info` (or left it zeroed); si_pid reads the
        // pid field, 0 when no child has changed state.
        unsafe { info.si_pid() != 0 }
    }

    fn signal_group(&self, signal: libc::c_int) {
        if self.status.is_some() {
            return; // reaped: the group ID may no longer be ours
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: killpg has no memory-safety preconditions; the group
            // is the one this child leads (`process_group(0)`), and it is
            // not reaped yet, so the ID cannot have been reused.
            unsafe {
                libc::killpg(pid, signal);
            }
        }
    }

    /// Freezes the peer (SIGSTOP to its group): its sockets stay open and
    /// its kernel still acknowledges TCP segments, but it answers nothing.
    /// Dropping the guard resumes it before ending it.
    pub fn freeze(&mut self) {
        self.signal_group(libc::SIGSTOP);
        self.frozen = true;
    }

    /// Resumes a frozen peer (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal_group(libc::SIGCONT);
        self.frozen = false;
    }

    /// Kills the peer at once (SIGKILL to its group), as a crash would:
    /// no close frames, no goodbyes. Waits until it is gone.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.signal_group(libc::SIGKILL);
            self.status = self.child.wait().ok();
        }
    }

    /// Sends SIGUSR1 to the peer's group (the stalling forwarder's cue).
    pub fn signal_usr1(&self) {
        self.signal_group(libc::SIGUSR1);
    }

    /// Waits up to a second for the capture threads to see EOF on both pipes.
    fn drain_output(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for _ in 0..2 {
            if self.eof.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                return;
            }
        }
    }

    /// Ends the peer now: SIGTERM to its group, up to a few seconds' grace,
    /// then SIGKILL. Returns its exit status. Dropping the guard does the same.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.frozen {
            self.thaw();
        }
        if self.status.is_none() {
            self.signal_group(libc::SIGTERM);
            if self.wait_exit(TERM_GRACE).is_none() {
                self.signal_group(libc::SIGKILL);
                self.status = self.child.wait().ok();
            }
        }
        self.status
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn describe(command: &Command) -> String {
    let mut out = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

fn capture_stdout(pipe: ChildStdout, buffer: Arc<Mutex<Vec<u8>>>, lines: mpsc::Sender<String>, eof: mpsc::Sender<()>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(&line);
            let _ = lines.send(String::from_utf8_lossy(&line).into_owned());
            line.clear();
        }
        let _ = eof.send(());
    });
}

fn capture_stderr(mut pipe: ChildStderr, buffer: Arc<Mutex<Vec<u8>>>, eof: mpsc::Sender<()>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(&chunk[..n]);
        }
        let _ = eof.send(());
    });
}

// ---- clients ------------------------------------------------------------------------

/// What a client peer printed, after it exited with status 0.
#[derive(Clone, Debug)]
pub struct ClientOutput {
    /// Its stdout (for the matrix clients, `OK <n> messages`).
    pub stdout: String,
    /// Its stderr (progress and timings).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs a client peer to completion, for at most `timeout`.
///
/// Blocking: from async code, call it in `spawn_blocking`.
///
/// # Errors
/// It cannot be started, exits with a nonzero status, or is still running
/// after `timeout` (then it is ended as [`Peer`] does). The error quotes
/// its stdout and stderr.
pub fn run_client(command: Command, timeout: Duration) -> Result<ClientOutput, PeerError> {
    let started = Instant::now();
    let mut peer = Peer::spawn(command)?;
    let Some(status) = peer.wait_exit(timeout) else {
        peer.stop();
        peer.drain_output();
        return Err(peer.error(format!("did not finish within {timeout:?}; killed")));
    };
    peer.drain_output();
    if !status.success() {
        return Err(peer.error(format!("failed ({status})")));
    }
    Ok(ClientOutput { stdout: peer.stdout(), stderr: peer.stderr(), elapsed: started.elapsed() })
}

// ---- TLS ----------------------------------------------------------------------------

/// A self-signed certificate for `127.0.0.1` (IP SAN) and `localhost` (DNS
/// SAN), with its key, in PEM files in a fresh temporary directory that is
/// removed on drop. Being self-signed, the certificate is also the CA file
/// clients trust.
pub struct TestCert {
    dir: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl fmt::Debug for TestCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl TestCert {
    /// Generates the key pair and certificate and writes `cert.pem` and
    /// `key.pem` (PKCS#8).
    ///
    /// # Panics
    /// Generation fails or the temporary directory cannot be written.
    #[must_use]
    pub fn new() -> TestCert {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("rcgen cannot make a self-signed certificate");
        let dir = unique_temp_dir("tether-cert");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        write(&cert_path, cert.pem().as_bytes());
        write(&key_path, signing_key.serialize_pem().as_bytes());
        TestCert { dir, cert_path, key_path, cert_der: cert.der().to_vec(), key_der: signing_key.serialize_der() }
    }

    /// The PEM certificate (the server's chain, and the CA file clients trust).
    #[must_use]
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The PEM CA file to trust: the certificate itself.
    #[must_use]
    pub fn ca_path(&self) -> &Path {
        &self.cert_path
    }

    /// The PEM private key (PKCS#8).
    #[must_use]
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 DER.
    #[must_use]
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

impl Default for TestCert {
    fn default() -> Self {
        TestCert::new()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty directory under the system temp dir, named from `prefix`,
/// the process ID, a counter and the time, so concurrent tests and test
/// processes never share one.
///
/// # Panics
/// It cannot be created.
#[must_use]
pub fn unique_temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    dir
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        command
    }

    /// Whether any process of group `pgid` is still alive.
    fn group_alive(pgid: u32) -> bool {
        let pgid = libc::pid_t::try_from(pgid).expect("pid fits");
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::killpg(pgid, 0) == 0 }
    }

    #[test]
    fn server_port_is_read_and_the_whole_group_is_killed_on_drop() {
        let peer = Peer::server(sh("sleep 300 & echo LISTENING 4242; wait"), Duration::from_secs(10)).expect("server");
        assert_eq!(peer.port(), 4242);
        let pgid = peer.pid();
        assert!(group_alive(pgid));
        drop(peer);
        // The orphaned `sleep` is reaped by init, not by us: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!group_alive(pgid), "the background sleep of the group survived");
    }

    #[test]
    fn a_server_that_exits_early_reports_its_stderr() {
        let error = Peer::server(sh("echo 'no such module' >&2; exit 3"), Duration::from_secs(10)).expect_err("exits");
        let message = error.to_string();
        assert!(message.contains("no such module") && message.contains("exit status: 3"), "{message}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let started = Instant::now();
        let error = Peer::server(sh("exec sleep 300"), Duration::from_millis(300)).expect_err("times out");
        assert!(error.to_string().contains("no `LISTENING <port>` line"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn run_client_returns_output_or_fails_with_stderr() {
        let output = run_client(sh("echo OK 10 messages; echo progress >&2"), Duration::from_secs(10)).expect("runs");
        assert_eq!(output.stdout, "OK 10 messages\n");
        assert_eq!(output.stderr, "progress\n");
        let error = run_client(sh("echo 'ERROR x: bad echo'; echo trace >&2; exit 1"), Duration::from_secs(10))
            .expect_err("fails");
        let message = error.to_string();
        assert!(message.contains("ERROR x: bad echo") && message.contains("trace"), "{message}");
    }

    #[test]
    fn run_client_kills_a_hung_client() {
        let started = Instant::now();
        let error = run_client(sh("sleep 300"), Duration::from_millis(300)).expect_err("hangs");
        assert!(error.to_string().contains("did not finish"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_names_the_installer() {
        let error = run_client(Command::new("/nonexistent/tether-peer"), Duration::from_secs(1)).expect_err("missing");
        assert!(error.to_string().contains("scripts/install-deps.sh"), "{error}");
    }

    #[test]
    fn test_cert_files_exist_until_drop() {
        let cert = TestCert::new();
        let pem = std::fs::read_to_string(cert.cert_path()).expect("cert");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = std::fs::read_to_string(cert.key_path()).expect("key");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!cert.cert_der().is_empty() && !cert.key_der().is_empty());
        let dir = cert.cert_path().parent().expect("dir").to_owned();
        drop(cert);
        assert!(!dir.exists());
    }
}

/// A `redis-server` (installed by `scripts/install-deps.sh`) on
/// `127.0.0.1:port`, without persistence, started and accepting
/// connections; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// On `port`, with `extra` arguments (`--tls-port` in them replaces
    /// the plain port; `--sentinel` with a config file makes a sentinel).
    ///
    /// # Panics
    /// It cannot be started, or does not accept connections within 10 s.
    #[must_use]
    pub fn start(port: u16, extra: &[&str]) -> RedisServer {
        let mut command = Command::new("redis-server");
        if !extra.contains(&"--sentinel") {
            command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
            if !extra.contains(&"--tls-port") {
                command.args(["--port", &port.to_string()]);
            }
        }
        let child = command
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/install-deps.sh)");
        let server = RedisServer { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// On a free port, plain.
    #[must_use]
    pub fn plain() -> RedisServer {
        RedisServer::start(free_port(), &[])
    }

    /// Its port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `redis-server`s on loopback, each node a primary
/// with its share of the slots, state `ok`; stopped (and its files
/// removed) when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
    /// The CA of the nodes' certificates, when they speak TLS only.
    tls_ca: Option<PathBuf>,
}

impl RedisCluster {
    /// `count` primaries (at least 3, as `redis-cli --cluster create`
    /// wants), no replicas.
    ///
    /// # Panics
    /// The cluster cannot be made, or is not `ok` within 15 s.
    #[must_use]
    pub fn start(count: usize) -> RedisCluster {
        RedisCluster::start_with(count, None)
    }

    /// The same, speaking TLS only (clients and the cluster bus), with
    /// `cert`'s certificate; clients need not present one.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_tls(count: usize, cert: &TestCert) -> RedisCluster {
        RedisCluster::start_with(count, Some(cert))
    }

    fn start_with(count: usize, tls: Option<&TestCert>) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("tether-cluster-{}-{}", std::process::id(), free_port()));
        let path = |path: &Path| path.to_str().expect("utf-8").to_owned();
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                let port = free_port();
                let node_dir = dir.join(port.to_string());
                std::fs::create_dir_all(&node_dir).expect("cluster dir");
                let mut args =
                    vec!["--cluster-enabled".to_owned(), "yes".to_owned(), "--dir".to_owned(), path(&node_dir)];
                if let Some(cert) = tls {
                    args.extend(
                        ["--port", "0", "--tls-port", &port.to_string(), "--tls-cluster", "yes"].map(str::to_owned),
                    );
                    args.extend(["--tls-cert-file".to_owned(), path(cert.cert_path())]);
                    args.extend(["--tls-key-file".to_owned(), path(cert.key_path())]);
                    args.extend(["--tls-ca-cert-file".to_owned(), path(cert.ca_path())]);
                    args.extend(["--tls-auth-clients", "no"].map(str::to_owned));
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                RedisServer::start(port, &args)
            })
            .collect();
        let cluster = RedisCluster { nodes, dir, tls_ca: tls.map(|cert| cert.ca_path().to_owned()) };
        let addresses: Vec<String> = cluster.ports().iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let created = Command::new("redis-cli")
            .args(cluster.tls_args())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        let started = Instant::now();
        while !cluster.ports().iter().all(|port| cluster.cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(started.elapsed() < Duration::from_secs(15), "the cluster is not ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Every node's port.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The seed nodes, `redis://127.0.0.1:<port>` (`rediss://` with TLS)
    /// comma-separated.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "rediss" } else { "redis" };
        self.ports().iter().map(|port| format!("{scheme}://127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    /// `redis-cli`'s arguments for TLS, if the nodes speak it.
    fn tls_args(&self) -> Vec<String> {
        self.tls_ca
            .iter()
            .flat_map(|ca| ["--tls".to_owned(), "--cacert".to_owned(), ca.display().to_string()])
            .collect()
    }

    /// What `redis-cli -p port args…` prints.
    ///
    /// # Panics
    /// `redis-cli` cannot be run.
    #[must_use]
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(self.tls_args())
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `redis-cli args…` on every node; what each printed.
    #[must_use]
    pub fn cli_all(&self, args: &[&str]) -> Vec<String> {
        self.ports().iter().map(|port| self.cli(*port, args)).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
