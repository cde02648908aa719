"""The packets behind the pictures: a second, bounded read of the capture for chosen streams.

Which connections get a sequence diagram is known only when the analysis has finished (they
are the ones needing attention), so the HTML report reads the capture again, with the same
settings (hence the same stream ids), tracing just those streams, and stops at the last frame
of the last one. What it keeps per stream is bounded, whatever the connection's length:

* rows for the sequence diagram (`LadderRow`s made by the ladder's own `ladder_row`, so the
  states are the ladder's): the first `HEAD` packets, the last `TAIL`, and `CONTEXT` packets
  either side of each frame that raised a finding; the packets between are counted, not kept;
* the time-sequence graph as `BINS` time bins per direction (lowest and highest relative
  sequence number sent, the peer's highest ACK), with up to `MARKS` retransmissions and zero
  windows each marked individually (the rest are counted).

So memory is O(streams x (HEAD + TAIL + findings x CONTEXT + BINS)), never O(packets). Each
row also carries the raw window and the sequence-analysis counters that the packet moved
(retransmission, out of order, ...), read from the sender's counters before and after it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Deque, Dict, Final, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from analyzer.decode.segment import FIN, SYN, Segment
from analyzer.judge.result import ConnResult, LadderRow
from analyzer.judge.ladder import ladder_row
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import NO_COUNTS, Analysis

HEAD: Final = 40
TAIL: Final = 20
CONTEXT: Final = 3
BINS: Final = 400
MARKS: Final = 200

FIELDS: Final = Analysis.FIELDS


class Row(NamedTuple):
    """One drawn packet: its ladder row, its number in the stream, window and analysis marks."""
    number: int             # 0-based packet number within the stream
    ladder: LadderRow
    win: int                # the window field as sent (not scaled)
    marks: Tuple[str, ...]  # Analysis.FIELDS names this packet counted (e.g. "retransmissions")


class Graph:
    """A time-sequence graph of one direction: what one side sent, what the other acked."""

    __slots__ = ("lo", "hi", "ack", "retrans", "zero", "more_marks", "top")

    def __init__(self) -> None:
        self.lo: List[Optional[int]] = [None] * BINS     # lowest relative seq sent in the bin
        self.hi: List[Optional[int]] = [None] * BINS     # highest seq + length (+1 SYN/FIN)
        self.ack: List[Optional[int]] = [None] * BINS    # the peer's highest ACK in the bin
        self.retrans: List[Tuple[int, int, int]] = []    # (ns from start, seq, end): resends
        self.zero: List[Tuple[int, int]] = []            # (ns from start, ack): peer's window 0
        self.more_marks = 0                              # marks beyond MARKS, counted only
        self.top = 0                                     # the highest seq or ack seen


class Trace:
    """What is kept of one stream."""

    def __init__(self, result: ConnResult) -> None:
        self.result = result
        self.findings = {f.frame for f in result.findings}
        self.start = result.start
        self.span = max(result.end - result.start, 1)
        self.rows: List[Row] = []
        self.recent: Deque[Row] = deque(maxlen=TAIL)
        self.after = 0                  # rows still to keep after a finding's frame
        self.count = 0
        self.counts = [NO_COUNTS, NO_COUNTS]
        self.syn = [False, False]
        self.graphs = (Graph(), Graph())

    def add(self, conn: Connection, seg: Segment) -> None:
        s = conn.side_of(seg)
        counts = conn.ep[s].analysis.counts()
        before = self.counts[s]
        marks: Tuple[str, ...] = ()
        if counts is not before and counts != before:
            marks = tuple(FIELDS[i] for i in range(len(FIELDS)) if counts[i] > before[i])
            self.counts[s] = counts
        if seg.flags & SYN:
            if self.syn[s]:
                marks += ("syn_retransmission",)
            self.syn[s] = True
        lad = ladder_row(conn, seg)
        row = Row(self.count, lad, seg.win, marks)
        self.count += 1
        self._graph(s, row, seg)
        at_finding = lad.frame in self.findings
        if row.number < HEAD or self.after or at_finding:
            if at_finding and self.rows and row.number >= HEAD:
                last = self.rows[-1].number          # the packets just before it, not kept yet
                self.rows.extend(r for r in list(self.recent)[-CONTEXT:] if r.number > last)
            self.after = CONTEXT if at_finding else max(self.after - 1, 0)
            self.rows.append(row)
        else:
            self.recent.append(row)

    def _graph(self, s: int, row: Row, seg: Segment) -> None:
        lad = row.ladder
        b = min((lad.ts - self.start) * BINS // self.span, BINS - 1) if lad.ts > self.start else 0
        g = self.graphs[s]
        end = lad.seq + lad.length + (1 if seg.flags & (SYN | FIN) else 0)
        if lad.length or seg.flags & (SYN | FIN):
            lo, hi = g.lo[b], g.hi[b]
            g.lo[b] = lad.seq if lo is None or lad.seq < lo else lo
            g.hi[b] = end if hi is None or end > hi else hi
            if end > g.top:
                g.top = end
            if "retransmissions" in row.marks or "syn_retransmission" in row.marks:
                if len(g.retrans) < MARKS:
                    g.retrans.append((lad.ts - self.start, lad.seq, end))
                else:
                    g.more_marks += 1
        peer = self.graphs[1 - s]               # this packet's ACK is about the peer's data
        if lad.ack is not None:
            a = peer.ack[b]
            peer.ack[b] = lad.ack if a is None or lad.ack > a else a
            if lad.ack > peer.top:
                peer.top = lad.ack
            if row.win == 0 and not seg.flags & (SYN | FIN) and "R" not in lad.flags:
                if len(peer.zero) < MARKS:
                    peer.zero.append((lad.ts - self.start, lad.ack))
                else:
                    peer.more_marks += 1

    def finish(self) -> None:
        kept = {r.number for r in self.rows}
        self.rows.extend(r for r in self.recent if r.number not in kept)
        self.rows.sort(key=lambda r: r.number)
        self.recent.clear()

    @property
    def complete(self) -> bool:
        """Every packet of the stream is drawn."""
        return len(self.rows) == self.count


def trace(paths: Sequence[str], settings: Settings,
          results: Iterable[ConnResult]) -> Dict[int, Trace]:
    """Read the capture again and keep what the diagrams of `results` need (stream id ->
    `Trace`). Stops at the last frame of the last stream asked for."""
    traces = {r.id: Trace(r) for r in results}
    if not traces:
        return traces
    last = max(t.result.last_frame for t in traces.values())

    def on_packet(conn: Connection, seg: Segment) -> bool:
        t = traces.get(conn.id)
        if t is not None:
            t.add(conn, seg)
        return seg.num >= last

    analyze(list(paths), dataclasses.replace(settings, ladders=frozenset(traces)),
            sink=_Nothing(), tracer=on_packet)
    for t in traces.values():
        t.finish()
    return traces


class _Nothing:
    """A result sink that keeps nothing (the second read wants packets, not results)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, r: ConnResult) -> None:
        self.count += 1

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return self.count
