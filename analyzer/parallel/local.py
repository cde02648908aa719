"""`--jobs N`: the shards of a parallel run as processes of this machine.

Each worker is a forked process running `shard.run_shard` and writing its messages to a pipe;
the parent hands every message to the `Merger`, so the merge goes on while the shards analyse,
and memory stays what the shards hold plus what the sink keeps. Where the workers send little
before their end (the JSON report's lines stay in the shards until it is written; the
terminal report's shards choose their most severe), the parent analyses shard 0 itself and
reads the pipes at its progress marks; its lines are merged in place. Otherwise it waits on
all the pipes at once. Where `fork` does not exist the workers are spawned (a fresh
interpreter each).

The processes themselves (forking or spawning a worker, its pipe, reading its messages,
reaping it) are workers.py's.

Interruption follows the single-process rule (capture/interrupt.py): the parent records
SIGINT or SIGTERM and passes one SIGTERM to every worker (from the handler, at once), which
stops reading and sends what it has; the workers ignore SIGINT themselves, so a Ctrl-C in a
terminal (which reaches the whole process group) stops each of them once, through the
parent. A worker whose parent is gone stops at its next progress mark.

A run that cannot be split runs in one process: a capture read from a pipe or a terminal
(every worker reads the whole capture), and a run that traces streams' packets (ladders).
"""

from __future__ import annotations

import functools
import os
import signal
import stat
from typing import Callable, List, Optional, Sequence, cast

from analyzer.capture.interrupt import SIGNALS, STATE, interruptible, pass_on, received
from analyzer.parallel.merge import Merger, ShardFailed, lines_run
from analyzer.parallel.shard import Work, run_shard
from analyzer.parallel.workers import (FORK, OPEN, Process, Ready, Reader, Receiver, Writer,
                                       launch, pipe, widen)
from analyzer.pipeline import analyze
from analyzer.report.model import Report
from analyzer.report.runs import Run
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings


def jobs_for(paths: Sequence[str], settings: Settings, jobs: int) -> int:
    """How many processes the run can use: `jobs`, or 1 where it cannot be split (above)."""
    if jobs <= 1 or settings.ladders or not paths:
        return 1
    for path in paths:
        try:
            if path == "-" or not stat.S_ISREG(os.stat(path).st_mode):
                return 1
        except OSError:
            continue                        # unreadable: every worker reports it the same
    return jobs


