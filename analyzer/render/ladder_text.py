"""One connection's packet ladder and its explanation, as text (`--stream N`, `--explain N`).

The ladder lists each packet with Wireshark's relative numbers, the window, every TCP option,
what the sequence analysis made of it, the states of both ends after it, and a ⚑ marker with
the code of each finding its frame raised; it ends with the state of both ends when the
capture ended. Where the columns do not fit the width, each packet is a short block instead.
"""

from __future__ import annotations

import io
from typing import Any, Dict, List, Optional, Sequence, Tuple

from analyzer.decode.options import options_text
from analyzer.judge.result import ConnResult, LadderRow
from analyzer.render.textlayout import Cell, Column, Page, Painter, fits, write_table

_COLUMNS = (Column("frame", True), Column("time", True), Column(""), Column("flags"),
            Column("seq", True), Column("ack", True), Column("len", True), Column("win", True),
            Column("orig state"), Column("resp state"), Column("options · analysis · findings"))


def _flag_style(flags: str) -> str:
    return "red" if "R" in flags else "cyan" if ("S" in flags or "F" in flags) else ""


def _markers(r: ConnResult) -> Dict[int, List[str]]:
    out: Dict[int, List[str]] = {}
    for f in r.findings:
        out.setdefault(f.frame, []).append(f.code)
    return out


def _notes(row: LadderRow, marks: List[str]) -> List[Cell]:
    words: List[Cell] = []
    opts = options_text(row.options)
    if opts:
        words.extend(opts.split(" "))
    for flag in row.analysis:
        words.append(("[%s]" % flag, "magenta"))
    for code in marks:
        words.append(("⚑" + code, "bold yellow"))
    return words


def end_of_capture(r: ConnResult, end_ts: Optional[int]) -> str:
    """What was left when the capture ended: each end's state, and for how long it lingered."""
    parts = []
    for side, state in zip(("orig", "resp"), r.final_state):
        lg = next((x for x in r.lingering if x.side == side), None)
        if lg is not None:
            parts.append("%s still in %s (%.1f s)" % (side, lg.state, lg.seconds / 1e9))
        else:
            parts.append("%s %s" % (side, state))
    return "end of capture: " + ", ".join(parts)


def write_ladder(page: Page, r: ConnResult, rows: Sequence[LadderRow],
                 end_ts: Optional[int]) -> None:
    title = "Stream %d ladder (Wireshark: tcp.stream eq %d)" % (r.id, r.id)
    t0 = rows[0].ts if rows else 0
    marks = _markers(r)
    lingering_end = max((lg.since + lg.seconds for lg in r.lingering), default=None)
    end = lingering_end if lingering_end is not None else end_ts
    last_ts = rows[-1].ts if rows else t0
    table: List[list] = []
    last: Tuple[Optional[str], Optional[str]] = (None, None)
    for row in rows:
        arrow = "orig ───▶ resp" if row.side == "orig" else "orig ◀─── resp"
        states = (row.state_orig, row.state_resp)
        bold = ["bold" if states[i] != last[i] else "" for i in (0, 1)]
        last = states
        table.append([str(row.frame), "%.6f" % ((row.ts - t0) / 1e9), arrow,
                      (row.flags, _flag_style(row.flags)), str(row.seq),
                      "-" if row.ack is None else str(row.ack), str(row.length),
                      "-" if row.window is None else str(row.window),
                      (row.state_orig, bold[0]), (row.state_resp, bold[1]),
                      _notes(row, marks.get(row.frame, []))])
    closing = end_of_capture(r, end)
    after = ("+%.1f s" % ((end - last_ts) / 1e9)) if end is not None and rows else ""
    shown = {row.frame for row in rows}
    unmarked = [code for frame, codes in marks.items() if frame not in shown for code in codes]
    end_words: List[Cell] = closing.split(" ") + [("⚑" + c, "bold yellow") for c in unmarked]
    table.append(["end", after, "", "", "", "", "", "", "", "", end_words])
    widths = fits(_COLUMNS, table, page.width, 16)
    if widths is not None:
        write_table(page.out, title, _COLUMNS, table, widths, page.paint)
    else:
        page.line((title, "bold"))
        for cells in table[:-1]:
            page.line(("frame " + cells[0], "bold"), cells[1], cells[2], cells[3],
                      "seq " + cells[4], "ack " + cells[5], "len " + cells[6],
                      "win " + cells[7], indent=6)
            page.line("     ", cells[8], "/", cells[9], *cells[10], indent=6)
        page.line(("end", "bold"), after, *end_words, indent=6)
        page.blank()
    total = r.packets[0] + r.packets[1]
    if total > len(rows):
        page.line("  (%d more packets not shown)" % (total - len(rows)))


def write_explanation(page: Page, r: ConnResult, steps: Sequence[Any]) -> None:
    """`--explain N`: each step on its line, its frame first, a checked number ✓ or ✗."""
    page.line(("Stream %d explained (%s → %s)" % (r.id, r.handshake, r.close or "not established"),
               "bold"))
    for step in steps:
        frame = ("frame %-5d" % step.frame) if step.frame is not None else " " * 11
        style = "" if step.ok is None else "green" if step.ok else "bold red"
        page.line("  " + frame, (step.text, style), indent=14)


def ladder_text(r: ConnResult, rows: Sequence[LadderRow], end_ts: Optional[int],
                width: int = 100) -> str:
    """The ladder as plain text `width` columns wide (for a pane of an interactive view)."""
    out = io.StringIO()
    write_ladder(Page(out, width, Painter(None)), r, rows, end_ts)
    return out.getvalue()


def explanation_text(r: ConnResult, steps: Sequence[Any], width: int = 100) -> str:
    """The explanation as plain text `width` columns wide."""
    out = io.StringIO()
    write_explanation(Page(out, width, Painter(None)), r, steps)
    return out.getvalue()
