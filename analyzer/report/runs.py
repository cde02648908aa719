"""Sorted runs of records in an anonymous temporary file, and their merge: the disk half of
report/store.py's `ResultStore`, which decides what is kept and when it is spilled.

A run is records sorted by key (a stream id, or a first-frame number in a parallel run),
written as blocks. Blocks are written in one of three ways. Text (what the JSON writer keeps:
one line a connection) is one block of UTF-8 with two arrays, the keys and where each line
ends, the lines joined by the store's separator (`sep`): read back in key order they are
written out a stretch at a time (`chunks`), one slice of a block's text, not one object each.
Results are written with `marshal` as their plain values (`ConnResult.flat()`, a fraction of
the cost of pickling the objects); any other encoding with marshal, or pickle when marshal
cannot write it.

The merge (`spans`) reads a run's first block only when it first takes from that run and
drops a block once used up, so it holds a block of each run it is inside of, never a run.
"""

from __future__ import annotations

import heapq
import marshal
import pickle
import struct
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, BinaryIO, Callable, Final, Iterator, List, Optional, Tuple

from analyzer.judge.result import unflat

try:                # the compiled build's C join (setup.py); the pure build's is Python
    from analyzer.common._join import text_block
except ImportError:
    from analyzer.common.join import text_block

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

Record = Tuple[int, Any]                # (key, the result or its encoding)


class Block:
    """Records in key order, as read back (or as kept in memory): their `keys`, and either
    their `items` or, for text, the `text` of the lines joined by `sep` and where each line
    ends in it (`ends`); or, read as bytes (`raw`), that text in UTF-8 (`data`: bytes, or a
    memoryview of a message), `ends` then counting bytes."""

    def __init__(self, keys: List[int], items: Optional[List[Any]], text: str,
                 ends: List[int], sep: int, data: Any = b"") -> None:
        self.keys = keys
        self.items = items
        self.text = text
        self.ends = ends
        self.sep = sep                      # the separator's length
        self.data = data

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

    def raw_stretch(self, j: int, k: int) -> Any:
        """Lines j to k - 1 of a block read as bytes, joined: its `data`, or a view of part
        of it (not a copy)."""
        if j == 0 and k == len(self.keys):
            return self.data
        return memoryview(self.data)[0 if j == 0 else self.ends[j - 1] + self.sep:
                                     self.ends[k - 1]]


class Run:
    """One sorted source of blocks for the merge: a spilled run (read a block at a time, the
    first only when the merge comes to it) or what is in memory (one block)."""

    def __init__(self, head: int, blocks: Iterator[Block]) -> None:
        self.head = head                    # its first key
        self.blocks = blocks
        self.block: Optional[Block] = None
        self.at = 0


class RunFile:
    """The runs spilled so far: where each starts in the file (`runs`: offset, records) and
    its first key (`heads`); the file is made at the first run. `sep`: what goes between two
    lines of a text block."""

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self.file: Optional[BinaryIO] = None
        self.runs: List[Tuple[int, int]] = []
        self.heads: List[int] = []

    def _end(self) -> Tuple[BinaryIO, int]:
        """The file, at its end, and that offset."""
        if self.file is None:
            import tempfile                 # (here: most runs make no file)
            self.file = tempfile.TemporaryFile(prefix="tcpflow-check-")
        file = self.file
        file.seek(0, 2)
        return file, file.tell()

    def write_records(self, memory: List[Record], flat: bool) -> None:
        """`memory`'s records as one run (sorted here): `flat`, results written as their plain
        values (`ConnResult.flat()`); otherwise encodings, with marshal (pickle when marshal
        cannot write one)."""
        memory.sort(key=record_id)
        file, offset = self._end()
        write = file.write
        for i in range(0, len(memory), BLOCK):
            block = memory[i:i + BLOCK]
            if flat:
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

    def write_text(self, keys: List[int], lines: List[str]) -> None:
        """Lines (text) under their keys as one run (sorted here), in text blocks."""
        keys, lines = sorted_text(keys, lines)
        file, offset = self._end()
        write = file.write
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
            # ASCII lines (JSON lines mostly are) under keys of 64 bits, at once; else here.
            block = text_block(sep, block_keys, block_lines)
            if block is not None:
                packed, ends, text = block
            else:
                try:
                    packed = _int64s(block_keys)
                except struct.error:            # keys beyond 64 bits: as records
                    data = marshal.dumps(list(zip(block_keys, block_lines)))
                    write(_HEADER.pack(_MARSHAL, len(data)))
                    write(data)
                    continue
                text = sep.join(block_lines).encode("utf-8", "surrogatepass")
                ends = _int64s(line_ends(block_lines, len(sep)))
            head = _TEXT_HEAD.pack(len(block_keys), len(text))
            write(_HEADER.pack(_TEXT, len(head) + len(packed) + len(ends) + len(text)))
            write(head)
            write(packed)
            write(ends)
            write(text)
        self.runs.append((offset, len(keys)))
        self.heads.append(keys[0])

    def blocks(self, offset: int, count: int, raw: bool = False) -> Iterator[Block]:
        """The blocks of the run written at `offset` (`count` records), one at a time; text
        as UTF-8 bytes with `raw` (a run of text only)."""
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
                count -= n
                if raw:
                    data = file.read(length)
                    if n and ends[n - 1] == length:     # ASCII: the ends count bytes too
                        yield Block(keys.tolist(), None, "", ends.tolist(), sep, data)
                    else:
                        yield raw_block(keys.tolist(), lines_of(
                            data.decode("utf-8", "surrogatepass"), ends.tolist(), sep),
                            self.sep)
                    continue
                text = file.read(length).decode("utf-8", "surrogatepass")
                yield Block(keys.tolist(), None, text, ends.tolist(), sep)
                continue
            data = file.read(size)
            if kind == _FLAT:
                records: List[Record] = [(n, unflat(t)) for n, t in marshal.loads(data)]
            elif kind == _MARSHAL:
                records = marshal.loads(data)
            else:
                records = pickle.loads(data)
            count -= len(records)
            if raw:                         # (text written as records: keys beyond 64 bits)
                yield raw_block([n for n, _ in records], [line for _, line in records],
                                self.sep)
                continue
            yield records_block(records)

    def sources(self, raw: bool = False) -> List[Run]:
        """Each run, a sorted source for the merge (its blocks read as it goes); text as
        UTF-8 bytes with `raw`."""
        return [Run(head, self.blocks(off, n, raw))
                for (off, n), head in zip(self.runs, self.heads)]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _int64s(values: List[int]) -> bytes:
    """`array("q", values).tobytes()` (what `blocks` reads back), made by `struct` (a fifth of
    the cost: the array converts each int through argument parsing); struct.error for a value
    beyond 64 bits."""
    return struct.pack("=%dq" % len(values), *values)


