"""The CI gate's options on the command line: the policy and baseline read before any
capture, the Markdown summary and the baseline written after (docs/ci.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, NamedTuple, Optional, TextIO, Tuple

import click

from analyzer.capture.source import one_line
from analyzer.cli.echo import warn
from analyzer.common.names import printable
from analyzer.gate.discover import GateError
from analyzer.gate.session import GateSession
from analyzer.render.outputs import parse_report_option, replacing
from analyzer.report.model import EXIT_UNREADABLE, EXIT_USAGE, Report


class CIOptions(NamedTuple):
    """The CI gate's options (docs/ci.md)."""
    policy: Optional[str]
    no_policy: bool
    baseline: Optional[str]
    write_baseline: Optional[str]
    reports: Tuple[Tuple[str, str], ...]
    summary_md: Optional[str]


def report_option(ctx: click.Context, param: click.Parameter,
                   values: Tuple[str, ...]) -> Tuple[Tuple[str, str], ...]:
    try:
        return tuple(parse_report_option(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param)


def gate_session(ci: CIOptions) -> GateSession:
    """The policy and the baseline, read before any capture: a bad one is exit 2."""
    try:
        gate = GateSession.open(ci.policy, ci.no_policy, ci.baseline, ci.write_baseline)
    except GateError as exc:               # PolicyError, BaselineError
        warn(str(exc))
        sys.exit(EXIT_USAGE)
    if gate.found:
        warn("using the policy in %s" % gate.policy_file)
    return gate


def summaries(gate: GateSession, report: Report, finished: Any, code: int,
               ci: CIOptions) -> None:
    """The Markdown summary (GitHub's step summary, --summary-md) and --write-baseline."""
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") if gate.active else None
    if step_summary:
        from analyzer.gate.github import in_github_actions
        if not in_github_actions():
            step_summary = None
    if ci.summary_md or step_summary:
        markdown = gate.summary(report, finished, code)
        if ci.summary_md:
            with writing(ci.summary_md, "--summary-md") as fh:
                fh.write(markdown)
        if step_summary:
            try:
                with open(step_summary, "a", encoding="utf-8") as fh:
                    fh.write(markdown)
            except OSError as exc:
                warn("warning: cannot append to $GITHUB_STEP_SUMMARY (%s): %s"
                      % (printable(step_summary), one_line(exc)))
    if ci.write_baseline:
        from analyzer.gate.baseline import write_baseline
        with writing(ci.write_baseline, "--write-baseline") as fh:
            write_baseline(gate.baseline_document(report), fh)


@contextlib.contextmanager
def writing(path: str, option: str) -> Iterator[TextIO]:
    """A file written whole or not at all; one line and exit 3 when it cannot be."""
    try:
        with replacing(path) as fh:
            yield fh
    except OSError as exc:
        warn("error: cannot write %s (%s): %s" % (printable(path), option, one_line(exc)))
        sys.exit(EXIT_UNREADABLE)
