"""The `tcpflow-check` command itself: its options, and the run from them to an exit code.

The command's rules (stdout, stderr, exit codes) are in the package's docstring."""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
from typing import Any, Dict, Optional, Tuple

import click

from analyzer import build
from analyzer.capture.interrupt import interruptible, received
from analyzer.capture.source import one_line
from analyzer.cli.browse import browse_only
from analyzer.cli.echo import read_out, warn
from analyzer.cli.gate import CIOptions, gate_session, report_option, summaries, writing
from analyzer.cli.needs import zeek_view_needed
from analyzer.cli.triage import check_triage, select, triage_sink
from analyzer.common.names import printable
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.gate.session import GateSession, exit_code
from analyzer.pipeline import analyze
from analyzer.render import RENDERERS, render
from analyzer.render.output import ReportFile, same_as_input
from analyzer.render.outputs import check_target, for_output, plan
from analyzer.render.progress import progress
from analyzer.report.fanout import Fanout
from analyzer.report.model import EXIT_INTERNAL, EXIT_UNREADABLE, EXIT_USAGE
from analyzer.report.store import ResultStore
from analyzer.settings import DEFAULT_MSL, Settings
from analyzer.tcp.flows import DEFAULT_MAX_LIVE
from analyzer.tcp.parked import DEFAULT_MAX_PARKED
from analyzer.triage.select import GROUPINGS


def udp_tunnel(ctx: click.Context, param: click.Parameter,
                values: Tuple[str, ...]) -> Tuple[Tuple[int, str], ...]:
    """`--udp-tunnel PORT=KIND` values as (port, kind) pairs (Settings checks them)."""
    out = []
    for value in values:
        port, sep, kind = value.partition("=")
        if not sep or not port.strip().isdigit():
            raise click.BadParameter("%r is not PORT=KIND (for example 4790=vxlan)" % value)
        out.append((int(port), kind.strip().lower()))
    return tuple(out)


def jobs_option(value: str) -> int:
    """`--jobs N|auto` as a number of processes."""
    if value.strip().lower() == "auto":
        from analyzer.parallel.local import cores
        return cores()
    if not value.strip().isdigit() or int(value) < 1:
        raise click.BadParameter("%r is not a number of processes (1 or more) or 'auto'" % value)
    return int(value)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text",
              show_default=True, help="Report format (json is a documented contract).")
@click.option("-a", "--all", "show_all", is_flag=True,
              help="List every connection, not only those that need attention.")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=None,
              help="Terminal: list at most this many connections needing attention, most "
                   "severe first (default 100; 0 = no limit).")
@click.option("--max-connections", type=click.IntRange(min=100), default=DEFAULT_MAX_LIVE,
              show_default=True,
              help="Connections held in memory at once; past it the least recently active "
                   "are parked on disk until their next packet (the report is the same).")
@click.option("--max-parked", type=click.IntRange(min=0), default=DEFAULT_MAX_PARKED,
              show_default=True,
              help="Connections parked on disk at once; past it a connection is finalized "
                   "early instead, with the finding MEMORY_BOUND (bounded disk and memory "
                   "under SYN floods).")
@click.option("--idle-timeout", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Finalize a connection silent for this many capture seconds (default: never,"
                   " as Wireshark).")
@click.option("--checksums", is_flag=True,
              help="Validate IPv4 and TCP checksums (off by default: offload makes most "
                   "captured checksums wrong).")
@click.option("--msl", type=click.FloatRange(min=0.0), default=DEFAULT_MSL, show_default=True,
              help="Maximum segment lifetime in seconds; TIME_WAIT lasts 2*MSL "
                   "(30 = Linux's 60 s TIME_WAIT; RFC 793 says 120).")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default=None,
              help="Exit 1 when a finding of this severity or worse is present (the CI "
                   "gate's shortcut; --policy says more).")
@click.option("-s", "--stream", "streams", type=click.IntRange(min=0), multiple=True,
              help="Show this connection (Wireshark tcp.stream number) with its packet ladder; repeatable.")
@click.option("--filter", "filter_text", metavar="EXPR",
              help="Keep the connections EXPR accepts (Wireshark-like: 'ip.addr == 10.0.0.0/8 "
                   "and lingering == CLOSE_WAIT'; docs/filters.md lists the fields).")
@click.option("--sort", metavar="[-]FIELD",
              help="Order the connections by a filter field ('-' first: descending).")
@click.option("--group-by", type=click.Choice(sorted(GROUPINGS)),
              help="Count the connections per server, client, port or finding code.")
