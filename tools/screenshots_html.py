"""Regenerate the pictures of the HTML report shown in README.md and docs/html.md.

    python tools/screenshots_html.py [--out docs/img] [--chromium PATH]

Writes the HTML report of samples/mixed.pcap to a temporary file, opens it in headless
Chromium (analyzer/testing/browser.py) and saves, as PNG:

* timeline.png   the connection timeline;
* sequence.png   the sequence diagram of stream 5 (a server left in CLOSE_WAIT);
* tsg.png        the time-sequence graph of a bulk transfer with a resend and a zero window
                 (built with analyzer.testing.synth, as tests/test_html.py builds it);
* summary.png    the top of the page;
* lanes.png      the first lanes of the aggregated timeline of a 3,000-connection capture from
                 bench/generate.py (past 2,000 connections the timeline has a lane per server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.decode.segment import ACK, PSH  # noqa: E402
from analyzer.testing.browser import Browser, find_chromium  # noqa: E402
from analyzer.testing.synth import Dialog, merge, write_pcap  # noqa: E402


def report(capture: Path, out: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "analyzer", str(capture), "-q", "-f", "html", "-o",
                    str(out), *args], check=True, env=env)


def bulk(path: Path) -> None:
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
    write_pcap(path, merge(d.fin("c").fin("s").ack("c")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument("--chromium", default=find_chromium())
    args = ap.parse_args()
    if not args.chromium:
        sys.exit("Chromium not found (Debian: apt-get install chromium)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        mixed = Path(tmp) / "mixed.html"
        report(REPO / "samples" / "mixed.pcap", mixed)
        cap = Path(tmp) / "bulk.pcap"
        bulk(cap)
        transfer = Path(tmp) / "bulk.html"
        report(cap, transfer, "--stream", "0")
        many = Path(tmp) / "many.pcap"
        subprocess.run([sys.executable, str(REPO / "bench" / "generate.py"), "--connections",
                        "3000", "--concurrency", "200", "--out", str(many)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        aggregated = Path(tmp) / "many.html"
        report(many, aggregated)
        with Browser(args.chromium, width=1240, height=900) as b:
            b.open(mixed.as_uri())
            b.screenshot(str(out / "summary.png"), selector="#summary")
            b.screenshot(str(out / "timeline.png"), selector="svg.timeline")
            b.screenshot(str(out / "sequence.png"), selector="#s5 svg.seq")
            b.open(transfer.as_uri())
            b.screenshot(str(out / "tsg.png"), selector="#s0 svg.tsg")
            b.open(aggregated.as_uri())
            b.screenshot(str(out / "lanes.png"), selector="svg.lanes", max_height=330,
                         scale=0.75)
            problems = b.problems()
    if problems:
        sys.exit("the page had problems: %s" % problems)
    for name in ("summary.png", "timeline.png", "sequence.png", "tsg.png", "lanes.png"):
        print("%s %d bytes" % (out / name, (out / name).stat().st_size))


if __name__ == "__main__":
    main()
