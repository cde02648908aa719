"""The HTML report as a person sees it: opened in a real headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (analyzer/testing/browser.py). The
page must load with no console error and no request beyond the file itself, show one timeline
bar per connection and one diagram per connection needing attention, sort and filter its table,
and render to a non-blank screenshot. Skipped where Chromium is not installed (.ci/run installs
Debian's `chromium`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from analyzer.pipeline import analyze
from analyzer.testing.browser import Browser, find_chromium
from conftest import REPO, run_cli

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                "(Debian: apt-get install chromium)")
MIXED = REPO / "samples" / "mixed.pcap"


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        yield b


def write_report(tmp_path: Path, capture: Path, *args: str) -> Path:
    out = tmp_path / "report.html"
    res = run_cli(str(capture), "-f", "html", "-o", str(out), *args)
    assert res.returncode == 0, res.stderr
    return out


def png_size(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_mixed_report_in_chromium(tmp_path, browser):
    page = write_report(tmp_path, MIXED)
    url = page.as_uri()
    browser.events.clear()
    browser.open(url)
    assert browser.problems() == []
    assert browser.requests() == [url]                      # nothing leaves the page
    doc = analyze([str(MIXED)]).to_dict()
    conns = doc["connections"]
    attention = [c["id"] for c in conns
                 if any(f["severity"] in ("warning", "error") for f in c["findings"])]
    dom = browser.evaluate("""({
        bars: [...document.querySelectorAll("svg.timeline g.conn")].map(g => +g.dataset.stream),
        seq: [...document.querySelectorAll("svg.seq")].map(s => +s.dataset.stream),
        tsg: document.querySelectorAll("svg.tsg").length,
        rows: document.querySelectorAll("#conns tbody tr").length,
        barWidths: [...document.querySelectorAll("svg.timeline rect.bar")].map(
            r => r.getBoundingClientRect().width),
    })""")
    assert dom["bars"] == [c["id"] for c in conns]
    assert dom["seq"] == attention and dom["tsg"] == len(attention)
    assert dom["rows"] == len(conns)
    assert all(w > 0 for w in dom["barWidths"])              # every bar is visible
    # Filter and sort, as a person would use them.
    shown = browser.evaluate("""(() => {
        const f = document.getElementById("filter");
        f.value = "CLOSE_WAIT_LINGERING"; f.dispatchEvent(new Event("input"));
        const visible = [...document.querySelectorAll("#conns tbody tr")].filter(r => !r.hidden);
        const ids = visible.map(r => r.id);
        f.value = ""; f.dispatchEvent(new Event("input"));
        const a = document.getElementById("attention");
        a.checked = true; a.dispatchEvent(new Event("change"));
        const att = [...document.querySelectorAll("#conns tbody tr")].filter(r => !r.hidden).length;
        a.checked = false; a.dispatchEvent(new Event("change"));
        return [ids, att, document.getElementById("shown").textContent];
    })()""")
    assert shown[0] == ["c5"] and shown[1] == len(attention)
    assert shown[2] == "%d of %d shown" % (len(conns), len(conns))
    order = browser.evaluate("""(() => {
        const th = document.querySelector('#conns th[data-col="7"]');
        th.click(); th.click();                                   // duration, longest first
        return [...document.querySelectorAll("#conns tbody tr")].map(r => r.id);
    })()""")
    longest = sorted(conns, key=lambda c: (-(c["end"] - c["start"]), c["id"]))
    assert order[0] == "c%d" % longest[0]["id"]
    # A click on a bar opens its detail: the diagrams, or the table row.
    hashes = browser.evaluate("""(() => {
        const out = [];
        for (const s of [5, 1]) {
            const bar = document.querySelector('g.conn[data-stream="' + s + '"] rect.bar');
            bar.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true}));
            out.push(location.hash);
        }
        return out;
    })()""")
    assert hashes == ["#s5", "#c1"]
    assert browser.problems() == []
    shot = tmp_path / "timeline.png"
    browser.screenshot(str(shot), selector="svg.timeline")
    w, h = png_size(shot)
    assert w > 600 and h > 100


def test_page_reads_without_javascript(tmp_path):
    """The static parts: the same bars and diagrams with scripts disabled."""
    page = write_report(tmp_path, MIXED)
    with Browser(CHROMIUM, javascript=False) as b:
        b.open(page.as_uri())
        assert b.problems() == []
        n = b.call("DOM.getDocument", depth=-1)["root"]
        ids = b.call("DOM.querySelectorAll", nodeId=n["nodeId"], selector="svg.timeline g.conn")
        seq = b.call("DOM.querySelectorAll", nodeId=n["nodeId"], selector="svg.seq")
        assert len(ids["nodeIds"]) == 16 and len(seq["nodeIds"]) == 6


def test_standalone_svg_opens_in_chromium(tmp_path, browser):
    out = tmp_path / "s5.svg"
    res = run_cli(str(MIXED), "-f", "svg", "--stream", "5", "-o", str(out))
    assert res.returncode == 0, res.stderr
    browser.events.clear()
    browser.open(out.as_uri())
    assert browser.problems() == []
    assert browser.requests() == [out.as_uri()]
    n = browser.evaluate('document.querySelectorAll("g.pkt").length')
    assert n == 9
    shot = tmp_path / "s5.png"
    browser.screenshot(str(shot), full_page=True)
    assert png_size(shot)[1] > 200


def test_aggregated_page_in_chromium(tmp_path, browser, monkeypatch):
    """Past BAR_LIMIT connections (patched low, standing in for 100 k) the page has lanes per
    server, and still opens cleanly."""
    from analyzer.render import html
    from analyzer.settings import Settings
    from test_html import many_refused
    monkeypatch.setattr(html, "BAR_LIMIT", 50)
    monkeypatch.setattr(html, "TABLE_LIMIT", 50)
    cap = tmp_path / "many.pcap"
    many_refused(cap, 300)
    page = tmp_path / "many.html"
    with open(page, "w", encoding="utf-8") as fh:
        html.render(analyze([str(cap)]), fh, limit=5, captures=[str(cap)], settings=Settings())
    browser.events.clear()
    browser.open(page.as_uri())
    assert browser.problems() == []
    assert browser.requests() == [page.as_uri()]
    dom = browser.evaluate("""[document.querySelectorAll("svg.lanes g.lane").length,
        document.querySelectorAll("svg.timeline g.conn").length,
        document.querySelectorAll("svg.seq").length,
        document.querySelectorAll("#conns tbody tr").length]""")
    assert dom == [7, 5, 5, 5]
    shot = tmp_path / "lanes.png"
    browser.screenshot(str(shot), selector="svg.lanes")
    assert png_size(shot)[1] > 200
