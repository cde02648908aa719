"""The packet ladders of traced streams (`--stream N`): each packet as Wireshark lists it.

Called by the pipeline after a traced connection's segment went through the replay, so the
states after the packet are known. Only traced streams come here: their frames are read a
second time for every TCP option (`analyzer.decode.options`), and the sequence analysis'
counters are compared before and after each packet to name what it was (retransmission,
keep-alive, out of order...). Duplicate ACKs are recognised here, as Wireshark does: no data,
no SYN/FIN/RST, a window that is not zero, at the sender's next sequence number, with the same
ACK and window as the sender's previous segment. Nothing here changes a verdict.
"""

from __future__ import annotations

from typing import Dict, Final, List, Optional, Tuple

from analyzer.decode.options import Option, tcp_options
from analyzer.decode.segment import ACK, FIN, RST, SYN, Segment, flags_str
from analyzer.judge.result import LadderRow
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import SIDES
from analyzer.tcp.endpoint import NO_COUNTS
from analyzer.tcp.states import STATE_NAME

#: At most this many packets of one traced stream are kept for its ladder.
LADDER_LIMIT: Final = 10_000

#: Wireshark's words for the sequence analysis' counters, in `Analysis.FIELDS` order.
ANALYSIS_FLAGS: Final = ("retransmission", "out-of-order", "previous segment not captured",
                         "ACKed unseen segment", "keep-alive", "keep-alive ACK", "zero window")

_Counts = Tuple[Tuple[int, ...], Tuple[int, ...]]


class Tracer:
    """The ladders of the traced streams, built packet by packet."""

    def __init__(self) -> None:
        self.ladders: Dict[int, List[LadderRow]] = {}
        self.counts: Dict[int, _Counts] = {}
        #: stream -> per side, (ack, window) of its last segment, for duplicate ACKs
        self.last: Dict[int, List[Optional[Tuple[int, int]]]] = {}

    def add(self, conn: Connection, seg: Segment, frame: bytes) -> None:
        rows = self.ladders.setdefault(conn.id, [])
        if len(rows) >= LADDER_LIMIT:
            return
        s = conn.side_of(seg)
        x, y = conn.ep[s], conn.ep[1 - s]
        before = self.counts.get(conn.id, (NO_COUNTS, NO_COUNTS))
        after = (conn.ep[0].analysis.counts(), conn.ep[1].analysis.counts())
        self.counts[conn.id] = after
        flags: List[str] = []
        for side in (0, 1):
            for i, name in enumerate(ANALYSIS_FLAGS):
                if after[side][i] > before[side][i] and name not in flags:
                    flags.append(name)
        last = self.last.setdefault(conn.id, [None, None])
        f = seg.flags
        if (seg.paylen == 0 and seg.win and f & ACK and not f & (SYN | FIN | RST)
                and last[s] == (seg.ack, seg.win) and seg.seq == x.next_seq and not flags):
            flags.append("duplicate ACK")
        last[s] = (seg.ack, seg.win) if f & ACK else None
        seq = (seg.seq - x.base_seq) & 0xFFFFFFFF
        ack = None
        if f & ACK:
            ack = seg.ack if y.base_seq < 0 else (seg.ack - y.base_seq) & 0xFFFFFFFF
        if f & SYN:
            window: Optional[int] = seg.win             # a SYN's window is never scaled
        elif not conn.midstream:
            window = seg.win << x.wscale if x.wscale >= 0 and y.wscale >= 0 else seg.win
        else:
            window = None                   # the SYNs were not captured: the scale is unknown
        options = _relative_sack(tcp_options(frame, seg), y.base_seq) if frame else ()
        rows.append(LadderRow(seg.num, seg.ts, SIDES[s], flags_str(f), seq, ack, seg.paylen,
                              STATE_NAME[conn.ep[0].state], STATE_NAME[conn.ep[1].state],
                              seg.win, window, options, tuple(flags), seg.seq,
                              seg.ack if f & ACK else None))


def _relative_sack(options: Tuple[Option, ...], base: int) -> Tuple[Option, ...]:
    """SACK blocks in the data sender's relative numbers, as the ladder's seq column."""
    if base < 0 or not any(name == "sack" for name, _ in options):
        return options
    out = []
    for name, value in options:
        if name == "sack" and isinstance(value, list):
            value = [((a - base) & 0xFFFFFFFF, (b - base) & 0xFFFFFFFF) for a, b in value]
        out.append((name, value))
    return tuple(out)
