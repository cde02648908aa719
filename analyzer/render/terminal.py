"""The terminal report: summary first, then the connections that need attention.

Reads well without colour and when piped: every fact is in the text, colour only repeats it.
Nothing is ever cut: tables are laid out only where their columns fit the width, and stacked
one block per connection where they do not (`analyzer.render.textlayout`). Lines are written
straight to the stream (rich only detects the terminal's colours and makes the SGR codes), so
a report of 100 k connections costs about what its JSON does. Colour: on for a terminal,
off otherwise; NO_COLOR turns it off and FORCE_COLOR on (https://no-color.org), and
`--color/--no-color` overrides both.
"""

from __future__ import annotations

import heapq
import os
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, TextIO

from analyzer.common.findings import CATALOGUE
from analyzer.common.nstime import utc_text
from analyzer.decode.segment import addr_str
from analyzer.judge.result import ConnResult
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings
from analyzer.render.ladder_text import write_explanation, write_ladder
from analyzer.render.textlayout import Cell, Column, Page, Painter, fits, write_table

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
_GOOD = {"complete", "simultaneous_open", "four_way", "three_segment", "simultaneous"}
_BAD = {"refused", "unanswered", "half_open", "reset"}


def _endpoint(addr: bytes, port: int) -> str:
    a = addr_str(addr)
    return "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)


def _verdict(value: Optional[str]) -> Cell:
    if value is None:
        return ("-", "dim")
    style = "green" if value in _GOOD else "red" if value in _BAD else "yellow"
    return (value, style)


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
    return utc_text(ts) + " UTC"        # any year, as Wireshark shows it (not datetime's 1-9999)


def _summary(page: Page, report: Report, selection: Any) -> None:
    cap, s = report.capture, report.summary
    span = ((cap.last_ts - cap.first_ts) / 1e9) if (
        cap.first_ts is not None and cap.last_ts is not None) else 0.0
    page.line(("tcpflow-check", "bold"), "— " + ", ".join(cap.files))
    page.line("%d packets (%d TCP), %s to %s (%s)%s" % (
        cap.packets, cap.tcp_packets, _when(cap.first_ts), _when(cap.last_ts), _seconds(span),
        (" — CAPTURE CUT SHORT" if cap.truncated else "")
        + (" — INTERRUPTED: reading stopped by a signal" if cap.interrupted else "")))
    retrans = s.syn_retransmissions
    hs = _counts(sorted(s.handshakes.items(), key=lambda kv: (-kv[1], kv[0])))
    if retrans:
        hs += "  (%d SYN retransmissions)" % retrans
    closes = sorted(s.closes.items(), key=lambda kv: (kv[0] == "none", -kv[1], kv[0]))
    rows = [
        ("Connections", "%d (%d need attention)" % (s.connections, s.attention)),
        ("Handshakes", hs),
        ("Closes", _counts([("not established" if k == "none" else k, v) for k, v in closes])),
        ("Resets", "by orig %d · by resp %d" % (s.resets.get("orig", 0), s.resets.get("resp", 0))),
        ("Lingering", "CLOSE_WAIT %d · TIME_WAIT %d"
         % (s.lingering.get("CLOSE_WAIT", 0), s.lingering.get("TIME_WAIT", 0))),
        ("Findings", _counts([(k, s.severities.get(k, 0)) for k in ("error", "warning", "info")])),
        ("Skipped packets", _counts(sorted(cap.skipped.items(), key=lambda kv: (-kv[1], kv[0])))),
    ]
    memory = cap.memory_words()
    if memory is not None:
        rows.append(("Memory", memory))
    if selection is not None and selection.filter is not None:
        rows.append(("Filter", selection.caption()))
    label = max(len(k) for k, _ in rows) + 2
    for k, v in rows:
        page.line((k.ljust(label - 1), "bold"), v, indent=label)


def _codes(r: ConnResult) -> List[Cell]:
    return [(f.code + ("×%d" % f.count if f.count > 1 else ""), _SEVERITY_STYLE[f.severity])
            for f in r.findings]


def _first(r: ConnResult) -> str:
    if r.reset_by and r.close == "reset":
        return "RST " + r.reset_by
    return r.closed_first or "-"


_COLUMNS = (Column("stream", True), Column("orig → resp"), Column("handshake"), Column("close"),
            Column("first"), Column("final orig / resp"), Column("pkts", True),
            Column("duration", True), Column("findings"))

#: Below this width the connections are listed one block each instead of as a table.
TABLE_MIN_WIDTH = 150


def _row(r: ConnResult) -> list:
    return [str(r.id), _where(r),
            _verdict(r.handshake), _verdict(r.close), _first(r),
            "%s / %s" % r.final_state, "%d/%d" % r.packets, _seconds(r.duration), _codes(r)]


def _where(r: ConnResult) -> str:
    """orig → resp, and the tunnel it came through (GRE, VXLAN, ...) when there is one."""
    where = "%s → %s" % (_endpoint(*r.orig_raw), _endpoint(*r.resp_raw))
    return where + " via " + r.tunnel_text() if r.tunnel else where


