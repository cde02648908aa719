"""The classic pcap reader: a 24-byte file header, then 16-byte record headers each followed
by ``caplen`` bytes of frame. Microsecond or nanosecond timestamps, either byte order.

Bound (a length above it is a corrupt header, never an allocation request): captured length
<= ``max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))``, that is 256 KiB (libpcap's
MAXIMUM_SNAPLEN), raised up to 16 MiB when the file header's snaplen asks for more.

Work: a record costs its 16-byte header at least, so the work is bounded by the bytes read
(gzip can make those up to about a thousand times the file's size). A long run of empty
records (captured length 0: a zero-filled region, or a gzip of zeros behind a pcap header)
is read as Wireshark reads it, packet by packet, and warned about once the run reaches
`EMPTY_RUN` records.

With a `FrameTest` (`Cursor.skip`: a `--jobs` shard's), the records it calls foreign are
stepped over inside `advance`, still counted, their times still tallied and compared (`back`),
but for every 65536th record (the caller's progress marks), which is always handed out.

The link type keeps its low 26 bits (libpcap's LT_LINKTYPE; the bits above say whether an
FCS is present and how long).
"""

from __future__ import annotations

from struct import Struct
from typing import Callable, Final, Optional, Tuple

from analyzer.capture.source import (MAX_BLOCK, BufferCursor, CaptureError, Cursor, FrameSource,
                                  FrameTest, Skipper, fill, u32)
from analyzer.common.native import i64
from analyzer.common.nstime import second_ns

PCAP_MIN_BOUND: Final = 256 * 1024       # pcap captured-length bound when snaplen is smaller
#: Empty records in a row from which the run is warned about.
EMPTY_RUN: Final = 10_000
#: Bytes of records the C skipper reads at a time (`PcapCursor._skipping`): the records it
#: lists are still in the core's cache when they are handed out (a quarter of the 1 MiB L2
#: of the machine measured; 64 KiB cost 1 % more instructions a worker, in the calls).
SPAN: Final = 256 * 1024
#: Above every pcap timestamp (2**32 s in ns is below it) and still a machine-sized integer.
_NO_TS: Final = (1 << 62) - 1

#: First four bytes of a pcap file -> (byte order, ns per fraction unit).
PCAP_MAGIC: Final = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}


class PcapSource(FrameSource):
    """Classic pcap: a 24-byte file header, then 16-byte record headers each followed by
    ``caplen`` bytes of frame."""

    def _header(self, head: bytes) -> bytes:
        head = fill(self._read, head, 24, self.chunk)
        if len(head) < 24:
            raise CaptureError(f"{self.name}: pcap file header cut short ({len(head)} of 24 bytes)")
        bo, self.frac_ns = PCAP_MAGIC[head[:4]]
        major, minor, _, _, snaplen, linktype = Struct(bo + "HHiIII").unpack_from(head, 4)
        if major != 2:
            raise CaptureError(f"{self.name}: unsupported pcap version {major}.{minor}")
        self.linktype = linktype & 0x03FFFFFF     # libpcap's LT_LINKTYPE: bits 26-31 tell the FCS
        self.limit = max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))
        self.le = bo == "<"
        return head[24:]

    def _open_cursor(self) -> Cursor:
        return PcapCursor(self)