def cores() -> int:
    """The cores this process may run on (`--jobs auto`)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                  # not Linux
        return max(1, os.cpu_count() or 1)


def analyze_jobs(paths: Sequence[str], settings: Settings, jobs: int, *,
                 sink: Optional[ResultSink] = None,
                 on_frame: Optional[Callable[[int], None]] = None, once: bool = False) -> Report:
    """`analyze(paths, settings, sink=sink, on_frame=on_frame)` in `jobs` processes, with the
    same report; in one process where the run cannot be split (`jobs_for`). `once`: the
    report's connections are read once (the command): a sink of lines
    (`ResultStore.shard_lines`) then leaves them in the shards until they are read, and the
    shards wait for that."""
    jobs = jobs_for(paths, settings, jobs)
    if jobs == 1:
        return analyze(list(paths), settings, sink=sink, on_frame=on_frame)
    if sink is None:
        sink = ResultStore(settings.result_budget)
    work = sink.shard_work() if isinstance(sink, ResultStore) else None
    lines = once and work is not None and isinstance(sink, ResultStore) and sink.shard_lines()
    merger = Merger(jobs, settings, sink, work is not None)
    # Shard 0 is analysed here when the workers send next to nothing before their end
    # messages (their numbers: the shards keep their lines, or choose their `best`), so that
    # their pipes never fill while this process is busy with it; otherwise every shard is a
    # worker and this process only merges, reading the pipes as they fill.
    here = work is not None and (lines or work[2] is not None)
    first = 1 if here else 0
    pipes: List[Reader] = []
    workers: List[Process] = []
    kept: List[ResultStore] = []            # shard 0's store of lines, read in place
    handed = False
    try:
        for i in range(first, jobs):
            r, w = pipe()
            widen(w)
            # A forked worker closes the read ends it inherits (its own and the earlier
            # workers'): a pipe whose reader has gone then fails its writer at once.
            inherited = [c.fileno() for c in pipes] + [r.fileno()] if FORK else []
            p = launch(_work, (list(paths), settings, i, jobs, w, os.getpid(), work, lines,
                               inherited), "tcpflow-check shard %d" % i)
            w.close()
            pipes.append(r)
            workers.append(p)
        # The first signal is passed on to the workers by the handler, at once, while this
        # process analyses shard 0 (capture/interrupt.py); one that came before, here.
        STATE.forward = [p.pid for p in workers if p.pid is not None]
        if received():
            pass_on()
        ready = Ready(pipes)
        serve = _Serve(merger, pipes, first, ready, on_frame)
        if here:
            run_shard(list(paths), settings, 0, jobs, functools.partial(merger.take, 0),
                      serve.mark, work, kept.append if lines else False)
        while ready:
            serve(0.25)
        for i, p in enumerate(workers, first):
            if not merger.ended(i):
                p.join()
                raise ShardFailed("shard %d of %d ended without its report (exit code %s)"
                                  % (i, jobs, p.exitcode))
        report = merger.report()
        if lines:
            hand_over(cast(ResultStore, sink), kept, pipes, first, serve.receive)
            handed = True
        return report
    finally:
        STATE.forward = []
        # A worker that sent its end message is left to exit by itself (freeing a shard's
        # memory takes a while), and reaped when it has; any other is stopped here.
        for i, p in enumerate(workers, first):
            if p.is_alive() and not merger.ended(i):
                p.kill()
                p.join()
        if not handed:
            for r in pipes:
                r.close()
            for store in kept:
                store.close()


class _Serve:
    """The parent's side of the workers' pipes while it analyses shard 0 (`mark`, at each of
    its progress marks, takes what has come without waiting) and after (`__call__`, waiting
    up to `timeout`): each message to the merger, a pipe dropped at its shard's end message
    (its lines wait in it) or its end, progress (what every shard has read) to `on_frame`."""

    def __init__(self, merger: Merger, pipes: List[Reader], first: int, ready: Ready,
                 on_frame: Optional[Callable[[int], None]]) -> None:
        self.merger = merger
        self.shard_of = {r.fileno(): i for i, r in enumerate(pipes, first)}
        self.ready = ready
        self.on_frame = on_frame
        self.receive = Receiver()
        self.shown = 0

    def mark(self, _through: int) -> None:
        if self.ready:
            self(0)
        else:
            self._progress()

    def __call__(self, timeout: float) -> None:
        merger, ready, receive = self.merger, self.ready, self.receive
        for r in ready(timeout):
            try:
                chunk = receive(r)
            except EOFError:
                ready.drop(r)
                continue
            i = self.shard_of[r.fileno()]
            merger.take(i, chunk)
            if merger.ended(i):             # its last message: not waited for any further
                ready.drop(r)
        if received():
            pass_on()                       # (passed on once: by the handler, as a rule)
        self._progress()

    def _progress(self) -> None:
        merger = self.merger
        if self.on_frame is not None and merger.frames() > self.shown:
            self.shown = merger.frames()    # what every shard has read: one line
            self.on_frame(self.shown)


def hand_over(store: ResultStore, kept: List[ResultStore], pipes: List["Reader"], first: int,
              receive: "Receiver") -> None:
    """The shards' lines to `store`, which reads them as the report is written
    (`ResultStore.numbered_bytes`) and then closes what holds them: shard 0's, kept here
    (`kept`: its store, read in place, its sorted runs merged with the others), and the
    workers' (`L`, after their end messages), still in their pipes; `release` closes any
    still open (a shard waits to write its lines until they are read, or its pipe is
    closed)."""
    count = len(pipes) + first

    def remote() -> List[Run]:
        runs: List[Run] = []
        for own in kept:
            runs.extend(own.raw_sources())
        for i, r in enumerate(pipes, first):
            run = lines_run(functools.partial(receive, r), i, count)
            if run is not None:
                runs.append(run)
        return runs

    def close() -> None:
        for r in pipes:
            r.close()
        for own in kept:
            own.close()
        if close in OPEN:
            OPEN.remove(close)

    store.remote = remote
    store.closers.append(close)
    OPEN.append(close)


def _work(paths: List[str], settings: Settings, index: int, count: int, pipe: "Writer",
          parent: int, work: Work = None, lines: bool = False,
          inherited: Sequence[int] = ()) -> None:
    """A worker process: one shard, its messages to `pipe` (`worker`)."""
    worker(pipe, parent, inherited,
           lambda alive: run_shard(paths, settings, index, count, pipe.send_bytes, alive, work,
                                   lines))


def worker(pipe: "Writer", parent: int, inherited: Sequence[int],
           body: Callable[[Callable[[int], None]], None], also: Sequence[Reader] = ()) -> None:
    """The frame of a worker process around `body(alive)` (`alive`: the progress mark that
    ends the process when its parent is gone). The parent's pipe ends it inherited
    (`inherited`) are closed first. SIGINT and SIGTERM arrive held back (`launch`) and are let
    through once its handlers are in place (SIGINT ignored: a terminal's Ctrl-C reaches it
    through the parent, as SIGTERM); once `body` is over they are held back again, and one
    still on its way is ignored: the worker has said everything and ends normally (the
    handlers `interruptible` puts back may be the defaults). A defect in `body` is sent to the
    parent on `pipe` (`X`, its traceback; exit 70); a closed `pipe` ends it (exit 1). `pipe` and
    `also` are closed at the end."""
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass
    with interruptible():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)    # held back by `launch`

        def alive(_: int) -> None:
            if os.getppid() != parent:      # the parent is gone: nobody reads the results
                os._exit(1)

        try:
            body(alive)
        except BrokenPipeError:
            os._exit(1)
        except BaseException:               # a defect: the parent reports it (exit 70)
            import traceback                # (here only: 6 M instructions before the fork)
            pipe.send_bytes(b"X" + traceback.format_exc().encode("utf-8", "replace"))
            os._exit(70)
        finally:
            pipe.close()
            for end in also:
                end.close()
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