@click.option("--explain", "explain", type=click.IntRange(min=0), multiple=True, metavar="N",
              help="Narrate stream N's handshake and close, arithmetic checked; repeatable.")
@click.option("--udp-tunnel", "udp_tunnels", multiple=True, callback=udp_tunnel,
              metavar="PORT=KIND",
              help="Also open UDP port PORT as a tunnel of KIND (vxlan, geneve, gtp-u, teredo, "
                   "ayiya, l2tp, gre, mpls); repeatable. The standard ports are always opened.")
@click.option("-j", "--jobs", callback=lambda ctx, _, value: jobs_option(value), default="1",
              metavar="N|auto", show_default=True,
              help="Analyse in N processes (auto: one per core); the report is the same "
                   "unless --max-parked bites: the bounds hold per process (docs/scale.md).")
@click.option("--dask", metavar="ADDRESS|local", expose_value=False,
              callback=lambda ctx, _, value: ctx.meta.update(dask=value),
              help="Run the shards (or the groups) as tasks of the Dask cluster at ADDRESS "
                   "(tcp://host:8786), or of a local one; needs the 'dask' extra "
                   "(docs/scale.md).")
@click.option("--group-by-file", metavar="REGEX", expose_value=False,
              callback=lambda ctx, _, value: ctx.meta.update(group_by_file=value),
              help="Analyse the files as independent capture groups named by REGEX's first "
                   "group in each path (one per sensor), each group as its own capture.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line on stderr.")
@click.option("--browse", is_flag=True, expose_value=False, callback=lambda ctx, _, value:
              ctx.meta.update(browse=value),
              help="Browse the connections in a full-screen terminal app (needs the "
                   "'browse' extra: pip install 'tcpflow-check[browse]').")
@click.option("--color/--no-color", default=None,
              help="Force colour on or off (default: on a terminal, unless NO_COLOR is set; "
                   "FORCE_COLOR colours a pipe).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              default="-", help="Write the report to a file instead of stdout.")
@click.option("--report", "reports", multiple=True, metavar="FORMAT=FILE", callback=report_option,
              help="Also write the report in FORMAT to FILE, from the same analysis; "
                   "repeatable (junit=tcpflow-check.xml).")
@click.option("--policy", type=click.Path(dir_okay=False), default=None,
              help="CI policy (TOML): what the recorded traffic must look like (docs/ci.md). "
                   "Default: the nearest tcpflow-check.toml, or pyproject.toml with "
                   "[tool.tcpflow-check].")
@click.option("--no-policy", is_flag=True, help="Do not look for a policy file.")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None,
              help="Compare with a known-good run (a --write-baseline file or a JSON report); "
                   "exit 1 on a regression.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), default=None,
              help="Record this run's signature per server as a baseline file.")
@click.option("--summary-md", type=click.Path(dir_okay=False), default=None,
              help="Write the gate's Markdown summary (under GitHub Actions it is appended to "
                   "$GITHUB_STEP_SUMMARY).")
@click.version_option(__version__, "-V", "--version", prog_name=TOOL_NAME,
                      message="%%(prog)s %%(version)s (%s)" % build())
def main(captures: Tuple[str, ...], fmt: str, show_all: bool, msl: float,
         fail_on: Optional[str], color: Optional[bool], output: str,
         streams: Tuple[int, ...], limit: int, checksums: bool, quiet: bool,
         max_connections: int, idle_timeout: Optional[float], filter_text: Optional[str],
         sort: Optional[str], group_by: Optional[str], explain: Tuple[int, ...],
         reports: Tuple[Tuple[str, str], ...], policy: Optional[str], no_policy: bool,
         baseline: Optional[str], write_baseline: Optional[str],
         summary_md: Optional[str], udp_tunnels: Tuple[Tuple[int, str], ...] = (),
         jobs: int = 1, max_parked: int = DEFAULT_MAX_PARKED) -> None:
    """Verdicts for every TCP connection in CAPTURE (pcap, pcapng, gzip; '-' reads stdin).

    Several files are analysed as one time-ordered capture (rotated captures).

    \b
    Exit codes:
      0   analysed
      1   a finding at or above --fail-on, a policy violated, a baseline regressed
      2   usage error (an -o that is an input or cannot be written, a bad policy included)
      3   I/O error: a capture unreadable, or the report unwritable
      130 interrupted by SIGINT, 143 by SIGTERM (the report so far is written)
      70  internal error (a bug)
    """
    if click.get_current_context().meta.get("browse"):
        sys.exit(browse_only(captures, msl, checksums, max_connections, idle_timeout, udp_tunnels))
    try:
        triage = check_triage(fmt, show_all, limit, streams, filter_text, sort, group_by, explain)
        _run(captures, fmt, show_all, msl, fail_on, color, output, streams + explain,
             100 if limit is None else limit, checksums, quiet, max_connections, idle_timeout,
             triage, CIOptions(policy, no_policy, baseline, write_baseline, reports, summary_md),
             udp_tunnels, jobs, max_parked)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:  # pragma: no cover - interactive
        warn("interrupted")
        sys.exit(130)
    except Exception as exc:  # pragma: no cover - a bug: one line, its own exit code
        warn("internal error: %s: %s (please report it with the capture)"
              % (type(exc).__name__, exc))
        sys.exit(EXIT_INTERNAL)


