"""Finished connections' results, in bounded memory, read back in stream order.

Results arrive in the order connections finish, not in stream order. Up to `budget` of them
are kept in memory; beyond that they are spilled, sorted by stream id, as one run of records
in an anonymous temporary file, and iteration merges the runs (a heap of their next keys),
one block of records per run in memory at a time, and a run's first block read only when the
merge reaches it. So a capture of millions of connections needs memory for the connections
open at once plus `budget` results, never for all of them.

Blocks are written in one of three ways. Text (what the JSON writer keeps: one line a
connection) is one block of UTF-8 with two arrays, the keys and where each line ends, and
the lines are written joined by the store's separator (`sep`): lines in stream order are
then read back, and written out, a stretch at a time (`chunks`), one slice of a block's text,
not one object each; text is also bounded by its characters (`char_budget`), a long line's
share of memory being twenty times a result's. Results themselves are written with `marshal`
as their plain values (`ConnResult.flat()`, a fraction of the cost of pickling the objects);
any other encoding with marshal, or pickle when marshal cannot write it.

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
import marshal
import pickle
import struct
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, BinaryIO, Callable, Final, Iterator, List, Optional, Protocol, Tuple

from analyzer.judge.result import ConnResult, unflat

#: Results kept in memory before a run is spilled to disk.
DEFAULT_BUDGET: Final = 5_000
#: Characters of text (`sep`-joined lines) kept in memory before a run is spilled: about 800
#: JSON lines.
DEFAULT_CHARS: Final = 1 << 20
#: Results written together: one call per block, one block per run in memory when read.
BLOCK = 256
#: Characters of text in a block at most (a line more if one passes it): the merge holds a
#: block of each run it is inside of.
BLOCK_CHARS: Final = 1 << 16
#: A block's header: how it was written (`_MARSHAL`, `_FLAT`: marshal, results flattened;
#: `_PICKLE`; `_TEXT`: lines) and its length in bytes.
_HEADER: Final = struct.Struct("<BQ")
_MARSHAL: Final = 0
_FLAT: Final = 1
_PICKLE: Final = 2
_TEXT: Final = 3
#: A text block's start: its lines, and the length of its UTF-8 text in bytes (then the keys
#: and the lines' ends, `array("q")` each, and the text).
_TEXT_HEAD: Final = struct.Struct("<QQ")

Record = Tuple[int, Any]                # (stream id, the result or its encoding)


class ResultSink(Protocol):
    """Where `analyze()` sends each finished connection's result; the report's `connections`.

    `add` is called once per connection, in the order connections finish; iteration gives
    what the sink kept in stream order, and `len()` the number of results added."""

    def add(self, r: ConnResult) -> None: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class _Block:
    """Records in key order, as read back (or as kept in memory): their `keys`, and either
    their `items` or, for text, the `text` of the lines joined by `sep` and where each line
    ends in it (`ends`)."""

    def __init__(self, keys: List[int], items: Optional[List[Any]], text: str,
                 ends: List[int], sep: int) -> None:
        self.keys = keys
        self.items = items
        self.text = text
        self.ends = ends
        self.sep = sep                      # the separator's length

    def item(self, i: int) -> Any:
        items = self.items
        if items is not None:
            return items[i]
        return self.text[0 if i == 0 else self.ends[i - 1] + self.sep:self.ends[i]]

    def stretch(self, j: int, k: int) -> str:
        """Lines j to k - 1, joined: the text between them."""
        if j == 0 and k == len(self.keys):
            return self.text
        return self.text[0 if j == 0 else self.ends[j - 1] + self.sep:self.ends[k - 1]]


class _Run:
    """One sorted source of blocks for the merge: a spilled run (read a block at a time, the
    first only when the merge comes to it) or what is in memory (one block)."""

    def __init__(self, head: int, blocks: Iterator[_Block]) -> None:
        self.head = head                    # its first key
        self.blocks = blocks
        self.block: Optional[_Block] = None
        self.at = 0


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
        self.runs: List[Tuple[int, int]] = []      # (offset, count) of each spilled run
        self.heads: List[int] = []                 # the first key of each
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
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="tcpflow-check-")
        if self.memory:
            self._spill_records()
        if self.keys:
            self._spill_text()

    def _spill_records(self) -> None:
        assert self.file is not None
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
        self.heads.append(memory[0][0])
        self.memory = []

    def _spill_text(self) -> None:
        assert self.file is not None
        keys, lines = _sorted_text(self.keys, self.lines)
        self.file.seek(0, 2)
        offset = self.file.tell()
        write = self.file.write
        sep = self.sep
        i = 0
        while i < len(keys):
            # A block: `BLOCK` lines, or fewer when they pass `BLOCK_CHARS` characters.
            j = i + 1
            size = len(lines[i])
            end = min(len(keys), i + BLOCK)
            while j < end and size < BLOCK_CHARS:
                size += len(lines[j])
                j += 1
            block_keys = keys[i:j]
            block_lines = lines[i:j]
            i = j
            try:
                packed = array("q", block_keys).tobytes()
            except OverflowError:           # keys beyond 64 bits: as records
                data = marshal.dumps(list(zip(block_keys, block_lines)))
                write(_HEADER.pack(_MARSHAL, len(data)))
                write(data)
                continue
            text = sep.join(block_lines).encode("utf-8", "surrogatepass")
            ends = array("q", _ends(block_lines, len(sep))).tobytes()
            head = _TEXT_HEAD.pack(len(block_keys), len(text))
            write(_HEADER.pack(_TEXT, len(head) + len(packed) + len(ends) + len(text)))
            write(head)
            write(packed)
            write(ends)
            write(text)
        self.runs.append((offset, len(keys)))
        self.heads.append(keys[0])
        self.keys = []
        self.lines = []
        self.chars = 0

    def _blocks(self, offset: int, count: int) -> Iterator[_Block]:
        """The blocks of the run written at `offset` (`count` records), one at a time."""
        assert self.file is not None            # a run exists only once spilled
        sep = len(self.sep)
        while count > 0:
            file = self.file
            assert file is not None
            file.seek(offset)
            kind, size = _HEADER.unpack(file.read(_HEADER.size))
            offset += _HEADER.size + size
            if kind == _TEXT:
                n, length = _TEXT_HEAD.unpack(file.read(_TEXT_HEAD.size))
                keys = array("q")
                keys.frombytes(file.read(8 * n))
                ends = array("q")
                ends.frombytes(file.read(8 * n))
                text = file.read(length).decode("utf-8", "surrogatepass")
                count -= n
                yield _Block(keys.tolist(), None, text, ends.tolist(), sep)
                continue
            data = file.read(size)
            if kind == _FLAT:
                records: List[Record] = [(n, unflat(t)) for n, t in marshal.loads(data)]
            elif kind == _MARSHAL:
                records = marshal.loads(data)
            else:
                records = pickle.loads(data)
            count -= len(records)
            yield _records_block(records)

    def _sources(self) -> List[_Run]:
        """The spilled runs and what is in memory, each a sorted source for the merge."""
        if self.best:
            self.memory = [(-nkey, item) for _, nkey, item in self.heap]
        self.memory.sort(key=_record_id)
        sources = [_Run(head, self._blocks(off, n))
                   for (off, n), head in zip(self.runs, self.heads)]
        if self.memory:
            block = _records_block(list(self.memory))
            sources.append(_Run(block.keys[0], iter([block])))
        if self.keys:
            keys, lines = _sorted_text(self.keys, self.lines)
            sep = self.sep
            block = _Block(keys, None, sep.join(lines), _ends(lines, len(sep)), len(sep))
            sources.append(_Run(keys[0], iter([block])))
        return sources

    def __iter__(self) -> Iterator[Any]:
        """The results (or their encodings) in stream order; with `keep`, those it kept."""
        numbering = self.numbering
        if not self.runs and numbering is None and not self.keys:
            if self.best:
                self.memory = [(-nkey, item) for _, nkey, item in self.heap]
            self.memory.sort(key=_record_id)
            return (item for _, item in list(self.memory))
        return _items(_spans(self._sources()), None if numbering is None else numbering(),
                      self.relabel, self.encode is None)

    def chunks(self) -> Optional[Iterator[str]]:
        """The text kept, in stream order, in stretches of lines joined by `sep` (each
        stretch one string: put `sep` between two stretches); None when iteration must
        give the items one by one (they are not all text, or are renumbered as read)."""
        if self.numbering is not None or self.opaque or self.best or self.encode is None:
            return None
        return _chunks(_spans(self._sources()))

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


def _records_block(records: List[Record]) -> _Block:
    return _Block([n for n, _ in records], [item for _, item in records], "", [], 0)


def _sorted_text(keys: List[int], lines: List[str]) -> Tuple[List[int], List[str]]:
    """Keys and lines in key order (as they are when they came in order: most do)."""
    last = -(1 << 63)
    ordered = True
    for key in keys:
        if key < last:
            ordered = False
            break
        last = key
    if ordered:
        return keys, lines
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], [lines[i] for i in order]


def _ends(lines: List[str], sep: int) -> List[int]:
    """Where each line ends in the lines joined by a separator of `sep` characters."""
    ends = []
    at = -sep
    for line in lines:
        at += sep + len(line)
        ends.append(at)
    return ends


def _spans(sources: List[_Run]) -> Iterator[Tuple[_Block, int, int]]:
    """The records of sorted sources merged by key (a heap of (key, source)), as stretches
    of one block, (block, first, end): a source gives records without the heap while they
    come before the next source's head (ties go to the lower source), found by bisection.
    A spilled run's first block is read when the merge first takes from it, and a block
    is dropped once used up: memory holds a block of each run the merge is inside of. The
    heap holds each (key, source) as one int, `key << shift | source` (ordered as the pair
    is, negative keys too): runs that interleave cost a heap step a record, and ints compare
    and are made for a fraction of what tuples cost."""
    shift = len(sources).bit_length()
    mask = (1 << shift) - 1
    heap = [(source.head << shift) | i for i, source in enumerate(sources)]
    heapq.heapify(heap)
    while heap:
        i = heapq.heappop(heap) & mask
        source = sources[i]
        block = source.block
        if block is None:
            block = source.block = next(source.blocks)
            source.at = 0
        keys = block.keys
        j = source.at
        if heap:
            top = heap[0]
            bound = top >> shift
            k = (bisect_right(keys, bound, j) if i < top & mask else bisect_left(keys, bound, j))
        else:
            k = len(keys)
        yield block, j, k
        if k < len(keys):
            source.at = k
            heapq.heappush(heap, (keys[k] << shift) | i)
        else:
            following = next(source.blocks, None)
            source.block = following
            source.at = 0
            if following is not None and following.keys:
                heapq.heappush(heap, (following.keys[0] << shift) | i)


def _items(spans: Iterator[Tuple[_Block, int, int]], number: Optional[Callable[[int], int]],
           relabel: Optional[Callable[[Any, int], Any]], objects: bool) -> Iterator[Any]:
    """The items of the merged stretches one by one; with `number` (keys are first-frame
    numbers: `numbering`), each with its stream number: relabelled (`relabel`), or its `id`
    set (`objects`: results)."""
    for block, j, k in spans:
        for i in range(j, k):
            item = block.item(i)
            if number is not None:
                n = number(block.keys[i])
                if relabel is not None:
                    item = relabel(item, n)
                elif objects:
                    item.id = n
            yield item


def _chunks(spans: Iterator[Tuple[_Block, int, int]]) -> Iterator[str]:
    for block, j, k in spans:
        items = block.items
        if items is None:
            yield block.stretch(j, k)
        else:                               # (text written as records: keys beyond 64 bits)
            for i in range(j, k):
                yield items[i]
