"""The terminal report (rich): summary first, then the connections that need attention.

Reads well without colour and when piped: every fact is in the text, colour only repeats it.
"""

from __future__ import annotations

import datetime
import heapq
import os
from typing import Iterable, List, Optional, TextIO, Tuple

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer.judge.result import ConnResult, LadderRow

from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings
from analyzer.decode.segment import addr_str

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
_GOOD = {"complete", "simultaneous_open", "four_way", "three_segment", "simultaneous"}
_BAD = {"refused", "unanswered", "half_open", "reset"}


def _endpoint(addr: bytes, port: int) -> str:
    a = addr_str(addr)
    return "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)


def _verdict(value: Optional[str]) -> Text:
    if value is None:
        return Text("-", style="dim")
    style = "green" if value in _GOOD else "red" if value in _BAD else "yellow"
    return Text(value, style=style)


def _seconds(s: float) -> str:
    if s < 1:
        return "%.0f ms" % (s * 1000)
    if s < 120:
        return "%.1f s" % s
    if s < 7200:
        return "%.1f min" % (s / 60)
    return "%.1f h" % (s / 3600)


def _counts(items, empty: str = "none") -> str:
    parts = ["%s %d" % (k, v) for k, v in items if v]
    return " · ".join(parts) if parts else empty


