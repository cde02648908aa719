"""`--format html`: one self-contained page — summary, timeline, diagrams, connection table.

Everything is in the file: the style sheet, a few lines of script (sorting and filtering the
table) and the drawings as inline SVG written by `timeline.py` and `svg.py`. The page's
Content-Security-Policy forbids every request, so opening it never touches the network; all
of it but sorting and filtering reads without JavaScript (hover text is SVG `<title>`, a click
on a bar follows a link to the connection's diagrams or table row).

What the page holds, and its bounds (docs/html.md):

* the summary of the terminal report, with the verdict classes as a bar chart;
* the timeline (`timeline.py`: one bar per connection up to `BAR_LIMIT`, lanes per server
  beyond);
* a sequence diagram and a time-sequence graph for each connection needing attention — the
  `--limit` most severe (100 by default; `--limit 0` means up to `DIAGRAM_LIMIT`), as the
  terminal lists them — and for each `--stream`; their packets come from a second, bounded
  read of the capture (`packets.py`), which a capture read from stdin cannot give;
* the connection table with the terminal's columns: every connection up to `TABLE_LIMIT`
  (or with `--all`, up to `ALL_LIMIT`), otherwise the ones the terminal would list.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
from html import escape
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, TextIO

from analyzer import TOOL_NAME, __version__
from analyzer.judge.result import ConnResult
from analyzer.render import assets, svg
from analyzer.render.packets import Trace, trace
from analyzer.render.timeline import (BAR_LIMIT, LANES, Axis, Busiest, bars, chart, endpoint,
                                      lanes, span_text, verdict_class)
from analyzer.report.model import Report
from analyzer.settings import Settings

TABLE_LIMIT = 5000
ALL_LIMIT = 50_000            # rows of the table with --all (about 350 bytes each)
DIAGRAM_LIMIT = 500

_GOOD = {"complete", "simultaneous_open", "four_way", "three_segment", "simultaneous"}
_BAD = {"refused", "unanswered", "half_open", "reset"}


def render(report: Report, out: TextIO, show_all: bool = False, limit: int = 100,
           captures: Sequence[str] = (), settings: Optional[Settings] = None,
           **_options) -> None:
    settings = settings or Settings()
    results = report.connections
    n = len(results)
    # The terminal's choice: the `limit` most severe connections needing attention (the table
    # lists them when it cannot list all); the first `cap` of them get diagrams.
    cap = min(limit or DIAGRAM_LIMIT, DIAGRAM_LIMIT)
    seen = _Survey(results, n, settings, limit or cap)
    chosen = sorted({r.id: r for r in seen.traced + seen.ranked[:cap]}.values(),
                    key=lambda r: r.id)
    rereadable = bool(captures) and "-" not in captures
    traces: Dict[int, Trace] = trace(captures, settings, chosen) if rereadable else {}
    # The table lists every connection, or (too many) the terminal's: the `limit` most severe,
    # or with --limit 0 every one needing attention, read again from the results (not held).
    # With --all, every connection up to ALL_LIMIT rows (a browser cannot use more).
    rows: Iterable[ConnResult] = results
    note = "All %d connections." % n
    listed: Callable[[ConnResult], bool] = _always
    if show_all and n > ALL_LIMIT:
        rows = itertools.islice(results, ALL_LIMIT)
        note = ("The first %d of the %d connections (an HTML table stops at %d rows; "
                "<code>-f json</code> has every one)." % (ALL_LIMIT, n, ALL_LIMIT))
    elif not (show_all or n <= TABLE_LIMIT):
        if limit:
            rows = sorted(seen.ranked, key=lambda r: r.id)
            shown = len(seen.ranked)
            listed = _member({r.id for r in seen.ranked})
        else:
            rows = (r for r in results if r.needs_attention())
            shown = report.summary.attention
            listed = ConnResult.needs_attention
        note = ("The %d connections needing attention the terminal report lists (of %d; more "
                "than %d connections: <code>--all</code> lists every one)."
                % (shown, n, TABLE_LIMIT))
    out.write(assets.HEAD % {"title": escape("%s — %s" % (TOOL_NAME, ", ".join(
        report.capture.files))), "style": assets.STYLE + svg.STYLE})
    _summary(out, report, seen.counts)
    _timeline(out, report, seen, chosen, listed)
    _diagrams(out, report, chosen, traces, rereadable, cap)
    _table(out, rows, note)
    out.write(assets.TAIL % {"script": assets.SCRIPT, "tool": escape(TOOL_NAME),
                             "version": escape(__version__)})


class _Survey:
    """One pass over the results: the verdict classes' counts, the results themselves when the
    timeline draws each (up to BAR_LIMIT) or else the busiest servers, the `--stream`
    connections, and the `keep` most severe connections needing attention, most severe first."""

    def __init__(self, results: Iterable[ConnResult], n: int, settings: Settings,
                 keep: int) -> None:
        self.n = n
        self.counts: Dict[str, int] = {}
        self.few: List[ConnResult] = []
        self.servers = Busiest()
        self.traced: List[ConnResult] = []
        heap: List[tuple] = []
        for r in results:
            cls = verdict_class(r)
            self.counts[cls] = self.counts.get(cls, 0) + 1
            if n <= BAR_LIMIT:
                self.few.append(r)
            else:
                self.servers.add(r.resp_raw)
            if r.id in settings.ladders:
                self.traced.append(r)
            if r.needs_attention():
                key = (r.worst(), -r.id)
                if len(heap) < keep:
                    heapq.heappush(heap, (key, r))
                elif key > heap[0][0]:
                    heapq.heapreplace(heap, (key, r))
        self.ranked = [r for _, r in sorted(heap, key=lambda kr: kr[0], reverse=True)]


def _timeline(out: TextIO, report: Report, seen: _Survey, chosen: List[ConnResult],
              listed: Callable[[ConnResult], bool]) -> None:
    links = {r.id: "s%d" % r.id for r in chosen}
    out.write('<section id="timeline"><h2>Timeline</h2>')
    axis = Axis(report.capture.first_ts, report.capture.last_ts)
    if seen.n <= BAR_LIMIT:
        for r in seen.few:
            links.setdefault(r.id, "c%d" % r.id if listed(r) else "")
        out.write('<p class="note">One bar per connection, from its first to its last packet,'
                  ' coloured by verdict; hatched: an endpoint still in CLOSE_WAIT or TIME_WAIT at'
                  ' the end of the capture; ◆ a finding. Hover for the connection, click for its'
                  ' diagrams or its row in the table.</p>')
        out.write(_legend())
        out.write(bars(seen.few, axis, links))
    else:
        top, others = seen.servers.top(LANES)
        out.write('<p class="note">%d connections: too many for one bar each (more than %d), so '
                  'one lane per server (responder address and port) — the %d busiest%s — '
                  'showing how many connections were in progress over time, by verdict; '
                  'hatched: endpoints lingering in CLOSE_WAIT or TIME_WAIT. The connections with '
                  'diagrams are drawn one bar each below.</p>'
                  % (seen.n, BAR_LIMIT, len(top),
                     ", the others in the last lane" if others else ""))
        out.write(_legend())
        out.write(lanes(report.connections, top, others, axis))
        if chosen:
            out.write("<h3>Connections with diagrams</h3>")
            out.write(bars(chosen, axis, links))
    out.write("</section>")


def _when(ts: Optional[int]) -> str:
    if ts is None:
        return "-"
    try:
        dt = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=ts // 1000)
        return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    except OverflowError:
        return "%d.%09d s from 1970" % divmod(ts, 1_000_000_000)


def _counts(items, empty: str = "none") -> str:
    parts = ["%s %d" % (k, v) for k, v in items if v]
    return " · ".join(parts) if parts else empty


def _summary(out: TextIO, report: Report, counts: Dict[str, int]) -> None:
    cap, s = report.capture, report.summary
    span = (cap.last_ts - cap.first_ts) if (
        cap.first_ts is not None and cap.last_ts is not None) else 0
    hs = _counts(sorted(s.handshakes.items(), key=lambda kv: (-kv[1], kv[0])))
    if s.syn_retransmissions:
        hs += "  (%d SYN retransmissions)" % s.syn_retransmissions
    closes = sorted(s.closes.items(), key=lambda kv: (kv[0] == "none", -kv[1], kv[0]))
    facts = [
        ("Connections", "%d (%d need attention)" % (s.connections, s.attention)),
        ("Handshakes", hs),
        ("Closes", _counts([("not established" if k == "none" else k, v) for k, v in closes])),
        ("Resets", "by orig %d · by resp %d" % (s.resets.get("orig", 0), s.resets.get("resp", 0))),
        ("Lingering", "CLOSE_WAIT %d · TIME_WAIT %d" % (
            s.lingering.get("CLOSE_WAIT", 0), s.lingering.get("TIME_WAIT", 0))),
        ("Findings", _counts([(k, s.severities.get(k, 0)) for k in ("error", "warning", "info")])),
        ("Skipped packets", _counts(sorted(cap.skipped.items(), key=lambda kv: (-kv[1], kv[0])))),
    ]
    memory = cap.memory_words()
    if memory is not None:
        facts.append(("Memory", memory))
    out.write('<header><h1>%s</h1><p class="files">%s</p><p>%d packets (%d TCP), %s to %s (%s)%s'
              '</p></header>' % (
                  escape(TOOL_NAME), escape(", ".join(cap.files)), cap.packets, cap.tcp_packets,
                  _when(cap.first_ts), _when(cap.last_ts), span_text(span),
                  " — <strong>CAPTURE CUT SHORT</strong>" if cap.truncated else ""))
    out.write('<section id="summary"><h2>Summary</h2><div class="sum"><table class="facts">')
    for k, v in facts:
        out.write("<tr><th>%s</th><td>%s</td></tr>" % (k, escape(v)))
    out.write("</table>%s</div>" % chart(counts))
    for kind, lines in (("warning", cap.warnings), ("error", cap.errors)):
        for line in lines:
            out.write('<p class="%s">%s: %s</p>' % (kind, kind, escape(line)))
    if report.findings:
        out.write("<h3>Capture-wide findings</h3><ul>")
        for f in report.findings:
            out.write('<li><span class="sev-%s">%s</span> %s (frame %d): %s</li>' % (
                f.severity, f.severity.upper(), f.code, f.frame, escape(f.message)))
        out.write("</ul>")
    out.write("</section>")


def _legend() -> str:
    from analyzer.render.timeline import CLASSES
    items = "".join('<span><i class="sw v-%s"></i>%s</span>' % (c, escape(m)) for c, m in CLASSES)
    return ('<p class="legend">%s<span><i class="sw cw"></i>lingering CLOSE_WAIT</span>'
            '<span><i class="sw tw"></i>lingering TIME_WAIT</span></p>' % items)


def _diagrams(out: TextIO, report: Report, chosen: List[ConnResult], traces: Dict[int, Trace],
              rereadable: bool, cap: int) -> None:
    out.write('<section id="diagrams"><h2>Sequence diagrams</h2>')
    attention = report.summary.attention
    if not chosen:
        out.write("<p>No connection needs attention.</p></section>")
        return
    if not rereadable:
        out.write('<p class="warning">The diagrams need a second read of the capture, which '
                  'standard input cannot give: write the capture to a file to get them.</p>'
                  '</section>')
        return
    shown = sum(1 for r in chosen if r.needs_attention())
    out.write('<p class="note">For %s connections needing attention%s (the most severe first, '
              'as the terminal report lists them; <code>--limit</code> sets how many, at most %d)'
              ' and each <code>--stream</code>. A diagram draws at most the first and last '
              'packets of a connection and those around each finding; a time-sequence graph '
              'covers every packet.</p>' % (
                  "all %d" % shown if shown == attention else "%d of the %d" % (shown, attention),
                  "", cap))
    end = report.capture.last_ts
    out.write(svg.DEFS)
    for r in chosen:
        t = traces.get(r.id)
        out.write('<section class="detail" id="s%d"><h3>Stream %d: %s → %s</h3>'
                  % (r.id, r.id, escape(endpoint(*r.orig_raw)), escape(endpoint(*r.resp_raw))))
        out.write('<p>handshake <b class="%s">%s</b> · close <b class="%s">%s</b> · final %s / %s'
                  ' · %d/%d packets · %s · <a href="#c%d">table row</a></p>' % (
                      _tone(r.handshake), r.handshake, _tone(r.close), r.close or "-",
                      r.final_state[0], r.final_state[1], r.packets[0], r.packets[1],
                      span_text(r.end - r.start), r.id))
        if r.findings:
            out.write("<ul>")
            for f in r.findings:
                out.write('<li><span class="sev-%s">%s</span> %s%s, frame %d: %s</li>' % (
                    f.severity, f.severity.upper(), f.code,
                    " ×%d" % f.count if f.count > 1 else "", f.frame, escape(f.message)))
            out.write("</ul>")
        if t is None:
            out.write("<p>No packets of this stream were read again.</p></section>")
            continue
        out.write('<div class="scroll">%s</div>' % svg.sequence_diagram(t, end))
        out.write('<div class="scroll">%s</div></section>' % svg.time_sequence(t))
    out.write("</section>")


def _tone(verdict: Optional[str]) -> str:
    return "good" if verdict in _GOOD else "bad" if verdict in _BAD else "meh"


_COLUMNS = ("stream", "orig → resp", "handshake", "close", "first", "final orig / resp", "pkts",
            "duration", "findings")


def _always(r: ConnResult) -> bool:
    return True


def _member(ids: Set[int]) -> Callable[[ConnResult], bool]:
    return lambda r: r.id in ids


def _table(out: TextIO, rows: Iterable[ConnResult], note: str) -> None:
    """The connection table: `rows`, with a `note` that says which they are."""
    out.write('<section id="connections"><h2>Connections</h2><p class="note">%s' % note)
    out.write(' Click a heading to sort; type to filter.</p><p class="tools"><input id="filter" '
              'type="search" placeholder="filter: address, port, verdict, state, finding…" '
              'aria-label="filter the connections"> <label><input id="attention" '
              'type="checkbox"> only connections needing attention</label> <span id="shown">'
              '</span></p><div class="scroll"><table id="conns"><thead><tr>')
    for i, c in enumerate(_COLUMNS):
        out.write('<th data-col="%d"%s>%s</th>' % (
            i, ' class="num"' if c in ("stream", "pkts", "duration") else "", c))
    out.write("</tr></thead><tbody>")
    for r in rows:
        first = r.closed_first or "-"
        if r.reset_by and r.close == "reset":
            first = "RST " + r.reset_by
        codes = " ".join('<span class="sev-%s">%s</span>' % (
            f.severity, f.code + ("×%d" % f.count if f.count > 1 else "")) for f in r.findings)
        out.write('<tr id="c%d"%s><td class="num">%d</td><td>%s → %s</td><td class="%s">%s</td>'
                  '<td class="%s">%s</td><td>%s</td><td>%s / %s</td><td class="num" data-v="%d">'
                  '%d/%d</td><td class="num" data-v="%d">%s</td><td>%s</td></tr>' % (
                      r.id, ' class="att"' if r.needs_attention() else "", r.id,
                      escape(endpoint(*r.orig_raw)), escape(endpoint(*r.resp_raw)),
                      _tone(r.handshake),
                      r.handshake, _tone(r.close), r.close or "-", first, r.final_state[0],
                      r.final_state[1], r.packets[0] + r.packets[1], r.packets[0], r.packets[1],
                      r.end - r.start, span_text(r.end - r.start), codes))
    out.write("</tbody></table></div></section>")
