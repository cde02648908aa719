"""The HTML report and the SVG diagrams, read as data: what is drawn must be what the packets say.

The geometry is checked against the analysis itself: each arrow of a sequence diagram is one
packet of the stream's ladder (`--stream N`'s rows), in time order, pointing from the sender's
lifeline to the receiver's, with both endpoints' states after it written on the lifelines. The
page itself is opened in Chromium by test_html_browser.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List

import pytest

from analyzer.decode.segment import ACK, PSH
from analyzer.pipeline import analyze
from analyzer.render import html, packets, svg, timeline
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, merge, write_pcap
from conftest import REPO, run_cli

MIXED = REPO / "samples" / "mixed.pcap"
SVG_NS = "{http://www.w3.org/2000/svg}"


def bulk_dialog() -> Dialog:
    """A transfer long enough to be elided, with a retransmission and a zero-window stall in
    the middle (findings away from both ends), ended by RST."""
    d = Dialog(client=("10.0.0.1", 40001), server=("10.0.0.2", 443))
    d.handshake().data("c", 300)
    for i in range(120):
        d.data("s", 1400)
        if i % 2:
            d.ack("c")
        if i == 70:
            d.send("s", PSH | ACK, 1400, seq=d.nxt["s"] - 1400, advance=False)
    d.ack("c", win=0).wait(1.0).ack("c", win=0).wait(1.0).ack("c")
    for i in range(40):
        d.data("s", 1400)
        if i % 2:
            d.ack("c")
    return d.rst("c")


@pytest.fixture(scope="module")
def bulk(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bulk") / "bulk.pcap"
    write_pcap(path, merge(bulk_dialog()))
    return path


class Page(HTMLParser):
    """The parts of the page the tests count (tags with their attributes, in order)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: List[tuple] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str, cls: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and cls in (a.get("class") or "").split())

    def ids(self, tag: str, cls: str, key: str) -> List[str]:
        return [a[key] for t, a in self.tags
                if t == tag and cls in (a.get("class") or "").split() and key in a]


