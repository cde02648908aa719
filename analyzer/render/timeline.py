"""The connection timeline and the verdict chart of the HTML report, as plain SVG text.

Each connection has one verdict class (`verdict_class`: the colour of its bar and a key of the
chart). Up to `BAR_LIMIT` connections, the timeline draws one bar per connection from its first
to its last packet (one row each up to `LABELLED` connections, labelled with the stream id;
beyond that packed into as few rows as fit, in stream order); a CLOSE_WAIT or TIME_WAIT
endpoint still lingering at the end of the capture continues the bar as a hatched bar from the
moment it entered the state to the end of the capture (TIME_WAIT lasts 2 x MSL, so a lingering
one never outlasts it); findings are marks on the bar; the `<title>` of a bar is its hover
text, and a bar links to the connection's diagrams or table row.

More connections than `BAR_LIMIT` are aggregated: one lane per server (responder address and
port), the `LANES` busiest servers (`Busiest`, in bounded memory) and one lane for all others,
each a stacked area of the connections in progress in each of `LANE_BINS` time bins, by
verdict class, with lingering endpoints hatched on top. Its size does not grow with the number of connections; the HTML
report draws the connections that have diagrams one bar each below it.
"""

from __future__ import annotations

from html import escape
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from analyzer.decode.segment import addr_str
from analyzer.judge.result import ConnResult

BAR_LIMIT = 2000
LABELLED = 60
LANES = 40
LANE_BINS = 240
#: The most one lane can take: each of its layers (8 classes, 2 kinds of lingering) is a path
#: with at most two corners per bin, each at most 12 bytes, plus its label. So the aggregated
#: timeline stays under (LANES + 1) x LANE_BUDGET (2.5 MB) however many connections it shows.
LANE_BUDGET = 10 * 2 * LANE_BINS * 12 + 500

PLOT_X = 64             # left gutter (stream labels)
PLOT_W = 1100
WIDTH = PLOT_X + PLOT_W + 12

#: Verdict classes in legend order: (class, what it means).
CLASSES: Tuple[Tuple[str, str], ...] = (
    ("closed", "closed with FIN by both sides"),
    ("half_closed", "one side closed (FIN), the other still sending"),
    ("open", "still open at the end of the capture"),
    ("close_wait", "an endpoint left in CLOSE_WAIT"),
    ("reset", "aborted by RST"),
    ("half_open", "handshake never completed (half-open, reset)"),
    ("refused", "refused (RST to the SYN)"),
    ("unanswered", "SYN never answered"),
)
CLASS_NAMES = tuple(c for c, _ in CLASSES)


def verdict_class(r: ConnResult) -> str:
    hs, close = r.handshake, r.close
    if hs == "refused":
        return "refused"
    if hs == "unanswered":
        return "unanswered"
    if hs in ("half_open", "reset"):
        return "half_open"
    if any(lg.state == "CLOSE_WAIT" for lg in r.lingering) or "CLOSE_WAIT" in r.final_state:
        return "close_wait"
    if close == "reset":
        return "reset"
    if close in ("four_way", "three_segment", "simultaneous"):
        return "closed"
    if close == "half_closed":
        return "half_closed"
    return "open"


def endpoint(addr: bytes, port: int) -> str:
    a = addr_str(addr)
    return "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)


def span_text(ns: int) -> str:
    s = ns / 1e9
    if s < 1:
        return "%.3g ms" % (s * 1000) if s else "0 ms"
    if s < 120:
        return "%.1f s" % s
    if s < 7200:
        return "%.1f min" % (s / 60)
    return "%.1f h" % (s / 3600)


def describe(r: ConnResult) -> str:
    """A connection in a few lines: the hover text of its bar."""
    lines = ["stream %d  %s → %s" % (r.id, endpoint(*r.orig_raw), endpoint(*r.resp_raw)),
             "handshake %s · close %s · final %s / %s" % (
                 r.handshake, r.close or "-", r.final_state[0], r.final_state[1]),
             "%d/%d packets · %s" % (r.packets[0], r.packets[1], span_text(r.end - r.start))]
    for lg in r.lingering:
        lines.append("%s lingering in %s for %s" % (lg.side, lg.state, span_text(lg.seconds)))
    for f in r.findings:
        lines.append("%s %s%s (frame %d): %s" % (f.severity.upper(), f.code,
                                                 " ×%d" % f.count if f.count > 1 else "",
                                                 f.frame, f.message))
    return "\n".join(lines)


