"""Sequence diagrams and time-sequence graphs of one connection, as plain SVG text.

The sequence diagram is Wireshark's Flow Graph drawn as in the textbooks: two lifelines (orig
left, resp right), one arrow per packet from the sender's lifeline down to the receiver's
(time runs down the page; a longer pause leaves a gap with its length written in it), each
labelled with the flags, relative seq/ack and length, and each endpoint's state after the
packet written beside its lifeline (bold where it changed). Findings are marked on the frame
that raised them; packets the bounded read did not keep (render/packets.py) are one row that
says how many. The time-sequence graph is Stevens's (tcptrace's): per direction, the relative
sequence numbers sent over time, the peer's ACK line, retransmissions (red) and zero windows
(violet) marked.

`--format svg` (with `--stream N`) writes one stream's sequence diagram alone, styled by its
own `<style>`; in the HTML report the page's style sheet serves every diagram. Coordinates are
whole pixels: the text stays small and diffs of the output stay readable.
"""

from __future__ import annotations

from html import escape
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from analyzer.common.findings import Finding
from analyzer.judge.result import ConnResult
from analyzer.render.packets import BINS, Graph, Row, Trace, trace
from analyzer.report.model import Report
from analyzer.settings import Settings
from analyzer.render.timeline import endpoint, span_text

X_TIME = 8              # time column
X_FRAME = 96            # frame column
X_ORIG = 270            # orig's lifeline
X_RESP = 650            # resp's lifeline
X_NOTE = 760            # analysis and findings column
WIDTH = 1100
NOTE_STEP = 13          # notes of one packet are stacked
ROW = 30                # vertical step per packet
SLANT = 12              # how far an arrow falls while it crosses
TOP = 56
GAP = 26                # extra room for a pause, with its length written in it
PAUSE_NS = 1_000_000_000

#: Severity -> CSS class (colours in STYLE).
SEVERITY = {"error": "sev-error", "warning": "sev-warning", "info": "sev-info"}

STYLE = """
svg.seq, svg.tsg { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.seq .life { stroke: #777; stroke-width: 2; }
.seq .life.gap { stroke-dasharray: 3 4; }
.seq .arrow { stroke: #2b5d9b; stroke-width: 1.5; marker-end: url(#ah); }
.seq .arrow.syn, .seq .arrow.fin { stroke: #0f7f86; }
.seq .arrow.rst { stroke: #c8342b; }
.seq .arrow.again { stroke-dasharray: 6 3; }
.seq .lbl { fill: #222; }
.seq .time, .seq .frame { fill: #666; }
.seq .st { fill: #999; font-size: 11px; }
.seq .st.chg { fill: #111; font-weight: bold; }
.seq .head { font-weight: bold; fill: #111; }
.seq .note, .seq .pause { fill: #555; font-style: italic; }
.seq .end { stroke: #999; stroke-dasharray: 5 4; }
.sev-error { fill: #c8342b; } .sev-warning { fill: #c77700; } .sev-info { fill: #4a78b8; }
.tsg .axis { stroke: #888; } .tsg .grid { stroke: #eee; }
.tsg .data { stroke: #2b5d9b; stroke-width: 2; } .tsg .ackl { stroke: #2e8b57; fill: none; }
.tsg .re { stroke: #c8342b; stroke-width: 2; fill: none; } .tsg .zw { fill: #8a3fb8; }
.tsg text { fill: #444; font-size: 11px; }
"""

_ARROWHEAD = ('<defs><marker id="ah" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
              'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
              'fill="#444"/></marker></defs>')


#: The arrowhead once for a whole HTML page (ids are unique in a document).
DEFS = ('<svg width="0" height="0" style="position:absolute" aria-hidden="true">%s</svg>'
        % _ARROWHEAD)


def _secs(ns: int) -> str:
    return "%.6f" % (ns / 1e9)


def _arrow_class(flags: str, marks: Tuple[str, ...]) -> str:
    cls = "arrow"
    if "R" in flags:
        cls += " rst"
    elif "S" in flags:
        cls += " syn"
    elif "F" in flags:
        cls += " fin"
    if marks and ("retransmissions" in marks or "syn_retransmission" in marks):
        cls += " again"
    return cls


_MARK_WORDS = {"retransmissions": "retransmission", "out_of_order": "out of order",
               "lost_segments": "previous segment not captured",
               "acked_unseen": "ACKed unseen segment", "keepalives": "keep-alive",
               "keepalive_acks": "keep-alive ACK", "zero_windows": "zero window"}


