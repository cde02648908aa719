"""The browser's export: the connections the filter keeps, as the JSON report (docs/json.md).

The document is the one `-f json` writes, by the same writer (`analyzer.render.json_out`),
with `connections` holding the shown connections in stream order (whatever the table's sort);
the capture, the summary and the capture-wide findings are the whole analysis's, as in a
filtered `-f json` run. The file is written beside its final name and renamed into place, so
a failed export leaves no half-written report, and a capture being browsed is never the target.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator, List, Sequence

from analyzer.judge.result import ConnResult
from analyzer.render.json_out import render
from analyzer.report.model import Report


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
                captures: Sequence[str] = ()) -> None:
    """Write the JSON report of `results` to `path`, atomically."""
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
            render(shown_report(report, results), out)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise ExportError("cannot write %s: %s" % (path, exc.strerror or exc))
    except BaseException:
        os.unlink(tmp)
        raise
