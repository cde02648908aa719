"""Make the README's screenshot of the browser: docs/browse.svg (and docs/browse.png with --png).

    python tools/screenshots.py [--png]

Runs `tcpflow-check --browse samples/mixed.pcap` headless (Textual's pilot) at 170x44, filters
the connections that need attention, selects the one left in CLOSE_WAIT, waits for its ladder
and saves Textual's SVG screenshot. `--png` also renders the SVG with headless Chromium
(Debian's `chromium`), for viewers that do not show SVG.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.browse.app import BrowseApp          # noqa: E402
from analyzer.settings import Settings             # noqa: E402

SIZE = (170, 44)
FILTER = "severity >= warning"


async def shoot(svg: Path) -> None:
    capture = str(Path("samples") / "mixed.pcap")
    app = BrowseApp([capture], Settings())
    async with app.run_test(size=SIZE) as pilot:
        while not app.ready:
            await pilot.pause(0.05)
        await pilot.press("slash", *FILTER, "enter")
        shown = [app.model.row(i) for i in range(len(app.model.view))]
        target = next(i for i, r in enumerate(shown)
                      if any(lg.state == "CLOSE_WAIT" for lg in r.lingering))
        await pilot.press(*["down"] * target)
        for _ in range(200):
            await pilot.pause(0.05)
            if "Ladder (" in app.detail.text():
                break
        await pilot.pause(0.3)
        app.save_screenshot(filename=svg.name, path=str(svg.parent))


def to_png(svg: Path, png: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("--png needs Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--user-data-dir=" + tmp, "--hide-scrollbars",
                        "--screenshot=" + str(png), "--window-size=1720,1010",
                        svg.resolve().as_uri()], check=True, capture_output=True, timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--png", action="store_true", help="also write docs/browse.png")
    args = ap.parse_args()
    svg = ROOT / "docs" / "browse.svg"
    import os
    os.chdir(ROOT)                   # the capture's name as a user types it
    asyncio.run(shoot(svg))
    print("wrote", svg.relative_to(ROOT))
    if args.png:
        to_png(svg, svg.with_suffix(".png"))
        print("wrote", svg.with_suffix(".png").relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
