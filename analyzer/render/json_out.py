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

from typing import Any, Final, List, Optional, TextIO, cast

from analyzer.judge.result import ConnResult
from analyzer.render.json_line import connection_json, connection_tail, dumps as _dumps
from analyzer.render.lines import write_kept
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

#: Connections' lines written together (one call to the stream for each such batch).
WRITE_LINES: Final = 128
#: What goes between two connections' lines.
_SEP: Final = ",\n  "
#: What ends the document: with no connection, after some.
_ENDS: Final = ("]\n}\n", "\n ]\n}\n")


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
    if isinstance(connections, ResultStore) and connections.sep == _SEP and \
            write_kept(out, connections, "\n  ", _SEP, _ENDS):
        return                          # the lines make_sink() kept, as kept (render/lines.py)
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
    out.write(_ENDS[0] if first else _ENDS[1])
