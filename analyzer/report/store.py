"""Finished connections' results, in bounded memory, read back in stream order.

Results arrive in the order connections finish, not in stream order. Up to `budget` of them
are kept in memory; beyond that they are spilled, sorted by stream id, as one run of records
in an anonymous temporary file (blocks written with `marshal`: results as their plain values,
`ConnResult.flat()`, which costs a fraction of pickling the objects; pickle for an encoding
marshal cannot write), and iteration merges the runs (a heap), one block of
records per run in memory at a time. So a capture of millions of connections needs memory for
the connections open at once plus `budget` results, never for all of them.

A store is the default `ResultSink` of `analyze()`. Renderers make their own: with an
`encode` function a store keeps what it returns (the JSON writer's line of text) instead of
the result object — a string pickles and unpickles as one copy, where a result is a tree of
objects to pickle, rebuild and free; with a `keep` predicate it keeps only the results it
accepts (the terminal report's connections needing attention), while `len()` still counts
every result added; with `best` and `rank` it keeps only the `best` of lowest rank (the first
in stream order among equals), in memory (the terminal report's `--limit` most severe). In a parallel run the parent's store is keyed by first frame instead of
stream number, and numbered as it is read (`numbering`, set by parallel/merge.py).
"""

from __future__ import annotations

import heapq
import marshal
import pickle
import struct
import tempfile
from typing import Any, BinaryIO, Callable, Final, Iterator, List, Optional, Protocol, Tuple

from analyzer.judge.result import ConnResult, unflat

#: Results kept in memory before a run is spilled to disk.
DEFAULT_BUDGET: Final = 5_000
#: Results written together: one call per block, one block per run in memory when read.
BLOCK = 256
#: A block's header: how it was written (`_MARSHAL`, `_FLAT`: marshal, results flattened;
#: `_PICKLE`) and its length in bytes.
_HEADER: Final = struct.Struct("<BQ")
_MARSHAL: Final = 0
_FLAT: Final = 1
_PICKLE: Final = 2

Record = Tuple[int, Any]                # (stream id, the result or its encoding)


