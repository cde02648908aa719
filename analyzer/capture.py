"""Open any packet capture and stream its frames as ``(ts_ns, linktype, frame)`` tuples.

The format is told from the magic bytes, never by seeking, so stdin and pipes work:
classic pcap (microsecond or nanosecond timestamps, either byte order), pcapng (any number
of sections, each with its own byte order and interfaces, each interface with its own link
type, timestamp resolution and offset), and either of them gzip-compressed.

This is the hot path. The input is read in chunks of up to ``CHUNK`` bytes and records are
parsed in place with precompiled ``struct.Struct`` objects; the only per-packet objects are
the frame bytes and the yielded tuple. Memory stays flat however large the file.

Bounds (a length above one is a corrupt header, never an allocation request):

- pcap record: captured length <= ``max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))``, that is
  256 KiB (libpcap's MAXIMUM_SNAPLEN), raised up to 16 MiB when the file header's snaplen
  asks for more.
- pcapng block: total length a multiple of 4, between 12 bytes and ``MAX_BLOCK`` (16 MiB),
  and equal to its trailing copy.

Choices where the formats leave room: a pcap link type keeps its low 26 bits (libpcap's
LT_LINKTYPE; the bits above say whether an FCS is present and how long). A pcapng Simple
Packet Block has no timestamp: it gets the previous packet's (0 if none) and does not move
first_ts/last_ts. Packet blocks naming an interface the section never described are skipped
with one warning per interface id.

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
import zlib
from dataclasses import dataclass, field
from operator import itemgetter
from struct import Struct
from struct import error as StructError
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

CHUNK = 1 << 20                   # bytes asked of the stream per read
PCAP_MIN_BOUND = 256 * 1024       # pcap captured-length bound when snaplen is smaller
MAX_BLOCK = 16 * 1024 * 1024      # pcapng block bound; also the cap on the pcap bound
NS = 1_000_000_000

Frame = Tuple[int, int, bytes]

_READ_ERRORS = (OSError, EOFError, zlib.error)
_GZIP_MAGIC = b"\x1f\x8b"
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"   # SHB block type: the same bytes in either byte order
_PCAP_MAGIC = {                       # first four bytes -> (byte order, ns per fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}   # pcapng byte-order magic

# pcapng block types read here, and the least total length of each; every other type is
# skipped by its length.
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_MIN_LEN = {_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}


class CaptureError(Exception):
    """This input cannot be read as a capture at all (the CLI exits 3).

    ``str(e)`` is one line starting with the file name, e.g.
    ``'capture.txt: not a capture file (first bytes 3c 21 44 4f)'``.
    """


@dataclass
class CaptureStats:
    """Filled in while reading; shared by all sources of one run."""

    files: List[str] = field(default_factory=list)       # paths as given ('-' for stdin)
    packets: int = 0                                      # records read, of any link type
    truncated: bool = False                               # some file stopped early
    warnings: List[str] = field(default_factory=list)     # one line each, file name first
    first_ts: Optional[int] = None                        # ns since epoch, min over frames
    last_ts: Optional[int] = None                         # ns, max over frames
    linktypes: Dict[int, int] = field(default_factory=dict)   # link type -> frames seen

    def tally(self, linktypes: Dict[int, int], lo: Optional[int], hi: Optional[int]) -> None:
        """Add one file's frame counts and timestamp range."""
        for lt, n in linktypes.items():
            if n:
                self.linktypes[lt] = self.linktypes.get(lt, 0) + n
                self.packets += n
        if lo is not None and (self.first_ts is None or lo < self.first_ts):
            self.first_ts = lo
        if hi is not None and (self.last_ts is None or hi > self.last_ts):
            self.last_ts = hi


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