#: The connections to list, as a function giving them afresh: a long list is read from the
#: result store twice (the column widths, then the rows) and never held in memory.
Rows = Callable[[], Iterable[ConnResult]]


def _connections(page: Page, rows: Rows, title: str) -> None:
    widths = fits(_COLUMNS, (_row(r) for r in rows()), page.width, 12) \
        if page.width >= TABLE_MIN_WIDTH else None
    if widths is not None:
        write_table(page.out, title, _COLUMNS, (_row(r) for r in rows()), widths, page.paint)
        return
    page.line((title, "bold"))
    for r in rows():
        page.line(("stream %d" % r.id, "bold"), " %s " % _where(r),
                  ("(%d/%d pkts, %s)" % (r.packets[0], r.packets[1], _seconds(r.duration)),
                   "dim"))
        page.line("    handshake", _verdict(r.handshake), "· close", _verdict(r.close),
                  "· first %s · final %s / %s" % ((_first(r),) + tuple(r.final_state)),
                  indent=8)
        if r.findings:
            page.line("   ", *_codes(r), indent=4)
    page.blank()


def _details(page: Page, rows: Rows) -> None:
    """The lingering endpoints, then the findings (one pass over the rows for each)."""
    first = True
    for r in rows():
        for lg in r.lingering:
            if first:
                page.line(("Lingering endpoints at the end of the capture", "bold"))
                first = False
            extra = "" if lg.remaining is None else ", %s of TIME_WAIT left" % _seconds(
                lg.remaining / 1e9)
            page.line(("  stream %d  %s %s in %s for %s%s" % (
                r.id, lg.side, _endpoint(*(r.orig_raw if lg.side == "orig" else r.resp_raw)),
                lg.state, _seconds(lg.seconds / 1e9), extra),
                "yellow" if lg.state == "CLOSE_WAIT" else ""))
    if not first:
        page.blank()
    first = True
    plain = page.paint.system is None
    for r in rows():
        attention = r.needs_attention()
        for f in r.findings:
            if f.severity == "info" and not attention:
                continue
            if first:
                page.line(("Findings", "bold"))
                first = False
            where = "" if f.side is None else "[%s %s]" % (
                f.side, _endpoint(*(r.orig_raw if f.side == "orig" else r.resp_raw)))
            head = "  stream %-5d frame %-7d" % (r.id, f.frame)
            code = f.code + (" (×%d)" % f.count if f.count > 1 else "")
            severity = f.severity.upper().ljust(7)
            line = "%s %s %s %s  %s" % (head, severity, code, where, f.message)
            if plain and len(line) <= page.width:       # the common case, in one step
                page.out.write(line + "\n")
                continue
            page.line(head, (severity, _SEVERITY_STYLE[f.severity]), code, where,
                      " " + f.message, indent=8)


_GROUP_COLUMNS = ("connections", "refused", "reset", "half-open", "CLOSE_WAIT", "TIME_WAIT",
                  "error", "warning", "info")


def _groups(page: Page, groups: Any) -> None:
    """`--group-by`: one row per group; for findings, tshark's expert summary by code."""
    if groups.by == "finding":
        cols = [Column("severity"), Column("code"), Column("connections", True),
                Column("occurrences", True), Column("summary")]
        table = [[(CATALOGUE[k].severity, _SEVERITY_STYLE[CATALOGUE[k].severity]), k,
                  str(c[0]), str(groups.occurrences.get(k, 0)),
                  CATALOGUE[k].sentence.split(" ")] for k, c in groups.ordered()]
    else:
        cols = [Column(groups.by)] + [Column(h, True) for h in _GROUP_COLUMNS[:-1]] + [
            Column("info")]
        table = [[k] + [str(v) for v in c[:-1]] + [str(c[-1])] for k, c in groups.ordered()]
    title = "Connections by %s (%d groups)" % (groups.by, len(table))
    widths = fits(cols, table, page.width, 4) if table else None
    if widths is not None:
        write_table(page.out, title, cols, table, widths, page.paint, "bold")
        return
    page.line((title, "bold"))
    for key, counts in groups.ordered():
        if groups.by == "finding":
            code = CATALOGUE[key]
            page.line("  ", (code.severity.upper(), _SEVERITY_STYLE[code.severity]), key,
                      "· %d connection%s, %d occurrence%s" % (
                          counts[0], "" if counts[0] == 1 else "s",
                          groups.occurrences.get(key, 0),
                          "" if groups.occurrences.get(key, 0) == 1 else "s"), indent=6)
            page.line("     ", code.sentence, indent=6)
            continue
        parts = ["%s %d" % (name, n) for name, n in zip(_GROUP_COLUMNS[1:], counts[1:]) if n]
        page.line("  ", (key, "bold"), "· %d connection%s%s" % (
            counts[0], "" if counts[0] == 1 else "s", ": " + ", ".join(parts) if parts else ""),
            indent=6)
    page.blank()


def _attention(report: Report, selection: Any) -> int:
    """How many of the listed connections need attention (all of them, counted once more only
    when a filter chose among them)."""
    if selection is None or selection.filter is None:
        return report.summary.attention
    return sum(1 for r in report.connections if r.needs_attention())