def sequence_diagram(t: Trace, capture_end: Optional[int], standalone: bool = False) -> str:
    """The sequence diagram of one traced stream, as one `<svg>` element."""
    r = t.result
    rows = t.rows
    t0 = rows[0].ladder.ts if rows else r.start
    findings: Dict[int, List[Finding]] = {}
    for f in r.findings:
        findings.setdefault(f.frame, []).append(f)
    drawn = {row.ladder.frame for row in rows}
    body: List[str] = []
    y = TOP
    prev: Optional[Row] = None
    last_states: Tuple[Optional[str], Optional[str]] = (None, None)
    for row in rows:
        lad = row.ladder
        if prev is not None:
            skipped = row.number - prev.number - 1
            if skipped:
                body.append('<text class="pause" x="%d" y="%d">&#8942; %d packet%s not drawn '
                            '(%s) &#8942;</text>' % (
                                X_ORIG + 20, y + 4, skipped, "" if skipped == 1 else "s",
                                span_text(lad.ts - prev.ladder.ts)))
                body.append('<line class="life gap" x1="%d" y1="%d" x2="%d" y2="%d"/>'
                            '<line class="life gap" x1="%d" y1="%d" x2="%d" y2="%d"/>'
                            % (X_ORIG, y - 14, X_ORIG, y + GAP - 10, X_RESP, y - 14, X_RESP,
                               y + GAP - 10))
                y += GAP
            elif lad.ts - prev.ladder.ts >= PAUSE_NS:
                body.append('<text class="pause" x="%d" y="%d">&#8942; %s later</text>'
                            % (X_ORIG + 20, y + 2, span_text(lad.ts - prev.ladder.ts)))
                y += GAP
        states = (lad.state_orig, lad.state_resp)
        group, notes = _packet(row, y, t0, (states[0] != last_states[0],
                                            states[1] != last_states[1]),
                               findings.get(lad.frame, ()))
        body.append(group)
        last_states = states
        prev = row
        y += ROW + NOTE_STEP * max(notes - 2, 0)
    # Findings whose frame is not drawn (elided, or raised at the end of the capture).
    rest = [f for f in r.findings if f.frame not in drawn]
    if t.count > len(rows) and prev is not None and prev.number < t.count - 1:
        n = t.count - 1 - prev.number
        body.append('<text class="pause" x="%d" y="%d">&#8942; %d more packet%s not drawn '
                    '&#8942;</text>' % (X_ORIG + 20, y, n, "" if n == 1 else "s"))
        y += GAP
    end_note = _end_note(r, capture_end, t0)
    if end_note or rest:
        body.append('<line class="end" x1="%d" y1="%d" x2="%d" y2="%d"/>'
                    % (X_TIME, y - 8, WIDTH - 10, y - 8))
        body.append('<text class="note" x="%d" y="%d">%s</text>'
                    % (X_TIME, y + 8, escape(end_note or "not drawn:")))
        for i, f in enumerate(rest):
            body.append(_finding_mark(f, X_NOTE, y + 4 + NOTE_STEP * i, X_NOTE + 10,
                                      y + 8 + NOTE_STEP * i))
        y += ROW + NOTE_STEP * max(len(rest) - 1, 0)
    height = y + 4
    head = ('<text class="head" x="%d" y="18" text-anchor="middle">orig %s</text>'
            '<text class="head" x="%d" y="18" text-anchor="middle">resp %s</text>'
            '<text class="time" x="%d" y="18">time (s)</text>'
            '<text class="time" x="%d" y="18">frame</text>'
            '<text class="time" x="%d" y="18">analysis, findings</text>'
            '<line class="life" x1="%d" y1="26" x2="%d" y2="%d"/>'
            '<line class="life" x1="%d" y1="26" x2="%d" y2="%d"/>' % (
                X_ORIG, escape(endpoint(*r.orig_raw)), X_RESP, escape(endpoint(*r.resp_raw)),
                X_TIME,
                X_FRAME, X_NOTE + 10, X_ORIG, X_ORIG, height - 6, X_RESP, X_RESP,
                height - 6))
    attrs = ('class="seq" data-stream="%d" viewBox="0 0 %d %d" width="%d" height="%d" '
             'role="img" aria-label="sequence diagram of stream %d"'
             % (r.id, WIDTH, height, WIDTH, height, r.id))
    if standalone:
        return ('<svg xmlns="http://www.w3.org/2000/svg" %s><style>%s</style>%s%s%s</svg>\n'
                % (attrs, STYLE, _ARROWHEAD, head, "".join(body)))
    return "<svg %s>%s%s</svg>" % (attrs, head, "".join(body))


