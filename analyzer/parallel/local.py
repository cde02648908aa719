"""`--jobs N`: the shards of a parallel run as processes of this machine.

Each worker is a forked process running `shard.run_shard` and writing its messages to a pipe;
the parent waits on all the pipes at once and hands every message to the `Merger`, so the
merge goes on while the shards analyse, and memory stays what the shards hold plus what the
sink keeps. Where `fork` does not exist the workers are spawned (a fresh interpreter each).

The processes themselves (forking or spawning a worker, its pipe, reading its messages,
reaping it) are workers.py's.

Interruption follows the single-process rule (capture/interrupt.py): the parent records
SIGINT or SIGTERM and passes one SIGTERM to every worker, which stops reading and sends what
it has; the workers ignore SIGINT themselves, so a Ctrl-C in a terminal (which reaches the
whole process group) stops each of them once, through the parent. A worker whose parent is
gone stops at its next progress mark.

A run that cannot be split runs in one process: a capture read from a pipe or a terminal
(every worker reads the whole capture), and a run that traces streams' packets (ladders).
"""

from __future__ import annotations

import functools
import os
import signal
import stat
from typing import Callable, List, Optional, Sequence, cast

from analyzer.capture.interrupt import SIGNALS, interruptible, received
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
    pipes: List[Reader] = []
    workers: List[Process] = []
    handed = False
    try:
        for i in range(jobs):
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
        shard_of = {r.fileno(): i for i, r in enumerate(pipes)}
        ready = Ready(pipes)
        stopped = False
        shown = 0
        receive = Receiver()
        while ready:
            for r in ready(0.25):
                try:
                    chunk = receive(r)
                except EOFError:
                    ready.drop(r)
                    continue
                i = shard_of[r.fileno()]
                merger.take(i, chunk)
                if merger.ended(i):         # its last message: not waited for any further
                    ready.drop(r)
            if received() and not stopped:
                stopped = True
                for p in workers:
                    if p.pid is not None and p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
            if on_frame is not None and merger.frames() > shown:
                shown = merger.frames()         # what every shard has read: one line
                on_frame(shown)
        for i, p in enumerate(workers):
            if not merger.ended(i):
                p.join()
                raise ShardFailed("shard %d of %d ended without its report (exit code %s)"
                                  % (i, jobs, p.exitcode))
        report = merger.report()
        if lines:
            hand_over(cast(ResultStore, sink), pipes, receive)
            handed = True
        return report
    finally:
        # A worker that sent its end message is left to exit by itself (freeing a shard's
        # memory takes a while), and reaped when it has; any other is stopped here.
        for i, p in enumerate(workers):
            if p.is_alive() and not merger.ended(i):
                p.kill()
                p.join()
        if not handed:
            for r in pipes:
                r.close()


def hand_over(store: ResultStore, pipes: List["Reader"], receive: "Receiver") -> None:
    """The shards' lines (`L`, after their end messages), still in their pipes, to `store`,
    which reads them as the report is written (`ResultStore.numbered_bytes`) and then closes
    the pipes; `release` closes any still open (a shard waits to write its lines until they
    are read, or its pipe is closed)."""
    count = len(pipes)

    def remote() -> List[Run]:
        runs = []
        for i, r in enumerate(pipes):
            run = lines_run(functools.partial(receive, r), i, count)
            if run is not None:
                runs.append(run)
        return runs

    def close() -> None:
        for r in pipes:
            r.close()
        if close in OPEN:
            OPEN.remove(close)

    store.remote = remote
    store.closers.append(close)
    OPEN.append(close)



def _work(paths: List[str], settings: Settings, index: int, count: int, pipe: "Writer",
          parent: int, work: Work = None, lines: bool = False,
          inherited: Sequence[int] = ()) -> None:
    """A worker process: one shard, its messages to `pipe`. SIGINT and SIGTERM arrive held
    back (`launch`) and are let through once its handlers are in place; once its analysis is
    over they are held back again, and one still on its way is ignored: the worker has said
    everything and ends normally (the handlers `interruptible` puts back may be the defaults)."""
    for fd in inherited:                    # the parent's read ends (`analyze_jobs`)
        try:
            os.close(fd)
        except OSError:
            pass
    with interruptible():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)    # held back by `launch`

        def emit(chunk: bytes) -> None:
            pipe.send_bytes(chunk)

        def alive(_: int) -> None:
            if os.getppid() != parent:      # the parent is gone: nobody reads the results
                os._exit(1)

        try:
            run_shard(paths, settings, index, count, emit, alive, work, lines)
        except BrokenPipeError:
            os._exit(1)
        except BaseException:               # a defect: the parent reports it (exit 70)
            import traceback                # (here only: 6 M instructions before the fork)
            pipe.send_bytes(b"X" + traceback.format_exc().encode("utf-8", "replace"))
            os._exit(70)
        finally:
            pipe.close()
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)

