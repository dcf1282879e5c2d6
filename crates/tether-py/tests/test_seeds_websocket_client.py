"""Seed 000's websocket-client programs, run unchanged but for the import
line (``tests/seeds/``), against tether's server and Python websockets'.

The seeds talk to ``ws://echo.websocket.org/``; traffic stays on loopback
here, so each run points that URL at a local echo server (the one text
change made at run time; example 2 takes its URL as an argument anyway).
"""

import pathlib
import re
import subprocess
import sys

import pytest

from conftest import ROOT

SEEDS = pathlib.Path(__file__).resolve().parent / "seeds"
ORIGINALS = ROOT.parent / "shared" / "seeds"
PUBLIC_ECHO = "ws://echo.websocket.org/"


def run_seed(name, url, *args, timeout=30):
    code = (SEEDS / name).read_text(encoding="utf-8").replace(PUBLIC_ECHO, url)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def test_example_1_sends_from_a_thread_closes_and_traces(echo_url):
    run = run_seed("seed_000_d_example1.py", echo_url)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["hello1", "### closed ###"], run.stdout + run.stderr
    # enableTrace(True): the handshake and every frame, on standard error.
    assert "GET / HTTP/1.1" in run.stderr and "101 Switching Protocols" in run.stderr, run.stderr
    assert '"hello1"' in run.stderr and "CLOSE" in run.stderr, run.stderr


def test_example_2_a_subclass_with_callback_methods(echo_url):
    run = run_seed("seed_000_e_example2.py", PUBLIC_ECHO, echo_url)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:3] == ["Hello 0", "Hello 1", "Hello 2"], run.stdout + run.stderr
    # The seed's sender thread and on_close print at about the same time, and
    # print() writes the text and its newline separately: the two lines may
    # interleave ("Thread terminating...### closed ###", then a bare newline).
    rest = "\n".join(lines[3:])
    for line in ("### closed ###", "Thread terminating..."):
        assert rest.count(line) == 1, run.stdout + run.stderr
        rest = rest.replace(line, "")
    assert not rest.strip(), run.stdout + run.stderr


def test_short_connection(echo_url):
    run = run_seed("seed_000_f_short.py", echo_url)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "Sending 'Hello, World'...",
        "Sent",
        "Receiving...",
        "Received 'Hello, World'",
    ]


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="the seeds are not beside this checkout")
def test_the_programs_here_are_the_seeds_but_for_the_import_line():
    text = (ORIGINALS / "000_f80cd4f4e54a038f.txt").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    for name in ("seed_000_d_example1.py", "seed_000_e_example2.py", "seed_000_f_short.py"):
        ours = (SEEDS / name).read_text(encoding="utf-8")
        original = (ours.replace("from tether import websocket\n", "import websocket\n")
                    .replace("from tether.websocket import", "from websocket import"))
        assert original in blocks, name
        changed = [line for line in ours.splitlines() if line not in original.splitlines()]
        assert changed and all("tether" in line and "import" in line for line in changed), changed