def _packet(row: Row, y: int, t0: int, changed: Tuple[bool, bool],
            findings: Sequence[Finding]) -> Tuple[str, int]:
    """One packet's group: time, frame, the arrow and its label, both states after it (bold
    where `changed`), its analysis flags and findings stacked in the notes column. Returns the
    group and how many notes it stacked."""
    lad = row.ladder
    x1, x2 = (X_ORIG, X_RESP) if lad.side == "orig" else (X_RESP, X_ORIG)
    label = "%s seq=%d%s len=%d" % (lad.flags, lad.seq,
                                    "" if lad.ack is None else " ack=%d" % lad.ack, lad.length)
    if row.win == 0 and "R" not in lad.flags:
        label += " win=0"
    notes = [("SYN-ACK again" if "." in lad.flags else "SYN again")
             if m == "syn_retransmission" else _MARK_WORDS.get(m, m) for m in row.marks]
    title = "frame %d, +%s s, %s → %s: %s%s" % (
        lad.frame, _secs(lad.ts - t0), lad.side, "resp" if lad.side == "orig" else "orig",
        label, (" (" + ", ".join(notes) + ")") if notes else "")
    parts = [
        '<g class="pkt" data-frame="%d" data-ts="%d"><title>%s</title>'
        '<text class="time" x="%d" y="%d">+%s</text>'
        '<text class="frame" x="%d" y="%d">#%d</text>'
        '<line class="%s" x1="%d" y1="%d" x2="%d" y2="%d"/>'
        '<text class="lbl" x="%d" y="%d" text-anchor="middle">%s</text>'
        '<text class="st o%s" x="%d" y="%d" text-anchor="end">%s</text>'
        '<text class="st r%s" x="%d" y="%d">%s</text>' % (
            lad.frame, lad.ts, escape(title), X_TIME, y + 4, _secs(lad.ts - t0),
            X_FRAME, y + 4, lad.frame,
            _arrow_class(lad.flags, row.marks), x1, y, x2, y + SLANT,
            (X_ORIG + X_RESP) // 2, y - 3, escape(label),
            " chg" if changed[0] else "", X_ORIG - 8, y + 10, lad.state_orig,
            " chg" if changed[1] else "", X_RESP + 8, y + 10, lad.state_resp)]
    stacked = 0
    if notes:
        parts.append('<text class="note" x="%d" y="%d">%s</text>'
                     % (X_NOTE + 10, y + 4, escape(", ".join(notes))))
        stacked = 1
    for i, f in enumerate(findings):
        parts.append(_finding_mark(f, (X_ORIG + X_RESP) // 2 + 12 * i, y + SLANT // 2,
                                   X_NOTE + 10, y + 4 + NOTE_STEP * stacked))
        stacked += 1
    parts.append("</g>")
    return "".join(parts), stacked


def _finding_mark(f: Finding, cx: int, cy: int, tx: int, ty: int) -> str:
    cls = SEVERITY[f.severity]
    text = f.code + ("×%d" % f.count if f.count > 1 else "")
    return ('<g class="finding" data-code="%s" data-frame="%d"><title>%s %s (frame %d): %s'
            '</title><circle class="%s" cx="%d" cy="%d" r="5"/>'
            '<text class="%s" x="%d" y="%d">%s</text></g>' % (
                f.code, f.frame, f.severity.upper(), f.code, f.frame, escape(f.message), cls,
                cx, cy, cls, tx, ty, escape(text)))


def _end_note(r: ConnResult, capture_end: Optional[int], t0: int) -> str:
    if capture_end is None:
        return ""
    parts = []
    for lg in r.lingering:
        part = "%s still in %s for %s" % (lg.side, lg.state, span_text(lg.seconds))
        if lg.remaining is not None:
            part += " (%s of TIME_WAIT left)" % span_text(lg.remaining)
        parts.append(part)
    if not parts and r.close in (None, "open", "half_closed") and r.handshake != "refused":
        parts.append("final states %s / %s" % r.final_state)
    if not parts:
        return ""
    return "end of capture, +%s s: %s" % (_secs(capture_end - t0), "; ".join(parts))