def _when(ts: Optional[int]) -> str:
    if ts is None:
        return "-"
    dt = datetime.datetime.fromtimestamp(ts / 1e9, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _summary(console: Console, report: Report) -> None:
    cap, s = report.capture, report.summary
    span = ((cap.last_ts - cap.first_ts) / 1e9) if (
        cap.first_ts is not None and cap.last_ts is not None) else 0.0
    console.print(Text.assemble(("tcpflow-check", "bold"), " — ", ", ".join(cap.files)))
    console.print("%d packets (%d TCP), %s to %s (%s)%s" % (
        cap.packets, cap.tcp_packets, _when(cap.first_ts), _when(cap.last_ts), _seconds(span),
        " — CAPTURE CUT SHORT" if cap.truncated else ""))
    t = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("Connections", "%d (%d need attention)" % (s.connections, s.attention))
    retrans = s.syn_retransmissions
    hs = _counts(sorted(s.handshakes.items(), key=lambda kv: -kv[1]))
    if retrans:
        hs += "  (%d SYN retransmissions)" % retrans
    t.add_row("Handshakes", hs)
    closes = sorted(s.closes.items(), key=lambda kv: (kv[0] == "none", -kv[1]))
    t.add_row("Closes", _counts([("not established" if k == "none" else k, v) for k, v in closes]))
    t.add_row("Resets", "by orig %d · by resp %d"
              % (s.resets.get("orig", 0), s.resets.get("resp", 0)))
    t.add_row("Lingering", "CLOSE_WAIT %d · TIME_WAIT %d"
              % (s.lingering.get("CLOSE_WAIT", 0), s.lingering.get("TIME_WAIT", 0)))
    t.add_row("Findings",
              _counts([(k, s.severities.get(k, 0)) for k in ("error", "warning", "info")]))
    t.add_row("Skipped packets", _counts(sorted(cap.skipped.items(), key=lambda kv: -kv[1])))
    console.print(t)


def _table(console: Console, rows: Iterable[ConnResult], title: str) -> None:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # Only the findings column wraps; narrower terminals get `_blocks` instead.
    t.add_column("stream", justify="right", no_wrap=True)
    t.add_column("orig → resp", no_wrap=True)
    t.add_column("handshake", no_wrap=True)
    t.add_column("close", no_wrap=True)
    t.add_column("first", no_wrap=True)
    t.add_column("final orig / resp", no_wrap=True)
    t.add_column("pkts", justify="right", no_wrap=True)
    t.add_column("duration", justify="right", no_wrap=True)
    t.add_column("findings", min_width=12, overflow="fold")
    for r in rows:
        codes = Text()
        for f in r.findings:
            if codes:
                codes.append(" ")
            codes.append(f.code + ("×%d" % f.count if f.count > 1 else ""),
                         style=_SEVERITY_STYLE[f.severity])
        first = r.closed_first or "-"
        if r.reset_by and r.close == "reset":
            first = "RST " + r.reset_by
        where = "%s → %s" % (_endpoint(*r.orig_raw), _endpoint(*r.resp_raw))
        if r.tunnel:
            where += "\nvia " + r.tunnel_text()
        t.add_row(str(r.id), where,
                  _verdict(r.handshake), _verdict(r.close), first,
                  "%s / %s" % r.final_state, "%d/%d" % r.packets, _seconds(r.duration), codes)
    console.print(t)


#: Below this width the connections are listed one block each instead of as a table.
TABLE_MIN_WIDTH = 150


def _blocks(console: Console, rows: Iterable[ConnResult], title: str) -> None:
    """The same facts as `_table`, one short block per connection, for narrow terminals."""
    console.print(Text(title, style="bold"))
    for r in rows:
        console.print(Text.assemble(
            ("stream %d" % r.id, "bold"), "  %s → %s  " % (_endpoint(*r.orig_raw), _endpoint(*r.resp_raw)),
            ("(%d/%d pkts, %s)" % (r.packets[0], r.packets[1], _seconds(r.duration)), "dim")))
        if r.tunnel:
            console.print(Text("    via " + r.tunnel_text()))
        first = r.closed_first or "-"
        if r.reset_by and r.close == "reset":
            first = "RST " + r.reset_by
        console.print(Text.assemble(
            "    handshake ", _verdict(r.handshake), " · close ", _verdict(r.close),
            " · first %s · final %s / %s" % ((first,) + tuple(r.final_state))))
        if r.findings:
            codes = Text("    ")
            for f in r.findings:
                codes.append(f.code + ("×%d" % f.count if f.count > 1 else "") + " ",
                             style=_SEVERITY_STYLE[f.severity])
            console.print(codes)
    console.print()


def _connections(console: Console, rows: Iterable[ConnResult], title: str) -> None:
    if console.width >= TABLE_MIN_WIDTH:
        _table(console, rows, title)
    else:
        _blocks(console, rows, title)


def _details(console: Console, rows: Iterable[ConnResult]) -> None:
    lines = []
    for r in rows:
        for lg in r.lingering:
            extra = "" if lg.remaining is None else ", %s of TIME_WAIT left" % _seconds(
                lg.remaining / 1e9)
            lines.append(Text("  stream %d  %s %s in %s for %s%s" % (
                r.id, lg.side, _endpoint(*(r.orig_raw if lg.side == "orig" else r.resp_raw)), lg.state,
                _seconds(lg.seconds / 1e9), extra),
                style="yellow" if lg.state == "CLOSE_WAIT" else ""))
    if lines:
        console.print(Text("Lingering endpoints at the end of the capture", style="bold"))
        for line in lines:
            console.print(line)
        console.print()
    flines = []
    for r in rows:
        for f in r.findings:
            if f.severity == "info" and not r.needs_attention():
                continue
            flines.append(Text.assemble(
                "  stream %-5d frame %-7d " % (r.id, f.frame),
                (f.severity.upper().ljust(8), _SEVERITY_STYLE[f.severity]),
                f.code, ("  (×%d)" % f.count) if f.count > 1 else "", "  ", f.message))
    if flines:
        console.print(Text("Findings", style="bold"))
        for line in flines:
            console.print(line)


def _ladder(console: Console, r: ConnResult, rows: List[LadderRow]) -> None:
    """The packet ladder of one connection, Wireshark's relative numbers, states after each."""
    t = Table(title="Stream %d ladder (Wireshark: tcp.stream eq %d)" % (r.id, r.id),
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("frame", "right"), ("time", "right"), ("", "left"),
                          ("flags", "left"), ("seq", "right"), ("ack", "right"),
                          ("len", "right"), ("orig state", "left"), ("resp state", "left")):
        t.add_column(name, justify=justify, no_wrap=True)   # type: ignore[arg-type]
    t0 = rows[0].ts if rows else 0
    last: Tuple[Optional[str], Optional[str]] = (None, None)
    for row in rows:
        arrow = "orig ───▶ resp" if row.side == "orig" else "orig ◀─── resp"
        states = (row.state_orig, row.state_resp)
        changed = ["bold" if states[i] != last[i] else "" for i in (0, 1)]
        last = states
        flag_style = "red" if "R" in row.flags else "cyan" if ("S" in row.flags or "F" in row.flags) else ""
        t.add_row(str(row.frame), "%.6f" % ((row.ts - t0) / 1e9), arrow,
                  Text(row.flags, style=flag_style), str(row.seq),
                  "-" if row.ack is None else str(row.ack), str(row.length),
                  Text(row.state_orig, style=changed[0]), Text(row.state_resp, style=changed[1]))
    console.print(t)
    total = r.packets[0] + r.packets[1]
    if total > len(rows):
        console.print("  (%d more packets not shown)" % (total - len(rows)))


class _Console(Console):
    """rich's Console, but a closed pipe is the caller's to handle: rich would exit with
    status 1 itself, while `tcpflow-check ... | head` is a normal end (exit 0, cli.py)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


class _RstripLines:
    """A text stream that drops the trailing blanks rich pads table lines with (pipes, files)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.pending = ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            self.out.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending.rstrip())
            self.pending = ""
        self.out.flush()

    def isatty(self) -> bool:
        return False


