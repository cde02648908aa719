"""Frames of capture files that cannot stay open, kept in one temporary file.

A merge of files that overlap in time reads them all at once; each open file costs a
descriptor, and the process has a limit (`ulimit -n`, often 1024, sometimes 64). Past
`open_budget()` open files, or when an open fails for lack of descriptors, the merge reads
the next file whole into a `SpillStore` instead: one temporary file for all of them (one
descriptor), from which each spilled file's frames are read back in order with `pread`, a
small buffer each. The spilled frames are exactly those the file's reader gave (its
warnings and counts were taken while it was read). The store costs disk (the spilled files'
frames) and is removed when the merge ends.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import BinaryIO, Final, Iterator, Optional, Tuple

Frame = Tuple[int, int, bytes]

#: Per frame: the timestamp (16 bytes, signed: pcapng times can pass 64 bits), the link type
#: and the frame's length; then the frame.
_HEAD: Final = struct.Struct("<16sII")
#: Bytes read back at a time for each spilled file.
READ_BACK: Final = 16 * 1024

#: errnos that say the process or the system is out of descriptors.
NO_DESCRIPTORS: Final = (errno.EMFILE, errno.ENFILE)


def open_budget(reserve: int = 16) -> int:
    """How many capture files a merge keeps open at once: three quarters of the descriptor
    limit less `reserve` (the interpreter's, the report's, the spill store's), at least 2."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        soft = 1 << 20
    return max(2, min(soft - reserve, soft * 3 // 4))


class SpillStore:
    """One temporary file; `add` copies a file's frames into it and returns a reader."""

    def __init__(self) -> None:
        self.fh: Optional[BinaryIO] = None
        self.size = 0

    def add(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Copy all of `frames` (consuming them) and return them again, read from the store."""
        if self.fh is None:
            import tempfile                 # (here: most runs make no file)
            self.fh = tempfile.TemporaryFile(prefix="tcpflow-check-merge-")
        fh = self.fh
        fh.seek(0, os.SEEK_END)
        start = self.size
        for ts, linktype, data in frames:
            fh.write(_HEAD.pack(ts.to_bytes(16, "little", signed=True), linktype, len(data)))
            fh.write(data)
            self.size += _HEAD.size + len(data)
        fh.flush()
        return self._frames(start, self.size)

    def _frames(self, pos: int, end: int) -> Iterator[Frame]:
        """The frames stored in bytes `pos` to `end`, read back `READ_BACK` bytes at a time."""
        assert self.fh is not None
        fd = self.fh.fileno()
        buf, off = b"", 0
        while True:
            have = len(buf) - off
            if have < _HEAD.size:
                if pos >= end:
                    return
                more = os.pread(fd, min(READ_BACK, end - pos), pos)
                if not more:
                    return
                pos += len(more)
                buf, off = buf[off:] + more, 0
                continue
            raw_ts, linktype, size = _HEAD.unpack_from(buf, off)
            if have - _HEAD.size < size:
                need = size - (have - _HEAD.size)
                more = os.pread(fd, min(max(need, READ_BACK), end - pos), pos)
                if len(more) < need:
                    return
                pos += len(more)
                buf, off = buf[off:] + more, 0
            start = off + _HEAD.size
            yield int.from_bytes(raw_ts, "little", signed=True), linktype, buf[start:start + size]
            off = start + size

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
