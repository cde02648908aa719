"""The pcapng reader: a sequence of blocks ``type, total length, body, total length``.

Any number of sections, each with its own byte order and interfaces; each interface with its
own link type, timestamp resolution (if_tsresol) and offset (if_tsoffset). Block types other
than those read here are skipped by their length.

Bound (a length outside it is a corrupt header, never an allocation request): a block's total
length is a multiple of 4, between 12 bytes (more for the block types read here) and
``MAX_BLOCK`` (16 MiB), and equal to its trailing copy.

A Simple Packet Block has no timestamp: it gets the previous packet's (0 if none) and does not
move first_ts/last_ts. Packet blocks naming an interface the section never described are
skipped with one warning per interface id. Timestamps are read as written, however far from
1970 (64-bit units, resolution and offset can say up to 10**28 ns; Wireshark shows them as
they are too): the analysis keeps them as Python ints.
"""

from __future__ import annotations

from struct import Struct
from struct import error as StructError
from typing import Dict, Final, List, Tuple

from analyzer.capture.source import (MAX_BLOCK, BufferCursor, CaptureError, Cursor, FrameSource,
                                  fill, one_line, u16, u32)
from analyzer.common.nstime import NS, second_ns

PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"   # SHB block type: the same bytes in either byte order
_BOM: Final = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}   # pcapng byte-order magic

# pcapng block types read here, and the least total length of each; every other type is
# skipped by its length.
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_MIN_LEN: Final = {_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}


class _Section:
    """The structs of one pcapng byte order."""

    def __init__(self, bo: str) -> None:
        self.head = Struct(bo + "II")          # block type, total length
        self.u32 = Struct(bo + "I")
        self.shb = Struct(bo + "HH")           # major, minor (after the byte-order magic)
        self.idb = Struct(bo + "HHI")          # linktype, reserved, snaplen
        self.opt = Struct(bo + "HH")           # option code, length
        self.i64 = Struct(bo + "q")
        self.epb = Struct(bo + "IIIII")        # interface, ts high, ts low, caplen, origlen
        self.pb = Struct(bo + "HHIIII")        # interface, drops, ts high, ts low, caplen, len


_SECTIONS: Final = {"<": _Section("<"), ">": _Section(">")}


Interface = Tuple[int, int, int, int, int, int]


def _interface(sec: _Section, buf: bytes, p: int, end: int) -> Interface:
    """An IDB body as (linktype, ts multiplier, ts divisor, ts offset in ns, snaplen, units
    per second): ``ts_ns = units * multiplier // divisor + offset``. Reads if_tsresol (option
    9: a power of 10, or of 2 when the high bit is set; default 10^-6) and if_tsoffset (option
    14, s). Units per second is 10^resol for a decimal resolution of a nanosecond or coarser
    (then multiplier * units per second = 10^9, divisor 1), else 0."""
    linktype, _, snaplen = sec.idb.unpack_from(buf, p)
    resol, offset = 6, 0
    p += 8
    while p + 4 <= end:
        code, olen = sec.opt.unpack_from(buf, p)
        p += 4
        if code == 0 or p + olen > end:
            break
        if code == 9 and olen >= 1:
            resol = buf[p]
        elif code == 14 and olen >= 8:
            offset = sec.i64.unpack_from(buf, p)[0]
        p += (olen + 3) & ~3
    per_sec = 0
    if resol & 0x80:
        mul, div = NS, 1 << (resol & 0x7F)
    elif resol <= 9:
        mul, div, per_sec = 10 ** (9 - resol), 1, 10 ** resol
    else:
        mul, div = 1, 10 ** (resol - 9)
    return linktype, mul, div, offset * NS, snaplen, per_sec


class PcapngSource(FrameSource):
    """pcapng: a sequence of blocks ``type, total length, body, total length``."""

    def _header(self, head: bytes) -> bytes:
        """The first Section Header Block must be whole and sane; it is parsed again with
        the blocks that follow it."""
        head = fill(self._read, head, 12, self.chunk)
        if len(head) < 12 or head[8:12] not in _BOM:
            raise CaptureError(f"{self.name}: pcapng section header cut short or without a "
                               f"byte-order magic (first bytes {head[:12].hex(' ')})")
        sec = _SECTIONS[_BOM[head[8:12]]]
        blen = sec.head.unpack_from(head)[1]
        if blen % 4 or not 28 <= blen <= MAX_BLOCK:
            raise CaptureError(f"{self.name}: corrupt pcapng section header (length {blen})")
        head = fill(self._read, head, blen, self.chunk)
        if len(head) < blen:
            raise CaptureError(f"{self.name}: pcapng section header cut short "
                               f"({len(head)} of {blen} bytes)")
        major, minor = sec.shb.unpack_from(head, 12)
        if major != 1:
            raise CaptureError(f"{self.name}: unsupported pcapng version {major}.{minor}")
        return head

    def _open_cursor(self) -> Cursor:
        return PcapngCursor(self)

    def _cut(self, block: int, count: int, have: int, need: int) -> None:
        self._warn(f"cut short in the middle of a block (block {block}, {have} of {need} bytes); "
                   f"{count} packets before it were read")

    def _corrupt(self, block: int, count: int, why: str) -> None:
        self._warn(f"corrupt block (block {block}: {why}); reading stopped, {count} packets "
                   f"before it were read")


