#!/usr/bin/env python3
"""Runs a real HTTP (CONNECT) or SOCKS5 proxy server on 127.0.0.1.

Usage: proxy.py --kind http|socks5 [--user U --password P]
                [--engine tinyproxy|pproxy|dante] [--port 0] [--startup-timeout 20]

Engines (defaults: http -> tinyproxy, socks5 -> pproxy):
  tinyproxy  Debian's tinyproxy 1.11 (C), http only. Basic auth with
             `BasicAuth U P`; no `ConnectPort` line, so CONNECT is allowed to
             every port. U and P may only use [-A-Za-z0-9._] (its config
             grammar). Missing credentials: 407; wrong ones: 401 (sic).
  pproxy     pproxy 2.7.9 (Python, from the py3 venv), http or socks5.
             Credentials from a `user:pass` file (`-l SCHEME://HOST:PORT##FILE`);
             `--auth=-1` turns off its per-IP memory of a past login, so every
             connection must authenticate.
  dante      Debian's dante-server 1.4 (C), socks5 only and without auth only
             (its username method checks system accounts); RFC-exact replies.

Starts the engine as a child process in the foreground (its own process
group, config files in a temp dir), waits until that group holds the LISTEN
socket on the port (without /proc: until the port accepts a connection; a free
port taken meanwhile by someone else is retried up to 5 times), then prints
`LISTENING <port>` on stdout (flushed). The child's output goes to stderr,
prefixed `[<engine>]`. On SIGTERM/SIGINT the child gets SIGTERM (SIGKILL after
5 s), then anything left in its process group SIGKILL; the temp dir is removed
and the script exits 0. If the child dies, the script prints its last output
and `ERROR proxy.py: ...` on stderr (on stdout too if before `LISTENING`) and
exits 1. Bad arguments: exit 2.
"""

import argparse
import collections
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

HOST = "127.0.0.1"
KINDS = ("http", "socks5")
ENGINES = {"tinyproxy": ("http",), "pproxy": ("http", "socks5"), "dante": ("socks5",)}
DEFAULT_ENGINE = {"http": "tinyproxy", "socks5": "pproxy"}
TINYPROXY_TOKEN = re.compile(r"[-A-Za-z0-9._]+\Z")
PPROXY_SERVING = re.compile(r"Serving on .*:(\d+) by ")
# Engines' messages when the port is taken: tinyproxy "Could not create
# listening sockets", dante "Address already in use", pproxy "[Errno 98] ...".
BIND_FAILED = re.compile(r"in use|could not create listening", re.I)
PORT_ATTEMPTS = 5  # fresh free ports to try when one is taken meanwhile


class ChildDied(Exception):
    pass


def fail_args(parser, msg):
    parser.error(msg)  # exit 2


def parse_args():
    p = argparse.ArgumentParser(
        description="Real HTTP CONNECT / SOCKS5 proxy on 127.0.0.1 for tether's tests.",
        epilog="Prints `LISTENING <port>` once ready; runs until SIGTERM/SIGINT.")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--engine", choices=sorted(ENGINES),
                   help="default: tinyproxy for http, pproxy for socks5")
    p.add_argument("--user", help="require this user name (with --password)")
    p.add_argument("--password", help="require this password (with --user)")
    p.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    p.add_argument("--startup-timeout", type=float, default=20.0,
                   help="seconds to wait for the proxy to listen (default 20)")
    a = p.parse_args()
    a.engine = a.engine or DEFAULT_ENGINE[a.kind]
    if a.kind not in ENGINES[a.engine]:
        fail_args(p, "engine %s does not serve --kind %s" % (a.engine, a.kind))
    if (a.user is None) != (a.password is None):
        fail_args(p, "--user and --password go together")
    a.auth = a.user is not None
    if not 0 <= a.port <= 65535:
        fail_args(p, "--port out of range")
    if a.auth:
        if a.user == "":
            fail_args(p, "--user must not be empty")
        if a.engine == "dante":
            fail_args(p, "dante authenticates against system accounts; "
                         "use --engine pproxy for a socks5 proxy with --user/--password")
        if a.engine == "tinyproxy":
            for what, v in (("--user", a.user), ("--password", a.password)):
                if not TINYPROXY_TOKEN.match(v):
                    fail_args(p, "tinyproxy's BasicAuth only takes [-A-Za-z0-9._]+ for %s "
                                 "(use --engine pproxy)" % what)
        if a.engine == "pproxy":
            if ":" in a.user:
                fail_args(p, "--user must not contain ':'")
            for what, v in (("--user", a.user), ("--password", a.password)):
                if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in v) or v != v.rstrip():
                    fail_args(p, "%s: no control characters or trailing blanks "
                                 "(pproxy's user file)" % what)
        if a.kind == "socks5":
            for what, v in (("--user", a.user), ("--password", a.password)):
                if not 1 <= len(v.encode()) <= 255:
                    fail_args(p, "%s must be 1 to 255 bytes for SOCKS5 (RFC 1929)" % what)
    return a


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def which(name, *fallbacks):
    found = shutil.which(name)
    if found:
        return found
    for f in fallbacks:
        if os.access(f, os.X_OK):
            return f
    return None