def run() -> None:
    """The `tcpflow-check` process (the console script, `python -m analyzer`): `main`, and
    then the process ends with its exit code as soon as stdout and stderr are flushed and the
    workers of a `--jobs` run have exited, without the interpreter's teardown (a garbage
    collection over everything still in memory and the freeing of it all: a tenth of a second
    after a large report, every one of them serial). Nothing is written after `main` returns
    but what those flushes write (the report file is committed, spilled results are in
    anonymous files); the ordinary exit is taken whenever something else could still need
    it: an exit status that is not a number, a stream that fails to flush, another thread,
    a Dask client. `main` itself, called in-process (tests, `CliRunner`), exits normally."""
    try:
        main()
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
        if isinstance(code, int) and not isinstance(code, bool) and _quiet_end():
            os._exit(code & 0xFF)
        raise


def _quiet_end() -> bool:
    """Whether the process may end without teardown (`run`): stdout and stderr flushed, the
    local workers joined, no other thread, no Dask client."""
    import threading
    if threading.active_count() != 1 or "distributed" in sys.modules:
        return False
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):           # left to the ordinary exit, which says it
        return False
    workers = sys.modules.get("analyzer.parallel.workers")
    if workers is not None:                 # shards waiting to send lines nobody reads
        workers.release()
        for worker in workers.running():    # (forked)
            worker.join()
    processes = sys.modules.get("multiprocessing")
    if processes is not None:               # (spawned)
        for child in processes.active_children():
            child.join()
    return True


def _run(captures: Tuple[str, ...], fmt: str, show_all: bool, msl: float,
         fail_on: Optional[str], color: Optional[bool], output: str,
         streams: Tuple[int, ...], limit: int, checksums: bool, quiet: bool,
         max_connections: int, idle_timeout: Optional[float], triage: dict,
         ci: CIOptions, udp_tunnels: Tuple[Tuple[int, str], ...] = (), jobs: int = 1,
         max_parked: int = DEFAULT_MAX_PARKED) -> None:
    if captures.count("-") > 1:
        raise click.UsageError("stdin ('-') can be given only once")
    if fmt == "svg" and len(set(streams)) != 1:
        raise click.UsageError("--format svg draws one connection: give it with --stream N, once")
    if fmt == "svg" and "-" in captures:
        raise click.UsageError("--format svg reads the capture twice: give a file, not stdin")
    # The analysis and the report make no reference cycles: reference counting frees all.
    # The cyclic collector would only rescan the live results again and again (reading the
    # spilled results back took eight times longer with it on).
    try:
        settings = Settings(msl=msl, idle_timeout=idle_timeout, checksums=checksums,
                            max_live=max_connections, ladders=frozenset(streams),
                            udp_tunnels=udp_tunnels, max_parked=max_parked)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    inputs = same_as_input(output, captures)
    if inputs is not None:
        raise click.UsageError("the report would overwrite the input %s; choose another -o"
                               % inputs)
    gate = gate_session(ci)
    if not zeek_view_needed(fmt, ci.reports, triage, gate.policy is not None
                            or gate.baseline is not None or ci.write_baseline is not None):
        settings = dataclasses.replace(settings, zeek_view=False)
    for target in [path for _, path in ci.reports] + [ci.summary_md, ci.write_baseline]:
        try:
            if target is not None:
                check_target(target, captures)
        except ValueError as exc:
            raise click.UsageError(str(exc))
    report_file = _open_output(output)
    gc.disable()
    with interruptible():
        try:
            code = _analyze_and_write(captures, fmt, show_all, fail_on, color, streams, limit,
                                      quiet, settings, report_file, triage, gate, ci, jobs)
        finally:
            report_file.discard()           # unless committed: no half report stays
        signum = received()
    if signum:
        warn("interrupted by %s: the report covers what was read before it"
              % signal.Signals(signum).name)
        sys.exit(128 + signum)
    sys.exit(code)


