"""`--format json`: one JSON document, the contract described in docs/json.md.

Written one connection per line (`jq` and `grep` both work on it), without building the whole
document in memory. A connection's line is formatted directly from its result, field by field
in `ConnResult.to_dict()` order, with the json module's own string escaper: the same bytes the
encoder writes for `to_dict()` (tests/test_json_out.py holds the two equal on every sample and
corpus capture), at half the cost. A traced connection (`--stream`) goes through the encoder,
with its ladder. The CLI has `analyze()` keep these lines instead of the results
(`encode=connection_json`): the spill to disk then moves text, not objects.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring        # the C escaper where there is one
from typing import Final, Optional, TextIO, cast

from analyzer.anomalies import Finding
from analyzer.report import ANALYSIS_FIELDS, ConnResult, Lingering, Report
from analyzer.segment import addr_str

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

_CONNECTION: Final = (
    '{"id": %d, "orig": {"addr": %s, "port": %d}, "resp": {"addr": %s, "port": %d}, '
    '"start": %r, "end": %r, "duration": %r, "first_frame": %d, "last_frame": %d, '
    '"packets": {"orig": %d, "resp": %d}, "bytes": {"orig": %d, "resp": %d}, '
    '"conn_state": %s, "history": %s, "handshake": %s, "syn_retransmissions": %d, '
    '"close": %s, "closed_first": %s, "reset_by": %s, "half_close": %s, '
    '"final_state": {"orig": %s, "resp": %s}, "lingering": [%s], "reused_from": %s, '
    '"analysis": {"orig": {%s}, "resp": {%s}}, "findings": [%s]}')
_FINDING: Final = ('{"code": %s, "severity": %s, "ts": %r, "frame": %d, "side": %s, "message": %s, '
            '"count": %d}')
_COUNTS: Final = ", ".join('"%s": %%d' % name for name in ANALYSIS_FIELDS)


def render(report: Report, out: TextIO, **_options) -> None:
    head = report.to_dict(connections=False)
    out.write("{\n")
    for key, value in head.items():
        out.write(" %s: %s,\n" % (_dumps(key), _dumps(value)))
    out.write(' "connections": [')
    first = True
    ladders = report.ladders
    # Results, or the lines analyze(encode=connection_json) made of them.
    item: object
    for item in report.connections:
        out.write("\n  " if first else ",\n  ")
        if isinstance(item, str):
            out.write(item)
        elif isinstance(item, ConnResult) and item.id in ladders:
            d = item.to_dict()
            d["ladder"] = [row.to_dict() for row in ladders[item.id]]
            out.write(_dumps(d))
        else:
            out.write(connection_json(cast(ConnResult, item)))
        first = False
    out.write("\n ]\n}\n" if not first else "]\n}\n")


def connection_json(r: ConnResult) -> str:
    """`_dumps(r.to_dict())`, formatted directly."""
    return _CONNECTION % (
        r.id, encode_basestring(addr_str(r.orig[0])), r.orig[1],
        encode_basestring(addr_str(r.resp[0])), r.resp[1],
        r.start / 1e9, r.end / 1e9, round(r.duration, 9), r.first_frame, r.last_frame,
        r.packets[0], r.packets[1], r.bytes[0], r.bytes[1],
        _text(r.conn_state), _text(r.history), _text(r.handshake), r.syn_retransmissions,
        _text(r.close), _text(r.closed_first), _text(r.reset_by),
        "true" if r.half_close else "false",
        _text(r.final_state[0]), _text(r.final_state[1]),
        ", ".join([_lingering(lg) for lg in r.lingering]),
        "null" if r.reused_from is None else "%d" % r.reused_from,
        _COUNTS % tuple(r.analysis[0]), _COUNTS % tuple(r.analysis[1]),
        ", ".join([_finding(f) for f in r.findings]))


def _text(s: Optional[str]) -> str:
    return "null" if s is None else encode_basestring(s)


def _lingering(lg: Lingering) -> str:
    text = '{"side": %s, "state": %s, "since": %r, "seconds": %r' % (
        encode_basestring(lg.side), encode_basestring(lg.state), lg.since / 1e9,
        round(lg.seconds / 1e9, 6))
    if lg.remaining is not None:
        return text + ', "remaining": %r}' % round(lg.remaining / 1e9, 6)
    return text + "}"


def _finding(f: Finding) -> str:
    return _FINDING % (encode_basestring(f.code), encode_basestring(f.severity), f.ts / 1e9,
                       f.frame, _text(f.side), encode_basestring(f.message), f.count)