def _fill(read: Callable[[int], bytes], buf: bytes, need: int) -> bytes:
    """``buf`` extended by reads until it holds ``need`` bytes or the stream ends."""
    parts = [buf]
    have = len(buf)
    while have < need:
        more = read(CHUNK)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def _why(e: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


class FrameSource:
    """One opened capture. Iterate it once for ``(ts_ns, linktype, frame)`` in file order;
    the file is closed when the iteration ends (or by ``close()``)."""

    def __init__(self, path: str, fh: BinaryIO, read: Callable[[int], bytes], head: bytes,
                 stats: CaptureStats) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self._fh, self._read, self._stats = fh, read, stats
        self._owned = path != "-"             # stdin is not ours to close
        self._buf = self._header(head)
        self._frames = self._generate()

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def close(self) -> None:
        """Stop reading and close the file (stdin is left open)."""
        self._frames.close()
        self._release()

    def _release(self) -> None:
        if self._owned:
            self._fh.close()

    def _header(self, head: bytes) -> bytes:
        """Check the file header (``head`` holds the first bytes read); return the bytes to
        parse frames from. Raises CaptureError."""
        raise NotImplementedError

    def _generate(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _warn(self, msg: str, stopped: bool = True) -> None:
        """Record a one-line warning; ``stopped`` means the rest of the file is lost."""
        self._stats.warnings.append(f"{self.name}: {msg}")
        if stopped:
            self._stats.truncated = True

    def _more(self, buf: bytes, pos: int, need: int) -> Optional[bytes]:
        """``buf[pos:]`` extended until it holds ``need`` bytes or the stream ends; None after
        a read error (already warned about)."""
        try:
            return _fill(self._read, buf[pos:], need)
        except _READ_ERRORS as e:
            gz = isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile))
            what = "compressed stream cut short or corrupt" if gz else "read error"
            self._warn(f"{what} ({_why(e)}); reading stopped")
            return None


class _PcapSource(FrameSource):
    """Classic pcap: a 24-byte file header, then 16-byte record headers each followed by
    ``caplen`` bytes of frame."""

    def _header(self, head: bytes) -> bytes:
        head = _fill(self._read, head, 24)
        if len(head) < 24:
            raise CaptureError(f"{self.name}: pcap file header cut short ({len(head)} of 24 bytes)")
        bo, self.frac_ns = _PCAP_MAGIC[head[:4]]
        major, minor, _, _, snaplen, linktype = Struct(bo + "HHiIII").unpack_from(head, 4)
        if major != 2:
            raise CaptureError(f"{self.name}: unsupported pcap version {major}.{minor}")
        self.linktype = linktype & 0x03FFFFFF     # libpcap's LT_LINKTYPE: bits 26-31 tell the FCS
        self.limit = max(PCAP_MIN_BOUND, min(snaplen, MAX_BLOCK))
        self._rec = Struct(bo + "IIII")
        return head[24:]

    def _generate(self) -> Iterator[Frame]:
        unpack_from = self._rec.unpack_from
        limit, frac_ns, lt = self.limit, self.frac_ns, self.linktype
        buf, pos, count = self._buf, 0, 0
        self._buf = b""
        lo, hi = 1 << 200, -1
        try:
            while True:
                size = len(buf)
                while pos + 16 <= size:
                    sec, frac, caplen, _ = unpack_from(buf, pos)
                    end = pos + 16 + caplen
                    if end > size or caplen > limit:
                        break
                    ts = sec * NS + frac * frac_ns
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
                if buf is None or len(buf) < need:
                    if buf:
                        part, have, want = (("a packet", len(buf) - 16, need - 16) if need > 16
                                            else ("a record header", len(buf), 16))
                        self._warn(f"cut short in the middle of {part} (record {count + 1}, "
                                   f"{have} of {want} bytes); {count} packets before it were read")
                    return
        finally:
            self._stats.tally({lt: count}, lo if count else None, hi if count else None)
            self._release()


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


_SECTIONS = {"<": _Section("<"), ">": _Section(">")}


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


