"""The detail pane's text for one connection: verdicts, findings, the explanation, the ladder.

Built as rich `Text` (the pane shows it as it is; no layout of its own), from the result and,
once read (`analyzer.browse.stream`), its ladder. Every number is written in full: the ladder
does not wrap, and the pane scrolls sideways instead of cutting a column.
"""

from __future__ import annotations

import datetime
from typing import Dict, List, Optional, Sequence

from rich.text import Text

from analyzer.decode.options import options_text
from analyzer.judge.result import ANALYSIS_FIELDS, ConnResult, LadderRow
from analyzer.browse.model import address_filter, display_filter
from analyzer.render.ladder_text import end_of_capture
from analyzer.triage.explain import explain

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_GOOD = {"complete", "simultaneous_open", "four_way", "three_segment", "simultaneous"}
_BAD = {"refused", "unanswered", "half_open", "reset"}


def _when(ns: int) -> str:
    dt = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + ".%09d UTC" % (ns % 10**9)


def _verdict(value: Optional[str]) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text(value, style="green" if value in _GOOD else "red" if value in _BAD
                else "yellow")


def summary(r: ConnResult, captures: Sequence[str]) -> Text:
    """Everything the analysis said about `r`, and how to open it in Wireshark."""
    t = Text()
    t.append("stream %d" % r.id, style="bold")
    t.append("  %s → %s\n" % (r.orig, r.resp))
    t.append("Wireshark: ", style="bold")
    t.append(display_filter(r), style="cyan")
    t.append("   (or %s)\n" % address_filter(r), style="dim")
    files = " ".join(captures)
    t.append("  tshark -r %s -Y '%s'\n" % (files, display_filter(r)), style="dim")
    t.append("handshake ", style="bold")
    t.append_text(_verdict(r.handshake))
    if r.syn_retransmissions:
        t.append(" (%d SYN retransmissions)" % r.syn_retransmissions)
    t.append("  close ", style="bold")
    t.append_text(_verdict(r.close))
    if r.closed_first:
        t.append(", first by %s" % r.closed_first)
    if r.reset_by:
        t.append(", reset by %s" % r.reset_by)
    if r.half_close:
        t.append(", half-closed")
    t.append("\nfinal state ", style="bold")
    t.append("orig %s · resp %s" % r.final_state)
    t.append("   conn_state %s  history %s\n" % (r.conn_state, r.history or "-"))
    t.append("packets ", style="bold")
    t.append("orig %d · resp %d   " % r.packets)
    t.append("bytes ", style="bold")
    t.append("orig %d · resp %d\n" % r.bytes)
    t.append("time ", style="bold")
    t.append("%s → %s (%.6f s), frames %d–%d\n" % (
        _when(r.start), _when(r.end), r.duration, r.first_frame, r.last_frame))
    if r.reused_from is not None:
        t.append("reuses the 4-tuple of stream %d\n" % r.reused_from)
    for side, counts in zip(("orig", "resp"), r.analysis):
        seen = ["%s %d" % (name, n) for name, n in zip(ANALYSIS_FIELDS, counts) if n]
        if seen:
            t.append("%s sent: " % side, style="bold")
            t.append(" · ".join(seen) + "\n")
    for lg in r.lingering:
        left = "" if lg.remaining is None else ", %.1f s of TIME_WAIT left" % (
            lg.remaining / 1e9)
        t.append("%s %s still in %s at the end, for %.1f s%s\n" % (
            lg.side, r.orig if lg.side == "orig" else r.resp, lg.state, lg.seconds / 1e9, left),
            style="yellow" if lg.state == "CLOSE_WAIT" else "")
    if r.findings:
        t.append("Findings\n", style="bold")
        for f in r.findings:
            t.append("  frame %d  " % f.frame)
            t.append(f.severity.upper().ljust(8), style=SEVERITY_STYLE[f.severity])
            t.append(f.code + ("  (×%d)" % f.count if f.count > 1 else "") + "  " + f.message
                     + "\n")
    return t


def explanation(r: ConnResult, rows: Sequence[LadderRow], msl: float) -> Text:
    """`explain()`'s steps, a wrong number in red."""
    t = Text()
    t.append("Explanation\n", style="bold")
    for step in explain(r, rows, msl):
        style = "" if step.ok is None else "green" if step.ok else "bold red"
        if step.frame is not None:
            t.append("  frame %d: " % step.frame, style="dim")
        else:
            t.append("  ")
        t.append(step.text + "\n", style=style)
    return t


_HEAD = ("frame", "time", "", "flags", "seq", "ack", "len", "win", "orig state", "resp state",
         "notes")
_RIGHT = {0, 1, 4, 5, 6, 7}


def ladder(r: ConnResult, rows: Sequence[LadderRow], end_ts: Optional[int] = None) -> Text:
    """The packets, Wireshark's relative numbers, states after each; ⚑ marks the frame that
    raised a finding; the last row says what was left when the capture ended (`end_ts`, or
    the end of the lingering, as `--stream N` says it)."""
    marks: Dict[int, List[str]] = {}
    for f in r.findings:
        marks.setdefault(f.frame, []).append(f.code)
    t0 = rows[0].ts if rows else 0
    table: List[List[str]] = []
    for row in rows:
        notes = list(row.analysis) + ["⚑" + code for code in marks.get(row.frame, ())]
        opts = options_text(row.options)
        if opts:
            notes.append(opts)
        table.append([
            str(row.frame), "%.6f" % ((row.ts - t0) / 1e9),
            "orig ──▶ resp" if row.side == "orig" else "orig ◀── resp", row.flags,
            str(row.seq), "-" if row.ack is None else str(row.ack), str(row.length),
            "-" if row.window is None else str(row.window), row.state_orig,
            row.state_resp, " ".join(notes)])
    lingering_end = max((lg.since + lg.seconds for lg in r.lingering), default=None)
    end = lingering_end if lingering_end is not None else end_ts
    shown = {row.frame for row in rows}
    unmarked = ["⚑" + code for frame, codes in marks.items() if frame not in shown
                for code in codes]
    table.append(["end", ("+%.1f s" % ((end - rows[-1].ts) / 1e9)) if end is not None and rows
                  else "", "", "", "", "", "", "", "", "",
                  " ".join([end_of_capture(r, end)] + unmarked)])
    widths = [max([len(h)] + [len(line[i]) for line in table]) for i, h in enumerate(_HEAD)]
    t = Text(no_wrap=True, overflow="ignore")
    t.append("Ladder (%d packets)\n" % len(rows), style="bold")
    t.append(_line(list(_HEAD), widths) + "\n", style="bold")
    for row, line in zip(rows, table):
        style = "red" if "R" in row.flags else "cyan" if ("S" in row.flags
                                                           or "F" in row.flags) else ""
        if row.frame in marks:
            style = "bold " + (style or "yellow")
        t.append(_line(line, widths) + "\n", style=style)
    t.append(_line(table[-1], widths) + "\n", style="yellow" if r.lingering else "dim")
    total = r.packets[0] + r.packets[1]
    if total > len(rows):
        t.append("  (%d more packets not shown)\n" % (total - len(rows)), style="dim")
    return t


def _line(cells: List[str], widths: List[int]) -> str:
    return "  ".join(c.rjust(w) if i in _RIGHT else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