class Axis:
    """Capture time -> x pixel."""

    def __init__(self, first: Optional[int], last: Optional[int]) -> None:
        self.t0 = first or 0
        self.span = max((last or 0) - self.t0, 1)

    def x(self, ts: int) -> int:
        return PLOT_X + int((ts - self.t0) * PLOT_W / self.span)

    def ticks(self, top: int, bottom: int) -> str:
        out = []
        for i in range(11):
            x = PLOT_X + PLOT_W * i // 10
            out.append('<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/>'
                       '<text class="tick" x="%d" y="%d" text-anchor="middle">+%s</text>'
                       % (x, top, x, bottom, x, bottom + 14, span_text(self.span * i // 10)))
        return "".join(out)


_DEFS = ('<defs>'
         '<pattern id="hatch-cw" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff3d6"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#d08a00" stroke-width="3"/></pattern>'
         '<pattern id="hatch-tw" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f0f0f0"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#8a8a8a" stroke-width="3"/></pattern>'
         '</defs>')


def bars(results: Sequence[ConnResult], axis: Axis, links: Dict[int, str]) -> str:
    """One bar per connection (the timeline up to BAR_LIMIT connections)."""
    labelled = len(results) <= LABELLED
    h = 14 if labelled else 8
    step = h + (6 if labelled else 3)
    rows: List[int] = []                # packed rows: the x where each row is free again
    body = []
    for r in results:
        x1 = axis.x(r.start)
        x2 = max(axis.x(r.end), x1 + 2)
        ends = [axis.x(lg.since + lg.seconds) for lg in r.lingering] or [x2]
        if labelled:
            row = len(rows)
            rows.append(0)
        else:
            row = next((i for i, free in enumerate(rows) if free <= x1), len(rows))
            if row == len(rows):
                rows.append(0)
        rows[row] = max([x2] + ends) + 3
        y = 24 + row * step
        parts = ['<g class="conn" data-stream="%d"><title>%s</title>' % (r.id, escape(describe(r)))]
        if labelled:
            parts.append('<text class="sid" x="%d" y="%d" text-anchor="end">%d</text>'
                         % (PLOT_X - 6, y + h - 3, r.id))
        for lg in r.lingering:
            lx = axis.x(lg.since)
            parts.append('<rect class="linger %s" x="%d" y="%d" width="%d" height="%d"/>' % (
                "cw" if lg.state == "CLOSE_WAIT" else "tw", lx, y, max(
                    axis.x(lg.since + lg.seconds) - lx, 2), h))
        parts.append('<rect class="bar v-%s" x="%d" y="%d" width="%d" height="%d"/>'
                     % (verdict_class(r), x1, y + (2 if r.lingering else 0), x2 - x1,
                        h - (4 if r.lingering else 0)))
        for f in r.findings:
            fx = axis.x(f.ts)
            parts.append('<path class="mark sev-%s" d="M%d %dl4 5l-4 5l-4-5z"/>'
                         % (f.severity, fx, y + h // 2 - 5))
        parts.append("</g>")
        link = links.get(r.id)
        if link:
            body.append('<a href="#%s">%s</a>' % (link, "".join(parts)))
        else:
            body.append("".join(parts))
    height = 24 + max(len(rows), 1) * step + 24
    return _svg(height, axis.ticks(16, height - 22) + "".join(body), "bars",
                len(results))


def lanes(results: Iterable[ConnResult], servers: List[Tuple[bytes, int]], others: bool,
          axis: Axis) -> str:
    """The aggregated timeline: one lane per server (see the module docstring)."""
    index = {s: i for i, s in enumerate(servers)}
    n = len(servers) + (1 if others else 0)
    ncls = len(CLASS_NAMES)
    cls_index = {c: i for i, c in enumerate(CLASS_NAMES)}
    # Difference arrays: +1 in the bin a connection starts, -1 after the bin it ends.
    active = [[[0] * (LANE_BINS + 1) for _ in range(ncls)] for _ in range(n)]
    linger = [[[0] * (LANE_BINS + 1) for _ in range(2)] for _ in range(n)]
    total = [0] * n

    t0, span, last = axis.t0, axis.span, LANE_BINS - 1
    for r in results:
        lane = index.get(r.resp_raw, len(servers))
        if lane >= n:
            continue
        total[lane] += 1
        d = active[lane][cls_index[verdict_class(r)]]
        # The bin of a time: (ts - t0) * LANE_BINS // span, kept within 0..LANE_BINS - 1.
        d[min(max((r.start - t0) * LANE_BINS // span, 0), last)] += 1
        d[min(max((r.end - t0) * LANE_BINS // span, 0), last) + 1] -= 1
        for lg in r.lingering:
            d = linger[lane][lg.state == "TIME_WAIT"]
            d[min(max((lg.since - t0) * LANE_BINS // span, 0), last)] += 1
            d[min(max((lg.since + lg.seconds - t0) * LANE_BINS // span, 0), last) + 1] -= 1
    lane_h, label_h, gap = 28, 13, 6
    step = lane_h + label_h + gap
    body = []
    for i in range(n):
        y0 = 24 + i * step + label_h
        layers = [(CLASS_NAMES[k], _prefix(active[i][k])) for k in range(ncls)]
        layers += [("cw", _prefix(linger[i][0])), ("tw", _prefix(linger[i][1]))]
        stacked = [sum(c[j] for _, c in layers) for j in range(LANE_BINS)]
        peak = max(stacked + [1])
        name = endpoint(*servers[i]) if i < len(servers) else "all other servers"
        body.append('<g class="lane" data-server="%s"><title>%s: %d connections; at most %d '
                    'connections and lingering endpoints at once</title>'
                    '<text class="sid" x="%d" y="%d">%s</text>'
                    % (escape(name), escape(name), total[i], peak, PLOT_X, y0 - 3,
                       escape(name)))
        base = [0] * LANE_BINS
        for cls, c in layers:
            if not any(c):
                continue
            top = [base[j] + c[j] for j in range(LANE_BINS)]
            body.append('<path class="%s" d="%s"/>' % (
                "linger " + cls if cls in ("cw", "tw") else "area v-" + cls,
                _area(base, top, y0, lane_h, peak)))
            base = top
        body.append("</g>")
    height = 24 + n * step + 24
    return _svg(height, axis.ticks(16, height - 22) + "".join(body), "lanes", n)


class Busiest:
    """The servers with the most connections, in bounded memory (Misra-Gries: at most
    `capacity` counters; any server with more than 1/capacity of the connections is kept, and
    the lanes' own pass counts them exactly). A scan of a million addresses costs no more than
    a capture with a few servers."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.counts: Dict[Tuple[bytes, int], int] = {}
        self.dropped = False            # some server was counted out: the lanes need "others"

    def add(self, key: Tuple[bytes, int]) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < self.capacity:
            counts[key] = 1
        else:
            # Full: every counter loses one (the new key's one included); each such step removes
            # capacity + 1 from a total of at most n, so they cost O(n) over the whole pass.
            self.dropped = True
            for k in list(counts):
                if counts[k] == 1:
                    del counts[k]
                else:
                    counts[k] -= 1

    def top(self, k: int) -> Tuple[List[Tuple[bytes, int]], bool]:
        """The `k` busiest servers, and whether other servers exist."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [s for s, _ in ranked[:k]], self.dropped or len(ranked) > k


def _prefix(delta: List[int]) -> List[int]:
    out, run = [], 0
    for v in delta[:LANE_BINS]:
        run += v
        out.append(run)
    return out


def _area(lo: List[int], hi: List[int], y0: int, h: int, peak: int) -> str:
    """A stacked layer between `lo` and `hi` as one closed step path: along the top edge left
    to right, back along the bottom edge, a corner only where the value changes."""
    w = PLOT_W / LANE_BINS

    def y(v: int) -> int:
        return y0 + h - round(v * h / peak)

    pts = ["M%d %d" % (PLOT_X, y(hi[0]))]
    for j in range(1, LANE_BINS):
        if hi[j] != hi[j - 1]:
            pts.append("H%dV%d" % (PLOT_X + round(j * w), y(hi[j])))
    pts.append("H%dV%d" % (PLOT_X + PLOT_W, y(lo[-1])))
    for j in range(LANE_BINS - 1, 0, -1):
        if lo[j - 1] != lo[j]:
            pts.append("H%dV%d" % (PLOT_X + round(j * w), y(lo[j - 1])))
    return "".join(pts) + "H%dZ" % PLOT_X


def _svg(height: int, body: str, kind: str, count: int) -> str:
    return ('<svg class="timeline %s" data-count="%d" viewBox="0 0 %d %d" width="100%%" '
            'preserveAspectRatio="xMinYMin meet" role="img" aria-label="connection timeline">'
            '%s%s</svg>' % (kind, count, WIDTH, height, _DEFS, body))


def chart(counts: Dict[str, int]) -> str:
    """The verdict counts as horizontal bars (the summary's chart)."""
    peak = max(list(counts.values()) + [1])
    rows = []
    y = 4
    for cls, meaning in CLASSES:
        n = counts.get(cls, 0)
        w = max(round(260 * n / peak), 1) if n else 0
        rows.append('<g><title>%s: %d</title><text x="0" y="%d">%s</text>'
                    '<rect class="v-%s" x="96" y="%d" width="%d" height="14"/>'
                    '<text x="%d" y="%d">%d</text></g>'
                    % (escape(meaning), n, y + 12, cls.replace("_", " "), cls, y, w,
                       100 + w, y + 12, n))
        y += 20
    return ('<svg class="chart" viewBox="0 0 420 %d" width="420" height="%d" role="img" '
            'aria-label="connections by verdict">%s</svg>' % (y, y, "".join(rows)))