class PcapCursor(BufferCursor):
    """Classic pcap records parsed in the read buffer: a frame is never copied out."""

    def __init__(self, source: PcapSource) -> None:
        super().__init__(source, 16)
        self.linktype = source.linktype
        self.limit: i64 = source.limit
        self.frac_ns: i64 = source.frac_ns
        self.le: bool = source.le
        self.count = 0
        self.lo, self.hi = _NO_TS, -1
        # sec * NS for the current second, made once a second (`second_ns`: in machine
        # integers, compiled).
        self.last_sec: i64 = -1
        self.base: i64 = 0
        self.empty_run = self.empty_from = 0     # empty records in a row, from record ...
        self.test: Optional[FrameTest] = None
        # With the test's C skipper (`skip`): its `run`, the records of the read buffer it
        # listed to hand out (from `kept[at:]`), the read buffer, where it stopped in it, the
        # records it read after the last one listed, whether it can go on from there itself,
        # and whether it runs next.
        self.skipper: Optional[Skipper] = None
        self.run: Optional[Callable[[bytes, int, int], Tuple[bytes, int, int, bool]]] = None
        self.kept = b""
        self.at: i64 = 0
        self.read = b""
        self.stop: i64 = 0
        self.after: i64 = 0
        self.more = False
        self.fresh = True

    def skip(self, test: FrameTest) -> bool:
        self.test = test
        skipper = test.skipper(self.le, self.limit, self.frac_ns)
        if skipper is not None:
            self.skipper, self.run = skipper, skipper.run
        return True

    def advance(self) -> bool:
        if self.run is not None:
            return self._skipping()
        return self._advance()

    def _skipping(self) -> bool:
        """`advance` with the C skipper (decode/_skip.c): it reads `SPAN` bytes of the buffer
        from `pos` on (or to the first record it leaves to `_advance`) and lists the records
        to hand out, which are handed out from there, in place (their number and shard from
        the list, and whether their second is the one handed out before); then it reads on
        from where it stopped, or `_advance` does (a new buffer, an empty record, the end:
        and the other shards' records until it hands one out), and the skipper runs again
        from there."""
        kept = self.kept
        at: i64 = self.at
        while at >= len(kept):
            skipper = self.skipper
            assert skipper is not None
            if not self.fresh:
                # All kept records handed out: the records read after them; then on from
                # where the skipper stopped, by itself or by `_advance`.
                n = self.after
                if n:
                    self.count += n
                    self.ts = skipper.last
                self.buf, self.pos = self.read, self.stop
                self.fresh = True
                if not self.more:
                    return self._advance()
            if self.done or self.empty_run:
                return self._advance()
            run = self.run
            assert run is not None
            skipper.sync(self.count, self.ts)
            self.read = self.buf
            kept, self.stop, self.after, self.more = run(self.buf, self.pos, SPAN)
            self.kept, self.fresh = kept, False
            at = 0
        self.at = at + 8
        pos: i64 = (i64(kept[at]) | i64(kept[at + 1]) << 8 | i64(kept[at + 2]) << 16
                    | i64(kept[at + 3]) << 24)
        x: i64 = (i64(kept[at + 4]) | i64(kept[at + 5]) << 8 | i64(kept[at + 6]) << 16
                  | i64(kept[at + 7]) << 24)
        buf = self.read
        sec: i64
        frac: i64
        caplen: i64
        if self.le:
            frac = (i64(buf[pos + 4]) | i64(buf[pos + 5]) << 8 | i64(buf[pos + 6]) << 16
                    | i64(buf[pos + 7]) << 24)
            caplen = (i64(buf[pos + 8]) | i64(buf[pos + 9]) << 8 | i64(buf[pos + 10]) << 16
                      | i64(buf[pos + 11]) << 24)
        else:
            frac = (i64(buf[pos + 4]) << 24 | i64(buf[pos + 5]) << 16 | i64(buf[pos + 6]) << 8
                    | i64(buf[pos + 7]))
            caplen = (i64(buf[pos + 8]) << 24 | i64(buf[pos + 9]) << 16
                      | i64(buf[pos + 10]) << 8 | i64(buf[pos + 11]))
        if x < 0x80000000:
            # Not in the second of the record handed out before it (then `base` is that
            # second's already): its second is read.
            if self.le:
                sec = (i64(buf[pos]) | i64(buf[pos + 1]) << 8 | i64(buf[pos + 2]) << 16
                       | i64(buf[pos + 3]) << 24)
            else:
                sec = (i64(buf[pos]) << 24 | i64(buf[pos + 1]) << 16 | i64(buf[pos + 2]) << 8
                       | i64(buf[pos + 3]))
            if sec != self.last_sec:
                self.last_sec, self.base = sec, second_ns(sec)
        self.count += x & 0x1FFFF
        test = self.test
        assert test is not None
        test.part = (x >> 17 & 0x3FFF) - 2
        self.buf, self.ts, self.start, self.end = (buf, self.base + frac * self.frac_ns,
                                                   pos + 16, pos + 16 + caplen)
        return True

    def _advance(self) -> bool:
        buf = self.buf
        pos: i64 = self.pos
        sec: i64
        frac: i64
        caplen: i64
        while True:
            size: i64 = len(buf)
            if pos + 16 <= size:
                # Byte by byte, in machine integers (`i64`): compiled, each is a few C
                # operations (a struct unpack would make a tuple and three int objects a packet).
                if self.le:
                    sec = (i64(buf[pos]) | i64(buf[pos + 1]) << 8 | i64(buf[pos + 2]) << 16
                           | i64(buf[pos + 3]) << 24)
                    frac = (i64(buf[pos + 4]) | i64(buf[pos + 5]) << 8
                            | i64(buf[pos + 6]) << 16 | i64(buf[pos + 7]) << 24)
                    caplen = (i64(buf[pos + 8]) | i64(buf[pos + 9]) << 8
                              | i64(buf[pos + 10]) << 16 | i64(buf[pos + 11]) << 24)
                else:
                    sec = (i64(buf[pos]) << 24 | i64(buf[pos + 1]) << 16
                           | i64(buf[pos + 2]) << 8 | i64(buf[pos + 3]))
                    frac = (i64(buf[pos + 4]) << 24 | i64(buf[pos + 5]) << 16
                            | i64(buf[pos + 6]) << 8 | i64(buf[pos + 7]))
                    caplen = (i64(buf[pos + 8]) << 24 | i64(buf[pos + 9]) << 16
                              | i64(buf[pos + 10]) << 8 | i64(buf[pos + 11]))
                end = pos + 16 + caplen
                if end <= size and caplen <= self.limit:
                    if sec != self.last_sec:
                        self.last_sec, self.base = sec, second_ns(sec)
                    ts = self.base + frac * self.frac_ns
                    if caplen == 0:
                        if not self.empty_run:
                            self.empty_from = self.count + 1
                        self.empty_run += 1
                    elif self.empty_run:
                        self._empty_run_ended()
                    if ts < self.lo:
                        self.lo = ts
                    if ts > self.hi:
                        self.hi = ts
                    self.count += 1
                    test = self.test
                    if test is not None:        # (`skip`)
                        if ts < self.ts and self.count > 1:
                            self.back += 1
                        if test.foreign(buf, pos + 16, end) and self.count & 0xFFFF:
                            self.ts = ts        # another's frame: stepped over, here
                            pos = end
                            continue
                    self.ts, self.start, self.end, self.pos = ts, pos + 16, end, end
                    return True
            if self.done:
                return False
            self.pos = pos
            if self._take_ahead():
                buf, pos = self.buf, self.pos
                continue
            # The next record is not all in the buffer: read on, or end.
            need = 16
            if size - pos >= 16:                  # a header is here, its frame is not
                caplen = u32(buf, pos + 8, self.le)
                if caplen > self.limit:
                    self.source._warn(
                        f"corrupt record header (record {self.count + 1}: captured length "
                        f"{caplen} is over the {self.limit}-byte bound); reading stopped, "
                        f"{self.count} packets before it were read")
                    self.close()
                    return False
                need += caplen
            buf, pos = self._refill(buf, pos, need), 0
            self.buf, self.pos = buf, 0
            if len(buf) < need:
                if buf:
                    part, have, want = (("a packet", len(buf) - 16, need - 16) if need > 16
                                        else ("a record header", len(buf), 16))
                    self.source._warn(f"cut short in the middle of {part} (record "
                                      f"{self.count + 1}, {have} of {want} bytes); "
                                      f"{self.count} packets before it were read")
                self.close()
                return False

    def _empty_run_ended(self) -> None:
        n = self.empty_run
        if n >= EMPTY_RUN:
            self.source._warn(f"{n} empty records in a row (records {self.empty_from} to "
                              f"{self.empty_from + n - 1}: captured length 0; a zero-filled "
                              f"region?)", stopped=False)
        self.empty_run = 0

    def _record_length(self, head: bytes) -> int:
        caplen = u32(head, 8, self.le)
        return 0 if caplen > self.limit else 16 + caplen

    def close(self) -> None:
        """Tally what was read into the run's stats and close the file (once)."""
        if not self.done:
            self.done = True
            self.buf, self.pos, self.ahead = b"", 0, b""
            skipper = self.skipper
            if skipper is not None:             # its share of the counts
                self.back += skipper.back
                self.lo, self.hi = min(self.lo, skipper.lo), max(self.hi, skipper.hi)
                self.skipper, self.run, self.kept, self.read = None, None, b"", b""
            if self.empty_run:
                self._empty_run_ended()
            n = self.count
            self.source._stats.tally({self.linktype: n}, self.lo if n else None,
                                     self.hi if n else None)
            self.source._release()
