"""Interruption: SIGINT or SIGTERM ends the reading, and the analysis ends as at the end of
the capture, with the report of what was read.

The rule: a signal never raises in the middle of the analysis. Within `interruptible()` (the
CLI's), the handler only records the signal. Every read of a capture goes through `Guarded`,
which gives the end of the stream once a signal was recorded: a regular file at its next
read (each read is up to 1 MiB), a pipe, FIFO or terminal at once even while it waits for
data, because it waits in `poll` on the stream and on the wakeup pipe the signal writes to
(`signal.set_wakeup_fd`: written by the C-level handler, so no signal is missed however it
falls). The readers see an ordinary end of input and say nothing of damage there; the source
marks `CaptureStats.interrupted`; the connections seen so far are finished and reported.

Why not Python's KeyboardInterrupt: it is raised wherever the interpreter next checks for
signals, and compiled code (mypyc) meets such a check inside CPython's arbitrary-size integer
arithmetic, whose failure it takes for a lost allocation: it aborts the process ("fatal: out
of memory"). A handler that returns normally makes every such check succeed.

A second signal of either kind ends the process at once, as the signal would by default (for
a report that takes long to write); `-o` then leaves the earlier file as it was.

A `--jobs` run's workers ignore SIGINT (a Ctrl-C reaches the whole process group) and stop on
one SIGTERM from the parent, which analyses a shard itself meanwhile: the handler passes the
first signal on to the processes listed in `STATE.forward`, at once (`pass_on`), whatever the
parent is doing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
from typing import Any, BinaryIO, Callable, Iterator, List, Optional

#: The signals that interrupt a run; the CLI exits 128 + the number (130, 143).
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    signum = 0                          # the first interrupting signal of the run, 0: none
    wakeup: Optional[int] = None        # read end of the wakeup pipe while interruptible
    #: Processes the first signal is passed on to, as one SIGTERM each (`pass_on`).
    forward: List[int] = []


STATE = _State()


def received() -> int:
    """The interrupting signal received during the run (its number), 0 if none."""
    return STATE.signum


def _on_signal(signum: int, _frame: Any) -> None:
    if STATE.signum:                    # the second: as if no handler had been installed
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    STATE.signum = signum
    pass_on()


def pass_on() -> None:
    """One SIGTERM to each process of `STATE.forward`, which is emptied: a process is passed
    a signal once (a second one would end it at once, without its report). The handler
    calls it for the first signal; a `--jobs` parent for a signal that came before its
    workers were listed."""
    pids = STATE.forward
    STATE.forward = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:                 # (gone already)
            pass


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within it, SIGINT and SIGTERM are recorded (`received()`) and end the reading; what was
    installed before is put back after it. Outside the main thread it changes nothing."""
    STATE.signum = 0
    try:
        r, w = os.pipe()
    except OSError:                     # no descriptor left: signals stay as they are
        yield
        return
    previous: List[Any] = []
    old_wakeup = None
    try:
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in SIGNALS:
            previous.append(signal.signal(sig, _on_signal))
        STATE.wakeup = r
    except ValueError:                  # not the main thread
        pass
    try:
        yield
    finally:
        STATE.wakeup = None
        for sig, handler in zip(SIGNALS, previous):
            signal.signal(sig, handler)
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        os.close(r)
        os.close(w)


class Guarded:
    """A binary file whose reads end (b"") once a signal was recorded. A stream that can wait
    (not a regular file) waits in `poll` on itself and the wakeup pipe, so a signal ends a
    wait too. `stopped`: the end came from a signal."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.stopped = False
        self._read: Callable[[int], bytes] = getattr(fh, "read1", fh.read)
        self.fd = -1
        try:
            fd = fh.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.fd = fd
        except (OSError, ValueError, AttributeError):
            pass
        # A buffer would hold data `poll` does not see: such a stream is read raw (nothing
        # reads it before the capture reader does).
        raw = getattr(fh, "raw", None)
        if self.fd >= 0 and raw is not None:
            self._read = raw.read

    def read(self, n: int = -1) -> bytes:
        if STATE.signum:
            self.stopped = True
            return b""
        wakeup = STATE.wakeup
        if self.fd >= 0 and wakeup is not None:
            poll = select.poll()
            poll.register(self.fd, select.POLLIN)
            poll.register(wakeup, select.POLLIN)
            ready = [fd for fd, _ in poll.poll()]
            if STATE.signum or wakeup in ready:
                self.stopped = True
                return b""
        return self._read(n) or b""

    read1 = read

    def close(self) -> None:
        self.fh.close()

    @property
    def closed(self) -> bool:
        return bool(self.fh.closed)

    def fileno(self) -> int:
        return self.fh.fileno()