class PcapngCursor(BufferCursor):
    """pcapng blocks parsed in the read buffer: a packet's frame is never copied out."""

    def __init__(self, source: PcapngSource) -> None:
        super().__init__(source, 12)
        self.pcapng = source
        self.sec, self.le = _SECTIONS["<"], True
        self.ifaces: List[Interface] = []
        self.counts: Dict[int, int] = {}
        self.undefined: Dict[int, int] = {}    # interface id -> packets skipped
        self.blocks = self.count = 0
        self.last = 0                          # the last timestamp (a Simple Packet Block's)
        self.timed = 0                         # packets with a timestamp of their own
        self.lo = self.hi = 0
        self.run_lt, self.run = -1, 0          # packets of link type run_lt not yet counted
        # sec * NS for the current second, made once a second (`second_ns`: in machine
        # integers, compiled, for the seconds of 1970 to 2106).
        self.last_sec, self.base = -1, 0

    def advance(self) -> bool:
        if self.done:
            return False
        try:
            if self._next():
                return True
        except StructError as e:             # a bound check missed: stop, never crash
            self.pcapng._corrupt(self.blocks, self.count, one_line(e))
        self.close()
        return False

    def _next(self) -> bool:
        """Step to the next packet; False at the end (warned about if it came early)."""
        src = self.pcapng
        buf, pos = self.buf, self.pos
        size = len(buf)
        while True:
            if size - pos < 12:
                self.pos = pos
                if self._take_ahead():
                    buf, pos = self.buf, self.pos
                    size = len(buf)
                    continue
                buf, pos = self._refill(buf, pos, 12), 0
                self.buf, self.pos = buf, 0
                if len(buf) < 12:
                    if buf:
                        src._cut(self.blocks + 1, self.count, len(buf), 12)
                    return False
                size = len(buf)
            self.blocks += 1
            le = self.le
            if buf[pos] == 0x0A and buf.startswith(PCAPNG_MAGIC, pos):   # a new section
                bo = _BOM.get(buf[pos + 8:pos + 12])
                if bo is None:
                    src._corrupt(self.blocks, self.count,
                                 "section header without byte-order magic")
                    return False
                self.sec, self.ifaces = _SECTIONS[bo], []
                self.le = le = bo == "<"
            btype, blen = u32(buf, pos, le), u32(buf, pos + 4, le)
            if blen % 4 or not _MIN_LEN.get(btype, 12) <= blen <= MAX_BLOCK:
                src._corrupt(self.blocks, self.count, f"block type {btype:#x}, length {blen}")
                return False
            if size - pos < blen:
                buf, pos = self._refill(buf, pos, blen), 0
                self.buf, self.pos = buf, 0
                if len(buf) < blen:
                    if buf:
                        src._cut(self.blocks, self.count, len(buf), blen)
                    return False
                size = len(buf)
            end = pos + blen - 4
            if u32(buf, end, le) != blen:
                src._corrupt(self.blocks, self.count,
                             "trailing block length differs from the leading one")
                return False
            body = pos + 8
            pos += blen
            self.pos = pos
            if btype == _EPB or btype == _PB:
                ifid = u32(buf, body, le) if btype == _EPB else u16(buf, body, le)
                caplen = u32(buf, body + 12, le)
                if caplen > blen - 32:
                    src._corrupt(self.blocks, self.count,
                                 f"captured length {caplen} is more than the block holds")
                    return False
                if ifid >= len(self.ifaces):
                    self.undefined[ifid] = self.undefined.get(ifid, 0) + 1
                    continue
                lt, mul, div, off, _, per_sec = self.ifaces[ifid]
                units = u32(buf, body + 4, le) << 32 | u32(buf, body + 8, le)
                if per_sec:
                    sec = units // per_sec
                    if sec != self.last_sec:
                        self.last_sec, self.base = sec, second_ns(sec)
                    ts = self.base + units % per_sec * mul + off
                else:
                    ts = units * mul // div + off
                self.last = ts
                if not self.timed or ts < self.lo:
                    self.lo = ts
                if not self.timed or ts > self.hi:
                    self.hi = ts
                self.timed += 1
                data = body + 20
            elif btype == _SPB:                 # no timestamp: reuses the previous one
                if not self.ifaces:
                    self.undefined[0] = self.undefined.get(0, 0) + 1
                    continue
                lt, _, _, _, snaplen, _ = self.ifaces[0]
                caplen = min(u32(buf, body, le), blen - 16)
                if snaplen:
                    caplen = min(caplen, snaplen)
                ts, data = self.last, body + 4
            else:
                if btype == _IDB:
                    self.ifaces.append(_interface(self.sec, buf, body, end))
                elif btype == _SHB and self.sec.shb.unpack_from(buf, body + 4)[0] != 1:
                    src._corrupt(self.blocks, self.count, "unsupported section version")
                    return False
                continue
            self.count += 1
            if lt != self.run_lt:
                if self.run:
                    self.counts[self.run_lt] = self.counts.get(self.run_lt, 0) + self.run
                self.run_lt, self.run = lt, 0
            self.run += 1
            self.ts, self.linktype, self.start, self.end = ts, lt, data, data + caplen
            return True

    def _record_length(self, head: bytes) -> int:
        le = self.le
        if head.startswith(PCAPNG_MAGIC):         # a new section: its own byte order
            bo = _BOM.get(head[8:12])
            if bo is None:
                return 0
            le = bo == "<"
        blen = u32(head, 4, le)
        return blen if not blen % 4 and 12 <= blen <= MAX_BLOCK else 0

    def close(self) -> None:
        """Tally what was read into the run's stats and close the file (once)."""
        if self.done:
            return
        self.done = True
        self.buf, self.pos, self.ahead = b"", 0, b""
        src = self.source
        if self.run:
            self.counts[self.run_lt] = self.counts.get(self.run_lt, 0) + self.run
        for ifid, n in sorted(self.undefined.items()):
            src._warn(f"{n} packets refer to interface {ifid}, which no interface block "
                      f"defined; skipped", stopped=False)
        src._stats.tally(self.counts, self.lo if self.timed else None,
                         self.hi if self.timed else None)
        src._release()