def _analyze_and_write(captures: Tuple[str, ...], fmt: str, show_all: bool,
                       fail_on: Optional[str], color: Optional[bool], streams: Tuple[int, ...],
                       limit: int, quiet: bool, settings: Settings, report_file: ReportFile,
                       triage: Dict[str, Any], gate: GateSession, ci: CIOptions,
                       jobs: int = 1) -> int:
    """Run the analysis and write its reports; the exit code."""
    # The renderer says what it keeps of each connection (JSON: its line; the terminal:
    # only those needing attention, unless --all), behind the triage selection. Each
    # --report file's renderer keeps its own (every connection: --filter shapes the main
    # report), and the gate counts every connection; one pass fills them all.
    context = click.get_current_context(silent=True)
    meta = {} if context is None else context.meta
    dask = meta.get("dask")
    if dask is not None and context is not None and \
            context.get_parameter_source("jobs") == click.core.ParameterSource.DEFAULT:
        jobs = 0                            # one shard per thread of the cluster
    if meta.get("group_by_file") is not None:
        from analyzer.cli.groups import write_groups
        return write_groups(captures, meta["group_by_file"], fmt, show_all, fail_on, color,
                            streams, limit, quiet, settings, report_file, triage, gate, ci,
                            jobs, dask)
    options = dict(show_all=show_all, policy=gate.policy is not None, limit=limit)
    sink = triage_sink(fmt, settings, triage, **options)
    extra = plan(ci.reports, settings, **options)
    feed = sink
    if extra or gate.sink is not None:
        if sink is None:                     # (not `or`: an empty sink is falsy)
            sink = ResultStore(settings.result_budget)
        feed = Fanout([sink] + [o.sink for o in extra] + [gate.sink])
    with progress(not quiet and sys.stderr.isatty()) as on_frame:
        if dask is not None:
            from analyzer.cli.groups import on_cluster
            report = on_cluster(captures, settings, dask, jobs, feed, on_frame)
        elif jobs > 1:
            from analyzer.parallel.local import analyze_jobs
            report = analyze_jobs(captures, settings, jobs, on_frame=on_frame, sink=feed,
                                  once=True)
        else:
            report = analyze(list(captures), settings, on_frame=on_frame, sink=feed)
    if read_out(report, sink, len(captures)):
        return EXIT_UNREADABLE
    missing = [n for n in sorted(set(streams)) if n not in report.ladders]
    if missing:
        warn("no stream %s in the capture (%d connections, numbered from 0)" % (
            ", ".join(map(str, missing)), report.summary.connections))
        return EXIT_USAGE
    finished = gate.finish(report)
    shown = dict(show_all=show_all, color=color, limit=limit, gate=finished.gate,
                 changes=finished.changes, fail_on=fail_on, captures=captures,
                 settings=settings)
    selected = select(report, triage, settings)
    out = report_file.stream
    try:
        render(fmt, report, out, **shown, **selected)
        report_file.commit()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. What is still buffered for the closed
        # pipe would fail again when Python flushes stdout at exit, so stdout points at
        # /dev/null from here on (the recipe in Python's `signal` documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:                  # a full disk, a closed stdout: the environment's
        warn("error: cannot write the report to %s: %s" % (report_file.name, one_line(exc)))
        return EXIT_UNREADABLE
    for o in extra:
        with writing(o.path, "--report") as fh:
            render(o.fmt, for_output(report, o), fh, **shown)
    for line in finished.lines:
        warn(line)
    for command in finished.annotations:       # GitHub reads them from stderr too
        click.echo(command, err=True)
    code = exit_code(report.return_code(fail_on), finished)
    summaries(gate, report, finished, code, ci)
    return code


def _open_output(output: str) -> ReportFile:
    """The report's file, made before the analysis (`analyzer.render.output`): a file that
    cannot be written is a usage error (exit 2), stdout that cannot be an I/O error (3)."""
    try:
        return ReportFile(output)
    except OSError as exc:
        if output == "-":
            warn("error: cannot write the report to <stdout>: %s" % one_line(exc))
            sys.exit(EXIT_UNREADABLE)
        raise click.BadParameter("cannot write %s: %s" % (printable(output), one_line(exc)),
                                 param_hint="'-o' / '--output'")
