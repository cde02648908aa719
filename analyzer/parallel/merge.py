"""The parent's side of a parallel run: the shards' messages (shard.py) -> the report one
process would have given.

Stream numbers. A shard numbers its connections by their first frame (and a 4-tuple reserved
by an ICMP quote by the quoting frame) and sends every number it takes, in order. The stream
number of the connection numbered `p` is the count of numbers below `p` taken by all shards
together: Wireshark's numbering, in order of first packet, reservations included. It is known
once every shard has sent its numbers up to `p` (`starts` messages carry how far that is).
The results the shards keep for a `ResultStore` (messages `P`) need not wait for it: they are
stored as they come, keyed by `p` (whose order is the stream numbers' order), and numbered
when the store is read, in that order (`ResultStore.numbering`, `Walk`). Other results are
renumbered and passed on as they come, but for the few that finished before the slowest
shard reported their start; those wait. `reused_from` and the findings that name the earlier
connection of a 4-tuple (PORT_REUSE, TIME_WAIT_REUSE: always in the same shard, and earlier)
are renumbered the same way, on arrival.

Everything after that is the single-process run's own code (pipeline.Tally): the sink, the
summary, floods and scans see every result once; their order of arrival differs, and none of
them depends on it. The capture summary is shard 0's (every shard read every frame), with the
counts that the shards split between them added up.

Lines kept in the shards (`ResultStore.shard_lines`: the JSON report's). Each shard keeps
its lines (but those naming an earlier connection, which come here to be renumbered) and
sends them after its end message, sorted by `p` (`L`, then `F`); the report's store merges
them with its own (`ResultStore.numbered_bytes`), as UTF-8 bytes, while it is written: each
line is then taken from the pipe, numbered and written, never decoded or kept here.
`lines_run` reads one shard's.

Memory: the numbers taken (8 bytes a connection, for the renumbering of reuses) and the
results waiting; the results themselves go to the sink as in one process (or wait in the
shards, a message of lines each in the pipe).
"""

from __future__ import annotations

import heapq
import marshal
import pickle
from array import array
from bisect import bisect_left
from collections import Counter
from typing import Any, Callable, Iterator, List, Optional, Tuple, cast

from analyzer.common.native import i64
from analyzer.judge.result import ConnResult, unflat
from analyzer.pipeline import Tally, table_warnings
from analyzer.judge.floods import FloodDetector
from analyzer.judge.scans import Scan, ScanDetector
from analyzer.parallel.shard import LINES_HEAD
from analyzer.report.model import Report, Summary
from analyzer.report.runs import Block, Run
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

#: The findings whose message names the earlier connection on the 4-tuple.
NAMING = frozenset({"PORT_REUSE", "TIME_WAIT_REUSE"})

#: `through` of a shard that has ended: beyond every frame.
_ALL = 1 << 62


class ShardFailed(Exception):
    """A shard stopped without its end message (it crashed, or was killed)."""


