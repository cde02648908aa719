"""The pcapng reader: a sequence of blocks ``type, total length, body, total length``.

Any number of sections, each with its own byte order and interfaces; each interface with its
own link type, timestamp resolution (if_tsresol) and offset (if_tsoffset). Block types other
than those read here are skipped by their length.

Bound (a length outside it is a corrupt header, never an allocation request): a block's total
length is a multiple of 4, between 12 bytes (more for the block types read here) and
``MAX_BLOCK`` (16 MiB), and equal to its trailing copy.

A Simple Packet Block has no timestamp: it gets the previous packet's (0 if none) and does not
move first_ts/last_ts. Packet blocks naming an interface the section never described are
skipped with one warning per interface id.
"""

from __future__ import annotations

from struct import Struct
from struct import error as StructError
from typing import Dict, Final, Generator, List, Tuple

from analyzer.framesource import MAX_BLOCK, NS, CaptureError, Frame, FrameSource, fill, one_line

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


def _interface(sec: _Section, buf: bytes, p: int, end: int) -> Tuple[int, int, int, int, int]:
    """An IDB body as (linktype, ts multiplier, ts divisor, ts offset in ns, snaplen):
    ``ts_ns = units * multiplier // divisor + offset``. Reads if_tsresol (option 9: a power
    of 10, or of 2 when the high bit is set; default 10^-6) and if_tsoffset (option 14, s)."""
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
    if resol & 0x80:
        mul, div = NS, 1 << (resol & 0x7F)
    elif resol <= 9:
        mul, div = 10 ** (9 - resol), 1
    else:
        mul, div = 1, 10 ** (resol - 9)
    return linktype, mul, div, offset * NS, snaplen


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

    def _generate(self) -> Generator[Frame, None, None]:
        buf, pos, size = self._buf, 0, len(self._buf)
        self._buf = b""
        sec = _SECTIONS["<"]
        ifaces: List[Tuple[int, int, int, int, int]] = []
        counts: Dict[int, int] = {}
        undefined: Dict[int, int] = {}         # interface id -> packets skipped
        blocks = count = last = 0
        lo, hi = 1 << 200, -1
        try:
            while True:
                if size - pos < 12:
                    buf, pos = self._more(buf, pos, 12), 0
                    if len(buf) < 12:
                        if buf:
                            self._cut(blocks + 1, count, len(buf), 12)
                        return
                    size = len(buf)
                blocks += 1
                if buf.startswith(PCAPNG_MAGIC, pos):            # a new section
                    bo = _BOM.get(buf[pos + 8:pos + 12])
                    if bo is None:
                        return self._corrupt(blocks, count, "section header without byte-order magic")
                    sec, ifaces = _SECTIONS[bo], []
                btype, blen = sec.head.unpack_from(buf, pos)
                if blen % 4 or not _MIN_LEN.get(btype, 12) <= blen <= MAX_BLOCK:
                    return self._corrupt(blocks, count, f"block type {btype:#x}, length {blen}")
                if size - pos < blen:
                    buf, pos = self._more(buf, pos, blen), 0
                    if len(buf) < blen:
                        if buf:
                            self._cut(blocks, count, len(buf), blen)
                        return
                    size = len(buf)
                end = pos + blen - 4
                if sec.u32.unpack_from(buf, end)[0] != blen:
                    return self._corrupt(blocks, count, "trailing block length differs from the leading one")
                body = pos + 8
                pos += blen
                if btype == _EPB or btype == _PB:
                    if btype == _EPB:
                        ifid, th, tl, caplen, _ = sec.epb.unpack_from(buf, body)
                    else:
                        ifid, _, th, tl, caplen, _ = sec.pb.unpack_from(buf, body)
                    if caplen > blen - 32:
                        return self._corrupt(blocks, count, f"captured length {caplen} is "
                                                            f"more than the block holds")
                    if ifid >= len(ifaces):
                        undefined[ifid] = undefined.get(ifid, 0) + 1
                        continue
                    lt, mul, div, off, _ = ifaces[ifid]
                    last = ts = ((th << 32 | tl) * mul) // div + off
                    if ts < lo:
                        lo = ts
                    if ts > hi:
                        hi = ts
                    data = body + 20
                elif btype == _SPB:                 # no timestamp: reuses the previous one
                    if not ifaces:
                        undefined[0] = undefined.get(0, 0) + 1
                        continue
                    lt, _, _, _, snaplen = ifaces[0]
                    caplen = min(sec.u32.unpack_from(buf, body)[0], blen - 16)
                    if snaplen:
                        caplen = min(caplen, snaplen)
                    ts, data = last, body + 4
                else:
                    if btype == _IDB:
                        ifaces.append(_interface(sec, buf, body, end))
                    elif btype == _SHB and sec.shb.unpack_from(buf, body + 4)[0] != 1:
                        return self._corrupt(blocks, count, "unsupported section version")
                    continue
                count += 1
                counts[lt] = counts.get(lt, 0) + 1
                yield ts, lt, buf[data:data + caplen]
        except StructError as e:             # a bound check missed above: stop, never crash
            self._corrupt(blocks, count, one_line(e))
        finally:
            for ifid, n in sorted(undefined.items()):
                self._warn(f"{n} packets refer to interface {ifid}, which no interface block "
                           f"defined; skipped", stopped=False)
            self._stats.tally(counts, lo if lo <= hi else None, hi if lo <= hi else None)
            self._release()

    def _cut(self, block: int, count: int, have: int, need: int) -> None:
        self._warn(f"cut short in the middle of a block (block {block}, {have} of {need} bytes); "
                   f"{count} packets before it were read")

    def _corrupt(self, block: int, count: int, why: str) -> None:
        self._warn(f"corrupt block (block {block}: {why}); reading stopped, {count} packets "
                   f"before it were read")
