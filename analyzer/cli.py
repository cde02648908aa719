"""The `tcpflow-check` command: parse options, call the library, pick a renderer, exit.

stdout carries the report and nothing else; warnings and errors go to stderr, one line each.
Exit codes: 0 analysed; 1 findings at or above --fail-on; 2 usage error; 3 a capture could
not be read (everything readable is still reported); 70 an internal error (a bug: one line on
stderr, never a traceback).
"""

from __future__ import annotations

import gc
import io
import os
import sys
from typing import Any, Dict, Optional, TextIO, Tuple

import click

from analyzer import build
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.pipeline import analyze
from analyzer.render import RENDERERS, make_sink, render
from analyzer.render.progress import progress
from analyzer.report.model import EXIT_INTERNAL, EXIT_UNREADABLE, EXIT_USAGE, Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.triage.filter import FilterError, parse
from analyzer.triage.select import GROUPINGS, Selection, sort_key, sorted_results
from analyzer.settings import DEFAULT_MSL, Settings
from analyzer.tcp.flows import DEFAULT_MAX_LIVE


def _warn(message: str) -> None:
    click.echo("%s: %s" % (TOOL_NAME, message), err=True)


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
              help="Exit 1 when a finding of this severity or worse is present (CI gate).")
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
@click.option("--browse", is_flag=True, expose_value=False, callback=lambda ctx, _, value:
              ctx.meta.update(browse=value),
              help="Browse the connections in a full-screen terminal app (needs the "
                   "'browse' extra: pip install 'tcpflow-check[browse]').")
@click.option("--color/--no-color", default=None,
              help="Force colour on or off (default: on a terminal, unless NO_COLOR is set; "
                   "FORCE_COLOR colours a pipe).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              default="-", help="Write the report to a file instead of stdout.")
@click.version_option(__version__, "-V", "--version", prog_name=TOOL_NAME,
                      message="%%(prog)s %%(version)s (%s)" % build())
def main(captures: Tuple[str, ...], fmt: str, show_all: bool, msl: float,
         fail_on: Optional[str], color: Optional[bool], output: str,
         streams: Tuple[int, ...], limit: int, checksums: bool, quiet: bool,
         max_connections: int, idle_timeout: Optional[float], filter_text: Optional[str],
         sort: Optional[str], group_by: Optional[str], explain: Tuple[int, ...]) -> None:
    """Verdicts for every TCP connection in CAPTURE (pcap, pcapng, gzip; '-' reads stdin).

    Several files are analysed as one time-ordered capture (rotated captures).
    """
    if click.get_current_context().meta.get("browse"):
        sys.exit(_browse(captures, msl, checksums, max_connections, idle_timeout))
    try:
        triage = _triage(fmt, show_all, limit, streams, filter_text, sort, group_by, explain)
        _run(captures, fmt, show_all, msl, fail_on, color, output, streams + explain,
             100 if limit is None else limit, checksums, quiet, max_connections, idle_timeout,
             triage)
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
         max_connections: int, idle_timeout: Optional[float], triage: dict) -> None:
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
    gc.disable()
    with progress(not quiet and sys.stderr.isatty()) as on_frame:
        # The renderer says what it keeps of each connection (JSON: its line; the terminal:
        # only those needing attention, unless --all).
        report = analyze(list(captures), settings, on_frame=on_frame,
                         sink=_sink(fmt, settings, show_all, triage))
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
    options = _select(report, triage, settings)
    out = _open_output(output)
    try:
        render(fmt, report, out, show_all=show_all, color=color, limit=limit, **options)
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
    sys.exit(report.return_code(fail_on))


#: Options that only shape a printed report: the browser takes none of them.
_REPORT_ONLY = ("fmt", "show_all", "limit", "fail_on", "streams", "color", "output", "sort",
                "group_by", "explain")


def _browse(captures: Tuple[str, ...], msl: float, checksums: bool, max_connections: int,
            idle_timeout: Optional[float]) -> int:
    """`--browse`: the analysis's options apply; the report's make no sense (usage error)."""
    ctx = click.get_current_context()
    given = [p.opts[-1] for p in ctx.command.params if p.name in _REPORT_ONLY
             and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise click.UsageError("--browse shows connections on the screen: %s make%s no sense "
                               "with it" % (", ".join(given), "" if len(given) > 1 else "s"))
    filter_text = ctx.params.get("filter_text")       # the filter bar starts with it
    if filter_text is not None:
        try:
            parse(filter_text)
        except FilterError as exc:
            _warn("--filter: %s\n%s" % (exc.message, exc.caret(filter_text)))
            return EXIT_USAGE
    try:
        settings = Settings(msl=msl, idle_timeout=idle_timeout, checksums=checksums,
                            max_live=max_connections)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    from analyzer.browse.launch import browse
    return browse(captures, settings, _warn, filter_text or "")


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
          triage: Dict[str, Any]) -> Optional[ResultSink]:
    """The renderer's sink, behind the triage selection when there is something to select
    (the filter decides before the renderer encodes or drops a result). Sorting needs the
    results themselves: the default store."""
    inner = None if triage["sort"] else make_sink(fmt, settings, show_all=show_all)
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
