"""Time the HTML report: writing it, and opening it in headless Chromium.

    python bench/html_report.py CAPTURE [--repeat 3] [--command tcpflow-check] [--keep FILE]

For each run it times `tcpflow-check CAPTURE -f html -o FILE` and, for comparison, the JSON
report of the same capture (the analysis alone, written the cheapest way), then opens FILE in
headless Chromium (analyzer/testing/browser.py) and takes from the page's Navigation Timing the
time to its load event (parsed, styled, laid out, scripts run) and, after two animation frames,
the time until it was first drawn. It prints the medians, the file's size and the counts of
what the page holds (timeline bars or lanes, diagrams, table rows).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.testing.browser import Browser, find_chromium  # noqa: E402


def timed(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--command", default=None,
                    help="the tcpflow-check to run (default: python -m analyzer from this tree)")
    ap.add_argument("--keep", default=None, help="write the HTML here (default: a temp file)")
    args = ap.parse_args()
    chromium = find_chromium()
    if not chromium:
        sys.exit("Chromium not found (Debian: apt-get install chromium)")
    base = shlex.split(args.command) if args.command else [sys.executable, "-m", "analyzer"]
    tmp = tempfile.mkdtemp(prefix="tcpflow-html-")
    page = Path(args.keep or os.path.join(tmp, "report.html"))
    writes, jsons, loads, paints = [], [], [], []
    for _ in range(args.repeat):
        jsons.append(timed(base + [args.capture, "-q", "-f", "json", "-o", os.devnull]))
        writes.append(timed(base + [args.capture, "-q", "-f", "html", "-o", str(page)]))
        with Browser(chromium) as b:
            b.open(page.as_uri())
            nav = b.evaluate("""new Promise(done => requestAnimationFrame(() =>
                requestAnimationFrame(() => {
                    const n = performance.getEntriesByType("navigation")[0];
                    done([n.loadEventEnd, performance.now()]);
                })))""")
            loads.append(nav[0] / 1000)
            paints.append(nav[1] / 1000)
            counts = b.evaluate("""[
                document.querySelectorAll("svg.timeline g.conn").length,
                document.querySelectorAll("svg.lanes g.lane").length,
                document.querySelectorAll("svg.seq").length,
                document.querySelectorAll("#conns tbody tr").length]""")
            problems = b.problems()
    size = page.stat().st_size
    print("capture            %s" % args.capture)
    print("html size          %d bytes (%.2f MiB)" % (size, size / 2 ** 20))
    print("write html         %.2f s (median of %d)" % (statistics.median(writes), args.repeat))
    print("write json         %.2f s (the analysis alone, for comparison)"
          % statistics.median(jsons))
    print("chromium load      %.2f s (navigation to load event)" % statistics.median(loads))
    print("chromium drawn     %.2f s (after two animation frames)" % statistics.median(paints))
    print("page holds         %d bars, %d lanes, %d sequence diagrams, %d table rows" % tuple(
        counts))
    print("console problems   %s" % (problems or "none"))


if __name__ == "__main__":
    main()
