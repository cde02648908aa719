"""A result sink that hands every result to several: one analysis, several consumers.

Several outputs in one run (`--report FORMAT=FILE`), the CI gate's counters beside the
renderer's store, a Python caller keeping the results while a policy counts them: each is a
sink of its own, and `Fanout` gives each of them every result of the single pass of
`analyze()`. Iterating a fan-out gives what its first sink kept (None when it keeps nothing).
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence

from analyzer.judge.result import ConnResult
from analyzer.report.store import ResultSink


class Fanout:
    """`add` goes to every sink; iteration and `len()` are the first sink's."""

    def __init__(self, sinks: Sequence[Optional[ResultSink]]) -> None:
        self.sinks: List[ResultSink] = [s for s in sinks if s is not None]
        self.count = 0

    def add(self, r: ConnResult) -> None:
        self.count += 1
        for sink in self.sinks:
            sink.add(r)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.sinks[0]) if self.sinks else iter(())

    def __len__(self) -> int:
        return self.count
