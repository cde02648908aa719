"""What the line-per-connection writers (render/json_out.py, render/zeek_out.py) share: the
kept lines of a `ResultStore` to an output (`write_kept`), as the UTF-8 bytes they were kept
as where the output writes UTF-8 (the CLI's), in stretches (`write_stretches`) or merged by
key from the sorted sources of a parallel run (`write_merged`: the shards' lines and the
parent's)."""

from __future__ import annotations

from typing import Any, Callable, Final, Iterator, List, Optional, TextIO, Tuple

from analyzer.report.runs import Block, Run
from analyzer.report.store import ResultStore

try:                # the compiled build's C merge (setup.py); the pure build's is Python
    from analyzer.common._join import merge_lines
except ImportError:
    from analyzer.common.join import merge_lines

#: A stretch of lines this long (in characters) is written by itself.
_LONG: Final = 16384
#: Bytes of stretches of lines gathered for one write (`write_stretches`).
_LONG_BYTES: Final = 1 << 16


def write_kept(out: TextIO, store: ResultStore, start: str, between: str,
               ends: Tuple[str, str], plain: bool = False) -> bool:
    """The lines `store` kept (a renderer's sink of text), to `out`: `start` before the first,
    `between` between two, then `ends[0]` when there were none, `ends[1]` when there were. In
    stretches (as the UTF-8 bytes they were spilled as, where `out` writes UTF-8), or merged
    by key from the sources of a parallel run (`write_merged`: numbered as the JSON report's,
    or, `plain`, as they are). False, with nothing written, when they must be read one by one
    (the parent's store of a parallel run whose shards sent their lines: renumbered as read)."""
    starts = store.starts
    merged = store.numbered_bytes() if starts is not None else None
    if merged is not None and starts is not None:
        try:
            first = write_merged(out, merged[0], starts,
                                 between.encode("utf-8") if plain else None)
        finally:
            store.end_remote()
        out.write(ends[0] if first else ends[1])
        return True
    buffer = utf8_buffer(out)
    raw = store.raw_chunks() if buffer is not None else None
    if raw is not None:
        out.flush()
        write_stretches(buffer.write, raw, b"", start.encode("utf-8"), between.encode("utf-8"),
                        (ends[0].encode("utf-8"), ends[1].encode("utf-8")))
        return True
    chunks = store.chunks()
    if chunks is not None:
        write_stretches(out.write, chunks, "", start, between, ends)
        return True
    return False


def write_merged(out: TextIO, sources: List[Run], starts: List[Any],
                 between: Optional[bytes] = None) -> bool:
    """The lines of sorted sources of UTF-8 blocks (`ResultStore.numbered_bytes`), merged by
    key, to `out`'s own bytes when it writes UTF-8 (else decoded); True when there were
    none. Each line is begun with its stream number (the JSON report's `relabel`, in bytes,
    after its separator): how many of every shard's numbers (`starts`,
    `ResultStore.starts`) are below its key; or, with `between`, written as it is, `between`
    between two (lines that do not depend on the numbering). `merge_lines` (common/_join.c,
    or common/join.py) makes them a stretch at a time, until a source's block is used up (its
    next one then takes its place)."""
    buffer = utf8_buffer(out)
    if buffer is not None:
        out.flush()
        write: Callable[[Any], Any] = buffer.write
    else:
        write = decoding(out)
    heads: List[List[Any]] = []             # each source's block in hand: merge_lines' view
    rests: List[Iterator[Block]] = []
    for source in sources:
        block = next(source.blocks, None)
        if block is not None and block.keys:
            heads.append([block.keys, block.ends, block.data, block.sep, 0])
            rests.append(source.blocks)
    steps: List[List[Any]] = [[numbers, 0] for numbers in starts]
    first = True
    while heads:
        text, done = merge_lines(heads, steps, first) if between is None else \
            merge_lines(heads, [], first, between)
        if text:
            first = False
            write(text)
        if done >= 0:
            following = next(rests[done], None)
            if following is not None and following.keys:
                heads[done] = [following.keys, following.ends, following.data, following.sep, 0]
            else:
                del heads[done]
                del rests[done]
    return first


def write_stretches(write: Callable[[Any], Any], stretches: Iterator[Any], empty: Any,
                    start: Any, between: Any, ends: Tuple[Any, Any]) -> None:
    """Stretches of lines (all `str`, or all bytes: `empty` is that type's empty one) to
    `write`: the first after `start`, each other after `between`; long stretches written as
    they are, short ones (runs that interleave) gathered up to `_LONG_BYTES`; then `ends[0]`
    when there were none, `ends[1]` when there were."""
    pieces: List[Any] = []
    size = 0
    first = True
    for data in stretches:
        pieces.append(start if first else between)
        first = False
        if len(data) >= _LONG:
            write(empty.join(pieces))
            write(data)
            pieces = []
            size = 0
        else:
            pieces.append(data)
            size += len(data)
            if size >= _LONG_BYTES:
                write(empty.join(pieces))
                pieces = []
                size = 0
    pieces.append(ends[0] if first else ends[1])
    write(empty.join(pieces))


def utf8_buffer(out: TextIO) -> Any:
    """`out`'s binary buffer when it writes UTF-8 (what the CLI opens), else None."""
    buffer: Any = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None)
    if buffer is not None and isinstance(encoding, str) and \
            encoding.lower().replace("-", "").replace("_", "") == "utf8":
        return buffer
    return None


def decoding(out: TextIO) -> Callable[[Any], Any]:
    """A writer of UTF-8 bytes to the text stream `out`."""
    def write(data: bytes) -> Any:
        return out.write(data.decode("utf-8", "surrogatepass"))
    return write
