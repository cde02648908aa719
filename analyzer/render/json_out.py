"""`--format json`: one JSON document, the contract described in docs/json.md.

Written one connection per line (`jq` and `grep` both work on it), without building the whole
document in memory. A connection's line is formatted directly from its result, field by field
in `ConnResult.to_dict()` order, with the json module's own string escaper and times written
from their integer nanoseconds (`analyzer.common.nstime`): the same bytes the encoder writes for
`to_dict()` (tests/test_json_out.py holds the two equal on every sample and corpus capture),
at a quarter of the cost. A traced connection (`--stream`) goes through the encoder,
with its ladder. The renderer's sink (`make_sink`) keeps these lines instead of the results:
the spill to disk then moves text, not objects.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring        # the C escaper where there is one
from typing import Any, Dict, Final, List, Optional, TextIO, Tuple, cast

from analyzer.common.findings import Finding
from analyzer.common.nstime import rounded_json, seconds_json
from analyzer.judge.result import ANALYSIS_FIELDS, ConnResult, Lingering
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings
from analyzer.decode.segment import addr_str
from analyzer.tcp.endpoint import NO_COUNTS

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

_COUNTS: Final = ", ".join('"%s": %%d' % name for name in ANALYSIS_FIELDS)
_NO_COUNTS_TEXT: Final = _COUNTS % NO_COUNTS

#: Encoded text of the strings that repeat from connection to connection (states, verdicts,
#: history letters, finding codes): one dict lookup instead of escaping again. Emptied when
#: full, so that odd strings cannot grow it without bound.
_CACHE_LIMIT: Final = 4096
_texts: Final[Dict[str, str]] = {}
#: (conn_state, history, handshake, syn_retransmissions, close, closed_first, reset_by,
#: half_close, final_state) -> that part of the line (`_verdicts`), emptied when full.
_verdict_texts: Final[Dict[tuple, str]] = {}
#: Packed addresses -> their JSON text (clients and servers come back again and again).
_addrs: Final[Dict[bytes, str]] = {}
#: Connections' lines written together (one call to the stream for each such batch).
WRITE_LINES: Final = 128


def make_sink(settings: Settings, **_options) -> Optional[ResultSink]:
    """Each connection's line, made as it finishes (unless streams are traced: their lines
    carry ladders, written from the results)."""
    if settings.ladders:
        return None
    return ResultStore(settings.result_budget, encode=connection_json, relabel=relabel,
                       unnumbered=connection_tail)


def relabel(tail: str, n: int) -> str:
    """A connection's line made of its `connection_tail` and its stream number `n`."""
    return '{"id": ' + str(n) + tail


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


def connection_json(r: ConnResult) -> str:
    """`_dumps(r.to_dict())`, formatted directly."""
    return "".join(_pieces(r))


def connection_tail(r: ConnResult) -> str:
    """`connection_json(r)` without its start, `{"id": ` and the number: what the shards of a
    parallel run send, before the stream number is known (`relabel` completes it)."""
    pieces = _pieces(r)
    pieces[0] = pieces[1] = ""
    return "".join(pieces)


def _pieces(r: ConnResult) -> List[str]:
    """The text of a connection's line, in pieces: `{"id": `, the number, the rest."""
    counts = r.analysis
    findings = r.findings
    lingering = r.lingering
    return [
        '{"id": ', str(r.id), ', "orig": {"addr": ', _addr(r.orig_raw[0]), ', "port": ',
        str(r.orig_raw[1]), '}, "resp": {"addr": ', _addr(r.resp_raw[0]), ', "port": ',
        str(r.resp_raw[1]),
        '}, "tunnel": %s, "start": ' % _dumps(r.tunnel_layers()) if r.tunnel else '}, "start": ',
        seconds_json(r.start), ', "end": ', seconds_json(r.end),
        ', "duration": ', seconds_json(r.end - r.start),
        ', "first_frame": ', str(r.first_frame), ', "last_frame": ', str(r.last_frame),
        ', "packets": {"orig": ', str(r.packets[0]), ', "resp": ', str(r.packets[1]),
        '}, "bytes": {"orig": ', str(r.bytes[0]), ', "resp": ', str(r.bytes[1]),
        _verdicts(r), ", ".join([_lingering(lg) for lg in lingering]) if lingering else "",
        '], "reused_from": ', "null" if r.reused_from is None else str(r.reused_from),
        ', "analysis": {"orig": {', _counts(counts[0]), '}, "resp": {', _counts(counts[1]),
        '}}, "findings": [', ", ".join([_finding(f) for f in findings]) if findings else "",
        "]}"]


def _verdicts(r: ConnResult) -> str:
    """The line from `conn_state` to the bracket before `lingering`: connections share a few
    combinations of these fields, each written once (`_verdict_texts`)."""
    key = (r.conn_state, r.history, r.handshake, r.syn_retransmissions, r.close,
           r.closed_first, r.reset_by, r.half_close, r.final_state)
    text = _verdict_texts.get(key)
    if text is None:
        if len(_verdict_texts) >= _CACHE_LIMIT:
            _verdict_texts.clear()
        text = _verdict_texts[key] = "".join([
            '}, "conn_state": ', _text(r.conn_state), ', "history": ', _text(r.history),
            ', "handshake": ', _text(r.handshake),
            ', "syn_retransmissions": ', str(r.syn_retransmissions),
            ', "close": ', _text(r.close), ', "closed_first": ', _text(r.closed_first),
            ', "reset_by": ', _text(r.reset_by),
            ', "half_close": ', "true" if r.half_close else "false",
            ', "final_state": {"orig": ', _text(r.final_state[0]),
            ', "resp": ', _text(r.final_state[1]), '}, "lingering": ['])
    return text


def _text(s: Optional[str]) -> str:
    if s is None:
        return "null"
    text = _texts.get(s)
    if text is None:
        if len(_texts) >= _CACHE_LIMIT:
            _texts.clear()
        text = _texts[s] = encode_basestring(s)
    return text


def _addr(addr: bytes) -> str:
    text = _addrs.get(addr)
    if text is None:
        if len(_addrs) >= _CACHE_LIMIT:
            _addrs.clear()
        text = _addrs[addr] = '"' + addr_str(addr) + '"'  # digits, dots, colons: no escapes
    return text


def _counts(counts: Tuple[int, ...]) -> str:
    return _NO_COUNTS_TEXT if counts is NO_COUNTS or counts == NO_COUNTS else _COUNTS % counts


def _lingering(lg: Lingering) -> str:
    side, state, since, seconds, remaining = lg
    tail = "}" if remaining is None else ', "remaining": ' + rounded_json(remaining) + "}"
    return "".join([
        '{"side": ', _text(side), ', "state": ', _text(state), ', "since": ', seconds_json(since),
        ', "seconds": ', rounded_json(seconds), tail])


def _finding(f: Finding) -> str:
    return "".join([
        '{"code": ', _text(f.code), ', "severity": ', _text(f.severity), ', "ts": ',
        seconds_json(f.ts), ', "frame": ', str(f.frame), ', "side": ', _text(f.side),
        ', "message": ', _message(f.message), ', "count": ', str(f.count), "}"])


class _Last:
    """The last finding message encoded, and its text (a flood's thousands of findings share
    one message)."""

    def __init__(self) -> None:
        self.message = ""
        self.text = '""'


_LAST: Final = _Last()


def _message(message: str) -> str:
    last = _LAST
    if message == last.message:
        return last.text
    text = encode_basestring(message)
    last.message, last.text = message, text
    return text
