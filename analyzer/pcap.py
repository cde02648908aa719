"""The classic pcap reader: a 24-byte file header, then 16-byte record headers each followed
by ``caplen`` bytes of frame. Microsecond or nanosecond timestamps, either byte order.

Bound (a length above it is a corrupt header, never an allocation request): captured length
<= ``max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))``, that is 256 KiB (libpcap's
MAXIMUM_SNAPLEN), raised up to 16 MiB when the file header's snaplen asks for more.

The link type keeps its low 26 bits (libpcap's LT_LINKTYPE; the bits above say whether an
FCS is present and how long).
"""

from __future__ import annotations

from struct import Struct
from typing import Final, Generator

from analyzer.framesource import MAX_BLOCK, NS, CaptureError, Frame, FrameSource, fill

PCAP_MIN_BOUND: Final = 256 * 1024       # pcap captured-length bound when snaplen is smaller
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
        head = fill(self._read, head, 24)
        if len(head) < 24:
            raise CaptureError(f"{self.name}: pcap file header cut short ({len(head)} of 24 bytes)")
        bo, self.frac_ns = PCAP_MAGIC[head[:4]]
        major, minor, _, _, snaplen, linktype = Struct(bo + "HHiIII").unpack_from(head, 4)
        if major != 2:
            raise CaptureError(f"{self.name}: unsupported pcap version {major}.{minor}")
        self.linktype = linktype & 0x03FFFFFF     # libpcap's LT_LINKTYPE: bits 26-31 tell the FCS
        self.limit = max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))
        self._rec = Struct(bo + "IIII")
        self.le = bo == "<"
        return head[24:]

    def _generate(self) -> Generator[Frame, None, None]:
        unpack_from = self._rec.unpack_from
        limit, frac_ns, lt, le = self.limit, self.frac_ns, self.linktype, self.le
        buf, pos, count = self._buf, 0, 0
        self._buf = b""
        lo, hi = _NO_TS, -1
        # sec * NS for the current second, made once a second: the product of two ints that
        # large takes the slow (arbitrary-size) multiplication in the compiled build.
        last_sec, base = -1, 0
        try:
            while True:
                size = len(buf)
                while pos + 16 <= size:
                    # Byte by byte: compiled, each is one C operation on machine integers
                    # (a struct unpack would make a tuple and three int objects a packet).
                    if le:
                        sec = (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
                               | buf[pos + 3] << 24)
                        frac = (buf[pos + 4] | buf[pos + 5] << 8 | buf[pos + 6] << 16
                                | buf[pos + 7] << 24)
                        caplen = (buf[pos + 8] | buf[pos + 9] << 8 | buf[pos + 10] << 16
                                  | buf[pos + 11] << 24)
                    else:
                        sec = (buf[pos] << 24 | buf[pos + 1] << 16 | buf[pos + 2] << 8
                               | buf[pos + 3])
                        frac = (buf[pos + 4] << 24 | buf[pos + 5] << 16 | buf[pos + 6] << 8
                                | buf[pos + 7])
                        caplen = (buf[pos + 8] << 24 | buf[pos + 9] << 16 | buf[pos + 10] << 8
                                  | buf[pos + 11])
                    end = pos + 16 + caplen
                    if end > size or caplen > limit:
                        break
                    if sec != last_sec:
                        last_sec, base = sec, sec * NS
                    ts = base + frac * frac_ns
                    if ts < lo:
                        lo = ts
                    if ts > hi:
                        hi = ts
                    count += 1
                    yield ts, lt, buf[pos + 16:end]
                    pos = end
                need = 16
                if size - pos >= 16:                  # a header is here, its frame is not
                    caplen = unpack_from(buf, pos)[2]
                    if caplen > limit:
                        self._warn(f"corrupt record header (record {count + 1}: captured length "
                                   f"{caplen} is over the {limit}-byte bound); reading stopped, "
                                   f"{count} packets before it were read")
                        return
                    need += caplen
                buf, pos = self._more(buf, pos, need), 0
                if len(buf) < need:
                    if buf:
                        part, have, want = (("a packet", len(buf) - 16, need - 16) if need > 16
                                            else ("a record header", len(buf), 16))
                        self._warn(f"cut short in the middle of {part} (record {count + 1}, "
                                   f"{have} of {want} bytes); {count} packets before it were read")
                    return
        finally:
            self._stats.tally({lt: count}, lo if count else None, hi if count else None)
            self._release()