def make_sink(settings: Settings, show_all: bool = False, limit: int = 0,
              **_options) -> Optional[ResultSink]:
    """The results this report lists: without --all (and without traced streams) only the
    connections needing attention are kept; the others are counted. With `limit` (the
    report lists the `limit` most severe, `_render`), only the `limit` + 1 most severe are
    kept (the first in stream order among equals), which is all the report reads of them:
    a flood of half-open connections is then counted, not stored."""
    if show_all or settings.ladders:
        return None
    return ResultStore(settings.result_budget, keep=ConnResult.needs_attention,
                       best=limit + 1 if limit else 0, rank=_severity)


def _severity(r: ConnResult) -> int:
    """The most severe first (`ResultStore` keeps the lowest)."""
    return -r.worst()


def use_color(color: Optional[bool], is_tty: bool, env: Mapping[str, str]) -> bool:
    """--color/--no-color, else NO_COLOR (off), else FORCE_COLOR (on), else: a terminal."""
    if color is not None:
        return color
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    return is_tty


def render(report: Report, out: TextIO, show_all: bool = False, color: Optional[bool] = None,
           width: Optional[int] = None, limit: int = 0, selection: Any = None,
           explanations: Optional[Mapping[int, Sequence[Any]]] = None,
           ladders: bool = True, **_options) -> None:
    """The report on `out`. `selection` is the triage's (`analyzer.triage.select.Selection`:
    its filter caption and groups); `explanations` maps a stream to its explanation's steps
    (`analyzer.triage.explain`), shown before its ladder, or instead of it (`ladders=False`)."""
    is_tty = out.isatty() if hasattr(out, "isatty") else False
    colored = use_color(color, is_tty, os.environ)
    system = None
    if is_tty or colored:
        # rich detects the terminal's width and colours; a report piped without colour (CI,
        # a file) needs neither, and does not import it.
        from rich.console import Console
        console = Console(file=out, force_terminal=colored, no_color=not colored,
                          width=width or None, highlight=False, emoji=False)
        system = console._color_system if colored else None
        if not width and is_tty:
            width = console.width
    if not width:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) >= 20 else 160
    page = Page(out, max(width, 20), Painter(system))
    _render(page, report, show_all, limit, selection, explanations or {}, ladders)


def _render(page: Page, report: Report, show_all: bool, limit: int, selection: Any,
            explanations: Mapping[int, Sequence[Any]], ladders: bool) -> None:
    if report.ladders:
        traced = [r for r in report.connections if r.id in report.ladders]
        left_out = sorted(set(report.ladders) - {r.id for r in traced})
        if left_out:
            page.line("The filter leaves out stream%s %s (%s)." % (
                "s" if len(left_out) > 1 else "", ", ".join(map(str, left_out)),
                selection.filter if selection is not None else "filtered"))
            if not traced:
                return
            page.blank()
        _connections(page, lambda: traced, "Traced connections")
        _details(page, lambda: traced)
        end = report.capture.last_ts
        for r in traced:
            if r.id in explanations:
                page.blank()
                write_explanation(page, r, explanations[r.id])
            if ladders or r.id not in explanations:
                page.blank()
                write_ladder(page, r, report.ladders[r.id], end)
        return
    _summary(page, report, selection)
    if report.findings:
        page.blank()
        page.line(("Capture-wide findings", "bold"))
        for f in report.findings:
            page.line("  frame %-7d" % f.frame,
                      (f.severity.upper().ljust(7), _SEVERITY_STYLE[f.severity]),
                      f.code, " " + f.message, indent=8)
    if selection is not None and selection.groups is not None:
        page.blank()
        _groups(page, selection.groups)
        return
    hidden = 0
    rows: List[ConnResult] = []
    if not show_all:
        # In the report's order (stream order, or --sort's), the most severe `limit` of them,
        # without holding the others.
        attention = ((i, r) for i, r in enumerate(report.connections) if r.needs_attention())
        if limit:
            kept = heapq.nsmallest(limit + 1, attention, key=lambda ir: (-ir[1].worst(), ir[0]))
            ranked = sorted(kept[:limit], key=lambda ir: ir[0])
            rows = [r for _, r in ranked]
            hidden = _attention(report, selection) - len(rows) if len(kept) > limit else 0
        else:
            rows = [r for _, r in attention]
    page.blank()
    total = len(report.connections)
    if not report.summary.connections:
        page.line("No TCP connections in the capture.")
        return
    if show_all and total:
        _connections(page, lambda: report.connections, "All %d connections" % total)
        _details(page, lambda: report.connections)
    elif rows:
        title = "Connections needing attention (%d of %d; --all shows every one)" % (
            len(rows), total)
        if hidden:
            title += "; the %d most severe shown, %d more with --limit 0 or --all" % (
                len(rows), hidden)
        _connections(page, lambda: rows, title)
        _details(page, lambda: rows)
    elif not total:
        page.line("No connection matches the filter (%d connections)."
                  % report.summary.connections)
    else:
        page.line("No connection needs attention (%d connections; --all lists them)." % total)
