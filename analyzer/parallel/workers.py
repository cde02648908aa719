"""The processes of a `--jobs` run (local.py): starting a worker, its pipe to the parent, the
parent's reading of its messages, and the end of every worker.

On platforms with `fork` the workers are forked with `os.fork` and write to `os.pipe`s
(`launch`, `End`), in `multiprocessing`'s message framing (`Receiver` reads it): importing
`multiprocessing` (its connections pull in tempfile, socket and selectors, its contexts
shutil, bz2 and lzma) cost ~30 M instructions of every `--jobs` start, a tenth of all before
the fork. It is imported only to spawn, where there is no fork. Every worker started is
recorded until it is reaped (`running`); one still running when the process exits is killed
and reaped then (`_at_exit`), as `multiprocessing` does with daemonic processes.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import struct
import sys
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple, cast

from analyzer.capture.interrupt import SIGNALS

#: The closing of pipes handed to a store and not closed yet (`release`).
OPEN: List[Callable[[], None]] = []


def release() -> None:
    """Close the pipes of shards' lines nothing will read (the process is ending): their
    shards then end."""
    for close in list(OPEN):
        close()


class Receiver:
    """`conn.recv_bytes()` for the parent's pipes (the same framing: a 4-byte length, or -1
    and an 8-byte one, then the message), each message read whole into one scratch buffer,
    kept from message to message, and copied out once. `recv_bytes` gathers a pipe's pieces
    (64 KiB at a time) in a growing `BytesIO`, copying what it has at each growth: several
    copies of every result a shard sends. EOFError at the end of the pipe, OSError inside a
    message (as `recv_bytes`)."""

    def __init__(self) -> None:
        self.scratch = bytearray()

    def __call__(self, conn: "Reader") -> bytes:
        fd = conn.fileno()
        size = _HEAD.unpack(self._exactly(fd, _HEAD.size))[0]
        if size == -1:
            size = _LONG.unpack(self._exactly(fd, _LONG.size))[0]
        return self._exactly(fd, size)

    def _exactly(self, fd: int, n: int) -> bytes:
        if n <= _SMALL:                     # most likely there whole: one read
            first = os.read(fd, n)
            got = len(first)
            if got == n:
                return first
            if not got:
                raise EOFError
        if len(self.scratch) < n:           # zero-filled once, at the largest size yet
            self.scratch = bytearray(n)
        with memoryview(self.scratch) as view:
            if n <= _SMALL:
                view[:got] = first
            else:
                got = 0
            while got < n:
                k = os.readv(fd, [view[got:n]])
                if k == 0:
                    if not got:
                        raise EOFError
                    raise OSError("got end of file during message")
                got += k
            return bytes(view[:n])


_HEAD = struct.Struct("!i")
_LONG = struct.Struct("!Q")
#: Messages up to this size are read with one `os.read` first (a pipe holds 64 KiB).
_SMALL = 1 << 16


def widen(conn: "Writer") -> None:
    """Make a worker's pipe hold `PIPE_BYTES` where the system lets it (Linux's
    `F_SETPIPE_SZ`; otherwise it stays as it is, 64 KiB on Linux): the messages a shard sends
    as it ends (its best results, its counts: a few hundred KiB on a large capture) then go
    in one write each, with no wait for the parent to take each 64 KiB of them, and reach it
    whole (`Receiver`: one read); so do the JSON report's lines (megabytes of them): fewer
    switches between worker and parent, fewer copies."""
    try:
        import fcntl
        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):          # not Linux, or above the system's limit
        pass


#: A worker's pipe's size, where it can be set (`widen`): Linux's default limit for a user.
PIPE_BYTES = 1 << 20


#: Whether the workers are forked (`os.fork`: wherever it exists); otherwise they are
#: spawned by `multiprocessing`, imported then only.
FORK = hasattr(os, "fork")


class Reader(Protocol):
    """The parent's end of a worker's pipe: `End`, or a spawned worker's `Connection`."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class Writer(Reader, Protocol):
    """A worker's end of its pipe: messages in `multiprocessing`'s framing (`Receiver`)."""

    def send_bytes(self, buf: bytes) -> None: ...


class Process(Protocol):
    """A worker process as the parent handles it: a forked `Worker`, or a spawned
    `multiprocessing.Process` (the same names)."""

    @property
    def pid(self) -> Optional[int]: ...

    @property
    def exitcode(self) -> Optional[int]: ...

    def is_alive(self) -> bool: ...

    def join(self) -> None: ...

    def kill(self) -> None: ...


class End:
    """One end of an `os.pipe` between the parent and a forked worker. The worker writes
    messages to its end (`send_bytes`: a 4-byte big-endian length, or -1 and an 8-byte one
    above 2**31 - 1, then the message: `multiprocessing`'s framing, which `Receiver` reads),
    the parent reads its own."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __del__(self) -> None:              # (an end never handed out: a fork that failed)
        self.close()

    def send_bytes(self, buf: bytes) -> None:
        """Write one message, its length in front, in one call (`writev`: no copy of the
        message); a write a signal cut short goes on where it stopped. BrokenPipeError when
        the parent's end is closed."""
        n = len(buf)
        head = _HEAD.pack(n) if n <= 0x7FFFFFFF else _HEAD.pack(-1) + _LONG.pack(n)
        done = os.writev(self.fd, [head, buf])
        if done < len(head) + n:
            if done < len(head):
                _write_all(self.fd, memoryview(head)[done:])
                done = len(head)
            _write_all(self.fd, memoryview(buf)[done - len(head):])


