"""Issue 12, item 2: SIGINT or SIGTERM stops the reading, and the report of what was read is
written, marked interrupted; exit 130 or 143. Under a real signal, for both builds."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analyzer import build
from analyzer.testing.synth import Dialog, PcapWriter, frame
from conftest import REPO


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")


def _records(n: int, t0: float = 1_700_000_000.0) -> bytes:
    """`n` connections (handshake, data, close; 8 packets each, 10 ms apart) as pcap records,
    without the file header: one connection built, then copied with its own client port and
    times (checksums are not checked by default)."""
    d = Dialog(client=("10.1.0.1", 1024), t0=t0)
    d.handshake().data("c", 50).fin("c").ack("s").fin("s").ack("c")
    frames = [(ts, bytearray(frame(ip, outbound=side == "c")), side) for ts, ip, side in d.packets]
    parts = []
    for i in range(n):
        port = struct.pack("!H", 1024 + i % 60000)
        for ts, data, side in frames:
            off = 34 if side == "c" else 36           # Ethernet + IPv4 (20): the client's port
            data[off:off + 2] = port
            sec, usec = divmod(ts // 1000 + i * 10_000, 1_000_000)
            parts.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + bytes(data))
    return b"".join(parts)


def _header() -> bytes:
    buf = io.BytesIO()
    PcapWriter(buf)
    return buf.getvalue()


def _start(args, **kw) -> subprocess.Popen:
    # SIGINT is ignored in a background job of a non-interactive shell; Python then keeps it
    # ignored. The child gets the default disposition, as a foreground command has.
    return subprocess.Popen([sys.executable, "-m", "analyzer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **kw)


def _wait_for_reading(p: subprocess.Popen) -> None:
    """Wait until the child has its handlers in place (it catches SIGTERM: Python alone does
    not), then give it a moment to read what was written (it then waits for more)."""
    if not os.path.exists("/proc/self/status"):
        time.sleep(5.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with open("/proc/%d/status" % p.pid) as fh:
                caught = [int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:")]
        except OSError:
            caught = []
        if caught and caught[0] >> (signal.SIGTERM - 1) & 1:
            break
        time.sleep(0.01)
    time.sleep(1.0)
    assert p.poll() is None, p.communicate()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_on_a_pipe_that_stays_open_gives_the_report_so_far(sig, code):
    """`tcpdump -w - | tcpflow-check -` stopped with Ctrl-C: the writer is still there."""
    p = _start(["-", "-f", "json"], stdin=subprocess.PIPE)
    assert p.stdin is not None
    p.stdin.write(_header() + _records(20))
    p.stdin.flush()
    _wait_for_reading(p)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    doc = json.loads(out)
    assert doc["capture"]["interrupted"] is True
    assert doc["capture"]["packets"] == 20 * 8 and doc["summary"]["connections"] == 20
    assert b"interrupted" in err and b"internal error" not in err


def test_a_signal_while_reading_a_fifo_gives_the_text_report_so_far(tmp_path):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "report.txt"
    p = _start([str(fifo), "-o", str(out)])
    with open(fifo, "wb") as writer:
        writer.write(_header() + _records(3))
        writer.flush()
        _wait_for_reading(p)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    text = out.read_text()
    assert "24 packets" in text and "INTERRUPTED" in text, text


def test_a_signal_before_any_data_gives_an_empty_report():
    p = _start(["-", "-f", "json"], stdin=subprocess.PIPE)
    _wait_for_reading(p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    doc = json.loads(out)
    assert doc["capture"]["interrupted"] is True and doc["capture"]["errors"] == []


def _opened(p: subprocess.Popen, path: Path) -> bool:
    """Wait until the child has the capture open (so its handlers are in place and it is
    reading); False if it ended first."""
    target = str(path)
    while p.poll() is None:
        try:
            fds = os.listdir("/proc/%d/fd" % p.pid)
            if any(os.readlink("/proc/%d/fd/%s" % (p.pid, fd)) == target for fd in fds):
                return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def _busy_interrupts(tmp_path: Path, repeats: int, connections: int) -> None:
    """Signals while the analysis is busy with a large capture (reading and analysing, not
    waiting for input), from the moment it has the file open to a good way into it."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to see when the child has the capture open")
    cap = tmp_path / "big.pcap"
    cap.write_bytes(_header() + _records(connections))
    interrupted = 0
    for i in range(repeats):
        p = _start([str(cap), "-f", "json"])
        if _opened(p, cap):
            time.sleep(0.05 * i)
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
        assert p.returncode in (0, 130), (p.returncode, err)     # 0: it had finished
        assert b"internal error" not in err and b"fatal" not in err, err
        read = json.loads(out)["capture"]
        if read["packets"] < connections * 8:         # stopped before the end
            assert read["interrupted"] and p.returncode == 130
        if read["interrupted"]:
            assert p.returncode == 130
            interrupted += 1
    assert interrupted, "no run was interrupted while reading"


def test_a_signal_while_busy_stops_cleanly(tmp_path):
    _busy_interrupts(tmp_path, 3, 5000)


@pytest.mark.skipif("compiled" not in build(),
                    reason="the compiled build is not installed here (.ci/run installs it, so "
                           "CI runs this test): `pip install -e .` in a venv")
def test_the_compiled_build_stops_cleanly_under_signals(tmp_path):
    """It used to abort ("fatal: out of memory", SIGABRT): a signal seen inside CPython's
    big-integer multiply made the compiled code take the NULL for an allocation failure."""
    _busy_interrupts(tmp_path, 6, 40000)
