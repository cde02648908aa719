"""Finished connections' results, in bounded memory, read back in stream order.

Results arrive in the order connections finish, not in stream order. Up to `budget` of them
are kept in memory; beyond that they are spilled, sorted by stream id, as one run of records
in an anonymous temporary file, and iteration merges the runs (a heap of their next keys),
one block of records per run in memory at a time, and a run's first block read only when the
merge reaches it. So a capture of millions of connections needs memory for the connections
open at once plus `budget` results, never for all of them.

Text (what the JSON writer keeps: one line a connection) is kept as keys and lines, bounded
also by its characters (`char_budget`: a long line's share of memory is twenty times a
result's), and read back a stretch of lines at a time (`chunks`; as UTF-8 bytes,
`raw_chunks`). How runs are written, read
and merged: report/runs.py.

A store is the default `ResultSink` of `analyze()`. Renderers make their own: with an
`encode` function a store keeps what it returns (the JSON writer's line of text) instead of
the result object; with a `keep` predicate it keeps only the results it
accepts (the terminal report's connections needing attention), while `len()` still counts
every result added; with `best` and `rank` it keeps only the `best` of lowest rank (the first
in stream order among equals), in memory (the terminal report's `--limit` most severe). In a parallel run the parent's store is keyed by first frame instead of
stream number, and numbered as it is read (`numbering`, set by parallel/merge.py).
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Final, Iterator, List, Optional, Protocol, Tuple

from analyzer.judge.result import ConnResult
from analyzer.report.runs import (Record, Run, RunFile, chunks, items, raw_chunks, record_id,
                                  records_block, spans, text_run)

#: Results kept in memory before a run is spilled to disk.
DEFAULT_BUDGET: Final = 5_000
#: Characters of text (`sep`-joined lines) kept in memory before a run is spilled: about 800
#: JSON lines.
DEFAULT_CHARS: Final = 1 << 20
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
                 best: int = 0, rank: Optional[Callable[[Any], int]] = None,
                 sep: str = "", char_budget: int = DEFAULT_CHARS) -> None:
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
        #: Set with `numbering`: every shard's numbers (`array("q")` each, ascending): the
        #: stream number of a key is how many of them, all together, are below it.
        self.starts: Optional[List[Any]] = None
        #: Kept in memory: records of objects (results, encodings other than text), and
        #: text (encodings that are `str`) as two lists, keys and lines, with their length.
        self.memory: List[Record] = []
        self.keys: List[int] = []
        self.lines: List[str] = []
        self.chars = 0
        #: An encoding that is not text was kept (`chunks` cannot give it).
        self.opaque = False
        #: What goes between two lines in a text block (and in `chunks`).
        self.sep = sep
        self.char_budget = char_budget
        #: The runs spilled to disk.
        self.spilled = RunFile(sep)
        self.count = 0
        #: With `best` (at most `budget`) and `rank`: only the `best` records of lowest
        #: (rank(item), key) are kept, in memory (a heap whose top is the one to drop next:
        #: (-rank, -key, item)); a report that lists the N most severe needs no others.
        self.best = best if rank is not None and 0 < best <= budget else 0
        self.rank = rank
        self.heap: List[Tuple[int, int, Any]] = []
        #: Set by a parallel run's merge when the shards kept their lines (`shard_lines`):
        #: each shard's lines, sorted by key, as a source read once, as UTF-8 bytes
        #: (`numbered_bytes`), and what stops them (`close`).
        self.remote: Optional[Callable[[], List[Run]]] = None
        self.closers: List[Callable[[], None]] = []
        self.drained = False

    def add(self, r: ConnResult) -> None:
        self.count += 1
        if self.keep is not None and not self.keep(r):
            return
        encode = self.encode
        if self.best:
            self._offer(r.id, r if encode is None else encode(r))
        elif encode is None:
            self.memory.append((r.id, r))
            if len(self.memory) >= self.budget:
                self._spill()
        else:
            self._keep(r.id, encode(r))

    def _keep(self, key: int, item: Any) -> None:
        """An encoding (not for `best`), into memory; a run spilled when memory is full."""
        if isinstance(item, str):
            self.keys.append(key)
            self.lines.append(item)
            self.chars += len(item)
            if len(self.keys) >= self.budget or self.chars >= self.char_budget:
                self._spill()
        else:
            self.opaque = True
            self.memory.append((key, item))
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

    def shard_lines(self) -> bool:
        """Whether the shards of a parallel run may keep the lines they encode (text, with
        `unnumbered`, renumbered by `relabel`) and send them at the end, each shard's in key
        order (parallel/shard.py, `L`), for the report to merge them as UTF-8 bytes
        (`numbered_bytes`): every line is then one the report writes as it is but for its
        number, which comes before it."""
        return self.encode is not None and self.relabel is not None and \
            self.unnumbered is not None and not self.best and self.sep != ""

    def put(self, n: int, item: Any) -> None:
        """A kept result encoded in a shard with another number: as stream `n` (with
        `numbering`: as the key `n`, relabelled when iterated)."""
        self.count += 1
        relabel = self.relabel
        item = item if relabel is None or self.numbering is not None else relabel(item, n)
        if self.best:
            self._offer(n, item)
        elif self.encode is None:
            self.memory.append((n, item))
            if len(self.memory) >= self.budget:
                self._spill()
        else:
            self._keep(n, item)

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
        """What is in memory, as one run of records (and one of text) at the file's end."""
        if self.memory:
            self.spilled.write_records(self.memory, self.encode is None)
            self.memory = []
        if self.keys:
            self.spilled.write_text(self.keys, self.lines)
            self.keys = []
            self.lines = []
            self.chars = 0

    def raw_sources(self) -> List[Run]:
        """The text kept (spilled and in memory), each run a sorted source for the merge of
        blocks of UTF-8 bytes (`Block.data`)."""
        sources = self.spilled.sources(raw=True)
        if self.keys:
            sources.append(text_run(self.keys, self.lines, self.sep, raw=True))
        return sources

    def numbered_bytes(self) -> Optional[Tuple[List[Run], Callable[[int], int]]]:
        """With the shards' lines (`remote`): every line, the shards' and this store's, as
        sorted sources of UTF-8 blocks to merge by key (each source's keys ascending, no key
        in two), and the stream number of each key (asked in ascending order); read once
        (a second read raises ValueError). None otherwise."""
        if self.remote is None or self.numbering is None or self.opaque:
            return None
        remote = self.remote
        self.remote = None
        self.drained = True
        return self.raw_sources() + remote(), self.numbering()

    def _sources(self) -> List[Run]:
        """The spilled runs and what is in memory, each a sorted source for the merge."""
        if self.best:
            self.memory = [(-nkey, item) for _, nkey, item in self.heap]
        self.memory.sort(key=record_id)
        sources = self.spilled.sources()
        if self.memory:
            block = records_block(list(self.memory))
            sources.append(Run(block.keys[0], iter([block])))
        if self.keys:
            sources.append(text_run(self.keys, self.lines, self.sep))
        return sources

    def __iter__(self) -> Iterator[Any]:
        """The results (or their encodings) in stream order; with `keep`, those it kept."""
        numbering = self.numbering
        if self.drained:
            raise ValueError("the shards' lines were read already: they are read once")
        if self.remote is not None and self.relabel is not None:
            return _decoded(self.numbered_bytes(), self.relabel, self.end_remote)
        if not self.spilled.runs and numbering is None and not self.keys:
            if self.best:
                self.memory = [(-nkey, item) for _, nkey, item in self.heap]
            self.memory.sort(key=record_id)
            return (item for _, item in list(self.memory))
        return items(spans(self._sources()), None if numbering is None else numbering(),
                      self.relabel, self.encode is None)

    def chunks(self) -> Optional[Iterator[str]]:
        """The text kept, in stream order, in stretches of lines joined by `sep` (each
        stretch one string: put `sep` between two stretches); None when iteration must
        give the items one by one (they are not all text, or are renumbered as read)."""
        if not self._text_only():
            return None
        return chunks(spans(self._sources()))

    def raw_chunks(self) -> Optional[Iterator[Any]]:
        """`chunks()` as UTF-8 bytes (or views of them): spilled text as it was written,
        with no decoding and encoding again on its way to a UTF-8 output."""
        if not self._text_only():
            return None
        return raw_chunks(spans(self.raw_sources()))

    def _text_only(self) -> bool:
        """Whether what is kept is all text, read in stretches (`chunks`, `raw_chunks`): not
        renumbered as read, no results among it, not a selection of the best."""
        return self.numbering is None and not self.opaque and not self.best and \
            self.encode is not None

    @property
    def runs(self) -> List[Tuple[int, int]]:
        """The runs spilled so far, (offset, records) each."""
        return self.spilled.runs

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        for n, r in enumerate(self):
            if n == i:
                return r
        raise IndexError(i)

    def __bool__(self) -> bool:
        return self.count > 0

    def end_remote(self) -> None:
        """The shards' lines are read (or will not be): their pipes closed."""
        self.remote = None
        for close in self.closers:
            close()
        self.closers = []

    def close(self) -> None:
        self.spilled.close()
        self.end_remote()


def _decoded(merged: Optional[Tuple[List[Run], Callable[[int], int]]],
             relabel: Callable[[Any, int], Any], end: Callable[[], None]) -> Iterator[Any]:
    """The lines of `numbered_bytes`, as text, relabelled; `end()` after the last."""
    assert merged is not None
    sources, number = merged
    for block, j, k in spans(sources):
        data, ends, keys, sep = block.data, block.ends, block.keys, block.sep
        start = 0 if j == 0 else ends[j - 1] + sep
        for i in range(j, k):
            yield relabel(str(data[start:ends[i]], "utf-8", "surrogatepass"), number(keys[i]))
            start = ends[i] + sep
    end()


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