# --- engines: each returns (argv, env or None, port or None if it reports it) --

def tinyproxy_cmd(a, work, port):
    exe = which("tinyproxy", "/usr/bin/tinyproxy")
    if not exe:
        raise ChildDied("tinyproxy not found (run scripts/install-deps.sh)")
    conf = os.path.join(work, "tinyproxy.conf")
    lines = [
        "Port %d" % port,
        "Listen %s" % HOST,
        "Timeout 600",
        "MaxClients 100",
        "Allow 127.0.0.1",
        "LogLevel Connect",
        "DisableViaHeader Yes",
        # No ConnectPort line at all: CONNECT may reach every port (Debian's
        # stock config restricts it to 443 and 563).
    ]
    if a.auth:
        lines.append("BasicAuth %s %s" % (a.user, a.password))
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [exe, "-d", "-c", conf], None, port


def dante_cmd(a, work, port):
    exe = which("danted", "/usr/sbin/danted")
    if not exe:
        raise ChildDied("danted not found (run scripts/install-deps.sh)")
    conf = os.path.join(work, "danted.conf")
    lines = [
        "logoutput: stderr",
        "internal: %s port = %d" % (HOST, port),
        "external: %s" % HOST,
        "clientmethod: none",
        "socksmethod: none",
    ]
    if os.geteuid() == 0:
        lines += ["user.privileged: root", "user.unprivileged: nobody"]
    lines += [
        "client pass {",
        "  from: 127.0.0.0/8 to: 0.0.0.0/0",
        "  log: error connect disconnect",
        "}",
        "socks pass {",
        "  from: 127.0.0.0/8 to: 0.0.0.0/0",
        "  command: connect",
        "  log: error connect disconnect",
        "}",
    ]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    # The temp dir is 0700; dante's children run as nobody but only the
    # mother (root) reads the config and writes the pid file.
    return [exe, "-f", conf, "-p", os.path.join(work, "danted.pid")], None, port


def pproxy_cmd(a, work, port):
    uri = "%s://%s:%d" % (a.kind, HOST, port)
    if a.auth:
        users = os.path.join(work, "users")
        with open(users, "w") as f:
            f.write("%s:%s\n" % (a.user, a.password))
        uri += "##" + users  # '#FILE' fragment: one user:pass per line
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-u", "-m", "pproxy", "-l", uri, "--auth=-1", "-v"]
    return argv, env, (port or None)


ENGINE_CMD = {"tinyproxy": tinyproxy_cmd, "dante": dante_cmd, "pproxy": pproxy_cmd}


# --- the child -----------------------------------------------------------------

def become_subreaper():
    """Linux: orphans of the child (dante's workers outlive their mother for a
    moment) are re-parented to this script instead of init, so reap_orphans()
    can wait for them and none is left running after exit."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def reap_orphans(timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


class Child:
    def __init__(self, name, argv, env, cwd):
        self.name = name
        self.tail = collections.deque(maxlen=40)
        self.reported_port = None
        self.port_seen = threading.Event()
        self.logq = queue.Queue(maxsize=10000)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._write_log, daemon=True).start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            m = PPROXY_SERVING.search(line)
            if m and self.reported_port is None:
                self.reported_port = int(m.group(1))
                self.port_seen.set()
            try:  # never block the child on a stderr nobody drains
                self.logq.put_nowait("[%s] %s" % (self.name, line))
            except queue.Full:
                pass
        self.port_seen.set()

    def _write_log(self):
        while True:
            c.log(self.logq.get())

    def output(self):
        self.reader.join(timeout=2)
        return "\n".join(self.tail)

    def stop(self):
        """SIGTERM to the child (dante's mother then stops its workers
        itself), SIGKILL after 5 s; then SIGKILL to whatever is left of the
        child's process group."""
        pid = self.proc.pid  # start_new_session: also its process group id
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        reap_orphans()


