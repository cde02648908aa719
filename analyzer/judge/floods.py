"""Half-open floods: many SYNs to one server that never became connections, in a short window.

Fed each finished connection whose handshake is `unanswered` or `half_open`; at the end of the
capture, for every server (responder address and port) the densest `window` of such SYNs is
found, and `threshold` or more of them there make a HALF_OPEN_FLOOD finding with the server,
the count, the peak rate and the number of distinct sources. Memory: one timestamp per
half-open attempt (24 bytes: they are exactly what a flood is made of), never the packets.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from typing import Dict, Final, List, Optional, Tuple

from analyzer.common.findings import Finding
from analyzer.judge.result import ConnResult
from analyzer.decode.segment import addr_str

DEFAULT_THRESHOLD: Final = 100     # half-open attempts ...
DEFAULT_WINDOW: Final = 10.0       # ... within this many seconds, to one server
_I64: Final = (1 << 63) - 1
#: Times inside +-2**61 ns (to 2043) need no clamping to the arrays' 64 bits (and compare as
#: machine integers in the compiled build).
_SAFE: Final = 1 << 61
#: An attempt waiting for the arrays (`FloodDetector._pending`), and bytes of them at most.
_TRIPLE: Final = struct.Struct("=qqq")
_PENDING: Final = 4096 * 24
#: (a constant: the compiled build reads an imported name from the module dict at each call)
_crc32: Final = zlib.crc32

Server = Tuple[bytes, int]


class FloodDetector:
    def __init__(self, threshold: int = DEFAULT_THRESHOLD, window: float = DEFAULT_WINDOW) -> None:
        self.threshold = threshold
        self.window_ns = int(window * 1e9)
        # server -> three parallel arrays: SYN time, first frame, CRC-32 of the source address (the same in every process)
        # (24 bytes an attempt: a flood of millions stays in tens of MB).
        self._attempts: Dict[Server, Tuple[array, array, array]] = {}
        #: The server last added to and its arrays (a flood's attempts come one server after
        #: another: no lookup of a new key object each time).
        self._server: Optional[Server] = None
        self._arrays: Optional[Tuple[array, array, array]] = None
        #: That server's latest attempts, not yet in its arrays: time, frame and source as
        #: machine integers one after the other (one pack of three costs a fraction of three
        #: arrays' appends, each of which parses its argument).
        self._pending = bytearray()

    @property
    def attempts(self) -> Dict[Server, Tuple[array, array, array]]:
        """Server (packed address, port) -> its attempts' (times, first frames, CRC-32s of
        the source addresses), in the order they were added."""
        self._flush()
        return self._attempts

    def _flush(self) -> None:
        pending = self._pending
        arrays = self._arrays
        if len(pending) and arrays is not None:
            flat = array("q")
            flat.frombytes(pending)
            arrays[0].extend(flat[0::3])
            arrays[1].extend(flat[1::3])
            arrays[2].extend(flat[2::3])
            self._pending = bytearray()

    def add(self, r: ConnResult) -> None:
        if r.handshake in ("unanswered", "half_open") or (
                r.handshake == "reset" and r.reset_by == "orig"):
            server = r.resp_raw
            last = self._server
            if last is None or server[1] != last[1] or server[0] != last[0]:
                self._flush()
                arrays = self._attempts.get(server)
                if arrays is None:
                    arrays = self._attempts[server] = (array("q"), array("q"), array("q"))
                self._server, self._arrays = server, arrays
            # (a pcapng timestamp can lie beyond the array's 64 bits: kept at the bound)
            start = r.start
            if not -_SAFE < start < _SAFE:
                start = min(max(start, -_I64), _I64)
            self._pending += _TRIPLE.pack(start, r.first_frame, _crc32(r.orig_raw[0]))
            if len(self._pending) >= _PENDING:
                self._flush()

    def merge(self, other: "FloodDetector") -> None:
        """Take in what another detector saw (a shard of a parallel run)."""
        mine = self.attempts
        for server, (times, frames, sources) in other.attempts.items():
            arrays = mine.get(server)
            if arrays is None:
                mine[server] = (times, frames, sources)
            else:
                arrays[0].extend(times)
                arrays[1].extend(frames)
                arrays[2].extend(sources)

    def findings(self) -> List[Finding]:
        out = []
        for server, (atimes, aframes, sources) in sorted(self.attempts.items(),
                                                         key=lambda kv: kv[0]):
            if len(atimes) < self.threshold:
                continue
            total = len(atimes)
            # (as lists: the compiled build indexes a list of ints without a call)
            times: List[int] = atimes.tolist()
            frames: List[int] = aframes.tolist()
            # In order of time, then frame (the same whatever order the results came in);
            # they mostly come in that order already.
            if not _in_order(times, frames):
                # (by frame, then stably by time: the order of (time, frame) with two sorts
                # of int keys, some 6x cheaper than one of tuples made a line each)
                order = sorted(range(total), key=frames.__getitem__)
                order.sort(key=times.__getitem__)
                times = [times[i] for i in order]
                frames = [frames[i] for i in order]
                sources = array("q", [sources[i] for i in order])
            best, lo, window = (0, 0, 0), 0, self.window_ns
            for hi in range(total):
                while times[hi] - times[lo] > window:
                    lo += 1
                if hi - lo + 1 > best[0]:
                    best = (hi - lo + 1, lo, hi)
            count, lo, hi = best
            if count < self.threshold:
                continue
            span = max((times[hi] - times[lo]) / 1e9, 1e-6)
            distinct = len(set(sources[lo:hi + 1]))
            first = lo
            addr = addr_str(server[0])
            where = ("[%s]:%d" % (addr, server[1])) if ":" in addr else "%s:%d" % (addr, server[1])
            f = Finding("HALF_OPEN_FLOOD", times[first], frames[first], "resp",
                        "%d SYNs to %s never completed within %.1f s (%.0f per second, from %d "
                        "source address%s; %d in the whole capture)" % (
                            count, where, span, count / span, distinct,
                            "" if distinct == 1 else "es", total))
            f.count = count
            out.append(f)
        return out


def _in_order(times: List[int], frames: List[int]) -> bool:
    """Whether the attempts are in order of time, then frame."""
    for i in range(1, len(times)):
        t, u = times[i - 1], times[i]
        if t > u or (t == u and frames[i - 1] > frames[i]):
            return False
    return True
