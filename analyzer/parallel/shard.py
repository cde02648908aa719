"""One shard of a parallel run: the body of a worker, on any executor.

`run_shard` analyses shard `index` of `count` (`analyze(..., shard=...)`: every frame is read,
the other shards' are skipped at header speed) and hands the parent a stream of messages
through `emit`, each one `bytes` object of bounded size, its first byte saying what it is:

* `R`: finished connections, up to `BATCH` at a time, in the order they finished, as their
  plain values (`ConnResult.flat()`, written with `marshal`: a fraction of the cost of pickling
  the objects); their ids (and `reused_from`) are first-frame numbers (tcp/flows.py, Shards);
* `S`: `(through, numbers)` with marshal: the numbers this shard took (an `array('q')` of
  frame numbers, ascending, as bytes) since the last such message; every number it will ever
  take for a frame up to `through` has now been sent;
* `E`: `(CaptureSummary, [Finding])`, pickled: the shard's capture summary and its
  capture-wide findings other than floods and scans (which the parent finds from all
  results); last;
* `X`: a defect's traceback, as UTF-8 text, instead of `E`.

The parent (merge.py) needs nothing else: no shared memory, no order between shards.
"""

from __future__ import annotations

import marshal
import pickle
from array import array
from typing import Callable, Iterator, List, Sequence

from analyzer.judge.result import ConnResult
from analyzer.pipeline import Shard, analyze
from analyzer.settings import Settings

#: Results per message.
BATCH = 512

Emit = Callable[[bytes], None]


class Sender:
    """A result sink that sends results to the parent in batches, and keeps none."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.batch: List[ConnResult] = []
        self.count = 0

    def add(self, r: ConnResult) -> None:
        self.batch.append(r)
        self.count += 1
        if len(self.batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.emit(b"R" + marshal.dumps([r.flat() for r in self.batch]))
            self.batch = []

    def __iter__(self) -> Iterator[ConnResult]:
        return iter(())

    def __len__(self) -> int:
        return self.count


def run_shard(paths: Sequence[str], settings: Settings, index: int, count: int,
              emit: Emit, on_frame: Callable[[int], None] = lambda n: None) -> None:
    """Analyse shard `index` of `count` of the capture `paths`, sending messages to `emit`
    (module docstring). `on_frame(n)` is called with each progress mark, after its message."""
    starts = array("q")
    sender = Sender(emit)

    def mark(through: int) -> None:
        sender.flush()
        emit(b"S" + marshal.dumps((through, starts.tobytes())))
        del starts[:]
        on_frame(through)

    report = analyze(list(paths), settings, sink=sender, on_frame=mark,
                     shard=Shard(index, count, starts))
    mark(report.capture.packets)
    found = [f for f in report.findings if f.code not in DETECTED]
    emit(b"E" + pickle.dumps((report.capture, found), pickle.HIGHEST_PROTOCOL))


#: The capture-wide findings the parent makes from every shard's results.
DETECTED = frozenset({"HALF_OPEN_FLOOD", "PORT_SCAN"})
