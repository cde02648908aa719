"""Where the report goes (`-o`): never over an input, never half written, checked first.

The rules, in the order the CLI applies them:

* **An output that is an input is refused** before anything is read (`same_as_input`): the
  same file by device and inode, so a symlink or hard link to a capture is caught too, and so
  is stdout redirected onto one (`>> capture.pcap`).
* **The output is checked before the analysis starts** (`ReportFile`): for a regular file (or
  a name not there yet) the temporary file that will become the report is created now, next
  to it, so a missing directory or a missing permission fails at once, not after an hour of
  reading.
* **The report replaces the file only when it is complete** (`ReportFile.commit`): it is
  written to that temporary file and renamed over the target (atomic on POSIX), so a failed
  or interrupted run leaves the earlier file as it was and no half report. A symlink is
  followed (its target is replaced; the link stays). The new file gets the old one's
  permissions, or those a plain `open` would give.
* Anything that is not a regular file (a terminal, a pipe, `/dev/null`, `/dev/full`) and
  stdout are written directly: there is nothing there to keep.

Write errors (a full disk, a closed stdout) reach the caller as `OSError`; `discard()` then
removes the temporary file.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import Optional, Sequence, TextIO

from analyzer.common.names import printable


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino


def same_as_input(output: str, inputs: Sequence[str]) -> Optional[str]:
    """The input `output` is (a file name, printable), or None. '-' as output means stdout:
    it is an input only when redirected onto a capture file (append)."""
    try:
        if output == "-":
            st = os.fstat(sys.stdout.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
        else:
            st = os.stat(output)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None                     # not there yet (or no stdout): no input is it
    target = _identity(st)
    for path in inputs:
        try:
            other = os.fstat(sys.stdin.fileno()) if path == "-" else os.stat(path)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            continue
        if _identity(other) == target:
            return "<stdin>" if path == "-" else printable(path)
    return None


class ReportFile:
    """The report's text stream for `output` ('-' = stdout), opened before the analysis.

    Raises OSError when it cannot be written (the CLI: a usage error, before reading)."""

    def __init__(self, output: str) -> None:
        self.name = "<stdout>" if output == "-" else printable(output)
        self.target: Optional[str] = None       # the file the temporary one replaces
        self.temp: Optional[str] = None
        if output == "-":
            if sys.stdout is None:              # started with stdout closed
                raise OSError(9, "stdout is closed")
            try:
                fd = sys.stdout.fileno()
                os.fstat(fd)
            except io.UnsupportedOperation:     # replaced by an object without a descriptor
                self.stream: TextIO = sys.stdout
                return
            sys.stdout.flush()
            # Not `click.open_file`: its wrapper forwards every `write` through a
            # Python-level `__getattr__`, which cost a fifth of writing the JSON report.
            self.stream = open(fd, "w", encoding="utf-8", closefd=False)
            return
        real = os.path.realpath(output)
        try:
            st: Optional[os.stat_result] = os.stat(real)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "is a directory")
            self.stream = open(real, "w", encoding="utf-8")
            return
        if st is not None and not os.access(real, os.W_OK):   # renaming over it would do
            raise PermissionError(13, "Permission denied")
        directory, base = os.path.split(real)
        import tempfile                 # (here: most runs make no file)
        fd, self.temp = tempfile.mkstemp(prefix="." + base + ".", suffix=".tmp",
                                         dir=directory or ".")
        self.target = real
        try:
            os.chmod(self.temp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
            self.stream = open(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            self.discard()
            raise

    def commit(self) -> None:
        """The report is complete: flush it and put it in place."""
        self.stream.flush()
        if self.stream is not sys.stdout:
            self.stream.close()
        if self.temp is not None and self.target is not None:
            os.replace(self.temp, self.target)
            self.temp = None

    def discard(self) -> None:
        """The report failed: close quietly and remove the temporary file."""
        stream = getattr(self, "stream", None)
        if stream is not None and stream is not sys.stdout:
            try:
                stream.close()
            except (OSError, ValueError):       # what it still held fails again: dropped
                pass
        if self.temp is not None:
            try:
                os.unlink(self.temp)
            except OSError:
                pass
            self.temp = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
