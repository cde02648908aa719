"""Several reports from one analysis: each output's sink, filled by one pass, then each written.

`-f/-o` name the main report and every `--report FORMAT=FILE` one more. Each output keeps what
its renderer wants of the connections (`make_sink`); `Fanout` hands every result to all of
them (and to the CI gate's counters) during the single pass of `analyze()`
(`analyzer.report.fanout`), and each output is
then rendered from the same report with its own connections. Each file follows `-o`'s rules
(`analyzer.render.output`): never an input, checked before reading, written to a temporary
file in its directory and renamed over the target only once complete.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, List, NamedTuple, Sequence, TextIO

from analyzer.capture.source import one_line
from analyzer.common.names import printable
from analyzer.render import RENDERERS, make_sink
from analyzer.render.output import ReportFile, same_as_input
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings


class Output(NamedTuple):
    fmt: str
    path: str                   # "-" is stdout
    sink: ResultSink


def parse_report_option(text: str) -> "tuple[str, str]":
    """`junit=tcpflow-check.xml` -> ("junit", "tcpflow-check.xml"); ValueError with the
    reason otherwise."""
    fmt, sep, path = text.partition("=")
    if not sep or not path:
        raise ValueError("%r is not FORMAT=FILE (e.g. junit=tcpflow-check.xml)" % text)
    if fmt not in RENDERERS:
        raise ValueError("unknown format %r in %r (one of: %s)"
                         % (fmt, text, ", ".join(sorted(RENDERERS))))
    return fmt, path


def plan(targets: Sequence["tuple[str, str]"], settings: Settings, **options: Any) -> List[Output]:
    """One output per (format, path), each with the sink its renderer wants."""
    out = []
    for fmt, path in targets:
        sink = make_sink(fmt, settings, **options)
        out.append(Output(fmt, path, sink if sink is not None
                          else ResultStore(settings.result_budget)))
    return out


def check_target(path: str, inputs: Sequence[str]) -> None:
    """Refuse, before anything is read, an output file that could not be written or that is
    one of the inputs (a report written over the capture would destroy it): ValueError. The
    rules are `-o`'s (`analyzer.render.output`)."""
    if same_as_input(path, inputs) is not None:
        raise ValueError("%s is an input of this run; it would be overwritten" % printable(path))
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError("cannot write %s: no directory %s" % (printable(path),
                                                              printable(directory)))
    try:
        ReportFile(path).discard()      # the temporary file it would write is made, then gone
    except OSError as exc:
        raise ValueError("cannot write %s: %s" % (printable(path), one_line(exc)))


def for_output(report: Report, output: Output) -> Report:
    """The report as `output` renders it: the same analysis, that output's connections."""
    return report.with_connections(output.sink)


@contextmanager
def replacing(path: str) -> Iterator[TextIO]:
    """A text stream whose file replaces `path` when the block ends without an exception (the
    `-o` rules: `analyzer.render.output.ReportFile`); nothing is left of it otherwise."""
    out = ReportFile(path)
    try:
        yield out.stream
        out.commit()
    finally:
        out.discard()
