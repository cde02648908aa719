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

#: Connections' lines written together (one call to the stream for each such batch).
WRITE_LINES: Final = 128
#: What goes between two connections' lines.
_SEP: Final = ",\n  "
#: A stretch of lines this long (in characters) is written by itself.
_LONG: Final = 16384
#: Bytes of numbered lines gathered for one write (`_write_numbered`).
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
    merged = connections.numbered_bytes() if isinstance(connections, ResultStore) and \
        connections.sep == _SEP else None
    if merged is not None:
        # The shards' lines and the store's, merged as UTF-8 bytes (parallel/merge.py).
        try:
            first = _write_numbered(out, merged[0], merged[1])
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


def _write_numbered(out: TextIO, sources: List[Run], number: Callable[[int], int]) -> bool:
    """The lines of sorted sources of UTF-8 blocks (`ResultStore.numbered_bytes`), merged by
    key, each begun with its stream number (`relabel`, in bytes), to `out`'s own bytes when
    it writes UTF-8 (else decoded); True when there were none. The merge takes from the
    source of the lowest key every line below the others' lowest (a few sources: compared
    one by one)."""
    buffer = _utf8_buffer(out)
    if buffer is not None:
        out.flush()
        write: Callable[[Any], Any] = buffer.write
    else:
        write = _decoding(out)
    blocks: List[Block] = []                # each source's block in hand, and the line in it
    ats: List[int] = []
    rests: List[Iterator[Block]] = []
    for source in sources:
        block = next(source.blocks, None)
        if block is not None and block.keys:
            blocks.append(block)
            ats.append(0)
            rests.append(source.blocks)
    first = True
    pieces: List[Any] = []                  # (bytes, and slices of the shards' messages)
    size = 0
    while blocks:
        best = 0
        low = blocks[0].keys[ats[0]]
        bound = low                         # the others' lowest key (`alone`: no other)
        alone = True
        for s in range(1, len(blocks)):
            key = blocks[s].keys[ats[s]]
            if key < low:
                bound, low, best = low, key, s
            elif alone or key < bound:
                bound = key
            alone = False
        block = blocks[best]
        keys, ends, data, sep = block.keys, block.ends, block.data, block.sep
        i = ats[best]
        count = len(keys)
        start = 0 if i == 0 else ends[i - 1] + sep
        while True:
            pieces.append(_FIRST_ID if first else _NEXT_ID)
            first = False
            pieces.append(str(number(keys[i])).encode("ascii"))
            end = ends[i]
            pieces.append(data[start:end])
            size += end - start
            start = end + sep
            i += 1
            if i >= count or (not alone and keys[i] > bound):
                break
        if i < count:
            ats[best] = i
        else:
            following = next(rests[best], None)
            if following is not None and following.keys:
                blocks[best] = following
                ats[best] = 0
            else:
                del blocks[best]
                del ats[best]
                del rests[best]
        if size >= _LONG_BYTES:
            write(b"".join(pieces))
            pieces = []
            size = 0
    if pieces:
        write(b"".join(pieces))
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
#: A line's start, first and next (`_write_numbered`): the stream number follows.
_FIRST_ID: Final = b'\n  {"id": '
_NEXT_ID: Final = b',\n  {"id": '
