"""Open any packet capture and stream its frames as ``(ts_ns, linktype, frame)`` tuples.

The format is told from the magic bytes, never by seeking, so stdin and pipes work:
classic pcap (`analyzer.capture.pcap`: microsecond or nanosecond timestamps, either byte order),
pcapng (`analyzer.capture.pcapng`: any number of sections, each with its own byte order and
interfaces, each interface with its own link type, timestamp resolution and offset), and
either of them gzip-compressed. Each reader's module states its bounds and the choices it
makes where its format leaves room; `analyzer.capture.source` holds what they share.

This is the hot path. The input is read in chunks of up to ``CHUNK`` bytes; pcap records and
pcapng blocks are parsed in the read buffer and handed on in place (`open_captures`: the
analysis decodes each frame where it lies, so nothing is made per packet); iterating a
source yields ``(ts_ns, linktype, frame)`` tuples with the frame copied out. Memory stays
flat however large the file.

Bad input never raises in the middle of a file. A file that is not a capture at all raises
``CaptureError`` from ``open_capture``. A file that breaks later (cut short, corrupt record
header, gzip stream cut short, read error) yields every frame before the break, then adds a
one-line warning to ``CaptureStats.warnings`` and sets ``CaptureStats.truncated``. Warnings
start with the file name (``<stdin>`` for ``-``).
"""

from __future__ import annotations

import errno
import gzip
import heapq
import itertools
import sys
from operator import itemgetter
from struct import error as StructError
from typing import BinaryIO, Final, Iterator, List, Optional, Sequence, Tuple

from analyzer.capture.interrupt import Guarded, received
from analyzer.capture.source import (CHUNK, MAX_BLOCK, READ_ERRORS, CaptureError,
                                     CaptureInterrupted, CaptureStats, Cursor, Frame,
                                     FrameSource, fill, frames_of, one_line)
from analyzer.common.nstime import NS
from analyzer.capture.pcap import PCAP_MAGIC, PCAP_MIN_BOUND, PcapSource
from analyzer.capture.pcapng import PCAPNG_MAGIC, PcapngSource
from analyzer.capture.spill import NO_DESCRIPTORS, SpillStore, open_budget
from analyzer.common.names import printable

__all__ = ["CHUNK", "MAX_BLOCK", "NS", "PCAP_MIN_BOUND", "CaptureError", "CaptureStats", "Cursor",
           "Frame", "FrameSource", "MergeCursor", "open_capture", "open_captures", "read_frames"]

_GZIP_MAGIC = b"\x1f\x8b"


