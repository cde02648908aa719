"""`--format json`: one JSON document, the contract described in docs/json.md.

Written one connection per line (`jq` and `grep` both work on it), without building the whole
document in memory. A connection's line is formatted directly from its result
(render/json_line.py); a traced connection (`--stream`) goes through the encoder, with its
ladder. The renderer's sink (`make_sink`) keeps these lines instead of the results:
the spill to disk then moves text, not objects, and an output that writes UTF-8 (the CLI's)
gets the spilled lines as the bytes they were spilled as (`ResultStore.raw_chunks`), not
decoded and encoded again.
"""

from __future__ import annotations

from typing import Any, Callable, Final, Iterator, List, Optional, TextIO, Tuple, cast

from analyzer.judge.result import ConnResult
from analyzer.render.json_line import connection_json, connection_tail, dumps as _dumps
from analyzer.report.model import Report
from analyzer.report.runs import Block, Run
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

try:                # the compiled build's C merge (setup.py); the pure build's is Python
    from analyzer.common._join import merge_lines
except ImportError:
    from analyzer.common.join import merge_lines

#: Connections' lines written together (one call to the stream for each such batch).
WRITE_LINES: Final = 128
#: What goes between two connections' lines.
_SEP: Final = ",\n  "
#: A stretch of lines this long (in characters) is written by itself.
_LONG: Final = 16384
#: Bytes of stretches of lines gathered for one write (`_write_stretches`).
_LONG_BYTES: Final = 1 << 16


def make_sink(settings: Settings, **_options) -> Optional[ResultSink]:
    """Each connection's line, made as it finishes (unless streams are traced: their lines
    carry ladders, written from the results)."""
    if settings.ladders:
        return None
    return ResultStore(settings.result_budget, encode=connection_json, relabel=relabel,
                       unnumbered=connection_tail, sep=_SEP)


def relabel(tail: str, n: int) -> str:
    """A connection's line made of its `connection_tail` and its stream number `n` (one
    string built, compiled: a line is copied once, not twice)."""
    return f'{{"id": {n}{tail}'


def render(report: Report, out: TextIO, selection: Any = None, **_options) -> None:
    head = report.to_dict(connections=False)
    if selection is not None:           # --filter, --sort, --group-by (analyzer.triage.select)
        head["selection"] = selection.to_dict()
    out.write("{\n")
    for key, value in head.items():
        out.write(" %s: %s,\n" % (_dumps(key), _dumps(value)))
    out.write(' "connections": [')
    first = True
    ladders = report.ladders
    connections = report.connections
    starts = connections.starts if isinstance(connections, ResultStore) and \
        connections.sep == _SEP else None
    merged = cast(ResultStore, connections).numbered_bytes() if starts is not None else None
    if merged is not None and starts is not None:
        # The shards' lines and the store's, merged as UTF-8 bytes (parallel/merge.py).
        try:
            first = _write_numbered(out, merged[0], starts)
        finally:
            cast(ResultStore, connections).end_remote()
        out.write("\n ]\n}\n" if not first else "]\n}\n")
        return
    buffer = _utf8_buffer(out)
    raw = connections.raw_chunks() if buffer is not None and \
        isinstance(connections, ResultStore) and connections.sep == _SEP else None
    if raw is not None:
        # The same stretches as UTF-8 bytes, to the output's own bytes (as they were spilled).
        out.flush()
        _write_stretches(buffer.write, raw, b"", _FIRST, _NEXT, (b"]\n}\n", b"\n ]\n}\n"))
        return
    chunks = connections.chunks() if isinstance(connections, ResultStore) and \
        connections.sep == _SEP else None
    if chunks is not None:
        # The lines make_sink() kept, a stretch of lines (joined by `_SEP`) at a time.
        _write_stretches(out.write, chunks, "", "\n  ", _SEP, ("]\n}\n", "\n ]\n}\n"))
        return
    # Results, or the lines make_sink() made of them; written `WRITE_LINES` at a time.
    pending: List[str] = []
    item: object
    for item in report.connections:
        pending.append("\n  " if first else ",\n  ")
        if isinstance(item, str):
            pending.append(item)
        elif isinstance(item, ConnResult) and item.id in ladders:
            d = item.to_dict()
            d["ladder"] = [row.to_dict() for row in ladders[item.id]]
            pending.append(_dumps(d))
        else:
            pending.append(connection_json(cast(ConnResult, item)))
        first = False
        if len(pending) >= 2 * WRITE_LINES:
            out.write("".join(pending))
            pending = []
    if pending:
        out.write("".join(pending))
    out.write("\n ]\n}\n" if not first else "]\n}\n")


def _write_numbered(out: TextIO, sources: List[Run], starts: List[Any]) -> bool:
    """The lines of sorted sources of UTF-8 blocks (`ResultStore.numbered_bytes`), merged by
    key, each begun with its stream number (`relabel`, in bytes): how many of every shard's
    numbers (`starts`, `ResultStore.starts`) are below its key; to `out`'s own bytes when it
    writes UTF-8 (else decoded); True when there were none. `merge_lines` (common/_join.c,
    or common/join.py) makes them a stretch at a time, until a source's block is used up (its
    next one then takes its place)."""
    buffer = _utf8_buffer(out)
    if buffer is not None:
        out.flush()
        write: Callable[[Any], Any] = buffer.write
    else:
        write = _decoding(out)
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
        text, done = merge_lines(heads, steps, first)
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


def _write_stretches(write: Callable[[Any], Any], stretches: Iterator[Any], empty: Any,
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


def _utf8_buffer(out: TextIO) -> Any:
    """`out`'s binary buffer when it writes UTF-8 (what the CLI opens), else None."""
    buffer: Any = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None)
    if buffer is not None and isinstance(encoding, str) and \
            encoding.lower().replace("-", "").replace("_", "") == "utf8":
        return buffer
    return None


def _decoding(out: TextIO) -> Callable[[Any], Any]:
    def write(data: bytes) -> Any:
        return out.write(data.decode("utf-8", "surrogatepass"))
    return write


#: What comes before the first stretch of lines, and between two, as bytes.
_FIRST: Final = b"\n  "
_NEXT: Final = _SEP.encode("ascii")