class _PcapngSource(FrameSource):
    """pcapng: a sequence of blocks ``type, total length, body, total length``."""

    def _header(self, head: bytes) -> bytes:
        """The first Section Header Block must be whole and sane; it is parsed again with
        the blocks that follow it."""
        head = _fill(self._read, head, 12)
        if len(head) < 12 or head[8:12] not in _BOM:
            raise CaptureError(f"{self.name}: pcapng section header cut short or without a "
                               f"byte-order magic (first bytes {head[:12].hex(' ')})")
        sec = _SECTIONS[_BOM[head[8:12]]]
        blen = sec.head.unpack_from(head)[1]
        if blen % 4 or not 28 <= blen <= MAX_BLOCK:
            raise CaptureError(f"{self.name}: corrupt pcapng section header (length {blen})")
        head = _fill(self._read, head, blen)
        if len(head) < blen:
            raise CaptureError(f"{self.name}: pcapng section header cut short "
                               f"({len(head)} of {blen} bytes)")
        major, minor = sec.shb.unpack_from(head, 12)
        if major != 1:
            raise CaptureError(f"{self.name}: unsupported pcapng version {major}.{minor}")
        return head

    def _generate(self) -> Iterator[Frame]:
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
                    if buf is None or len(buf) < 12:
                        if buf:
                            self._cut(blocks + 1, count, len(buf), 12)
                        return
                    size = len(buf)
                blocks += 1
                if buf.startswith(_PCAPNG_MAGIC, pos):           # a new section
                    bo = _BOM.get(buf[pos + 8:pos + 12])
                    if bo is None:
                        return self._corrupt(blocks, count, "section header without byte-order magic")
                    sec, ifaces = _SECTIONS[bo], []
                btype, blen = sec.head.unpack_from(buf, pos)
                if blen % 4 or not _MIN_LEN.get(btype, 12) <= blen <= MAX_BLOCK:
                    return self._corrupt(blocks, count, f"block type {btype:#x}, length {blen}")
                if size - pos < blen:
                    buf, pos = self._more(buf, pos, blen), 0
                    if buf is None or len(buf) < blen:
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
            self._corrupt(blocks, count, _why(e))
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


def open_capture(path: str, stats: CaptureStats) -> FrameSource:
    """Open one capture file (``'-'`` = stdin) and read its header.

    Raises CaptureError if the file cannot be opened (missing, permission, directory) or is
    not a capture (bad magic, empty, header cut short, unsupported version, bad gzip)."""
    name = "<stdin>" if path == "-" else path
    try:
        fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise CaptureError(f"{name}: cannot open ({_why(e)})") from None
    try:
        try:
            source = _sniff(path, name, fh, stats)
        except (*_READ_ERRORS, StructError) as e:
            raise CaptureError(f"{name}: cannot read ({_why(e)})") from None
    except CaptureError:
        if path != "-":
            fh.close()
        raise
    stats.files.append(path)
    return source


def _sniff(path: str, name: str, fh: BinaryIO, stats: CaptureStats) -> FrameSource:
    """Tell the format from the first bytes (unwrapping gzip) and open the matching source."""
    read = getattr(fh, "read1", fh.read)
    head = _fill(read, b"", 4)
    inner = ""
    if head[:2] == _GZIP_MAGIC:
        gz = gzip.GzipFile(fileobj=_Prefixed(head, fh), mode="rb")   # type: ignore[arg-type]
        read, inner = gz.read1, " inside gzip"
        try:
            head = _fill(read, b"", 4)
        except _READ_ERRORS as e:
            raise CaptureError(f"{name}: unreadable gzip data ({_why(e)})") from None
    if not head:
        raise CaptureError(f"{name}: empty{inner}, not a capture")
    if head[:4] in _PCAP_MAGIC:
        return _PcapSource(path, fh, read, head, stats)
    if head[:4] == _PCAPNG_MAGIC:
        return _PcapngSource(path, fh, read, head, stats)
    raise CaptureError(f"{name}: not a capture file{inner} (first bytes {head[:4].hex(' ')})")


def read_frames(sources: List[FrameSource], stats: CaptureStats) -> Iterator[Frame]:
    """Frames of several files as one time-ordered stream (ties keep file order); with one
    source, just that source. Each file is assumed to be in time order itself, as captures
    are; ``stats`` is filled in by the sources as they are read."""
    if len(sources) == 1:
        return iter(sources[0])
    return heapq.merge(*sources, key=itemgetter(0))