class _Prefixed:
    """A read-only stream that returns ``head`` first, then the rest of ``fh``: the bytes
    already read to sniff the format are handed back without seeking."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        self.head, self.fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.fh.read(n)
        if n is None or n < 0:
            data, self.head = self.head + self.fh.read(), b""
        else:
            data, self.head = self.head[:n], self.head[n:]
        return data


def open_capture(path: str, stats: CaptureStats, chunk: int = CHUNK) -> FrameSource:
    """Open one capture file (``'-'`` = stdin) and read its header.

    Raises CaptureError if the file cannot be opened (missing, permission, directory, stdin
    closed) or is not a capture (bad magic, empty, header cut short, unsupported version, bad
    gzip); CaptureInterrupted if a signal came first (`analyzer.capture.interrupt`)."""
    name = "<stdin>" if path == "-" else printable(path)
    try:
        if path == "-" and sys.stdin is None:       # started with stdin closed
            raise OSError(errno.EBADF, "stdin is closed")
        raw = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        error = CaptureError(f"{name}: cannot open ({one_line(e)})")
        error.errno = e.errno
        raise error from None
    fh = Guarded(raw)
    try:
        try:
            source = _sniff(path, name, fh, stats, chunk)   # type: ignore[arg-type]
        except (*READ_ERRORS, StructError) as e:
            raise CaptureError(f"{name}: cannot read ({one_line(e)})") from None
    except CaptureError:
        if path != "-":
            fh.close()
        if fh.stopped:
            raise CaptureInterrupted(f"{name}: interrupted before its header was read") from None
        raise
    stats.files.append(path)
    return source


def _sniff(path: str, name: str, fh: BinaryIO, stats: CaptureStats, chunk: int) -> FrameSource:
    """Tell the format from the first bytes (unwrapping gzip) and open the matching source."""
    read = getattr(fh, "read1", fh.read)
    head = fill(read, b"", 4, chunk)
    inner = ""
    if head[:2] == _GZIP_MAGIC:
        gz = gzip.GzipFile(fileobj=_Prefixed(head, fh), mode="rb")   # type: ignore[arg-type,call-overload]
        read, inner = gz.read1, " inside gzip"
        try:
            head = fill(read, b"", 4, chunk)
        except READ_ERRORS as e:
            raise CaptureError(f"{name}: unreadable gzip data ({one_line(e)})") from None
    if not head:
        raise CaptureError(f"{name}: empty{inner}, not a capture")
    if head[:4] in PCAP_MAGIC:
        return PcapSource(path, fh, read, head, stats, chunk)
    if head[:4] == PCAPNG_MAGIC:
        return PcapngSource(path, fh, read, head, stats, chunk)
    raise CaptureError(f"{name}: not a capture file{inner} (first bytes {head[:4].hex(' ')})")


def open_captures(paths: Sequence[str], stats: CaptureStats, errors: List[str]) -> Cursor:
    """The frames of all `paths` as one time-ordered capture (ties keep the files' order);
    a file that cannot be read at all adds its one-line reason to `errors` and is left out.

    One file is read in place (`FrameSource.cursor`). Several are merged by `MergeCursor`,
    in place too (rotated files cost what one file costs), which opens each file only when
    the merge reaches its first frame and closes it at its last: rotated captures, one after
    the other in time, keep one or two files open however many there are; files that
    overlap in time are open together, each reading `MERGE_CHUNK` bytes at a time, up to
    `open_budget()` of them (from the descriptor limit):
    past it, or when an open finds no descriptor left, a file is read whole into one
    temporary `SpillStore` and merged from there (`analyzer.capture.spill`). A merge never
    fails for lack of descriptors.
    """
    if len(paths) == 1:
        try:
            return open_capture(paths[0], stats).cursor()
        except CaptureInterrupted:
            stats.interrupted = True
        except CaptureError as exc:
            errors.append(str(exc))
        return Cursor()
    return MergeCursor(paths, stats, errors)


#: Read size of each file of a merge (1 MiB for a single file).
MERGE_CHUNK: Final = 64 * 1024


class MergeCursor(Cursor):
    """Several files as one time-ordered stream, read in place, opening each file when its
    time comes.

    Each file is probed first (its header and the time of its first frame, read with
    statistics of its own and closed again; stdin, which cannot be read twice, stays open),
    so that files that cannot be read are reported before any frame. The next frame is the
    earliest of the open files' next frames and the waiting files' first frames, by
    ``(time, file index)``: ties keep the files' order, and each file's frames keep their
    order in the file (a frame stamped earlier than the one before it in its file still comes
    after it). A waiting file is opened as soon as its first frame is due. After a signal
    (`analyzer.capture.interrupt`) no file is opened any more.

    Frames are handed on where they lie in their file's read buffer (nothing is copied per
    frame): the file whose frame was handed on last is the *current* one, and it is stepped
    only when the next frame is asked for. It stays current while its frames come before
    the first frame of every other file (`rival`, the key of the earliest of them): rotated
    files, one after the other in time, are chained with one comparison per frame; the heap
    of the other files' next frames moves only when the current file changes.
    """

    def __init__(self, paths: Sequence[str], stats: CaptureStats, errors: List[str]) -> None:
        super().__init__()
        self.stats, self.errors = stats, errors
        # (first frame's time or -1 without frames, file index, path, stdin's cursor on its
        # first frame)
        self.waiting: List[Tuple[int, int, str, Optional[Cursor]]] = []
        for i, path in enumerate(paths):
            if received():
                stats.interrupted = True
                break
            try:
                if path == "-":
                    primed: Optional[Cursor] = open_capture(path, stats, MERGE_CHUNK).cursor()
                    assert primed is not None
                    if not primed.advance():
                        continue                    # no frames (counted by its cursor)
                    first = primed.ts
                else:
                    probe = open_capture(path, CaptureStats(), MERGE_CHUNK)
                    cursor = probe.cursor()
                    first = cursor.ts if cursor.advance() else -1
                    probe.close()
                    primed = None
            except CaptureInterrupted:
                stats.interrupted = True
                break
            except CaptureError as exc:
                errors.append(str(exc))
                continue
            self.waiting.append((first, i, path, primed))
        self.waiting.sort(key=lambda w: (w[0], w[1]), reverse=True)   # next due at the end
        # (next frame's time, file index, the file's cursor on that frame, holds a descriptor)
        self.heap: List[Tuple[int, int, Cursor, bool]] = []
        self.budget = open_budget()
        self.held = 0                           # files open (current and in the heap)
        self.spill = SpillStore()
        # The current file: its cursor (on the frame handed on last), index, descriptor.
        self.current: Optional[Cursor] = None
        self.index = 0
        self.holds = False
        # The key of the earliest frame of the other files (`alone`: there is none).
        self.rival_ts, self.rival_index, self.alone = 0, 0, True

    def advance(self) -> bool:
        cur = self.current
        if cur is not None:
            if cur.advance():
                ts = cur.ts
                if self.alone or ts < self.rival_ts or (ts == self.rival_ts
                                                        and self.index < self.rival_index):
                    self.ts, self.linktype = ts, cur.linktype
                    self.buf, self.start, self.end = cur.buf, cur.start, cur.end
                    return True
                heapq.heappush(self.heap, (ts, self.index, cur, self.holds))
            elif self.holds:
                self.held -= 1
            self.current = None
        return self._switch()

    def _switch(self) -> bool:
        """Open the waiting files now due, make the file with the earliest next frame the
        current one and hand that frame on; False when no frame is left."""
        heap, waiting = self.heap, self.waiting
        while waiting and (not heap or (waiting[-1][0], waiting[-1][1]) <= heap[0][:2]):
            _, i, path, cursor = waiting.pop()
            if cursor is not None:                 # stdin, on its first frame
                heapq.heappush(heap, (cursor.ts, i, cursor, False))
                continue
            if received():                         # no more files after a signal
                self.stats.interrupted = True
                waiting.clear()
                break
            cursor = self._open(path)
            if cursor is None:
                continue
            held = self.held < self.budget
            if held:
                self.held += 1
            else:
                try:
                    cursor = _Spilled(self.spill.add(frames_of(cursor)))
                except OSError as exc:              # no room for the temporary copy
                    self.errors.append(f"{printable(path)}: not merged: no descriptor "
                                       f"left and no temporary copy ({one_line(exc)})")
                    continue
            if cursor.advance():
                heapq.heappush(heap, (cursor.ts, i, cursor, held))
            elif held:
                self.held -= 1
        if not heap:
            self.spill.close()
            return False
        _, self.index, cur, self.holds = heapq.heappop(heap)
        self.current = cur
        self.alone = not heap and not waiting
        if not self.alone:
            rival = heap[0][:2] if heap else (waiting[-1][0], waiting[-1][1])
            if heap and waiting and (waiting[-1][0], waiting[-1][1]) < rival:
                rival = (waiting[-1][0], waiting[-1][1])
            self.rival_ts, self.rival_index = rival
        self.ts, self.linktype = cur.ts, cur.linktype
        self.buf, self.start, self.end = cur.buf, cur.start, cur.end
        return True

    def _open(self, path: str) -> Optional[Cursor]:
        """The frames of the file at `path`, or None (its error added). With no descriptor
        left, the budget shrinks to the files open now and one open file is read into the
        spill store to free one; without any, the file is reported."""
        for _ in range(2):
            try:
                return open_capture(path, self.stats, MERGE_CHUNK).cursor()
            except CaptureInterrupted:
                self.stats.interrupted = True
                return None
            except CaptureError as exc:
                if not _out_of_descriptors(exc) or not self._free_one():
                    self.errors.append(str(exc))
                    return None
        return None

    def _free_one(self) -> bool:
        """Move the open file whose next frame is latest into the spill store."""
        held = [n for n, entry in enumerate(self.heap) if entry[3]]
        if not held:
            return False
        n = max(held, key=lambda k: self.heap[k][:2])
        ts, i, cursor, _ = self.heap[n]
        frame = (cursor.ts, cursor.linktype, cursor.buf[cursor.start:cursor.end])
        try:
            spilled = _Spilled(self.spill.add(itertools.chain([frame], frames_of(cursor))))
        except OSError as exc:                      # no room for the temporary copy
            self.errors.append(f"merge: a file's frames after {ts} ns may be missing: no "
                               f"temporary copy ({one_line(exc)})")
            return False
        spilled.advance()                           # on the frame the file was on
        self.heap[n] = (ts, i, spilled, False)
        self.held -= 1
        self.budget = max(1, self.held)
        return True


class _Spilled(Cursor):
    """A spilled file's frames (copied out of the `SpillStore`, one at a time)."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        super().__init__()
        self.frames = frames

    def advance(self) -> bool:
        frame = next(self.frames, None)
        if frame is None:
            return False
        self.ts, self.linktype, self.buf = frame
        self.start, self.end = 0, len(self.buf)
        return True


def _out_of_descriptors(exc: CaptureError) -> bool:
    return exc.errno in NO_DESCRIPTORS


def read_frames(sources: List[FrameSource], stats: CaptureStats) -> Iterator[Frame]:
    """Frames of several files as one time-ordered stream (ties keep file order); with one
    source, just that source. Each file is assumed to be in time order itself, as captures
    are; ``stats`` is filled in by the sources as they are read."""
    if len(sources) == 1:
        return iter(sources[0])
    return heapq.merge(*sources, key=itemgetter(0))
