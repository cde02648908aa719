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


def test_scales_ideal_split_gives_each_part_the_connections_its_shard_analyses(tmp_path):
    """bench/scale.py `ideal N`: the capture cut into the N parts `--jobs N` shards it into, by
    the same hash; every frame in exactly one part, each connection whole in its shard's."""
    import struct

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import scale
    finally:
        sys.path.remove(str(REPO / "bench"))
    from analyzer.decode.shard import shard_key
    whole = REPO / "samples" / "mixed.pcap"
    parts = scale.split(str(whole), 3, str(tmp_path))

    def records(path) -> int:
        data = open(path, "rb").read()
        pos, n = 24, 0
        while pos + 16 <= len(data):
            pos += 16 + struct.unpack("<I", data[pos + 8:pos + 12])[0]
            n += 1
        assert pos == len(data)
        return n

    assert sum(records(p) for p in parts) == records(whole)

    def tuples(path):
        return sorted((r.orig_raw, r.resp_raw) for r in analyze([str(path)]).connections)

    everything = tuples(whole)
    seen = []
    for i, path in enumerate(parts):
        mine = tuples(path)
        assert mine, "part %d is empty" % i
        for (oa, op), (ra, rp) in mine:
            key = oa + ra + struct.pack(">HH", op, rp)
            assert shard_key(key, 3) == i
        seen += mine
    assert sorted(seen) == everything
