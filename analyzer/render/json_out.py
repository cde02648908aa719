"""`--format json`: one JSON document, the contract described in docs/json.md.

Written with the C encoder, one connection per line (`jq` and `grep` both work on it), and
without building the whole document in memory.
"""

from __future__ import annotations

import json
from typing import TextIO

from analyzer.report import Report

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def render(report: Report, out: TextIO, **_options) -> None:
    head = report.to_dict(connections=False)
    out.write("{\n")
    for key, value in head.items():
        out.write(" %s: %s,\n" % (_dumps(key), _dumps(value)))
    out.write(' "connections": [')
    first = True
    for c in report.connection_dicts():
        out.write("\n  " if first else ",\n  ")
        out.write(_dumps(c))
        first = False
    out.write("\n ]\n}\n" if not first else "]\n}\n")