class Merger:
    """Takes each shard's messages, in that shard's order (shards interleave freely).

    `work`: the shards encode and choose the results for the sink (`ResultStore.shard_work`,
    messages `P`) and count them themselves; otherwise every result comes (`R`) and is
    counted here."""

    def __init__(self, count: int, settings: Settings,
                 sink: Optional[ResultSink] = None, work: bool = False) -> None:
        self.count = count
        self.settings = settings
        store = ResultStore(settings.result_budget) if sink is None else sink
        self.tally = Tally(settings, store)
        self.store = store
        self.work = work
        self.starts = [array("q") for _ in range(count)]
        self.through = [0] * count
        self.read = [0] * count             # frames each shard has analysed
        self.mark = 0                       # every shard's numbers up to here are known
        #: Results waiting for the slowest shard: (number, arrival, kind, what).
        self.waiting: List[Tuple[int, int, int, Any]] = []
        self.arrived = 0
        self.ends: List[Optional[tuple]] = [None] * count
        #: The counts of the shards that have ended (`tally_parts`), until merged into the
        #: tally: shard by shard in their order, each as soon as it and those before it have
        #: ended (while the others still run); `merged` of them so far.
        self.parts: List[Optional[tuple]] = [None] * count
        self.merged = 0
        #: With `work`, the results the shards keep go into the store at once, keyed by their
        #: first-frame numbers, and are numbered when it is read (`ResultStore.numbering`).
        self.deferred = work and isinstance(store, ResultStore)
        if self.deferred:
            cast(ResultStore, store).numbering = self.walk
            cast(ResultStore, store).starts = list(self.starts)

    def take(self, index: int, chunk: bytes) -> None:
        kind = chunk[:1]
        if kind == b"P" and self.deferred:
            store = cast(ResultStore, self.store)
            objects = store.encode is None
            for p, what in marshal.loads(memoryview(chunk)[1:]):
                if p >= 0:                  # counted in the shard, numbered when read
                    store.put(p, unflat(what) if objects else what)
                    continue
                n = what[0]
                if n <= self.mark:
                    self._pass(n, _RENUMBER, what)
                else:
                    self.arrived += 1
                    heapq.heappush(self.waiting, (n, self.arrived, _RENUMBER, what))
        elif kind == b"R" or kind == b"P":
            mark = self.mark
            for item in marshal.loads(memoryview(chunk)[1:]):
                if kind == b"R":
                    n, what, how = item[0], item, _VALUES
                elif item[0] < 0:
                    n, what, how = item[1][0], item[1], _RENUMBER
                else:
                    n, what, how = item[0], item[1], _KEPT
                if n <= mark:
                    self._pass(n, how, what)
                else:
                    self.arrived += 1
                    heapq.heappush(self.waiting, (n, self.arrived, how, what))
        elif kind == b"S":
            through, numbers = marshal.loads(memoryview(chunk)[1:])
            self.starts[index].frombytes(numbers)
            self.through[index] = self.read[index] = through
            self._advance()
        elif kind == b"E":
            capture, found, counts, notes = pickle.loads(chunk[1:])
            self.ends[index] = (capture, found, None, notes)
            if counts is not None:
                self.parts[index] = tally_parts(marshal.loads(counts))
            self.through[index] = _ALL
            self._advance()
            self._merge_ended()
        elif kind == b"X":                  # a defect in the shard: its traceback
            raise ShardFailed("shard %d of %d failed:\n%s"
                              % (index, self.count, chunk[1:].decode("utf-8", "replace")))
        else:
            raise ShardFailed("shard %d sent an unknown message %r" % (index, kind))

    def _merge_ended(self) -> None:
        while self.merged < self.count and self.ends[self.merged] is not None:
            parts = self.parts[self.merged]
            if parts is not None:
                merge_parts(self.tally, parts)
                self.parts[self.merged] = None
            self.merged += 1

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
        waiting = self.waiting
        while waiting and waiting[0][0] <= mark:
            n, _, how, what = heapq.heappop(waiting)
            self._pass(n, how, what)

    def number(self, p: int) -> int:
        """The stream number of the connection (or reservation) numbered `p` in its shard."""
        n = 0
        for s in self.starts:
            n += bisect_left(s, p)
        return n

    def walk(self) -> Callable[[int], int]:
        """`number`, for connections taken in ascending order (`ResultStore.numbering`)."""
        return Walk(self.starts).number

    def _pass(self, p: int, how: int, what: Any) -> None:
        if how == _KEPT:                    # encoded (or kept) in the shard: counted there
            store = cast(ResultStore, self.store)
            if store.encode is None:
                r = unflat(what)
                r.id = self.number(p)
                store.put(r.id, r)
            else:
                store.put(self.number(p), what)
            return
        r = unflat(what)
        q = r.reused_from
        if q is not None:
            n = self.number(q)
            old, new = "connection %d" % q, "connection %d" % n
            for f in r.findings:
                if f.code in NAMING:
                    f.message = f.message.replace(old, new, 1)
            r.reused_from = n
        r.id = self.number(p)
        if how == _RENUMBER and self.deferred:  # counted in the shard, kept and encoded here
            cast(ResultStore, self.store).put_result(p, r)
        elif how == _RENUMBER:
            self.store.add(r)
        else:
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
        first, found, _, _ = ends[0]
        skipped: Counter = Counter()
        tcp = evicted = bound = parked = forgotten = 0
        error: Optional[str] = None
        interrupted = False
        self._merge_ended()                 # (done as they ended: nothing is left)
        for capture, _, _, (lost, failed) in ends:
            skipped.update(capture.skipped)
            tcp += capture.tcp_packets
            evicted += capture.evicted_early
            bound += capture.memory_bound
            parked += capture.parked
            forgotten += lost
            error = error or failed
            interrupted = interrupted or capture.interrupted
        warnings = first.warnings + tuple(table_warnings(forgotten, evicted, bound, error,
                                                         self.settings))
        capture = first._replace(tcp_packets=tcp, skipped=dict(skipped), warnings=warnings,
                                 evicted_early=evicted, interrupted=interrupted,
                                 memory_bound=bound, parked=parked)
        return self.tally.report(capture, list(found), self.settings.msl, {})


def lines_run(receive: Callable[[], bytes], index: int, count: int) -> Optional[Run]:
    """The lines shard `index` sends after its end (`L` messages, then `F`), as one sorted
    source for the merge (`runs.spans`): its first block read now, each next one when the
    merge reaches it. None when it has none. Raises ShardFailed (the shard stopped before
    `F`, or sent something else)."""
    first = _lines_block(receive, index, count)
    if first is None:
        return None
    return Run(first.keys[0], _blocks(first, receive, index, count))


