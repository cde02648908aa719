"""Open any packet capture and stream its frames as ``(ts_ns, linktype, frame)`` tuples.

The format is told from the magic bytes, never by seeking, so stdin and pipes work:
classic pcap (`analyzer.pcap`: microsecond or nanosecond timestamps, either byte order),
pcapng (`analyzer.pcapng`: any number of sections, each with its own byte order and
interfaces, each interface with its own link type, timestamp resolution and offset), and
either of them gzip-compressed. Each reader's module states its bounds and the choices it
makes where its format leaves room; `analyzer.framesource` holds what they share.

This is the hot path. The input is read in chunks of up to ``CHUNK`` bytes. Classic pcap
records are parsed in the read buffer and handed on in place (`frame_cursor`: the analysis
decodes each frame where it lies, so nothing is made per packet); iterating a source yields
``(ts_ns, linktype, frame)`` tuples with the frame copied out. Memory stays flat however
large the file.

Bad input never raises in the middle of a file. A file that is not a capture at all raises
``CaptureError`` from ``open_capture``. A file that breaks later (cut short, corrupt record
header, gzip stream cut short, read error) yields every frame before the break, then adds a
one-line warning to ``CaptureStats.warnings`` and sets ``CaptureStats.truncated``. Warnings
start with the file name (``<stdin>`` for ``-``).
"""

from __future__ import annotations

import gzip
import heapq
import sys
from operator import itemgetter
from struct import error as StructError
from typing import BinaryIO, Iterator, List

from analyzer.framesource import (CHUNK, MAX_BLOCK, NS, READ_ERRORS, CaptureError, CaptureStats,
                                  Cursor, Frame, FrameSource, fill, one_line)
from analyzer.pcap import PCAP_MAGIC, PCAP_MIN_BOUND, PcapSource
from analyzer.pcapng import PCAPNG_MAGIC, PcapngSource

__all__ = ["CHUNK", "MAX_BLOCK", "NS", "PCAP_MIN_BOUND", "CaptureError", "CaptureStats", "Cursor",
           "Frame", "FrameSource", "frame_cursor", "open_capture", "read_frames"]

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


def open_capture(path: str, stats: CaptureStats) -> FrameSource:
    """Open one capture file (``'-'`` = stdin) and read its header.

    Raises CaptureError if the file cannot be opened (missing, permission, directory) or is
    not a capture (bad magic, empty, header cut short, unsupported version, bad gzip)."""
    name = "<stdin>" if path == "-" else path
    try:
        fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise CaptureError(f"{name}: cannot open ({one_line(e)})") from None
    try:
        try:
            source = _sniff(path, name, fh, stats)
        except (*READ_ERRORS, StructError) as e:
            raise CaptureError(f"{name}: cannot read ({one_line(e)})") from None
    except CaptureError:
        if path != "-":
            fh.close()
        raise
    stats.files.append(path)
    return source


def _sniff(path: str, name: str, fh: BinaryIO, stats: CaptureStats) -> FrameSource:
    """Tell the format from the first bytes (unwrapping gzip) and open the matching source."""
    read = getattr(fh, "read1", fh.read)
    head = fill(read, b"", 4)
    inner = ""
    if head[:2] == _GZIP_MAGIC:
        gz = gzip.GzipFile(fileobj=_Prefixed(head, fh), mode="rb")   # type: ignore[arg-type,call-overload]
        read, inner = gz.read1, " inside gzip"
        try:
            head = fill(read, b"", 4)
        except READ_ERRORS as e:
            raise CaptureError(f"{name}: unreadable gzip data ({one_line(e)})") from None
    if not head:
        raise CaptureError(f"{name}: empty{inner}, not a capture")
    if head[:4] in PCAP_MAGIC:
        return PcapSource(path, fh, read, head, stats)
    if head[:4] == PCAPNG_MAGIC:
        return PcapngSource(path, fh, read, head, stats)
    raise CaptureError(f"{name}: not a capture file{inner} (first bytes {head[:4].hex(' ')})")


def frame_cursor(sources: List[FrameSource]) -> Cursor:
    """`read_frames` as a `Cursor`: one file's frames in place, several files' merged."""
    if len(sources) == 1:
        return sources[0].cursor()
    return Cursor(heapq.merge(*sources, key=itemgetter(0)))


def read_frames(sources: List[FrameSource], stats: CaptureStats) -> Iterator[Frame]:
    """Frames of several files as one time-ordered stream (ties keep file order); with one
    source, just that source. Each file is assumed to be in time order itself, as captures
    are; ``stats`` is filled in by the sources as they are read."""
    if len(sources) == 1:
        return iter(sources[0])
    return heapq.merge(*sources, key=itemgetter(0))
