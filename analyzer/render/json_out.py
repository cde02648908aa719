"""`--format json`: one JSON document, the contract described in docs/json.md.

Written one connection per line (`jq` and `grep` both work on it), without building the whole
document in memory. A connection's line is formatted directly from its result, field by field
in `ConnResult.to_dict()` order, with the json module's own string escaper: the same bytes the
encoder writes for `to_dict()` (tests/test_json_out.py holds the two equal on every sample and
corpus capture), at a third of the cost. A traced connection (`--stream`) goes through the
encoder, with its ladder.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring        # the C escaper where there is one
from typing import Final, Optional, TextIO

from analyzer.anomalies import Finding
from analyzer.report import ANALYSIS_FIELDS, ConnResult, Lingering, Report
from analyzer.segment import addr_str

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

_COUNTS: Final = ", ".join('"%s": %%d' % name for name in ANALYSIS_FIELDS)


def render(report: Report, out: TextIO, **_options) -> None:
    head = report.to_dict(connections=False)
    out.write("{\n")
    for key, value in head.items():
        out.write(" %s: %s,\n" % (_dumps(key), _dumps(value)))
    out.write(' "connections": [')
    first = True
    ladders = report.ladders
    for c in report.connections:
        out.write("\n  " if first else ",\n  ")
        if c.id in ladders:
            d = c.to_dict()
            d["ladder"] = [row.to_dict() for row in ladders[c.id]]
            out.write(_dumps(d))
        else:
            out.write(connection_json(c))
        first = False
    out.write("\n ]\n}\n" if not first else "]\n}\n")


def connection_json(r: ConnResult) -> str:
    """`_dumps(r.to_dict())`, formatted directly (an f-string: compiled, it is one join)."""
    o, p = r.analysis
    reused = "null" if r.reused_from is None else str(r.reused_from)
    return (
        f'{{"id": {r.id}, "orig": {{"addr": {encode_basestring(addr_str(r.orig[0]))}, '
        f'"port": {r.orig[1]}}}, "resp": {{"addr": {encode_basestring(addr_str(r.resp[0]))}, '
        f'"port": {r.resp[1]}}}, "start": {r.start / 1e9!r}, "end": {r.end / 1e9!r}, '
        f'"duration": {round(r.duration, 9)!r}, "first_frame": {r.first_frame}, '
        f'"last_frame": {r.last_frame}, '
        f'"packets": {{"orig": {r.packets[0]}, "resp": {r.packets[1]}}}, '
        f'"bytes": {{"orig": {r.bytes[0]}, "resp": {r.bytes[1]}}}, '
        f'"conn_state": {_text(r.conn_state)}, "history": {_text(r.history)}, '
        f'"handshake": {_text(r.handshake)}, "syn_retransmissions": {r.syn_retransmissions}, '
        f'"close": {_text(r.close)}, "closed_first": {_text(r.closed_first)}, '
        f'"reset_by": {_text(r.reset_by)}, "half_close": {"true" if r.half_close else "false"}, '
        f'"final_state": {{"orig": {_text(r.final_state[0])}, '
        f'"resp": {_text(r.final_state[1])}}}, '
        f'"lingering": [{", ".join([_lingering(lg) for lg in r.lingering])}], '
        f'"reused_from": {reused}, '
        f'"analysis": {{"orig": {{{_COUNTS % tuple(o)}}}, "resp": {{{_COUNTS % tuple(p)}}}}}, '
        f'"findings": [{", ".join([_finding(f) for f in r.findings])}]}}')


def _text(s: Optional[str]) -> str:
    return "null" if s is None else encode_basestring(s)


def _lingering(lg: Lingering) -> str:
    text = (f'{{"side": {encode_basestring(lg.side)}, "state": {encode_basestring(lg.state)}, '
            f'"since": {lg.since / 1e9!r}, "seconds": {round(lg.seconds / 1e9, 6)!r}')
    if lg.remaining is not None:
        return f'{text}, "remaining": {round(lg.remaining / 1e9, 6)!r}}}'
    return text + "}"


def _finding(f: Finding) -> str:
    return (f'{{"code": {encode_basestring(f.code)}, "severity": {encode_basestring(f.severity)}, '
            f'"ts": {f.ts / 1e9!r}, "frame": {f.frame}, "side": {_text(f.side)}, '
            f'"message": {encode_basestring(f.message)}, "count": {f.count}}}')