def html_of(path: Path, *args: str) -> str:
    res = run_cli(str(path), "-f", "html", *args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    return res.stdout.decode("utf-8")


def ladder(path: Path, stream: int) -> List[dict]:
    doc = analyze([str(path)], Settings(ladders=frozenset({stream}))).to_dict()
    return next(c for c in doc["connections"] if c["id"] == stream)["ladder"]


# -- the page --------------------------------------------------------------------------------

def test_page_is_self_contained_and_complete():
    text = html_of(MIXED)
    page = Page(text)
    doc = analyze([str(MIXED)]).to_dict()
    conns = doc["connections"]
    attention = [c for c in conns if any(f["severity"] in ("warning", "error")
                                         for f in c["findings"])]
    # Nothing is fetched: no external reference of any kind, and a policy that forbids it.
    assert "default-src 'none'" in text
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(key) or ""
            assert not value or value.startswith("#"), (tag, key, value)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    # One bar per connection, one diagram and one graph per connection needing attention.
    assert page.ids("g", "conn", "data-stream") == [str(c["id"]) for c in conns]
    want = [str(c["id"]) for c in attention]
    assert page.ids("svg", "seq", "data-stream") == want
    assert page.ids("svg", "tsg", "data-stream") == want
    assert page.count("tr", "att") == len(attention)
    assert page.ids("section", "detail", "id") == ["s" + i for i in want]
    # The table: every connection (few of them), with the terminal's columns.
    rows = [a["id"] for t, a in page.tags if t == "tr" and "id" in a]
    assert rows == ["c%d" % c["id"] for c in conns]
    for column in ("stream", "orig → resp", "handshake", "close", "first", "final orig / resp",
                   "pkts", "duration", "findings"):
        assert ">%s</th>" % column in text
    # The summary's numbers are the report's.
    assert "%d (%d need attention)" % (len(conns), len(attention)) in text
    # A bar of a connection with diagrams links to them; every other bar to its table row.
    assert '<a href="#s5"><g class="conn" data-stream="5">' in text
    assert '<a href="#c1"><g class="conn" data-stream="1">' in text


def test_lingering_endpoints_are_hatched_to_the_end_of_the_capture():
    text = html_of(MIXED)
    doc = analyze([str(MIXED)]).to_dict()
    end_x = timeline.PLOT_X + timeline.PLOT_W
    found = 0
    for c in doc["connections"]:
        for lg in c["lingering"]:
            cls = "cw" if lg["state"] == "CLOSE_WAIT" else "tw"
            group = text.split('<g class="conn" data-stream="%d">' % c["id"], 1)[1]
            group = group.split("</g>", 1)[0]
            tag = group.split('<rect class="linger %s" ' % cls, 1)[1].split("/>", 1)[0]
            x = int(tag.split('x="')[1].split('"')[0])
            w = int(tag.split('width="')[1].split('"')[0])
            assert abs(x + w - end_x) <= 1
            found += 1
    assert found == 3                   # one CLOSE_WAIT, two TIME_WAIT


def test_limit_chooses_the_most_severe_for_diagrams():
    page = Page(html_of(MIXED, "--limit", "1"))
    assert page.ids("svg", "seq", "data-stream") == ["11"]      # the one with an error
    page = Page(html_of(MIXED, "--limit", "1", "--stream", "1"))
    assert page.ids("svg", "seq", "data-stream") == ["1", "11"]


def test_stdin_gives_the_page_without_diagrams():
    res = run_cli("-", "-f", "html", stdin=MIXED.read_bytes())
    assert res.returncode == 0, res.stderr
    page = Page(res.stdout.decode())
    assert page.count("g", "conn") == 16 and page.count("svg", "seq") == 0
    assert b"standard input cannot give" in res.stdout


# -- the sequence diagram ------------------------------------------------------------------

def diagram_rows(svg_text: str) -> List[Dict]:
    """Each drawn packet of a standalone sequence diagram: frame, time, arrow, states."""
    root = ET.fromstring(svg_text)
    rows = []
    for g in root.iter(SVG_NS + "g"):
        if g.get("class") != "pkt":
            continue
        line = next(e for e in g if e.tag == SVG_NS + "line")
        texts = {e.get("class"): e.text for e in g if e.tag == SVG_NS + "text"}
        states = {}
        for e in g:
            cls = (e.get("class") or "").split()
            if e.tag == SVG_NS + "text" and "st" in cls:
                states["o" if "o" in cls else "r"] = (e.text, float(e.get("x")))
        rows.append({"frame": int(g.get("data-frame")), "ts": int(g.get("data-ts")),
                     "x1": float(line.get("x1")), "y1": float(line.get("y1")),
                     "x2": float(line.get("x2")), "y2": float(line.get("y2")),
                     "label": texts.get("lbl"), "states": states})
    return rows


def check_against_ladder(svg_text: str, rows_ladder: List[dict], whole: bool) -> List[Dict]:
    drawn = diagram_rows(svg_text)
    by_frame = {r["frame"]: r for r in rows_ladder}
    assert drawn, "no packet drawn"
    if whole:
        assert [d["frame"] for d in drawn] == [r["frame"] for r in rows_ladder]
    prev = None
    for d in drawn:
        row = by_frame[d["frame"]]
        # Arrows in time order, top to bottom, each falling from sender to receiver.
        if prev is not None:
            assert d["ts"] >= prev["ts"] and d["y1"] > prev["y1"]
        assert d["y2"] > d["y1"]
        sender, receiver = (svg.X_ORIG, svg.X_RESP) if row["side"] == "orig" else (
            svg.X_RESP, svg.X_ORIG)
        assert (d["x1"], d["x2"]) == (sender, receiver)
        # Each endpoint's state after the packet, written on its own lifeline.
        assert d["states"]["o"][0] == row["state_orig"]
        assert d["states"]["r"][0] == row["state_resp"]
        assert d["states"]["o"][1] < svg.X_ORIG < svg.X_RESP < d["states"]["r"][1]
        ack = "" if row["ack"] is None else " ack=%d" % row["ack"]
        assert d["label"].startswith("%s seq=%d%s len=%d" % (row["flags"], row["seq"], ack,
                                                            row["length"]))
        prev = d
    return drawn


@pytest.mark.parametrize("stream", range(16))
def test_svg_of_every_mixed_stream_matches_its_ladder(stream):
    res = run_cli(str(MIXED), "-f", "svg", "--stream", str(stream))
    assert res.returncode == 0, res.stderr
    check_against_ladder(res.stdout.decode(), ladder(MIXED, stream), whole=True)


def test_long_stream_is_elided_but_keeps_its_ends_and_findings(bulk):
    res = run_cli(str(bulk), "-f", "svg", "--stream", "0")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    rows = ladder(bulk, 0)
    drawn = check_against_ladder(text, rows, whole=False)
    frames = [d["frame"] for d in drawn]
    doc = analyze([str(bulk)]).to_dict()["connections"][0]
    assert len(rows) == sum(doc["packets"].values()) and len(drawn) < len(rows)
    assert frames[:packets.HEAD] == [r["frame"] for r in rows[:packets.HEAD]]
    assert frames[-packets.TAIL:] == [r["frame"] for r in rows[-packets.TAIL:]]
    codes = {f["code"] for f in doc["findings"]}
    assert {"RETRANSMISSION", "ZERO_WINDOW_STALL", "CONNECTION_RESET"} <= codes
    for f in doc["findings"]:
        assert f["frame"] in frames
        assert 'data-code="%s" data-frame="%d"' % (f["code"], f["frame"]) in text
    # What is left out is said: the counts in the gaps add up to the packets not drawn.
    skipped = sum(int(part.split(" packet")[0]) for part in text.split("&#8942; ")[1:]
                  if "not drawn" in part.split("&#8942;")[0])
    assert skipped == len(rows) - len(drawn)
    # The resent segment is the one marked, and drawn dashed.
    resent = next(f["frame"] for f in doc["findings"] if f["code"] == "RETRANSMISSION")
    group = text.split('data-frame="%d"' % resent, 1)[1].split("</g>", 1)[0]
    assert "arrow again" in group and "retransmission" in group


def test_trace_memory_is_bounded_by_its_rule(bulk):
    res = analyze([str(bulk)])
    r = next(iter(res.connections))
    t = packets.trace([str(bulk)], Settings(), [r])[0]
    assert t.count == sum(r.packets)
    limit = packets.HEAD + packets.TAIL + len(r.findings) * (2 * packets.CONTEXT + 1)
    assert len(t.rows) <= limit
    assert [row.number for row in t.rows] == sorted({row.number for row in t.rows})
    # The time-sequence graph covers every packet: the highest relative seq is the end of the
    # last byte sent (160 segments of 1400 bytes after the SYN-ACK's one sequence number).
    assert t.graphs[1].top == 160 * 1400 + 1 and t.graphs[0].top == 300 + 1
    assert len(t.graphs[1].retrans) == 1 and len(t.graphs[1].zero) == 2


def test_time_sequence_graph_marks_resends_and_zero_windows(bulk):
    page = Page(html_of(bulk))
    text = html_of(bulk)
    assert page.ids("svg", "tsg", "data-stream") == ["0"]
    graph = text.split('<svg class="tsg"', 1)[1].split("</svg>", 1)[0]
    assert graph.count('class="re"') == 1 and graph.count('class="zw"') == 2
    assert graph.count('class="data"') == 2 and graph.count('class="ackl"') == 2


def test_svg_format_needs_exactly_one_stream_and_a_file():
    for args in ([], ["--stream", "1", "--stream", "2"]):
        res = run_cli(str(MIXED), "-f", "svg", *args)
        assert res.returncode == 2 and b"--stream" in res.stderr and res.stdout == b""
    res = run_cli("-", "-f", "svg", "--stream", "1", stdin=MIXED.read_bytes())
    assert res.returncode == 2 and b"stdin" in res.stderr


# -- size ------------------------------------------------------------------------------------

def many_refused(path: Path, n: int) -> None:
    dialogs = []
    for i in range(n):
        d = Dialog(client=("10.1.%d.%d" % (i // 250, i % 250 + 1), 30000 + i),
                   server=("10.0.0.%d" % (i % 7 + 1), 80), t0=1_700_000_000.0 + i * 0.01)
        dialogs.append(d.syn().rst("s", seq=0))
    write_pcap(path, merge(*dialogs))


def test_aggregated_timeline_does_not_grow_with_connections(tmp_path, monkeypatch):
    """Past BAR_LIMIT the timeline is lanes per server: each lane within its budget, and the
    page hardly grows with 3x the connections (patched limits stand in for a 100 k capture)."""
    monkeypatch.setattr(html, "BAR_LIMIT", 50)
    monkeypatch.setattr(html, "TABLE_LIMIT", 50)
    sizes = []
    for n in (200, 600):
        path = tmp_path / ("c%d.pcap" % n)
        many_refused(path, n)
        report = analyze([str(path)])
        out = tmp_path / "r.html"
        with open(out, "w", encoding="utf-8") as fh:
            html.render(report, fh, limit=10, captures=[str(path)], settings=Settings())
        text = out.read_text(encoding="utf-8")
        page = Page(text)
        assert page.count("g", "lane") == 7 and page.count("svg", "seq") == 10
        assert page.count("tr", "att") == 10
        for lane in text.split('<g class="lane"')[1:]:
            assert len(lane.split("</g>", 1)[0]) <= timeline.LANE_BUDGET
        sizes.append(len(text.encode()))
    assert sizes[1] < 1.15 * sizes[0], sizes
    assert sizes[1] < 200_000


def test_lanes_count_every_connection_once(tmp_path, monkeypatch):
    """The aggregated timeline: the busiest servers' lanes, then one for all others; the lanes'
    connection counts add up to the report's."""
    monkeypatch.setattr(html, "BAR_LIMIT", 50)
    monkeypatch.setattr(html, "LANES", 3)
    path = tmp_path / "c.pcap"
    many_refused(path, 100)             # servers 10.0.0.1-7, round robin: 15, 15, 14, ...
    report = analyze([str(path)])
    out = tmp_path / "r.html"
    with open(out, "w", encoding="utf-8") as fh:
        html.render(report, fh, limit=5, captures=[str(path)], settings=Settings())
    text = out.read_text(encoding="utf-8")
    lanes = [part.split('">', 1)[0] for part in text.split('<g class="lane" data-server="')[1:]]
    assert lanes == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "all other servers"]
    totals = [int(part.split(": ", 1)[1].split(" connections", 1)[0])
              for part in text.split('<g class="lane" data-server="')[1:]]
    assert totals == [15, 15, 14, 56] and sum(totals) == len(report.connections)


def test_tracer_stops_the_read_where_it_says():
    seen = []

    def tracer(conn, seg) -> bool:
        seen.append(seg.num)
        return seg.num >= 40

    report = analyze([str(MIXED)], Settings(ladders=frozenset({5})), tracer=tracer)
    assert seen == [32, 33, 34, 35, 36, 37, 38, 40]
    assert report.capture.packets == 40 and report.ladders == {}


@pytest.mark.parametrize("capture", sorted((REPO / "samples").rglob("*.pcap*")),
                         ids=lambda p: p.name)
def test_every_sample_renders(capture, tmp_path):
    report = analyze([str(capture)])
    out = tmp_path / "r.html"
    with open(out, "w", encoding="utf-8") as fh:
        html.render(report, fh, captures=[str(capture)], settings=Settings())
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.count("g", "conn") == len(report.connections)
    attention = [r.id for r in report.connections if r.needs_attention()]
    assert page.ids("svg", "seq", "data-stream") == [str(i) for i in attention]
    # Every drawing is well-formed XML (as its standalone form must be).
    for part in text.split("<svg ")[1:]:
        ET.fromstring('<svg xmlns="http://www.w3.org/2000/svg" ' + part.split("</svg>")[0]
                      + "</svg>")


def test_busiest_servers_in_bounded_memory():
    """A scan of 50,000 servers among three busy ones: at most `capacity` counters, and the
    busy servers come out first."""
    b = timeline.Busiest(capacity=64)
    heavy = [(b"\x0a\x00\x00\x01", 80), (b"\x0a\x00\x00\x02", 443), (b"\x0a\x00\x00\x03", 22)]
    for i in range(50_000):
        b.add((i.to_bytes(4, "big"), 1000 + i % 7))
        b.add(heavy[i % 3])
        assert len(b.counts) <= 64
    top, others = b.top(3)
    assert sorted(top) == sorted(heavy) and others
    small = timeline.Busiest()
    for key in heavy + heavy[:1]:
        small.add(key)
    assert small.top(3) == ([heavy[0], heavy[1], heavy[2]], False)
    assert small.top(1) == ([heavy[0]], True)


def test_table_of_a_big_capture_lists_what_the_terminal_lists(tmp_path, monkeypatch):
    """More connections than TABLE_LIMIT: the `--limit` most severe; `--limit 0` every one
    needing attention (read again from the results, not held)."""
    monkeypatch.setattr(html, "TABLE_LIMIT", 20)
    path = tmp_path / "c.pcap"
    many_refused(path, 60)
    report = analyze([str(path)])
    for limit, rows in ((7, 7), (0, 60)):
        out = tmp_path / "r.html"
        with open(out, "w", encoding="utf-8") as fh:
            html.render(report, fh, limit=limit, captures=[str(path)], settings=Settings())
        page = Page(out.read_text(encoding="utf-8"))
        ids = [a["id"] for t, a in page.tags if t == "tr" and "id" in a]
        assert ids == ["c%d" % i for i in range(rows)]  # equal severity: the lowest streams
        assert page.count("svg", "seq") == rows
        # Bars link to the diagrams (every listed connection has them here), no bar to a row
        # the table does not have.
        bar_links = [a["href"] for (t, a), (t2, a2) in zip(page.tags, page.tags[1:])
                     if t == "a" and t2 == "g" and a2.get("class") == "conn"]
        assert bar_links == ["#s%d" % i for i in range(rows)]


def test_all_lists_every_connection_up_to_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(html, "ALL_LIMIT", 30)
    path = tmp_path / "c.pcap"
    many_refused(path, 40)
    report = analyze([str(path)])
    for limit_all, rows, note in ((50, 40, "All 40 connections."),
                                  (30, 30, "The first 30 of the 40 connections")):
        monkeypatch.setattr(html, "ALL_LIMIT", limit_all)
        out = tmp_path / "r.html"
        with open(out, "w", encoding="utf-8") as fh:
            html.render(report, fh, show_all=True, captures=[str(path)], settings=Settings())
        text = out.read_text(encoding="utf-8")
        ids = [a["id"] for t, a in Page(text).tags if t == "tr" and "id" in a]
        assert ids == ["c%d" % i for i in range(rows)] and note in text