def listen_inodes(port):
    """Inodes of the TCP LISTEN sockets bound to `port` (None without /proc)."""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    found = set()
    for row in rows:
        cols = row.split()
        if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
            found.add(cols[9])
    return found


def group_pids(pgid):
    """PIDs of the processes in process group `pgid` (Linux /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parens.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            pids.append(int(name))
    return pids


def holds_socket(pid, inodes):
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def listener_state(child_pid, port):
    """"none": nothing listens on `port` yet; "ours": the child or its process
    group holds the LISTEN socket; "theirs": another process does; None:
    cannot be told (no /proc)."""
    inodes = listen_inodes(port)
    if inodes is None:
        return None
    if not inodes:
        return "none"
    if holds_socket(child_pid, inodes):
        return "ours"
    if any(holds_socket(p, inodes) for p in group_pids(child_pid)):
        return "ours"
    return "theirs"


def accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def start(a, work, stopping):
    """Starts the engine; returns (child, port). Raises ChildDied."""
    make = ENGINE_CMD[a.engine]
    attempts = PORT_ATTEMPTS if (a.port == 0 and a.engine != "pproxy") else 1
    last = None
    for attempt in range(attempts):
        port = a.port if (a.port or a.engine == "pproxy") else free_port()
        argv, env, known = make(a, work, port)
        c.log("proxy.py: starting %s" % " ".join(argv))
        child = Child(a.engine, argv, env, work)
        deadline = time.monotonic() + a.startup_timeout
        collided = False
        while not stopping.is_set():
            if child.proc.poll() is not None:
                child.stop()  # reaps what is left of its group
                out = child.output()
                last = "%s exited with status %s before listening\n%s" % (
                    a.engine, child.proc.returncode, out)
                collided = BIND_FAILED.search(out) is not None
                break
            if time.monotonic() > deadline:
                child.stop()
                last = "%s did not listen within %.0f s\n%s" % (
                    a.engine, a.startup_timeout, child.output())
                break
            if known is None:  # pproxy on port 0 prints the real port
                child.port_seen.wait(0.1)
                known = child.reported_port
                continue
            state = listener_state(child.proc.pid, known)
            if state == "theirs":
                # Someone else took the free port between our probe and the bind.
                child.stop()
                last = "port %d was taken by another process" % known
                collided = True
                break
            # A LISTEN socket accepts connections (the kernel completes the
            # handshake); probe with a connection only when /proc cannot tell.
            if state == "ours" or (state is None and accepts(known)):
                return child, known
            time.sleep(0.05)
        else:
            child.stop()
            return None, None
        if not collided or attempt == attempts - 1:
            break
        c.log("proxy.py: %s; retrying on another port" % last.partition("\n")[0])
    raise ChildDied(last)


def main():
    a = parse_args()
    stopping = threading.Event()
    become_subreaper()

    def on_signal(signum, frame):
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    # pproxy splits its -l argument on "__" (proxy chains): keep it out of the path.
    while True:
        work = tempfile.mkdtemp(prefix="tether-proxy-")
        if "__" not in work:
            break
        os.rmdir(work)
    child = None
    listening = False
    try:
        child, port = start(a, work, stopping)
        if child is None:
            return 0  # stopped while starting
        c.log("proxy.py: %s %s proxy on %s:%d, %s" % (
            a.engine, a.kind, HOST, port,
            "auth user %r" % a.user if a.auth else "no auth"))
        print("LISTENING %d" % port, flush=True)
        listening = True
        while not stopping.wait(0.2):
            if child.proc.poll() is not None:
                raise ChildDied("%s exited with status %s\n%s" % (
                    a.engine, child.proc.returncode, child.output()))
        return 0
    except ChildDied as e:
        first, _, rest = str(e).partition("\n")
        msg = "ERROR proxy.py: %s" % first
        if rest:
            c.log("proxy.py: last output of %s:\n%s" % (a.engine, "\n".join(
                "    " + line for line in rest.splitlines()[-15:])))
        c.log(msg)
        if not listening:
            print(msg, flush=True)
        return 1
    finally:
        if child is not None:
            child.stop()  # also reaps leftovers of its process group (dante)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
