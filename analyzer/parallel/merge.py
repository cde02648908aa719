"""The parent's side of a parallel run: the shards' messages (shard.py) -> the report one
process would have given.

Stream numbers. A shard numbers its connections by their first frame (and a 4-tuple reserved
by an ICMP quote by the quoting frame) and sends every number it takes, in order. The stream
number of the connection numbered `p` is the count of numbers below `p` taken by all shards
together: Wireshark's numbering, in order of first packet, reservations included. It is known
once every shard has sent its numbers up to `p` (`starts` messages carry how far that is), so
results are renumbered and passed on as they come, but for the few that finished before the
slowest shard reported their start; those wait. `reused_from` and the findings that name the
earlier connection of a 4-tuple (PORT_REUSE, TIME_WAIT_REUSE: always in the same shard, and
earlier) are renumbered the same way.

Everything after that is the single-process run's own code (pipeline.Tally): the sink, the
summary, floods and scans see every result once; their order of arrival differs, and none of
them depends on it. The capture summary is shard 0's (every shard read every frame), with the
counts that the shards split between them added up.

Memory: the numbers taken (8 bytes a connection, for the renumbering of reuses) and the
results waiting; the results themselves go to the sink as in one process.
"""

from __future__ import annotations

import marshal
import pickle
from array import array
from bisect import bisect_left
from collections import Counter
from typing import List, Optional, Tuple

from analyzer.common.findings import Finding
from analyzer.judge.result import ConnResult, unflat
from analyzer.pipeline import Tally, evicted_warning
from analyzer.report.model import CaptureSummary, Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

#: The findings whose message names the earlier connection on the 4-tuple.
NAMING = frozenset({"PORT_REUSE", "TIME_WAIT_REUSE"})

#: `through` of a shard that has ended: beyond every frame.
_ALL = 1 << 62


class ShardFailed(Exception):
    """A shard stopped without its end message (it crashed, or was killed)."""


class Merger:
    """Takes each shard's messages, in that shard's order (shards interleave freely)."""

    def __init__(self, count: int, settings: Settings,
                 sink: Optional[ResultSink] = None) -> None:
        self.count = count
        self.settings = settings
        self.tally = Tally(settings, ResultStore(settings.result_budget) if sink is None else sink)
        self.starts = [array("q") for _ in range(count)]
        self.through = [0] * count
        self.read = [0] * count             # frames each shard has analysed
        self.mark = 0                       # every shard's numbers up to here are known
        self.waiting: List[ConnResult] = []
        self.ends: List[Optional[Tuple[CaptureSummary, List[Finding]]]] = [None] * count

    def take(self, index: int, chunk: bytes) -> None:
        kind = chunk[:1]
        if kind == b"R":
            mark = self.mark
            for t in marshal.loads(chunk[1:]):
                r = unflat(t)
                if r.id <= mark:
                    self._pass(r)
                else:
                    self.waiting.append(r)
        elif kind == b"S":
            through, numbers = marshal.loads(chunk[1:])
            self.starts[index].frombytes(numbers)
            self.through[index] = self.read[index] = through
            self._advance()
        elif kind == b"E":
            self.ends[index] = pickle.loads(chunk[1:])
            self.through[index] = _ALL
            self._advance()
        elif kind == b"X":                  # a defect in the shard: its traceback
            raise ShardFailed("shard %d of %d failed:\n%s"
                              % (index, self.count, chunk[1:].decode("utf-8", "replace")))
        else:
            raise ShardFailed("shard %d sent an unknown message %r" % (index, kind))

    def frames(self) -> int:
        """Frames every shard has analysed (progress)."""
        return min(self.read)

    def ended(self, index: int) -> bool:
        return self.ends[index] is not None

    def _advance(self) -> None:
        mark = min(self.through)
        if mark <= self.mark:
            return
        self.mark = mark
        waiting, self.waiting = self.waiting, []
        for r in waiting:
            if r.id <= mark:
                self._pass(r)
            else:
                self.waiting.append(r)

    def number(self, p: int) -> int:
        """The stream number of the connection (or reservation) numbered `p` in its shard."""
        return sum(bisect_left(s, p) for s in self.starts)

    def _pass(self, r: ConnResult) -> None:
        q = r.reused_from
        if q is not None:
            n = self.number(q)
            old, new = "connection %d" % q, "connection %d" % n
            for f in r.findings:
                if f.code in NAMING:
                    f.message = f.message.replace(old, new, 1)
            r.reused_from = n
        r.id = self.number(r.id)
        self.tally.add(r)

    def report(self) -> Report:
        """The report, once every shard has ended."""
        ends = []
        for i, end in enumerate(self.ends):
            if end is None:
                raise ShardFailed("shard %d of %d stopped before the end of the capture"
                                  % (i, self.count))
            ends.append(end)
        assert not self.waiting
        first, found = ends[0]
        skipped: Counter = Counter()
        tcp = evicted = 0
        interrupted = False
        for capture, _ in ends:
            skipped.update(capture.skipped)
            tcp += capture.tcp_packets
            evicted += capture.evicted_early
            interrupted = interrupted or capture.interrupted
        warnings = first.warnings
        if evicted:
            warnings += (evicted_warning(evicted, self.settings.max_live),)
        capture = first._replace(tcp_packets=tcp, skipped=dict(skipped), warnings=warnings,
                                 evicted_early=evicted, interrupted=interrupted)
        return self.tally.report(capture, list(found), self.settings.msl, {})
