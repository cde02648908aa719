"""The `tcpflow-check` command: parse options, call the library, pick a renderer, exit.

stdout carries the report and nothing else; warnings and errors go to stderr, one line each.
Exit codes: 0 analysed; 1 findings at or above --fail-on, a broken policy rule or a baseline
regression (analyzer.gate); 2 usage error, or a policy or baseline that cannot be used; 3 a
capture could not be read (everything readable is still reported); 70 an internal error (a
bug: one line on stderr, never a traceback).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import sys
from typing import Any, Dict, Iterator, NamedTuple, Optional, TextIO, Tuple

import click

from analyzer import build
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.gate.baseline import BaselineError, write_baseline
from analyzer.gate.github import in_github_actions
from analyzer.gate.policy import PolicyError
from analyzer.gate.session import GateSession, exit_code
from analyzer.pipeline import analyze
from analyzer.render import RENDERERS, make_sink, render
from analyzer.render.outputs import (check_target, for_output, parse_report_option, plan,
                                     replacing)
from analyzer.render.progress import progress
from analyzer.report.fanout import Fanout
from analyzer.report.model import EXIT_INTERNAL, EXIT_UNREADABLE, EXIT_USAGE, Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.triage.filter import FilterError, parse
from analyzer.triage.select import GROUPINGS, Selection, sort_key, sorted_results
from analyzer.settings import DEFAULT_MSL, Settings
from analyzer.tcp.flows import DEFAULT_MAX_LIVE


def _warn(message: str) -> None:
    click.echo("%s: %s" % (TOOL_NAME, message), err=True)


class CIOptions(NamedTuple):
    """The CI gate's options (docs/ci.md)."""
    policy: Optional[str]
    no_policy: bool
    baseline: Optional[str]
    write_baseline: Optional[str]
    reports: Tuple[Tuple[str, str], ...]
    summary_md: Optional[str]


