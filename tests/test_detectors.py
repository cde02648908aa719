"""The capture-wide detectors (judge/floods.py, judge/scans.py) say the same whatever order the
results come in and however they were split (the shards of a parallel run), and a source's
compact form (one port, one host, one kind of probe) counts as its sets would."""

from __future__ import annotations

import random
from typing import List

from analyzer.judge.floods import FloodDetector
from analyzer.judge.result import ConnResult
from analyzer.judge.scans import ScanDetector

T0 = 1_700_000_000_000_000_000
SERVER = (bytes((192, 0, 2, 10)), 80)


def _result(i: int, src: bytes, dst: bytes, port: int, ts: int,
            handshake: str = "unanswered") -> ConnResult:
    r = ConnResult()
    r.id, r.first_frame, r.start = i, i + 1, ts
    r.orig_raw, r.resp_raw = (src, 40000 + i % 20000), (dst, port)
    r.handshake, r.reset_by, r.findings = handshake, None, []
    return r


def _flood(n: int) -> List[ConnResult]:
    """n SYNs to one server, each from its own source, 1 ms apart, two at each time."""
    return [_result(i, bytes((10, 1, i >> 8 & 255, i & 255)), SERVER[0], SERVER[1],
                    T0 + (i // 2) * 1_000_000) for i in range(n)]


def _texts(findings) -> List[tuple]:
    return [(f.code, f.ts, f.frame, f.message, f.count) for f in findings]


def test_a_flood_is_the_same_finding_in_any_order_and_split():
    results = _flood(300)
    ordered = FloodDetector()
    for r in results:
        ordered.add(r)
    want = _texts(ordered.findings())
    assert [w[0] for w in want] == ["HALF_OPEN_FLOOD"] and "300 SYNs" in want[0][3]
    rng = random.Random(7)
    for _ in range(3):
        shuffled = results[:]
        rng.shuffle(shuffled)
        one, two = FloodDetector(), FloodDetector()
        for k, r in enumerate(shuffled):
            (one if k % 3 else two).add(r)
        one.merge(two)
        assert _texts(one.findings()) == want


def test_scans_count_ports_hosts_and_kinds_in_compact_and_full_form():
    prober = bytes((10, 9, 9, 9))
    results = [_result(i, prober, SERVER[0], 1000 + i, T0 + i) for i in range(25)]
    results += [_result(100 + i, prober, bytes((192, 0, 2, 20 + i % 3)), 22, T0 + 100 + i,
                        "refused") for i in range(6)]
    # a spoofed flood: one probe from each source, none of them a scan
    results += [_result(200 + i, bytes((10, 2, 0, i)), SERVER[0], 80, T0 + 200 + i)
                for i in range(40)]
    whole = ScanDetector()
    for r in results:
        whole.add(r)
    want = _texts(whole.findings())
    assert len(want) == 1 and want[0][0] == "PORT_SCAN"
    assert "probed 26 ports on 4 hosts (31 probes: 6 SYN refused, 25 SYN unanswered)" \
        in want[0][3]
    assert want[0][4] == 31
    rng = random.Random(3)
    for _ in range(3):
        parts = [ScanDetector() for _ in range(3)]
        for r in results:
            rng.choice(parts).add(r)
        parts[0].merge(parts[1])
        parts[0].merge(parts[2])
        assert _texts(parts[0].findings()) == want
    lone = whole.sources[bytes((10, 2, 0, 5))]
    assert (lone.ports, lone.hosts, lone.kinds) == (None, None, None)     # the compact form
    assert (lone.port_set(), lone.nhosts(), lone.kind_counts()) == ({80}, 1, {"SYN unanswered": 1})