def make_sink(settings: Settings, show_all: bool = False, **_options) -> Optional[ResultSink]:
    """The results this report lists: without --all (and without traced streams) only the
    connections needing attention are kept; the others are counted."""
    if show_all or settings.ladders:
        return None
    return ResultStore(settings.result_budget, keep=ConnResult.needs_attention)


def render(report: Report, out: TextIO, show_all: bool = False, color: Optional[bool] = None,
           width: Optional[int] = None, limit: int = 0, **_options) -> None:
    is_tty = out.isatty() if hasattr(out, "isatty") else False
    if not width and not is_tty:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) >= 60 else 160
    plain = not (is_tty if color is None else color)
    stream = _RstripLines(out) if not is_tty else out
    console = _Console(file=stream, width=width,  # type: ignore[arg-type]
                      no_color=plain, force_terminal=bool(color),
                      highlight=False, emoji=False)
    try:
        _render(console, report, show_all, limit)
    finally:
        if stream is not out:
            stream.flush()


def _render(console: Console, report: Report, show_all: bool, limit: int) -> None:
    if report.ladders:
        traced = [r for r in report.connections if r.id in report.ladders]
        _connections(console, traced, "Traced connections")
        _details(console, traced)
        for r in traced:
            console.print()
            _ladder(console, r, report.ladders[r.id])
        return
    _summary(console, report)
    if report.findings:
        console.print()
        console.print(Text("Capture-wide findings", style="bold"))
        for f in report.findings:
            console.print(Text.assemble("  frame %-7d " % f.frame,
                                        (f.severity.upper().ljust(8), _SEVERITY_STYLE[f.severity]),
                                        f.code, "  ", f.message))
    hidden = 0
    rows: Iterable[ConnResult]
    if show_all:
        rows = report.connections
    else:
        attention = (r for r in report.connections if r.needs_attention())
        if limit:
            # The `limit` most severe, in stream order, without holding the others.
            worst = heapq.nsmallest(limit, attention, key=lambda r: (-r.worst(), r.id))
            worst.sort(key=lambda r: r.id)
            hidden = report.summary.attention - len(worst)
            rows = worst
        else:
            rows = list(attention)
    console.print()
    if not report.connections:
        console.print("No TCP connections in the capture.")
        return
    if rows:
        title = ("All %d connections" % len(rows)) if show_all else (
            "Connections needing attention (%d of %d; --all shows every one)"
            % (len(rows), len(report.connections)))
        if hidden:
            title += "; the %d most severe shown, %d more with --limit 0 or --all" % (
                len(rows), hidden)
        _connections(console, rows, title)
        _details(console, rows)
    else:
        console.print("No connection needs attention (%d connections; --all lists them)."
                      % len(report.connections))