def _blocks(first: Block, receive: Callable[[], bytes], index: int,
            count: int) -> Iterator[Block]:
    block: Optional[Block] = first
    while block is not None:
        yield block
        block = _lines_block(receive, index, count)


def _lines_block(receive: Callable[[], bytes], index: int, count: int) -> Optional[Block]:
    """The next `L` message of a shard as a block of UTF-8 text (`Block.data`); None at `F`."""
    try:
        chunk = receive()
    except (EOFError, OSError):
        chunk = b""
    kind = chunk[:1]
    if kind == b"F":
        return None
    if kind == b"X":
        raise ShardFailed("shard %d of %d failed:\n%s"
                          % (index, count, chunk[1:].decode("utf-8", "replace")))
    if kind != b"L":
        raise ShardFailed("shard %d of %d stopped before it sent all its connections"
                          % (index, count))
    n = LINES_HEAD.unpack_from(chunk, 1)[0]
    at = 1 + LINES_HEAD.size
    view = memoryview(chunk)
    keys = array("q")
    keys.frombytes(view[at:at + 8 * n])
    ends = array("q")
    ends.frombytes(view[at + 8 * n:at + 16 * n])
    return Block(keys.tolist(), None, "", ends.tolist(), 0, view[at + 16 * n:])  # (no copy)


class Walk:
    """The stream numbers of connections numbered `p` in their shards, asked in ascending
    order of `p`: one step through every shard's numbers for all of them (`_Steps`, `block`
    numbers at a time as a list: an array's items are made into int objects one by one);
    `Merger.number`, a search per connection, for any other order."""

    def __init__(self, starts: List[array], block: int = 4096) -> None:
        self.starts = starts
        self.steps = [_Steps(s, block) for s in starts]
        self.last = -1

    def number(self, p: int) -> int:
        if p < self.last:                   # not ascending: searched
            return sum(bisect_left(s, p) for s in self.starts)
        self.last = p
        n = 0
        for steps in self.steps:
            n += steps.below(p)
        return n


class _Steps:
    """One shard's numbers for `Walk`: the block of them in hand, where it starts in the
    shard's numbers, and the step in it (compiled, each in a machine integer)."""

    def __init__(self, numbers: array, block: int) -> None:
        self.numbers = numbers
        self.size: i64 = block
        self.block: List[int] = numbers[:block].tolist()
        self.base: i64 = 0
        self.at: i64 = 0

    def below(self, p: int) -> int:
        """How many of the shard's numbers are below `p` (asked in ascending order)."""
        block = self.block
        j: i64 = self.at
        while True:
            size: i64 = len(block)
            while j < size and block[j] < p:
                j += 1
            if j < size or size == 0:
                break
            base = self.base = self.base + size          # the next block
            block = self.block = self.numbers[base:base + self.size].tolist()
            j = 0
        self.at = j
        return self.base + j


#: How a result from a shard is passed on: its values, to count and keep here; kept and
#: encoded there; its values, counted there, to renumber and encode here.
_VALUES, _KEPT, _RENUMBER = 0, 1, 2


def tally_parts(counts: tuple) -> Tuple[Summary, FloodDetector, ScanDetector, int]:
    """A shard's counts (`shard.tally_state`) as the objects the parent's tally merges
    (`merge_parts`)."""
    summary, floods, (addresses, values, kinds, scans), dropped = counts
    s = Summary()
    (s.connections, handshakes, closes, resets, lingering, severities, codes,
     s.analysis, s.syn_retransmissions, s.attention) = summary
    s.set_counts(handshakes, closes, resets, lingering, severities, codes)
    f = FloodDetector()
    for server, (a, b, c) in floods.items():
        f.attempts[server] = (array("q", a), array("q", b), array("q", c))
    sc = ScanDetector()
    sources = sc.sources
    i = 0
    for src, kind in zip(addresses, kinds):     # one port, one host, one kind: plain values
        x = Scan(values[i + 2], values[i + 3])
        x.port, x.host, x.kind, x.probes = values[i], values[i + 1], kind, values[i + 4]
        sources[src] = x
        i += 5
    for src, (ports, hosts, several, first_ts, first_frame, probes) in scans.items():
        x = Scan(first_ts, first_frame)
        x.ports, x.hosts, x.kinds, x.probes = set(ports), set(hosts), several, probes
        sources[src] = x
    return s, f, sc, dropped


def merge_parts(tally: Tally, parts: Tuple[Summary, FloodDetector, ScanDetector, int]) -> None:
    """Add a shard's counts (`tally_parts`) to the parent's."""
    s, f, sc, dropped = parts
    tally.summary.merge(s)
    tally.floods.merge(f)
    tally.scans.merge(sc)
    store = tally.results
    if isinstance(store, ResultStore):
        store.dropped(dropped)
