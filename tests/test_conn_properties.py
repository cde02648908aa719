"""Property tests: any sequence of segments, however broken, gives a verdict from the vocabulary."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from analyzer.tcp.flows import FlowTable
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN, Segment
from analyzer.tcp.states import State
from analyzer.judge.verdicts import CLOSES, HANDSHAKES, finalize

A, B = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
FLAG_SETS = [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, FIN, RST, RST | ACK, SYN | FIN,
             FIN | PSH | ACK, SYN | RST]

move = st.tuples(
    st.booleans(),                                   # sender: client or server
    st.sampled_from(FLAG_SETS),
    st.integers(min_value=0, max_value=1500),        # payload length
    st.integers(min_value=-3, max_value=3),          # seq perturbation around "next"
    st.integers(min_value=-3, max_value=3),          # ack perturbation
    st.booleans(),                                   # wildly wrong seq
)


def _segments(moves):
    nxt = {True: 1000, False: 900000}
    out = []
    for i, (client, flags, length, dseq, dack, wild) in enumerate(moves):
        seq = (nxt[client] + dseq + (0x7FFF0000 if wild else 0)) & 0xFFFFFFFF
        ack = (nxt[not client] + dack) & 0xFFFFFFFF if flags & ACK else 0
        src, dst, sp, dp = (A, B, 40000, 80) if client else (B, A, 80, 40000)
        paylen = length if flags & PSH else 0
        seg = Segment(src, dst, sp, dp, seq, ack, flags, 65535, paylen, ts=i * 1_000_000,
                      num=i + 1)
        out.append(seg)
        nxt[client] = (seq + seg.seglen) & 0xFFFFFFFF
    return out


def _replay(moves, tail: float) -> list:
    """Feed the segments through a flow table; the finished connections' results."""
    results = []
    table = FlowTable(lambda c, now: results.append(finalize(c, now, 30_000_000_000)),
                      30_000_000_000)
    segs = _segments(moves)
    for seg in segs:
        table.feed(seg)
    table.flush(segs[-1].ts + int(tail * 1e9))
    return results


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(move, min_size=1, max_size=25), st.floats(min_value=0, max_value=200))
def test_any_segment_sequence_yields_a_verdict(moves, tail):
    results = _replay(moves, tail)
    assert results
    states = {s.value for s in State}
    for r in results:
        assert r.handshake in HANDSHAKES
        assert r.close is None or r.close in CLOSES
        assert r.closed_first in (None, "orig", "resp", "both")
        assert r.reset_by in (None, "orig", "resp")
        assert set(r.final_state) <= states
        for lg in r.lingering:
            assert lg.state in ("CLOSE_WAIT", "TIME_WAIT") and lg.seconds >= 0
    assert [r.id for r in sorted(results, key=lambda r: r.id)] == list(range(len(results)))


@settings(max_examples=200, deadline=None)
@given(st.lists(move, min_size=1, max_size=25))
def test_final_states_agree_with_lingering(moves):
    for r in _replay(moves, 0.0):
        for side, state in zip(("orig", "resp"), r.final_state):
            lingering = {lg.state for lg in r.lingering if lg.side == side}
            if state in ("CLOSE_WAIT", "TIME_WAIT"):
                assert lingering == {state}
            else:
                assert not lingering