# -- the time-sequence graph -----------------------------------------------------------------

TSG_W = 470             # one direction's panel
TSG_H = 230
PAD_L = 64
PAD_B = 26
PAD_T = 22


def time_sequence(t: Trace) -> str:
    """Both directions' time-sequence graphs side by side, as one `<svg>`."""
    r = t.result
    panels = []
    for s, (a, b) in enumerate((("orig", "resp"), ("resp", "orig"))):
        panels.append(_panel(t.graphs[s], s * (TSG_W + 20), "%s → %s: seq (bytes) over time"
                             % (a, b), t.span))
    w = 2 * TSG_W + 20
    return ('<svg class="tsg" data-stream="%d" viewBox="0 0 %d %d" width="%d" height="%d" '
            'role="img" aria-label="time-sequence graph of stream %d">%s</svg>'
            % (r.id, w, TSG_H, w, TSG_H, r.id, "".join(panels)))


def _panel(g: Graph, x0: int, title: str, span: int) -> str:
    pw, ph = TSG_W - PAD_L - 8, TSG_H - PAD_T - PAD_B
    top = max(g.top, 1)

    def px(b: float) -> int:
        return x0 + PAD_L + int(b * pw / BINS)

    def py(v: int) -> int:
        return PAD_T + ph - int(v * ph / top)

    out = ['<text x="%d" y="14">%s</text>' % (x0 + PAD_L, escape(title)),
           '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>'
           % (x0 + PAD_L, PAD_T, x0 + PAD_L, PAD_T + ph),
           '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>'
           % (x0 + PAD_L, PAD_T + ph, x0 + PAD_L + pw, PAD_T + ph),
           '<text x="%d" y="%d" text-anchor="end">%d</text>' % (x0 + PAD_L - 4, PAD_T + 8, top),
           '<text x="%d" y="%d" text-anchor="end">0</text>' % (x0 + PAD_L - 4, PAD_T + ph),
           '<text x="%d" y="%d">0 s</text>' % (x0 + PAD_L, TSG_H - 8),
           '<text x="%d" y="%d" text-anchor="end">%s</text>'
           % (x0 + PAD_L + pw, TSG_H - 8, "%.6f s" % (span / 1e9))]
    data = []
    for b in range(BINS):
        lo, hi = g.lo[b], g.hi[b]
        if lo is not None and hi is not None:
            y1, y2 = py(lo), py(hi)
            data.append("M%d %dV%d" % (px(b + 0.5), y1, min(y2, y1 - 2)))
    if data:
        out.append('<path class="data" d="%s"/>' % "".join(data))
    acks: List[str] = []
    level = -1
    for b in range(BINS):                    # a step line through each new highest ACK
        a = g.ack[b]
        if a is not None and a > level:
            acks.append(("M%d %d" if level < 0 else "H%dV%d") % (px(b), py(a)))
            level = a
    if acks:
        acks.append("H%d" % (x0 + PAD_L + pw))
        out.append('<path class="ackl" d="%s"><title>ACKs from the peer</title></path>'
                   % "".join(acks))
    for ts, seq, end in g.retrans:
        out.append('<circle class="re" cx="%d" cy="%d" r="4"><title>retransmission of seq '
                   '%d-%d</title></circle>' % (_tx(ts, x0, pw, span), py(seq), seq, end))
    for ts, ack in g.zero:
        out.append('<circle class="zw" cx="%d" cy="%d" r="3"><title>zero window at ack %d'
                   '</title></circle>' % (_tx(ts, x0, pw, span), py(ack), ack))
    if g.more_marks:
        out.append('<text x="%d" y="%d" text-anchor="end">+%d more marks</text>'
                   % (x0 + PAD_L + pw, PAD_T + 10, g.more_marks))
    return "".join(out)


def _tx(rel: int, x0: int, pw: int, span: int) -> int:
    return x0 + PAD_L + int(rel * pw / span)


def render(report: Report, out: TextIO, captures: Sequence[str] = (),
           settings: Optional[Settings] = None, **_options) -> None:
    """`--format svg`: the sequence diagram of the one stream given with `--stream` (the CLI
    checks that there is exactly one), from a second read of the capture."""
    settings = settings or Settings()
    wanted = [r for r in report.connections if r.id in settings.ladders]
    for t in trace(captures, settings, wanted).values():
        out.write(sequence_diagram(t, report.capture.last_ts, standalone=True))
