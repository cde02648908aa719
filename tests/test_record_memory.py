"""What keeps a connection's record small holds: no reference cycle through it (the compiled
build makes its objects without the cyclic collector's header, analyzer/common/native.py),
histories shared, FINs as plain ints, the memory of recent connections exact for any time,
and live connections counting toward the held bound (finished ones give way). Real bytes
throughout: synth builds the packets, the analyzer reads a capture file.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, List

import pytest

from conftest import REPO
from analyzer import build
from analyzer.decode.segment import FIN, RST, ACK
from analyzer.tcp.endpoint import QUIET
from analyzer.judge.verdicts import finalize
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import fin_acks_peer, fin_frame, fin_side
from analyzer.tcp.flows import FlowTable
from analyzer.tcp.frozen import RECORDS, fields, freeze, thaw
from analyzer.tcp.reuse import RecentConnections
from analyzer.testing.synth import Dialog, merge, write_pcap
from test_frozen import segments
from test_parked import UNBOUNDED


def _connections(path: Path) -> List[Connection]:
    got: List[Connection] = []
    table = FlowTable(lambda c, now: got.append(c), 30_000_000_000)
    segs = segments(path)
    for seg in segs:
        table.feed(seg)
    table.flush(segs[-1].ts if segs else 0)
    return got


def _capture(tmp_path: Path, dialogs: List[Dialog], name: str = "c.pcap") -> Path:
    path = tmp_path / name
    write_pcap(path, merge(*dialogs))
    return path


def _cycle(obj: Any, path: List[int], done: set) -> bool:
    """Whether a reference from `obj` (through record attributes and containers) leads back
    to an object on `path`."""
    if id(obj) in path:
        return True
    if id(obj) in done:
        return False
    if type(obj) in RECORDS:
        children = [getattr(obj, n) for n in fields(type(obj))]
    elif isinstance(obj, (tuple, list, set, frozenset)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    else:
        return False
    path.append(id(obj))
    found = any(_cycle(c, path, done) for c in children)
    path.pop()
    done.add(id(obj))
    return found


@pytest.mark.parametrize("sample", sorted(p.name for p in (REPO / "samples").glob("*.pcap*")))
def test_no_reference_cycle_runs_through_a_connections_record(sample):
    # The record classes are declared acyclic for the compiled build: an object of theirs
    # never leads back to itself (a back reference would be a leak there).
    for conn in _connections(REPO / "samples" / sample):
        assert not _cycle(conn, [], set()), conn.id


def test_a_back_reference_is_a_cycle_the_test_sees(tmp_path):
    (conn,) = _connections(_capture(tmp_path, [Dialog().handshake().data("c", 10)]))
    conn.inferred_fin = (conn,)
    assert _cycle(conn, [], set())


def _dialog(i: int, t0: float = 1_700_000_000.0) -> Dialog:
    return Dialog(client=("10.0.%d.%d" % (i >> 8, i & 255), 40000 + i),
                  server=("192.0.2.1", 443), t0=t0 + i * 0.01, step=0.001)


def _records(obj: Any, found: List[Any]) -> List[Any]:
    """The record objects `obj` leads to (itself included), each once; not the shared
    constants."""
    if type(obj) in RECORDS and obj is not QUIET:
        if any(o is obj for o in found):
            return found
        found.append(obj)
        children = [getattr(obj, n) for n in fields(type(obj))]
    elif isinstance(obj, (tuple, list)):
        children = list(obj)
    else:
        return found
    for child in children:
        _records(child, found)
    return found


def _pooled(obj: Any) -> int:
    """The bytes the allocator gives an object (16-byte size classes)."""
    return (sys.getsizeof(obj) + 15) & ~15


def test_a_json_connections_zeek_view_is_one_object_of_144_bytes(tmp_path):
    # Zeek's view is itself Zeek's endpoint of our originator and holds our responder's in
    # fields of its own: one object a connection, and the roles are flags; an ordinary
    # connection, live or closed, has nothing else (no ZeekRare: a SYN's and a pure FIN's
    # history numbers need no field of their own).
    live = _dialog(0).handshake().data("c", 100).data("s", 1400).ack("c")
    closed = _dialog(1).handshake().data("c", 100).data("s", 1400).ack("c").fin("c").fin("s")
    closed.ack("c")
    for conn in _connections(_capture(tmp_path, [live, closed])):
        kinds = Counter(type(o).__name__ for o in _records(conn, []))
        assert kinds == {"Connection": 1, "Endpoint": 2, "ZeekView": 1}
        view = conn.zeek
        assert view is not None and view.z0 is view and view.rare is None
        assert view.zorig is view and view.history in ("ShADd", "ShADdFf")
        assert view.z1.state == view.r_state and view.z1.size(view.z0) == 1400
        if build() == "compiled":         # (pure Python objects have their dict of slots)
            assert _pooled(view) == 144
            assert _pooled(conn.e0) <= 192    # (counters of 32 bits beside the flags)
            assert _pooled(conn) <= 208       # (the first packet held in the view's slot)


def _odd_both_ways() -> Dialog:
    """Each side retransmits, advertises a zero window and sends a segment beyond a hole (a
    content gap the peer's ACK then covers): T, W and G from both, in the responder's
    endpoint's rare facts as in the originator's."""
    d = _dialog(0).handshake().data("c", 100).data("s", 1400)
    d.data("c", 100, seq=d.nxt["c"] - 100, advance=False)          # T
    d.data("s", 1400, seq=d.nxt["s"] - 1400, advance=False)        # t
    d.ack("c", win=0).ack("s", win=0)                              # W, a w
    d.data("c", 100, seq=d.nxt["c"] + 100, advance=False)          # beyond a hole ...
    d.ack("s", ack=d.nxt["c"] + 200)                               # ... acked: G
    d.data("s", 1000, seq=d.nxt["s"] + 1000, advance=False)
    d.ack("c", ack=d.nxt["s"] + 2000)                              # g
    return d


def test_the_responders_folded_endpoint_keeps_its_rare_facts(tmp_path):
    # Our responder's Zeek endpoint lives in the view's own fields: its counts and holes are
    # its own (not the originator's), across every packet, into the history and conn_state.
    d = _odd_both_ways()
    (conn,) = _connections(_capture(tmp_path, [d]))
    view = conn.zeek
    assert view.history == "ShADdTtWawGg"
    z0, z1 = view.z0, view.z1
    assert (z0.rxmt, z0.win0, z0.gap) == (1, 1, 1) and (z1.rxmt, z1.win0, z1.gap) == (1, 1, 1)
    assert view.rare is not None and view.rare.resp is not None
    result = finalize(conn, conn.last_ts, 30_000_000_000)
    assert (result.conn_state, result.history) == ("S1", "ShADdTtWawGg")


def test_a_view_parked_between_any_two_packets_gives_the_same_labels(tmp_path):
    # Both endpoints of the folded view go into a parked record and come back: a connection
    # parked and brought back between every two of its packets ends with the same conn_state
    # and history as one never parked, from either side's packets.
    d = _odd_both_ways().fin("s").fin("c").ack("s")
    path = _capture(tmp_path, [d])
    (whole,) = _connections(path)
    expect = (whole.zeek.history, finalize(whole, whole.last_ts, 30_000_000_000).conn_state)
    assert expect == ("ShADdTtWawGgfF", "SF")
    segs = segments(path)
    for cut in range(2, len(segs)):
        table = FlowTable(lambda c, now: None, 30_000_000_000)
        for seg in segs[:cut]:
            table.feed(seg)
        (conn,) = table.connections()
        back = thaw(freeze(conn))
        assert back.zeek.z1.last == conn.zeek.z1.last
        assert (back.zeek.z1.rare is None) == (conn.zeek.z1.rare is None)
        for seg in segs[cut:]:
            back.on_segment(seg)
        got = (back.zeek.history, finalize(back, back.last_ts, 30_000_000_000).conn_state)
        assert got == expect, cut


def test_a_fin_with_rst_keeps_the_last_pure_fins_number_aside(tmp_path):
    # The one case where the view's endpoint needs its ZeekRare for FINs: a FIN with RST
    # after a FIN moved the FIN's end, not the history's last FIN.
    d = _dialog(0).handshake().data("c", 100).fin("c")
    d.send("c", FIN | RST | ACK, seq=d.nxt["c"] + 50, advance=False)
    (conn,) = _connections(_capture(tmp_path, [d]))
    e = conn.zeek.z0
    assert e.rare is not None and e.rare.hl_fin_kept and e.hl_fin == 101
    assert e.fin_seq == 153 and conn.zeek.history == "ShADFI"


def test_connections_with_the_same_history_share_its_string(tmp_path):
    dialogs = [_dialog(i).handshake().data("c", 100).data("s", 1400).ack("c")
               .fin("c").fin("s").ack("c") for i in range(3)]
    conns = _connections(_capture(tmp_path, dialogs))
    histories = [c.zeek.history for c in conns]
    assert histories[0] == "ShADdFf" and histories.count(histories[0]) == 3
    assert histories[0] is histories[1] is histories[2]


def test_fins_are_two_at_most_each_one_int(tmp_path):
    d = _dialog(0).handshake().data("c", 100).fin("c").fin("s").ack("c")
    path = _capture(tmp_path, [d])
    (conn,) = _connections(path)
    fin_frames = [s.num for s in segments(path) if s.flags & 1]
    assert len(conn.fins) == 2
    assert [fin_frame(f) for f in conn.fins] == fin_frames
    assert [fin_side(f) for f in conn.fins] == [0, 1]
    assert [fin_acks_peer(f) for f in conn.fins] == [False, True]    # the FIN+ACK acks it
    assert finalize(conn, conn.last_ts, 30_000_000_000).close == "three_segment"
    with pytest.raises(ValueError):
        conn.fins = conn.fins + conn.fins[:1]
    conn.fins = conn.fins[:1]
    assert len(conn.fins) == 1 and fin_side(conn.fins[0]) == 0
    conn.fins = ()
    assert conn.fins == ()


@pytest.mark.parametrize("last_ts", [-3 * 10 ** 18, 0, 1_700_000_000 * 10 ** 9, 2 ** 70])
def test_recent_connections_keep_any_time_and_stream_id_exactly(tmp_path, last_ts):
    first = _dialog(0, t0=100.0).handshake().fin("c").fin("s").ack("c")
    path = _capture(tmp_path, [first], "a.pcap")
    (old,) = _connections(path)
    syn = segments(_capture(tmp_path, [_dialog(0, t0=0).handshake()], "b.pcap"))[0]
    recent = RecentConnections(1_000_000_000)       # 4 x MSL + 10 s: 14 s
    old.id = 2 ** 40 + 7
    old.last_ts = last_ts
    recent.remember(b"k", old)
    (new,) = _connections(path)
    syn.ts = last_ts + 13_000_000_000
    recent.note_if_reused(b"k", new, syn)
    assert new.reused_from == 2 ** 40 + 7 and "PORT_REUSE" in new.findings
    assert "13.0 s after its last packet" in new.findings["PORT_REUSE"].message
    recent.remember(b"k", old)
    recent.forget_stale(last_ts + 13_999_999_999)
    assert recent.entries
    recent.forget_stale(last_ts + 14_000_000_000)
    assert not recent.entries


def _held(path: Path, **bounds: int) -> tuple:
    results: List[Any] = []
    table = FlowTable(lambda c, now: results.append(
        (c.id, finalize(c, now, 60_000_000_000).flat())), 30_000_000_000, **bounds)
    most = 0
    segs = segments(path)
    for seg in segs:
        table.feed(seg)
        most = max(most, table.size)
    table.flush(segs[-1].ts)
    return sorted(results, key=lambda r: r[0]), table.parked.held, most


def test_live_connections_count_toward_the_held_bound(tmp_path):
    # 30 connections stay open all along; 40 more open and close behind them. With the held
    # bound at 20 connections in memory, the finished ones give way as they finish (the open
    # ones alone are past it): in memory stay the open ones and about one finished one.
    dialogs = [_dialog(i).handshake().data("c", 10).data("s", 10).ack("c") for i in range(30)]
    dialogs += [_dialog(i, t0=1_700_000_001.0).handshake().data("c", 10).fin("c").fin("s")
                .ack("c") for i in range(30, 70)]
    path = _capture(tmp_path, dialogs)
    results, held, most = _held(path, max_held=20)
    results0, held0, most0 = _held(path, max_live=UNBOUNDED)
    assert results == results0 and held0 == 0 and most0 >= 60
    assert held >= 35 and most <= 32


def test_the_tables_dict_is_made_afresh_once_its_connections_are_gone(tmp_path):
    # A dict keeps the table it grew to after its keys are deleted: the flow table's is copied
    # into one of its size at a sweep, so that what thousands of finished connections left
    # behind does not stay in memory (and the connections found stay the same).
    n = 6000
    dialogs = [Dialog(client=("10.%d.%d.1" % (i >> 8, i & 255), 40000),
                      server=("192.0.2.1", 443), t0=1_700_000_000.0 + i * 0.0001, step=0.00001)
               .handshake().fin("c").fin("s").ack("c") for i in range(n)]
    late = Dialog(client=("10.255.0.1", 40000), server=("192.0.2.1", 443),
                  t0=1_700_000_010.0).handshake()
    path = _capture(tmp_path, dialogs + [late])
    done: List[Connection] = []
    table = FlowTable(lambda c, now: done.append(c), 100_000_000)       # MSL 0.1 s
    segs = segments(path)
    peak = 0
    for seg in segs:
        table.feed(seg)
        peak = max(peak, sys.getsizeof(table.live))
    assert len(done) == n and len(table.live) == 2          # the late one's two keys
    assert peak > 400_000 and sys.getsizeof(table.live) < 80 * 2 + 65536
    conn = table.feed(segs[-1])                             # (found as before)
    assert conn.id == n and table.live[conn.key] is conn and table.live[conn.rkey] is conn
