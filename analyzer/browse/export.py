"""The browser's export: the connections the filter keeps, as the JSON report (docs/json.md).

The document is the one `-f json --filter EXPR` writes, byte for byte: the same selection
(`analyzer.triage.select`) and the same writer (`analyzer.render.json_out`), so `connections`
holds the shown connections in stream order (whatever the table's sort), `selection` says how
many of how many, and the capture, the summary and the capture-wide findings are the whole
analysis's. Without a filter it is the plain `-f json` document. The file is written beside its final name and renamed into place, so
a failed export leaves no half-written report, and a capture being browsed is never the target.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator, List, Optional, Sequence

from analyzer.judge.result import ConnResult
from analyzer.render.json_out import render
from analyzer.report.model import Report
from analyzer.triage.filter import Filter
from analyzer.triage.select import Selection


class ExportError(Exception):
    """The export could not be written; `str()` is one line saying why."""


class Shown:
    """The shown connections as a report's `connections` (a `ResultSink` read back)."""

    def __init__(self, results: List[ConnResult]) -> None:
        self.results = results

    def add(self, r: ConnResult) -> None:        # pragma: no cover - never analysed into
        self.results.append(r)

    def __iter__(self) -> Iterator[ConnResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


def shown_report(report: Report, results: List[ConnResult]) -> Report:
    """`report` with only `results` (stream order) as its connections."""
    return Report(report.capture, Shown(results), report.summary, report.msl, {},
                  report.findings)


def export_json(path: str, report: Report, results: List[ConnResult],
                captures: Sequence[str] = (), flt: Optional[Filter] = None) -> None:
    """Write the JSON report of the `results` (every connection, stream order) that `flt`
    keeps to `path`, atomically."""
    if not path.strip():
        raise ExportError("no file name given")
    target = os.path.abspath(os.path.expanduser(path))
    for capture in captures:
        if capture != "-" and os.path.exists(capture) and os.path.exists(target) \
                and os.path.samefile(capture, target):
            raise ExportError("%s is a capture being browsed: choose another name" % path)
    if os.path.isdir(target):
        raise ExportError("%s is a directory" % path)
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tcpflow-check-", suffix=".json.part", dir=folder)
    except OSError as exc:
        raise ExportError("cannot write in %s: %s" % (folder, exc.strerror or exc))
    try:
        with open(fd, "w", encoding="utf-8") as out:
            if flt is None:
                render(shown_report(report, results), out)
            else:
                selection = Selection(Shown([]), flt)
                for r in results:
                    selection.add(r)
                render(Report(report.capture, selection, report.summary, report.msl, {},
                              report.findings), out, selection=selection)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise ExportError("cannot write %s: %s" % (path, exc.strerror or exc))
    except BaseException:
        os.unlink(tmp)
        raise
