"""What every capture reader shares: the `FrameSource` base, `CaptureStats`, `CaptureError`.

A format module (`analyzer.capture.pcap`, `analyzer.capture.pcapng`) subclasses `FrameSource`: ``_header``
checks the file header and raises `CaptureError`; ``_open_cursor`` returns a `Cursor` that
steps through the frames where they lie in the read buffer (the hot path: nothing is copied
per frame), refilling it with ``_more`` (which turns a read error into a warning), and ends
by tallying its counts into the run's `CaptureStats`.
`analyzer.capture.files` tells the format and opens the matching source.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Final, Iterator, List, Optional, Protocol, Tuple

from analyzer.common.names import printable
from analyzer.common.native import i64

CHUNK: Final = 1 << 20                   # bytes asked of the stream per read
MAX_BLOCK: Final = 16 * 1024 * 1024      # pcapng block bound; also the cap on the pcap bound

Frame = Tuple[int, int, bytes]

READ_ERRORS: Final = (OSError, EOFError, zlib.error)


class CaptureError(Exception):
    """This input cannot be read as a capture at all (the CLI exits 3).

    ``str(e)`` is one line starting with the file name, e.g.
    ``'capture.txt: not a capture file (first bytes 3c 21 44 4f)'``. ``errno`` is the
    operating system's error number when opening failed, else None.
    """

    errno: Optional[int] = None


class CaptureInterrupted(CaptureError):
    """A signal ended the reading before the file's header was read (not an error: the run
    reports what it read, marked interrupted; `analyzer.capture.interrupt`)."""


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
    interrupted: bool = False                             # a signal ended the reading

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


def fill(read: Callable[[int], bytes], buf: bytes, need: int, chunk: int = CHUNK) -> bytes:
    """``buf`` extended by reads of up to ``chunk`` bytes until it holds ``need`` bytes or the
    stream ends."""
    parts = [buf]
    have = len(buf)
    while have < need:
        more = read(chunk)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def u32(buf: bytes, i: int, le: bool) -> int:
    """The 32-bit unsigned integer at `i`, little-endian when `le` (byte by byte: compiled,
    no tuple and no int object, where a struct unpack makes both)."""
    if le:
        return buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 | buf[i + 3] << 24
    return buf[i] << 24 | buf[i + 1] << 16 | buf[i + 2] << 8 | buf[i + 3]


def u16(buf: bytes, i: int, le: bool) -> int:
    """The 16-bit unsigned integer at `i`, little-endian when `le`."""
    return buf[i] | buf[i + 1] << 8 if le else buf[i] << 8 | buf[i + 1]


def one_line(e: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


class Cursor:
    """A capture's frames one at a time, in place: after `advance()` returns True, the frame
    is `buf[start:end]`, captured at `ts` (ns since the epoch) on link type `linktype`.

    Nothing is made per frame, so the analysis can decode each frame where it lies (the
    readers' `BufferCursor`s parse records inside their read buffer). This base has no
    frames: the cursor of a run whose every file failed to open.
    """

    def __init__(self) -> None:
        self.ts = 0
        self.linktype = 0
        self.buf = b""
        self.start = 0
        self.end = 0
        #: With a `FrameTest` (`skip`): the frames read, skipped ones too, and those stamped
        #: earlier than the frame before them; `ts` is then the last frame's read.
        self.count = 0
        self.back: i64 = 0

    def advance(self) -> bool:
        """Step to the next frame; False at the end of the capture."""
        return False

    def skip(self, test: "FrameTest") -> bool:
        """From now on, step over the frames `test` calls foreign (never the frames whose
        number `count` is a multiple of 65536: the progress marks), keeping `count`, `back`
        and `ts` for every frame read. False: this cursor cannot (it hands out every frame,
        and keeps `count` and `back` as it likes)."""
        return False

    def close(self) -> None:
        """Stop reading (the source tallies what was read and closes its file)."""


class FrameTest:
    """A test of a frame's bytes where they lie in the read buffer, which a cursor that can
    (`Cursor.skip`) applies to every record before handing it out: the frames `foreign`
    calls foreign are stepped over inside the reader, with no return to the caller per frame.

    Defined here, at the stage that calls it, and subclassed where the knowledge is (a
    `--jobs` shard's test reads link-layer, IP and TCP headers: decode/shard.py
    `ShardTest`); compiled, the call is one native method call. This base skips nothing.
    `part`: what the test said of the last frame handed out (the subclass's meaning)."""

    def __init__(self) -> None:
        self.part: i64 = -1

    def foreign(self, buf: bytes, start: i64, end: i64) -> bool:
        """True: the frame `buf[start:end]` is not the caller's (the cursor steps over it)."""
        return False

    def skipper(self, le: bool, limit: int, frac_ns: int) -> Optional["Skipper"]:
        """The same test in C for a classic pcap reader (byte order `le`, captured-length bound
        `limit`, ns per timestamp fraction `frac_ns`), or None: none here (the pure-Python
        build, or a test that has none)."""
        return None


class Skipper(Protocol):
    """A `FrameTest` in C that steps over the foreign records of a classic pcap read buffer
    itself (decode/_skip.c, which states the protocol): `run(buf, pos, span)` lists the
    records to hand out in about `span` bytes from `pos`, where it stopped, the records it
    read after the last of them and whether it can go on from there; the records it read are
    counted in `frames` (kept in step with the cursor's by `sync`), the last one's time is
    `last`, and `back`, `lo` and `hi` are its share of the cursor's counts."""

    frames: int
    last: int
    back: int
    lo: int
    hi: int

    def run(self, buf: bytes, pos: int, span: int) -> Tuple[bytes, int, int, bool]: ...

    def sync(self, frames: int, last: int) -> None: ...


class BufferCursor(Cursor):
    """A cursor that parses a format's records in its source's read buffer.

    A subclass sets `head` (the bytes that tell a record's length) and `_record_length`, and
    calls `_refill` when the next record is not all in `buf`; at a record boundary with
    `buf` used up it takes `ahead` first (what `_refill` left of its last read)."""

    def __init__(self, source: "FrameSource", head: int) -> None:
        super().__init__()
        self.source = source
        self.head = head
        self.buf, source._buf = source._buf, b""
        self.pos = 0                            # the next record in `buf`
        self.ahead, self.ahead_pos = b"", 0     # a read's bytes after the record in `buf`
        self.done = False

    def _record_length(self, head: bytes) -> int:
        """The whole length of the record that starts with `head` (`self.head` bytes); 0 when
        they do not tell a sane one (the parser reports it)."""
        raise NotImplementedError

    def _take_ahead(self) -> bool:
        """At the end of `buf`, go on with the rest of the last read (see `_refill`)."""
        if not self.ahead or self.pos != len(self.buf):
            return False
        self.buf, self.pos, self.ahead = self.ahead, self.ahead_pos, b""
        return True

    def _refill(self, buf: bytes, pos: int, need: int) -> bytes:
        """`buf[pos:]` (the start of a record, less than `need` bytes) and what follows it in
        the stream: at least `need` bytes, or the whole record, unless the stream ends first;
        empty after a read error (warned about).

        A read's bytes are not joined to that start (a copy of the whole read): the record
        that straddles the two gets a small buffer of its own, and the rest of the read waits
        in `ahead`, to be parsed in place after it."""
        src = self.source
        rest = buf[pos:]
        more = src._read_chunk()
        if more is None:                          # a read error (warned about)
            return b""
        have = len(rest)
        if not more:
            return rest
        if not have:
            return more if len(more) >= need else src._more(more, 0, need)
        if have < self.head:                      # the length itself straddles the reads
            if have + len(more) < self.head:
                return src._more(rest + more, 0, need)
            need = self._record_length(rest + more[:self.head - have])
            if not need:
                return rest + more
        if have + len(more) < need:               # a short read, or a record over a read
            return src._more(rest + more, 0, need)
        self.ahead, self.ahead_pos = more, need - have
        return rest + more[:need - have]


def frames_of(cursor: Cursor) -> Iterator[Frame]:
    """A cursor's frames as ``(ts_ns, linktype, frame)`` tuples, each frame copied out."""
    while cursor.advance():
        yield cursor.ts, cursor.linktype, cursor.buf[cursor.start:cursor.end]


class FrameSource:
    """One opened capture. Iterate it once for ``(ts_ns, linktype, frame)`` in file order, or
    step through its `cursor()`; the file is closed when the frames end (or by ``close()``)."""

    def __init__(self, path: str, fh: BinaryIO, read: Callable[[int], bytes], head: bytes,
                 stats: CaptureStats, chunk: int = CHUNK) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else printable(path)
        self._fh, self._read, self._stats = fh, read, stats
        self.chunk = chunk                    # bytes asked of the stream per read
        self._owned = path != "-"             # stdin is not ours to close
        self._buf = self._header(head)
        self._cursor: Optional[Cursor] = None
        self._frames: Optional[Iterator[Frame]] = None

    def cursor(self) -> Cursor:
        """The frames, in place (one cursor per source: reading consumes the file)."""
        if self._cursor is None:
            self._cursor = self._open_cursor()
        return self._cursor

    def __iter__(self) -> Iterator[Frame]:
        if self._frames is None:
            self._frames = frames_of(self.cursor())
        return self._frames

    def close(self) -> None:
        """Stop reading and close the file (stdin is left open)."""
        if self._cursor is not None:
            self._cursor.close()
        self._release()

    def _release(self) -> None:
        if getattr(self._fh, "stopped", False):      # a signal ended it (`Guarded`)
            self._stats.interrupted = True
        if self._owned:
            self._fh.close()

    def _open_cursor(self) -> Cursor:
        """The format's cursor over its frames."""
        raise NotImplementedError

    def _header(self, head: bytes) -> bytes:
        """Check the file header (``head`` holds the first bytes read); return the bytes to
        parse frames from. Raises CaptureError."""
        raise NotImplementedError

    def _warn(self, msg: str, stopped: bool = True) -> None:
        """Record a one-line warning; ``stopped`` means the rest of the file is lost. An end
        that a signal made is no damage: nothing is said of it."""
        if stopped and getattr(self._fh, "stopped", False):
            return
        self._stats.warnings.append(f"{self.name}: {msg}")
        if stopped:
            self._stats.truncated = True

    def _more(self, buf: bytes, pos: int, need: int) -> bytes:
        """``buf[pos:]`` extended until it holds ``need`` bytes or the stream ends; empty after
        a read error (already warned about)."""
        try:
            return fill(self._read, buf[pos:], need, self.chunk)
        except READ_ERRORS as e:
            self._read_failed(e)
            return b""

    def _read_chunk(self) -> Optional[bytes]:
        """One read of up to ``chunk`` bytes: empty at the end, None after a read error
        (warned about)."""
        try:
            return self._read(self.chunk)
        except READ_ERRORS as e:
            self._read_failed(e)
            return None

    def _read_failed(self, e: BaseException) -> None:
        gz = isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile))
        what = "compressed stream cut short or corrupt" if gz else "read error"
        self._warn(f"{what} ({one_line(e)}); reading stopped")
