"""`--dask` and `--group-by-file` on the command line: the run on a Dask cluster, and the
report of an archive's capture groups (docs/scale.md).

A group's part of the report is what `tcpflow-check [options] GROUP-FILES` writes for that
group alone (render/groups.py wraps the parts); its warnings and errors go to stderr as that
run's would, its policy lines prefixed with the group's name. The exit code is the worst of
the groups' (3 over 1 over 0). A group whose every file is unreadable has no part (exit 3).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import click

from analyzer.cli.echo import read_out, warn
from analyzer.cli.gate import CIOptions
from analyzer.cli.triage import select, triage_sink
from analyzer.gate.session import GateSession, exit_code
from analyzer.parallel.groups import GroupError, analyze_groups, group_files
from analyzer.render import render
from analyzer.render.groups import GROUPED, GroupWriter
from analyzer.render.output import ReportFile
from analyzer.render.progress import progress
from analyzer.report.fanout import Fanout
from analyzer.report.model import EXIT_UNREADABLE, Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings


def need_dask() -> None:
    """A usage error (exit 2) when the 'dask' extra is not installed."""
    try:
        found = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise click.UsageError("--dask needs Dask, which is not installed: "
                               "pip install 'tcpflow-check[dask]'")


def on_cluster(captures: Tuple[str, ...], settings: Settings, dask: str, jobs: int,
               sink: Optional[ResultSink], on_frame: Optional[Callable[[int], None]]) -> Report:
    """The analysis as shards on the Dask cluster at `dask` (`jobs` shards, 0: one per
    thread of the cluster); a cluster that cannot be had is one line and exit 3."""
    need_dask()
    from analyzer.parallel.cluster import ClusterError, analyze_dask
    try:
        return analyze_dask(captures, settings, dask, jobs=jobs, sink=sink,
                            on_frame=on_frame)
    except ClusterError as exc:
        warn("error: %s" % exc)
        sys.exit(EXIT_UNREADABLE)


def write_groups(captures: Tuple[str, ...], pattern: str, fmt: str, show_all: bool,
                 fail_on: Optional[str], color: Optional[bool], streams: Tuple[int, ...],
                 limit: int, quiet: bool, settings: Settings, report_file: ReportFile,
                 triage: Dict[str, Any], gate: GateSession, ci: CIOptions, jobs: int,
                 dask: Optional[str]) -> int:
    """Analyse each capture group and write their reports (module docstring); the exit code."""
    refused = [(fmt not in GROUPED, "-f " + fmt, "it shows one capture"),
               (bool(streams), "--stream/--explain", "stream numbers are per group"),
               (bool(ci.reports), "--report", "write each group's files on its own"),
               (bool(ci.baseline or ci.write_baseline), "--baseline/--write-baseline",
                "a baseline describes one capture"),
               (bool(ci.summary_md), "--summary-md", "the summary describes one capture")]
    for clash, option, why in refused:
        if clash:
            raise click.UsageError("--group-by-file cannot be used with %s: %s" % (option, why))
    if dask is not None:
        need_dask()
    try:
        groups = group_files(captures, pattern)
    except GroupError as exc:
        raise click.UsageError(str(exc))
    options = dict(show_all=show_all, policy=gate.policy is not None, limit=limit)
    pairs: Deque[Tuple[Optional[ResultSink], GateSession]] = deque()

    def make_sink() -> Optional[ResultSink]:
        sink = triage_sink(fmt, settings, triage, **options)
        mine = GateSession(gate.policy, gate.policy_file, gate.found, None, None, False)
        pairs.append((sink, mine))
        if mine.sink is None:
            return sink
        if sink is None:
            sink = ResultStore(settings.result_budget)
            pairs[-1] = (sink, mine)
        return Fanout([sink, mine.sink])

    writer = GroupWriter(fmt, report_file.stream)
    code = 0
    from analyzer.parallel.cluster import ClusterError
    try:
        with progress(not quiet and sys.stderr.isatty()) as on_frame:
            for group, report in analyze_groups(groups, settings, jobs=jobs, dask=dask,
                                                make_sink=make_sink, on_frame=on_frame):
                sink, mine = pairs.popleft()
                code = max(code, _write_group(group.name, group.files, report, sink, mine,
                                              writer, fmt, show_all, fail_on, color, limit,
                                              settings, triage))
        writer.close()
        report_file.commit()
    except ClusterError as exc:
        warn("error: %s" % exc)
        return EXIT_UNREADABLE
    except BrokenPipeError:                 # as a run without groups (command.py)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def _write_group(name: str, files: Tuple[str, ...], report: Report,
                 sink: Optional[ResultSink], gate: GateSession, writer: GroupWriter, fmt: str,
                 show_all: bool, fail_on: Optional[str], color: Optional[bool], limit: int,
                 settings: Settings, triage: Dict[str, Any]) -> int:
    if read_out(report, sink, len(files)):
        return EXIT_UNREADABLE
    finished = gate.finish(report)
    shown = dict(show_all=show_all, color=color, limit=limit, gate=finished.gate,
                 changes=finished.changes, fail_on=fail_on, captures=files, settings=settings)
    writer.begin(name, files)
    render(fmt, report, writer.out, **shown, **select(report, triage, settings))
    writer.end()
    for line in finished.lines:
        warn("group %s: %s" % (name, line))
    for command in finished.annotations:
        click.echo(command, err=True)
    return exit_code(report.return_code(fail_on), finished)
