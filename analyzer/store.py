"""Finished connections' results, in bounded memory, read back in stream order.

Results arrive in the order connections finish, not in stream order. Up to `budget` of them
are kept in memory; beyond that they are spilled, sorted by stream id, as one run of pickled
records in an anonymous temporary file, and iteration merges the runs (a heap), one
record per run in memory at a time. So a capture of millions of connections needs memory for
the connections open at once plus `budget` results, never for all of them.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from operator import attrgetter
from typing import BinaryIO, Final, Iterator, List, Optional, Tuple

from analyzer.report import ConnResult

#: Results kept in memory before a run is spilled to disk.
DEFAULT_BUDGET: Final = 5_000
#: Results pickled together: one pickle call per block, one block per run in memory when read.
BLOCK = 256

_by_id = attrgetter("id")


class ResultStore:
    """Append results in any order; iterate them (as often as needed) in stream order."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.memory: List[ConnResult] = []
        self.runs: List[tuple] = []          # (offset, count) of each spilled run
        self.file: Optional[BinaryIO] = None
        self.count = 0

    def append(self, r: ConnResult) -> None:
        self.memory.append(r)
        self.count += 1
        if len(self.memory) >= self.budget:
            self._spill()

    def _spill(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="tcpflow-check-")
        self.memory.sort(key=_by_id)
        self.file.seek(0, 2)
        offset = self.file.tell()
        pickler = pickle.Pickler(self.file, protocol=pickle.HIGHEST_PROTOCOL)
        memory = self.memory
        for i in range(0, len(memory), BLOCK):
            pickler.dump(memory[i:i + BLOCK])
            pickler.clear_memo()
        self.runs.append((offset, len(memory)))
        self.memory = []

    def _run(self, offset: int, count: int) -> Iterator[ConnResult]:
        assert self.file is not None            # a run exists only once spilled
        while count > 0:
            self.file.seek(offset)
            block = pickle.load(self.file)
            offset = self.file.tell()
            count -= len(block)
            yield from block

    def __iter__(self) -> Iterator[ConnResult]:
        self.memory.sort(key=_by_id)
        if not self.runs:
            return iter(list(self.memory))
        streams = [self._run(off, n) for off, n in self.runs] + [iter(list(self.memory))]
        return _merge(streams)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> ConnResult:
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


def _merge(streams: List[Iterator[ConnResult]]) -> Iterator[ConnResult]:
    """`heapq.merge(*streams, key=_by_id)`, compiled: a heap of (id, stream, result)."""
    heap: List[Tuple[int, int, ConnResult]] = []
    for i, stream in enumerate(streams):
        first = next(stream, None)
        if first is not None:
            heap.append((first.id, i, first))
    heapq.heapify(heap)
    while heap:
        r, i = heap[0][2], heap[0][1]
        yield r
        nxt = next(streams[i], None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt.id, i, nxt))
