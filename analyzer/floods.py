"""Half-open floods: many SYNs to one server that never became connections, in a short window.

Fed each finished connection whose handshake is `unanswered` or `half_open`; at the end of the
capture, for every server (responder address and port) the densest `window` of such SYNs is
found, and `threshold` or more of them there make a HALF_OPEN_FLOOD finding with the server,
the count, the peak rate and the number of distinct sources. Memory: one timestamp per
half-open attempt (they are exactly what a flood is made of), never the packets.
"""

from __future__ import annotations

from collections import defaultdict
from typing import DefaultDict, List, Tuple

from analyzer.anomalies import Finding
from analyzer.report import ConnResult
from analyzer.segment import addr_str

DEFAULT_THRESHOLD = 100     # half-open attempts ...
DEFAULT_WINDOW = 10.0       # ... within this many seconds, to one server

Server = Tuple[bytes, int]


class FloodDetector:
    def __init__(self, threshold: int = DEFAULT_THRESHOLD, window: float = DEFAULT_WINDOW) -> None:
        self.threshold = threshold
        self.window_ns = int(window * 1e9)
        # server -> [(SYN time, source address, stream id, first frame)]
        self.attempts: DefaultDict[Server, List[Tuple[int, bytes, int, int]]] = defaultdict(list)

    def add(self, r: ConnResult) -> None:
        if r.handshake in ("unanswered", "half_open") or (
                r.handshake == "reset" and r.reset_by == "orig"):
            self.attempts[r.resp].append((r.start, r.orig[0], r.id, r.first_frame))

    def findings(self) -> List[Finding]:
        out = []
        for server, items in sorted(self.attempts.items(), key=lambda kv: kv[0]):
            if len(items) < self.threshold:
                continue
            items.sort()
            best, lo = (0, 0, 0), 0
            for hi in range(len(items)):
                while items[hi][0] - items[lo][0] > self.window_ns:
                    lo += 1
                if hi - lo + 1 > best[0]:
                    best = (hi - lo + 1, lo, hi)
            count, lo, hi = best
            if count < self.threshold:
                continue
            span = max((items[hi][0] - items[lo][0]) / 1e9, 1e-6)
            sources = len({it[1] for it in items[lo:hi + 1]})
            first = items[lo]
            addr = addr_str(server[0])
            where = ("[%s]:%d" % (addr, server[1])) if ":" in addr else "%s:%d" % (addr, server[1])
            f = Finding("HALF_OPEN_FLOOD", first[0], first[3], "resp",
                        "%d SYNs to %s never completed within %.1f s (%.0f per second, from %d "
                        "source address%s; %d in the whole capture)" % (
                            count, where, span, count / span, sources,
                            "" if sources == 1 else "es", len(items)))
            f.count = count
            out.append(f)
        return out