class ResultSink(Protocol):
    """Where `analyze()` sends each finished connection's result; the report's `connections`.

    `add` is called once per connection, in the order connections finish; iteration gives
    what the sink kept in stream order, and `len()` the number of results added."""

    def add(self, r: ConnResult) -> None: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class ResultStore:
    """Append results in any order; iterate them (as often as needed) in stream order."""

    def __init__(self, budget: int = DEFAULT_BUDGET,
                 encode: Optional[Callable[[ConnResult], Any]] = None,
                 keep: Optional[Callable[[ConnResult], bool]] = None,
                 relabel: Optional[Callable[[Any, int], Any]] = None,
                 unnumbered: Optional[Callable[[ConnResult], Any]] = None,
                 best: int = 0, rank: Optional[Callable[[Any], int]] = None) -> None:
        self.budget = budget
        self.encode = encode
        self.keep = keep
        #: `relabel(item, n)`: the encoding `unnumbered` made (or `encode`, with another stream
        #: number), with number `n` (what lets the shards of a parallel run encode:
        #: `shard_work`).
        self.relabel = relabel
        self.unnumbered = unnumbered
        #: Set by a parallel run's merge: the keys `put` gives are first-frame numbers, whose
        #: order is the stream numbers' order; `numbering()` gives a function from each key, in
        #: ascending order, to its stream number, and iteration relabels (or renumbers) each
        #: item with it. None: the keys are the stream numbers.
        self.numbering: Optional[Callable[[], Callable[[int], int]]] = None
        self.memory: List[Record] = []
        self.runs: List[Tuple[int, int]] = []      # (offset, count) of each spilled run
        self.file: Optional[BinaryIO] = None
        self.count = 0
        #: With `best` (at most `budget`) and `rank`: only the `best` records of lowest
        #: (rank(item), key) are kept, in memory (a heap whose top is the one to drop next:
        #: (-rank, -key, item)); a report that lists the N most severe needs no others.
        self.best = best if rank is not None and 0 < best <= budget else 0
        self.rank = rank
        self.heap: List[Tuple[int, int, Any]] = []

    def add(self, r: ConnResult) -> None:
        self.count += 1
        if self.keep is not None and not self.keep(r):
            return
        if self.best:
            self._offer(r.id, r if self.encode is None else self.encode(r))
            return
        self.memory.append((r.id, r if self.encode is None else self.encode(r)))
        if len(self.memory) >= self.budget:
            self._spill()

    def _offer(self, key: int, item: Any) -> None:
        """An item for a store that keeps the `best` lowest (rank, key) only."""
        assert self.rank is not None
        offer(self.heap, self.best, self.rank(item), key, item)

    def shard_work(self) -> Optional[Tuple[Optional[Callable[[ConnResult], Any]],
                                           Optional[Callable[[ConnResult], bool]],
                                           Optional[Tuple[int, Callable[[Any], int]]]]]:
        """What the shards of a parallel run may do for this store: `(encode, keep, best)`,
        with `put` and `dropped` taking what they did; None when an encoding cannot be
        renumbered. `best`: `(best, rank)` when the store keeps only the `best` results of
        lowest rank and keeps results themselves: a shard then sends only its own `best`
        (those of the whole run are among them: the keys, first-frame numbers, order the
        results as stream numbers do), the others counted as not kept."""
        if self.encode is not None and self.relabel is None:
            return None
        best = (self.best, self.rank) if self.best and self.rank is not None and \
            self.encode is None else None
        return self.encode if self.unnumbered is None else self.unnumbered, self.keep, best

    def put(self, n: int, item: Any) -> None:
        """A kept result encoded in a shard with another number: as stream `n` (with
        `numbering`: as the key `n`, relabelled when iterated)."""
        self.count += 1
        relabel = self.relabel
        item = item if relabel is None or self.numbering is not None else relabel(item, n)
        if self.best:
            self._offer(n, item)
            return
        self.memory.append((n, item))
        if len(self.memory) >= self.budget:
            self._spill()

    def put_result(self, n: int, r: ConnResult) -> None:
        """`put` for a kept result that has its stream number (`r.id`) already."""
        if self.encode is None:
            self.put(n, r)
        else:
            self.put(n, (self.encode if self.unnumbered is None else self.unnumbered)(r))

    def dropped(self, n: int) -> None:
        """`n` results a shard did not keep (`keep`), counted."""
        self.count += n

    def _spill(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="tcpflow-check-")
        self.memory.sort(key=_record_id)
        self.file.seek(0, 2)
        offset = self.file.tell()
        memory = self.memory
        write = self.file.write
        for i in range(0, len(memory), BLOCK):
            block = memory[i:i + BLOCK]
            if self.encode is None:
                kind, data = _FLAT, marshal.dumps([(n, r.flat()) for n, r in block])
            else:
                try:
                    kind, data = _MARSHAL, marshal.dumps(block)
                except ValueError:          # an encoding marshal cannot write
                    kind, data = _PICKLE, pickle.dumps(block, pickle.HIGHEST_PROTOCOL)
            write(_HEADER.pack(kind, len(data)))
            write(data)
        self.runs.append((offset, len(memory)))
        self.memory = []

    def _blocks(self, offset: int, count: int) -> Iterator[List[Record]]:
        """The blocks of the run written at `offset` (`count` records), one at a time."""
        assert self.file is not None            # a run exists only once spilled
        while count > 0:
            self.file.seek(offset)
            kind, size = _HEADER.unpack(self.file.read(_HEADER.size))
            data = self.file.read(size)
            offset += _HEADER.size + size
            if kind == _FLAT:
                block: List[Record] = [(n, unflat(t)) for n, t in marshal.loads(data)]
            elif kind == _MARSHAL:
                block = marshal.loads(data)
            else:
                block = pickle.loads(data)
            count -= len(block)
            yield block

    def __iter__(self) -> Iterator[Any]:
        """The results (or their encodings) in stream order; with `keep`, those it kept."""
        if self.best:
            self.memory = [(-nkey, item) for _, nkey, item in self.heap]
        self.memory.sort(key=_record_id)
        numbering = self.numbering
        if not self.runs and numbering is None:
            return (item for _, item in list(self.memory))
        sources = [self._blocks(off, n) for off, n in self.runs] + [iter([list(self.memory)])]
        return _merge(sources, None if numbering is None else numbering(), self.relabel,
                      self.encode is None)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        for n, r in enumerate(self):
            if n == i:
                return r
        raise IndexError(i)

    def __bool__(self) -> bool:
        return self.count > 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def offer(heap: List[Tuple[int, int, Any]], best: int, rank: int, key: int, item: Any) -> None:
    """`item` (of `rank`, under `key`) into `heap`, which keeps the `best` items of lowest
    (rank, key): a heap whose top is the one to drop next, (-rank, -key, item). Keys are
    unique, so items are never compared."""
    if len(heap) < best:
        heapq.heappush(heap, (-rank, -key, item))
    else:
        top = heap[0]
        if rank < -top[0] or (rank == -top[0] and key < -top[1]):
            heapq.heapreplace(heap, (-rank, -key, item))


def _record_id(record: Record) -> int:
    return record[0]


def _merge(sources: List[Iterator[List[Record]]], number: Optional[Callable[[int], int]] = None,
           relabel: Optional[Callable[[Any, int], Any]] = None,
           objects: bool = False) -> Iterator[Any]:
    """The items of sorted runs, each given as its blocks of records, merged by key (a heap of
    (key, run)); with `number` (keys are first-frame numbers: `numbering`), each item with its
    stream number: relabelled (`relabel`), or its `id` set (`objects`: results). One
    generator for the whole read: a record is taken from its block in place, a run's next
    block read when one is used up. Runs spilled one after another overlap only near their
    ends, so the run at the top of the heap gives records without the heap while they come
    before the next run's head (the order is the heap's: (key, run))."""
    blocks: List[List[Record]] = []
    at: List[int] = []
    heap: List[Tuple[int, int]] = []
    for i, source in enumerate(sources):
        block = next(source, [])
        blocks.append(block)
        at.append(0)
        if block:
            heap.append((block[0][0], i))
    heapq.heapify(heap)
    while heap:
        key, i = heapq.heappop(heap)
        others = len(heap) > 0                  # another run's head bounds this run's turn
        bound, bound_run = heap[0] if others else (0, 0)
        block = blocks[i]
        j = at[i]
        while True:
            item = block[j][1]
            j += 1
            if j == len(block):
                block = blocks[i] = next(sources[i], [])
                j = 0
            if number is not None:
                n = number(key)
                if relabel is not None:
                    item = relabel(item, n)
                elif objects:
                    item.id = n
            yield item
            if j >= len(block):                 # this run is used up
                break
            key = block[j][0]
            if others and (key > bound or (key == bound and i > bound_run)):
                at[i] = j
                heapq.heappush(heap, (key, i))
                break
