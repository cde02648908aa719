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
from typing import Optional, TextIO, Tuple

import click

from analyzer import build
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.pipeline import analyze
from analyzer.render import RENDERERS, make_sink, render
from analyzer.render.progress import progress
from analyzer.report.model import EXIT_INTERNAL, EXIT_UNREADABLE
from analyzer.settings import DEFAULT_MSL, Settings
from analyzer.tcp.flows import DEFAULT_MAX_LIVE


def _warn(message: str) -> None:
    click.echo("%s: %s" % (TOOL_NAME, message), err=True)


def _udp_tunnel(ctx: click.Context, param: click.Parameter,
                values: Tuple[str, ...]) -> Tuple[Tuple[int, str], ...]:
    """`--udp-tunnel PORT=KIND` values as (port, kind) pairs (Settings checks them)."""
    out = []
    for value in values:
        port, sep, kind = value.partition("=")
        if not sep or not port.strip().isdigit():
            raise click.BadParameter("%r is not PORT=KIND (for example 4790=vxlan)" % value)
        out.append((int(port), kind.strip().lower()))
    return tuple(out)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text",
              show_default=True, help="Report format (json is a documented contract).")
@click.option("-a", "--all", "show_all", is_flag=True,
              help="List every connection, not only those that need attention.")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Terminal: list at most this many connections needing attention, most "
                   "severe first (0 = no limit).")
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
@click.option("--udp-tunnel", "udp_tunnels", multiple=True, callback=_udp_tunnel,
              metavar="PORT=KIND",
              help="Also open UDP port PORT as a tunnel of KIND (vxlan, geneve, gtp-u, teredo, "
                   "ayiya, l2tp, gre, mpls); repeatable. The standard ports are always opened.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line on stderr.")
@click.option("--color/--no-color", default=None, help="Force colour on or off (default: on a terminal).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              default="-", help="Write the report to a file instead of stdout.")
@click.version_option(__version__, "-V", "--version", prog_name=TOOL_NAME,
                      message="%%(prog)s %%(version)s (%s)" % build())
def main(captures: Tuple[str, ...], fmt: str, show_all: bool, msl: float,
         fail_on: Optional[str], color: Optional[bool], output: str,
         streams: Tuple[int, ...], limit: int, checksums: bool, quiet: bool,
         max_connections: int, idle_timeout: Optional[float],
         udp_tunnels: Tuple[Tuple[int, str], ...] = ()) -> None:
    """Verdicts for every TCP connection in CAPTURE (pcap, pcapng, gzip; '-' reads stdin).

    Several files are analysed as one time-ordered capture (rotated captures).
    """
    try:
        _run(captures, fmt, show_all, msl, fail_on, color, output, streams, limit, checksums,
             quiet, max_connections, idle_timeout, udp_tunnels)
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
         max_connections: int, idle_timeout: Optional[float],
         udp_tunnels: Tuple[Tuple[int, str], ...] = ()) -> None:
    if captures.count("-") > 1:
        raise click.UsageError("stdin ('-') can be given only once")
    # The analysis and the report make no reference cycles: reference counting frees all.
    # The cyclic collector would only rescan the live results again and again (reading the
    # spilled results back took eight times longer with it on).
    try:
        settings = Settings(msl=msl, idle_timeout=idle_timeout, checksums=checksums,
                            max_live=max_connections, ladders=frozenset(streams),
                            udp_tunnels=udp_tunnels)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    gc.disable()
    with progress(not quiet and sys.stderr.isatty()) as on_frame:
        # The renderer says what it keeps of each connection (JSON: its line; the terminal:
        # only those needing attention, unless --all).
        report = analyze(list(captures), settings, on_frame=on_frame,
                         sink=make_sink(fmt, settings, show_all=show_all))
    for message in report.capture.warnings:
        _warn("warning: " + message)
    for message in report.capture.errors:
        _warn("error: " + message)
    if report.capture.errors and len(report.capture.errors) == len(captures):
        sys.exit(EXIT_UNREADABLE)
    for n in streams:
        if n not in report.ladders:
            _warn("warning: no stream %d in the capture (%d connections)"
                  % (n, len(report.connections)))
    out = _open_output(output)
    try:
        render(fmt, report, out, show_all=show_all, color=color, limit=limit)
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