def _report_option(ctx: click.Context, param: click.Parameter,
                   values: Tuple[str, ...]) -> Tuple[Tuple[str, str], ...]:
    try:
        return tuple(parse_report_option(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param)


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
              help="Connections tracked at once; past it the least recently active are "
                   "finalized early (bounded memory under SYN floods).")
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
@click.option("-q", "--quiet", is_flag=True, help="No progress line on stderr.")
@click.option("--color/--no-color", default=None,
              help="Force colour on or off (default: on a terminal, unless NO_COLOR is set; "
                   "FORCE_COLOR colours a pipe).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              default="-", help="Write the report to a file instead of stdout.")
@click.option("--report", "reports", multiple=True, metavar="FORMAT=FILE", callback=_report_option,
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
         summary_md: Optional[str]) -> None:
    """Verdicts for every TCP connection in CAPTURE (pcap, pcapng, gzip; '-' reads stdin).

    Several files are analysed as one time-ordered capture (rotated captures).
    """
    try:
        triage = _triage(fmt, show_all, limit, streams, filter_text, sort, group_by, explain)
        _run(captures, fmt, show_all, msl, fail_on, color, output, streams + explain,
             100 if limit is None else limit, checksums, quiet, max_connections, idle_timeout,
             triage, CIOptions(policy, no_policy, baseline, write_baseline, reports, summary_md))
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:  # pragma: no cover - interactive
        _warn("interrupted")
        sys.exit(130)
    except Exception as exc:  # pragma: no cover - a bug: one line, its own exit code
        _warn("internal error: %s: %s (please report it with the capture)"
              % (type(exc).__name__, exc))
        sys.exit(EXIT_INTERNAL)


def _run(captures: Tuple[str, ...], fmt: str, show_all: bool, msl: float,
         fail_on: Optional[str], color: Optional[bool], output: str,
         streams: Tuple[int, ...], limit: int, checksums: bool, quiet: bool,
         max_connections: int, idle_timeout: Optional[float], triage: dict,
         ci: CIOptions) -> None:
    if captures.count("-") > 1:
        raise click.UsageError("stdin ('-') can be given only once")
    # The analysis and the report make no reference cycles: reference counting frees all.
    # The cyclic collector would only rescan the live results again and again (reading the
    # spilled results back took eight times longer with it on).
    try:
        settings = Settings(msl=msl, idle_timeout=idle_timeout, checksums=checksums,
                            max_live=max_connections, ladders=frozenset(streams))
    except ValueError as exc:
        raise click.UsageError(str(exc))
    gate = _gate_session(ci)
    for target in [path for _, path in ci.reports] + [ci.summary_md, ci.write_baseline]:
        try:
            if target is not None:
                check_target(target, captures)
        except ValueError as exc:
            raise click.UsageError(str(exc))
    # The renderer says what it keeps of each connection (JSON: its line; the terminal:
    # only those needing attention, unless --all), behind the triage selection. Each
    # --report file's renderer keeps its own (every connection: --filter shapes the main
    # report), and the gate counts every connection; one pass fills them all.
    sink = _sink(fmt, settings, show_all, triage, policy=gate.policy is not None)
    extra = plan(ci.reports, settings, show_all=show_all, policy=gate.policy is not None)
    feed = sink
    if extra or gate.sink is not None:
        if sink is None:                     # (not `or`: an empty sink is falsy)
            sink = ResultStore(settings.result_budget)
        feed = Fanout([sink] + [o.sink for o in extra] + [gate.sink])
    gc.disable()
    with progress(not quiet and sys.stderr.isatty()) as on_frame:
        report = analyze(list(captures), settings, on_frame=on_frame, sink=feed)
    if sink is not None:
        report.connections = sink
    for message in report.capture.warnings:
        _warn("warning: " + message)
    for message in report.capture.errors:
        _warn("error: " + message)
    if report.capture.errors and len(report.capture.errors) == len(captures):
        sys.exit(EXIT_UNREADABLE)
    missing = [n for n in sorted(set(streams)) if n not in report.ladders]
    if missing:
        _warn("no stream %s in the capture (%d connections, numbered from 0)" % (
            ", ".join(map(str, missing)), report.summary.connections))
        sys.exit(EXIT_USAGE)
    finished = gate.finish(report)
    shown = dict(show_all=show_all, color=color, limit=limit, gate=finished.gate,
                 changes=finished.changes, fail_on=fail_on)
    options = _select(report, triage, settings)
    out = _open_output(output)
    try:
        render(fmt, report, out, **shown, **options)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. What is still buffered for the closed
        # pipe would fail again when Python flushes stdout at exit, so stdout points at
        # /dev/null from here on (the recipe in Python's `signal` documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    finally:
        if out is not sys.stdout:
            out.close()
    for o in extra:
        with _writing(o.path, "--report") as fh:
            render(o.fmt, for_output(report, o), fh, **shown)
    for line in finished.lines:
        _warn(line)
    for command in finished.annotations:       # GitHub reads them from stderr too
        click.echo(command, err=True)
    code = exit_code(report.return_code(fail_on), finished)
    _summaries(gate, report, finished, code, ci)
    sys.exit(code)


def _gate_session(ci: CIOptions) -> GateSession:
    """The policy and the baseline, read before any capture: a bad one is exit 2."""
    try:
        gate = GateSession.open(ci.policy, ci.no_policy, ci.baseline, ci.write_baseline)
    except (PolicyError, BaselineError) as exc:
        _warn(str(exc))
        sys.exit(EXIT_USAGE)
    if gate.found:
        _warn("using the policy in %s" % gate.policy_file)
    return gate


def _summaries(gate: GateSession, report, finished, code: int, ci: CIOptions) -> None:
    """The Markdown summary (GitHub's step summary, --summary-md) and --write-baseline."""
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") if gate.active else None
    if ci.summary_md or (step_summary and in_github_actions()):
        markdown = gate.summary(report, finished, code)
        if ci.summary_md:
            with _writing(ci.summary_md, "--summary-md") as fh:
                fh.write(markdown)
        if step_summary and in_github_actions():
            try:
                with open(step_summary, "a", encoding="utf-8") as fh:
                    fh.write(markdown)
            except OSError as exc:
                _warn("warning: cannot append to $GITHUB_STEP_SUMMARY (%s): %s"
                      % (step_summary, exc.strerror or exc))
    if ci.write_baseline:
        with _writing(ci.write_baseline, "--write-baseline") as fh:
            write_baseline(gate.baseline_document(report), fh)


@contextlib.contextmanager
def _writing(path: str, option: str) -> Iterator[TextIO]:
    """A file written whole or not at all; one line and exit 3 when it cannot be."""
    try:
        with replacing(path) as fh:
            yield fh
    except OSError as exc:
        _warn("error: cannot write %s (%s): %s" % (path, option, exc.strerror or exc))
        sys.exit(EXIT_UNREADABLE)



def _triage(fmt: str, show_all: bool, limit: Optional[int], streams: Tuple[int, ...],
            filter_text: Optional[str], sort: Optional[str], group_by: Optional[str],
            explain: Tuple[int, ...]) -> Dict[str, Any]:
    """The triage options, checked together: a bad filter or sort key, or options that make
    no sense together, stop here with a usage error (exit 2) before any capture is read."""
    single = "--stream/--explain" if streams or explain else ""
    conflicts = [
        (bool(streams) and fmt == "zeek", "--stream", "-f zeek", "a Zeek conn.log has no ladder"),
        (bool(explain) and fmt != "text", "--explain", "-f " + fmt, "it narrates in text"),
        (bool(group_by) and fmt == "zeek", "--group-by", "-f zeek",
         "a Zeek conn.log has one line per connection"),
        (bool(group_by) and bool(single), "--group-by", single,
         "they show single connections")]
    for clash, option, other, why in conflicts:
        if clash:
            raise click.UsageError("%s cannot be used with %s: %s" % (option, other, why))
    if fmt != "text":
        if limit is not None:
            _warn("warning: --limit applies to the terminal report; -f %s lists every "
                  "connection" % fmt)
    elif limit is not None and show_all:
        _warn("warning: --limit has no effect with --all, which lists every connection")
    elif group_by and (sort or show_all or limit is not None):
        _warn("warning: the terminal report lists groups, not connections, with --group-by: "
              "--sort, --all and --limit have no effect on it")
    flt = None
    if filter_text is not None:
        try:
            flt = parse(filter_text)
        except FilterError as exc:
            _warn("--filter: %s\n%s" % (exc.message, exc.caret(filter_text)))
            sys.exit(EXIT_USAGE)
    if sort is not None:
        try:
            sort_key(sort)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--sort'")
    return {"filter": flt, "sort": sort, "group_by": group_by, "explain": explain,
            "streams": streams}


def _sink(fmt: str, settings: Settings, show_all: bool,
          triage: Dict[str, Any], policy: bool = False) -> Optional[ResultSink]:
    """The renderer's sink, behind the triage selection when there is something to select
    (the filter decides before the renderer encodes or drops a result). Sorting needs the
    results themselves: the default store."""
    inner = None if triage["sort"] else make_sink(fmt, settings, show_all=show_all, policy=policy)
    if triage["filter"] is None and triage["group_by"] is None and not triage["sort"]:
        return inner
    if inner is None:
        inner = ResultStore(settings.result_budget)
    return Selection(inner, triage["filter"], triage["group_by"], triage["sort"])


def _select(report: Report, triage: Dict[str, Any], settings: Settings) -> Dict[str, Any]:
    """What the renderer needs beyond the report: the selection, the results in --sort's
    order, and the explanations asked for."""
    options: Dict[str, Any] = {}
    if isinstance(report.connections, Selection):
        options["selection"] = report.connections
    if triage["sort"]:
        report.connections = sorted_results(report.connections, triage["sort"])
    if triage["explain"]:
        from analyzer.triage.explain import explain
        wanted = set(triage["explain"])
        options["ladders"] = bool(triage["streams"])
        options["explanations"] = {r.id: explain(r, report.ladders[r.id], settings.msl)
                                   for r in report.connections if r.id in wanted}
    return options


def _open_output(output: str) -> TextIO:
    """The report's stream: a plain UTF-8 text file, stdout's descriptor for '-'.

    Not `click.open_file`: its wrapper forwards every `write` through a Python-level
    `__getattr__`, which cost a fifth of writing the JSON report."""
    try:
        if output != "-":
            return open(output, "w", encoding="utf-8")
        sys.stdout.flush()
        return open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    except io.UnsupportedOperation:         # stdout replaced by an object without a descriptor
        return sys.stdout
    except OSError as exc:
        raise click.BadParameter("cannot write %s: %s" % (output, exc.strerror or exc),
                                 param_hint="'-o' / '--output'")


if __name__ == "__main__":  # pragma: no cover
    main()
