"""One shard of a parallel run: the body of a worker, on any executor.

`run_shard` analyses shard `index` of `count` (`analyze(..., shard=...)`: every frame is read,
the other shards' are skipped at header speed) and hands the parent a stream of messages
through `emit`, each one pickled `bytes` object of bounded size:

* `("results", [ConnResult, ...])`: finished connections, up to `BATCH` at a time, in the order
  they finished; their ids (and `reused_from`) are first-frame numbers (tcp/flows.py, Shards);
* `("starts", through, bytes)`: the numbers this shard took (an `array('q')` of frame
  numbers, ascending) since the last such message; every number it will ever take for a frame
  up to `through` has now been sent;
* `("end", CaptureSummary, [Finding])`: the shard's capture summary and its capture-wide
  findings other than floods and scans (which the parent finds from all results); last.

The parent (merge.py) needs nothing else: no shared memory, no order between shards.
"""

from __future__ import annotations

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
            self.emit(pickle.dumps(("results", self.batch), pickle.HIGHEST_PROTOCOL))
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
        emit(pickle.dumps(("starts", through, starts.tobytes()), pickle.HIGHEST_PROTOCOL))
        del starts[:]
        on_frame(through)

    report = analyze(list(paths), settings, sink=sender, on_frame=mark,
                     shard=Shard(index, count, starts))
    mark(report.capture.packets)
    found = [f for f in report.findings if f.code not in DETECTED]
    emit(pickle.dumps(("end", report.capture, found), pickle.HIGHEST_PROTOCOL))


#: The capture-wide findings the parent makes from every shard's results.
DETECTED = frozenset({"HALF_OPEN_FLOOD", "PORT_SCAN"})