def _write_all(fd: int, view: memoryview) -> None:
    while len(view):
        view = view[os.write(fd, view):]


def pipe() -> Tuple[Reader, Writer]:
    """A pipe from a worker to the parent: (the parent's end, the worker's end)."""
    if FORK:
        r, w = os.pipe()
        return End(r), End(w)
    import multiprocessing
    return cast(Tuple[Reader, Writer], multiprocessing.get_context("spawn").Pipe(duplex=False))


class Worker:
    """A forked worker (`launch`): its pid, and its exit code once it has been reaped (the
    signal's number, negative, when a signal ended it: as `multiprocessing` says it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exitcode: Optional[int] = None
        self.reaped = False

    def _reap(self, block: bool) -> bool:
        """Whether it has exited (and is reaped): waits for it with `block`."""
        if not self.reaped:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:       # reaped by someone else: its code is lost
                pid, status = self.pid, -1
            if pid == 0:
                return False
            self.reaped = True
            if status != -1:
                self.exitcode = os.waitstatus_to_exitcode(status)
            if self in _RUNNING:
                _RUNNING.remove(self)
        return True

    def is_alive(self) -> bool:
        return not self._reap(False)

    def join(self) -> None:
        self._reap(True)

    def kill(self) -> None:
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:      # (a zombie can still be killed: not reached)
                pass


#: The forked workers not reaped yet, in the order started.
_RUNNING: List[Worker] = []


def running() -> List[Worker]:
    """The forked workers still running (those that have exited are reaped):
    `multiprocessing.active_children()` for `launch`'s."""
    for worker in list(_RUNNING):
        worker.is_alive()
    return list(_RUNNING)


def launch(target: Callable[..., None], args: tuple, name: str) -> Process:
    """Start `target(*args)` in a worker process, forked (spawned where `fork` does not
    exist), with SIGINT and SIGTERM held back until its own handlers are in place (`_work`):
    a signal in between would otherwise find the parent's handler (whose record the
    worker's `interruptible()` clears) or none (killing it).

    A forked worker reads nothing from stdin (/dev/null, as `multiprocessing` does); it ends
    with `os._exit` when `target` returns (0) or raises (1, after the traceback on stderr),
    so nothing of the parent's runs in it again (exit handlers, buffers). Its streams are
    flushed before the fork, so nothing buffered is written twice."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        if not FORK:
            import multiprocessing
            spawned = multiprocessing.get_context("spawn").Process(
                target=target, args=args, name=name, daemon=True)
            spawned.start()
            return cast(Process, spawned)
        running()                           # the earlier runs' workers that have exited
        _exit_hook()
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        pid = os.fork()
        if pid == 0:
            _child(target, args, name)      # never returns
        worker = Worker(pid)
        _RUNNING.append(worker)
        return worker
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _child(target: Callable[..., None], args: tuple, name: str) -> None:
    code = 1
    try:
        del _RUNNING[:]                     # the parent's, not this process's children
        try:
            if sys.stdin is not None:
                sys.stdin.close()
                sys.stdin = open(os.devnull)
        except (OSError, ValueError):
            pass
        target(*args)
        code = 0
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        try:
            import traceback
            sys.stderr.write("%s:\n%s" % (name, traceback.format_exc()))
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:
                pass
        os._exit(code)


_HOOKED: List[bool] = []


def _exit_hook() -> None:
    """At the process's exit, its workers still running are stopped and reaped (none is left
    behind, nor a zombie): registered with the first worker."""
    if not _HOOKED:
        _HOOKED.append(True)
        atexit.register(_at_exit)


def _at_exit() -> None:
    release()
    for worker in running():
        worker.kill()
        worker.join()


class Ready:
    """The workers' pipes still open (true while there is one), and those of them with
    something to read, or closed by the worker (`__call__`, waiting up to `timeout`
    seconds)."""

    def __init__(self, pipes: Sequence[Reader] = ()) -> None:
        self.open: Dict[int, Reader] = {}
        self.poll = select.poll() if hasattr(select, "poll") else None
        for r in pipes:
            self.add(r)

    def __bool__(self) -> bool:
        return bool(self.open)

    def __len__(self) -> int:
        return len(self.open)

    def add(self, r: Reader) -> None:
        self.open[r.fileno()] = r
        if self.poll is not None:
            self.poll.register(r.fileno(), select.POLLIN)

    def drop(self, r: Reader) -> None:
        fd = r.fileno()
        del self.open[fd]
        if self.poll is not None:
            self.poll.unregister(fd)

    def __call__(self, timeout: float) -> List[Reader]:
        if self.poll is None:               # (no poll: spawned workers' connections)
            from multiprocessing.connection import wait
            return cast(List[Reader], wait(cast(list, list(self.open.values())), timeout))
        return [self.open[fd] for fd, _ in self.poll.poll(timeout * 1000)
                if fd in self.open]
