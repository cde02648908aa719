"""Measure the browser (`--browse`) on a large capture: is it still responsive?

    python bench/browse.py /tmp/bench100k.pcap [--filter 'close == reset'] [--no-app]

Prints one line per step, with wall seconds:

    analysis       analyze() keeping every result (what the browser's progress bar covers)
    model          the table's model: results in stream order, column widths over every row
    filter         Model.set_filter for each --filter expression (the whole capture each time)
    sort           Model.sort by each column (stream order needs none)
    ladder         reading one stream again (analyzer.browse.stream): the first, the middle and
                   the last connection, so the frames skipped before each grow
    app            headless Textual (App.run_test, 200x50) on the analysed capture: the first
                   screen, a key that moves the cursor, a page down, End, a filter typed in the
                   filter bar and applied, a sort key (each until the screen settled)

and the peak resident memory of the process after the analysis and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.browse.model import COLUMNS, Model           # noqa: E402
from analyzer.browse.stream import stream_ladder           # noqa: E402
from analyzer.pipeline import analyze                     # noqa: E402
from analyzer.settings import Settings                    # noqa: E402

FILTERS = ["tcp.port == 443", "close == reset or lingering", "severity >= warning",
           "ip.addr == 10.0.0.0/8 and duration > 1"]


def _mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step(name: str, seconds: float, note: str = "") -> None:
    print("%-8s %8.3f s  %s" % (name, seconds, note), flush=True)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--filter", action="append", help="filter expressions to time")
    ap.add_argument("--no-app", action="store_true", help="skip the headless app")
    args = ap.parse_args(argv)
    from analyzer.browse.app import KeepAll
    settings = Settings()
    t = time.perf_counter()
    sink = KeepAll()
    report = analyze([args.capture], settings, sink=sink)
    _step("analysis", time.perf_counter() - t, "%d connections, %d packets; peak %.0f MiB"
          % (len(sink), report.capture.packets, _mib()))
    gc.freeze()                                 # as the browser does (analyzer/browse/app.py)
    t = time.perf_counter()
    model = Model(sink.results)
    _step("model", time.perf_counter() - t, "peak %.0f MiB" % _mib())
    gc.freeze()
    for text in args.filter or FILTERS:
        t = time.perf_counter()
        error = model.set_filter(text)
        _step("filter", time.perf_counter() - t, "%r: %s" % (
            text, error.message if error else "%d shown" % len(model.view)))
    model.set_filter("")
    for i, column in enumerate(COLUMNS[1:], 1):
        t = time.perf_counter()
        model.sort(i, False)
        _step("sort", time.perf_counter() - t, column.title)
    model.sort(0, False)
    results = model.results
    for r in (results[0], results[len(results) // 2], results[-1]):
        t = time.perf_counter()
        rows = stream_ladder([args.capture], settings, r)
        _step("ladder", time.perf_counter() - t, "stream %d: %d rows, frames %d-%d"
              % (r.id, len(rows), r.first_frame, r.last_frame))
    if not args.no_app:
        asyncio.run(_app(args.capture, settings, report, model))
    print("peak memory %.0f MiB" % _mib())
    return 0


async def _app(capture: str, settings: Settings, report, model: Model) -> None:
    from analyzer.browse.app import BrowseApp

    class Preloaded(BrowseApp):
        def _analyze(self) -> None:                 # the analysis measured above
            self._loaded(report, model)

    app = Preloaded([capture], settings)
    t = time.perf_counter()
    async with app.run_test(size=(200, 50)) as pilot:
        while not app.ready:
            await pilot.pause(0.01)
        await pilot.pause()
        _step("app", time.perf_counter() - t, "first screen")
        for keys, what in ((("x",), "a key bound to nothing (the pilot's own cost)"),
                           (("down",), "cursor down"), (("pagedown",), "page down"),
                           (("end",), "End (the last row)"),
                           (("slash", *"close == reset", "enter"), "filter typed and applied"),
                           (("s",), "sort key"), (("r",), "reverse key")):
            t = time.perf_counter()
            await pilot.press(*keys)
            await pilot.pause()
            _step("app", time.perf_counter() - t, "%s (%d keys)" % (what, len(keys)))


if __name__ == "__main__":
    sys.exit(main())