def record_id(record: Record) -> int:
    return record[0]


def text_run(keys: List[int], lines: List[str], sep: str, raw: bool = False) -> Run:
    """Lines kept in memory (in any order), as one source for the merge (as UTF-8 bytes
    with `raw`)."""
    keys, lines = sorted_text(keys, lines)
    if raw:
        return Run(keys[0], iter([raw_block(keys, lines, sep)]))
    return Run(keys[0], iter([Block(keys, None, sep.join(lines), line_ends(lines, len(sep)),
                                    len(sep))]))


def raw_block(keys: List[int], lines: List[str], sep: str) -> Block:
    """Lines (in key order) as one block of UTF-8 bytes, `ends` counting bytes."""
    data = sep.join(lines).encode("utf-8", "surrogatepass")
    if len(data) == len(sep) * (len(lines) - 1) + sum([len(line) for line in lines]):
        ends = line_ends(lines, len(sep))   # ASCII: characters are bytes
    else:
        ends = []
        at = -len(sep.encode("utf-8"))
        for line in lines:
            at += len(sep.encode("utf-8")) + len(line.encode("utf-8", "surrogatepass"))
            ends.append(at)
    return Block(keys, None, "", ends, len(sep.encode("utf-8")), data)


def lines_of(text: str, ends: List[int], sep: int) -> List[str]:
    """The lines of a text block (`ends` counting characters)."""
    lines = []
    start = 0
    for end in ends:
        lines.append(text[start:end])
        start = end + sep
    return lines


def records_block(records: List[Record]) -> Block:
    return Block([n for n, _ in records], [item for _, item in records], "", [], 0)


def sorted_text(keys: List[int], lines: List[str]) -> Tuple[List[int], List[str]]:
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


def line_ends(lines: List[str], sep: int) -> List[int]:
    """Where each line ends in the lines joined by a separator of `sep` characters."""
    ends = []
    at = -sep
    for line in lines:
        at += sep + len(line)
        ends.append(at)
    return ends


def spans(sources: List[Run]) -> Iterator[Tuple[Block, int, int]]:
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


def items(spans: Iterator[Tuple[Block, int, int]], number: Optional[Callable[[int], int]],
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


def raw_chunks(spans: Iterator[Tuple[Block, int, int]]) -> Iterator[Any]:
    """`chunks` of blocks read as bytes: UTF-8 bytes (or views of them)."""
    for block, j, k in spans:
        yield block.raw_stretch(j, k)


def chunks(spans: Iterator[Tuple[Block, int, int]]) -> Iterator[str]:
    for block, j, k in spans:
        items = block.items
        if items is None:
            yield block.stretch(j, k)
        else:                               # (text written as records: keys beyond 64 bits)
            for i in range(j, k):
                yield items[i]
