"""bench/generate.py --shape: each connection-cost shape writes the connections it promises,
the same bytes every time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analyzer.pipeline import analyze
from analyzer.settings import Settings
from conftest import REPO


def _shape(tmp_path, shape: str, n: int) -> str:
    out = tmp_path / ("%s.pcap" % shape)
    subprocess.run([sys.executable, str(REPO / "bench" / "generate.py"), "--shape", shape,
                    "--connections", str(n), "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    return str(out)


@pytest.mark.parametrize("shape, handshake, close, lingering", [
    ("open", "complete", "open", 0),
    ("flood", "unanswered", None, 0),
    ("closing", "complete", "four_way", 1),     # every one still in TIME_WAIT at the end
])
def test_each_shape_is_what_it_says(tmp_path, shape, handshake, close, lingering):
    path = _shape(tmp_path, shape, 120)
    rep = analyze([path], Settings(max_live=1000))
    rs = list(rep.connections)
    assert len(rs) == 120 and rep.capture.evicted_early == 0
    assert {r.handshake for r in rs} == {handshake}
    assert {r.close for r in rs} == {close}
    assert {len(r.lingering) for r in rs} == {lingering}
    if shape == "flood":        # one spoofed SYN each, no answer
        assert {r.packets for r in rs} == {(1, 0)}


def test_shapes_are_deterministic(tmp_path):
    a = _shape(tmp_path, "closing", 50)
    data = open(a, "rb").read()
    b = _shape(tmp_path, "closing", 50)
    assert open(b, "rb").read() == data


def test_window_runs_every_connection_at_once(tmp_path):
    path = _shape(tmp_path, "window", 200)
    rep = analyze([path])
    rs = list(rep.connections)
    assert len(rs) == 200
    # all started within the first 4 s, so all were open together
    assert max(r.start for r in rs) - min(r.start for r in rs) < 4_100_000_000


def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    out = tmp_path / "missing" / "flood.pcap"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "generate.py"), "--shape", "flood",
                        "--connections", "3", "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith("No such file or directory")
    assert not out.exists()
