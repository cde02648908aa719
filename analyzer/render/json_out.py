"""`--format json`: one JSON document, the contract described in docs/json.md."""

from __future__ import annotations

import json
from typing import TextIO

from analyzer.report import Report


def render(report: Report, out: TextIO, **_options) -> None:
    json.dump(report.to_dict(), out, indent=1, sort_keys=False)
    out.write("\n")
