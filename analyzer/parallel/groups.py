"""`--group-by-file REGEX`: an archive of capture files from many sensors, as independent
capture groups.

The rule: connections never cross sensors, so the files are split into groups by a regular
expression over their paths (the first group of its match names the capture group, or the
whole match when it has none) and each group is analysed as its own capture: its report is
the report `analyze(group's files)` gives (stream and frame numbers as Wireshark gives them
with that group's files opened merged), whoever runs it. Groups are listed in the order
their first file was given, each group's files in the order given.

Groups run one after another in this process, as processes of this machine (`--jobs N`: N
groups at once) or as tasks of a Dask cluster (`--dask`, cluster.py). Each group is one task
(shard 0 of 1: shard.py's messages, merge.py's `Merger`), so every executor streams its
results as `--jobs` does. Reports come back in group order; a group that ends before those
before it waits in its sink (bounded: a `ResultStore` spills to disk), and at most `WINDOW`
groups per worker are in flight, so memory does not grow with the archive.

On this machine (`Pool`, where `fork` exists) N processes are forked once and each takes
group after group through a pipe, the next one sent ahead so that it starts while this
process writes reports (a group of hundreds of files only once its process is idle), and each
group's report is written as soon as it and those before it have ended. A group's process encodes, chooses and counts the group's results itself where
the group's sink lets shards do so (the JSON lines, the terminal report's choice: `Work`), so
this process stores what it is sent and writes the reports (on a cluster too, where that
work can be pickled: `shard.travelling`). On a cluster (and where processes are spawned) the
groups run in batches of `WINDOW` per worker, each batch to its end.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import signal
from collections import deque
from typing import (Callable, Deque, Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple)

from analyzer.capture.interrupt import received
from analyzer.parallel.local import _work, worker
from analyzer.parallel.merge import Merger, ShardFailed
from analyzer.parallel.shard import Work, run_shard, travelling_work
from analyzer.parallel.workers import (FORK, Process, Ready, Reader, Receiver, Writer, launch,
                                       pipe, widen)
from analyzer.pipeline import analyze
from analyzer.report.model import Report
from analyzer.report.store import ResultSink
from analyzer.settings import Settings

#: Groups in flight per worker (the next batch starts when a batch has ended).
WINDOW = 2


class Group(NamedTuple):
    """One capture group: its name and its files, in the order given."""
    name: str
    files: Tuple[str, ...]


class GroupError(ValueError):
    """The files cannot be grouped (a bad expression, a file it does not match, stdin)."""


def group_files(paths: Sequence[str], pattern: str) -> List[Group]:
    """`paths` grouped by `pattern` (module docstring). Raises GroupError."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise GroupError("--group-by-file: %r is not a regular expression (%s)" % (pattern, exc))
    names: List[str] = []
    files: dict = {}
    for path in paths:
        if path == "-":
            raise GroupError("--group-by-file groups files by name: stdin ('-') has none")
        m = rx.search(path)
        if m is None:
            raise GroupError("--group-by-file: %r does not match %s" % (pattern, path))
        name = next((g for g in m.groups() if g is not None), m.group(0))
        if name not in files:
            names.append(name)
            files[name] = []
        files[name].append(path)
    return [Group(name, tuple(files[name])) for name in names]


#: A task: a group's files, shard 0 of 1, and what its process does for the group's sink
#: (`shard.Work`; None on a cluster: every result travels).
Task = Tuple[Sequence[str], int, int, Work]
Executor = Callable[[Sequence[Task], Settings, Callable[[int, bytes], None],
                     Callable[[], None]], None]


def analyze_groups(groups: Sequence[Group], settings: Settings, *, jobs: int = 1,
                   dask: Optional[str] = None,
                   make_sink: Callable[[], Optional[ResultSink]] = lambda: None,
                   on_frame: Optional[Callable[[int], None]] = None,
                   processes: bool = True) -> Iterator[Tuple[Group, Report]]:
    """Each group's report, in group order (module docstring), `jobs` groups at once (with
    `dask`, 0: one per thread of the cluster); `make_sink()` gives each group
    its sink; `on_frame(n)` counts the frames of all groups. After a signal the groups not
    started are left out (the one running reports what it read, marked interrupted)."""
    done = [0]

    def frames(n: int) -> None:
        if on_frame is not None:
            on_frame(done[0] + n)

    if dask is None and jobs <= 1:
        for group in groups:
            if received():
                return
            report = analyze(list(group.files), settings, sink=make_sink(),
                             on_frame=None if on_frame is None else frames)
            done[0] += report.capture.packets
            yield group, report
        return
    if dask is not None:
        from analyzer.parallel.cluster import connect, run_tasks, workers_of
        with connect(dask, jobs or None, processes) as client:
            width = jobs or workers_of(client)
            yield from _batches(groups, settings, width, make_sink, frames, done,
                                lambda *a: run_tasks(client, *a))
        return
    if not FORK:
        yield from _batches(groups, settings, jobs, make_sink, frames, done,
                            lambda *a: run_local(jobs, *a))
        return
    with Pool(jobs, settings) as pool:
        yield from _pipeline(groups, settings, pool, make_sink, frames, done)


def _batches(groups: Sequence[Group], settings: Settings, width: int,
             make_sink: Callable[[], Optional[ResultSink]], frames: Callable[[int], None],
             done: List[int], execute: Executor) -> Iterator[Tuple[Group, Report]]:
    size = max(1, width * WINDOW)
    for start in range(0, len(groups), size):
        if received():
            return
        batch = groups[start:start + size]
        sinks = [make_sink() for _ in batch]
        # A group's process encodes, chooses and counts its results itself where its sink
        # lets shards do so (`ResultStore.shard_work`: the JSON lines, the terminal report's
        # choice), as a `--jobs` shard does: this process then only stores what it sends.
        works = [travelling_work(sink) for sink in sinks]
        mergers = [Merger(1, settings, sink, work is not None)
                   for sink, work in zip(sinks, works)]

        def take(n: int, chunk: bytes) -> None:
            mergers[n].take(0, chunk)

        def progress() -> None:
            frames(sum(m.frames() for m in mergers))

        execute([(g.files, 0, 1, work) for g, work in zip(batch, works)], settings, take,
                progress)
        for group, merger in zip(batch, mergers):
            if received() and not merger.ended(0):
                continue                    # not started before the signal
            yield group, merger.report()
        done[0] += sum(m.frames() for m in mergers)


def run_local(jobs: int, tasks: Sequence[Task], settings: Settings,
              take: Callable[[int, bytes], None], on_batch: Callable[[], None]) -> None:
    """Run `tasks` as processes of this machine, `jobs` at once (local.py's workers), handing
    each message to `take(task number, chunk)`; raises ShardFailed."""
    todo = list(enumerate(tasks))
    #: a running task's pipe's descriptor -> (its pipe, its number, its process)
    running: Dict[int, Tuple[Reader, int, Process]] = {}
    ready = Ready()
    receive = Receiver()
    stopped = False
    try:
        while todo or running:
            while todo and len(running) < jobs and not stopped:
                n, (paths, index, count, work) = todo.pop(0)
                r, w = pipe()
                # (a forked worker closes the parent's read ends it inherits, as a shard's)
                inherited = [x.fileno() for x, _, _ in running.values()] + [r.fileno()] \
                    if FORK else []
                p = launch(_work, (list(paths), settings, index, count, w, os.getpid(), work,
                                   False, inherited), "tcpflow-check group %d" % n)
                w.close()
                running[r.fileno()] = (r, n, p)
                ready.add(r)
            if stopped and not running:
                break
            for r in ready(0.25):
                _, n, p = running[r.fileno()]
                try:
                    take(n, receive(r))
                except EOFError:
                    del running[r.fileno()]
                    ready.drop(r)
                    r.close()
                    p.join()
                    if p.exitcode != 0:
                        raise ShardFailed("the process of group task %d ended with exit code %s"
                                          % (n, p.exitcode))
            on_batch()
            if received() and not stopped:
                stopped = True              # the running ones stop reading; no new ones
                todo.clear()
                for _, _, p in running.values():
                    if p.pid is not None and p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
    finally:
        for r, _, p in running.values():
            if p.is_alive():
                p.kill()
                p.join()
            r.close()


class _Member:
    """One of a `Pool`'s processes: its pipes (tasks in, messages out), itself, and the
    tasks sent to it and not ended, in the order sent (its messages are the first one's)."""

    def __init__(self, tasks: Writer, messages: Reader, process: Process) -> None:
        self.tasks = tasks
        self.messages = messages
        self.process = process
        self.queue: Deque[int] = deque()


class Pool:
    """Up to `jobs` forked processes that analyse group after group: a process is forked
    once and takes each group's files (and what it does for the group's sink, `Work`)
    through its own pipe, up to `DEPTH` groups ahead, so that it starts the next group as
    soon as it has sent the end of the last one, while this process writes reports. A fork,
    an exit and the copy-on-write faults of a fresh process for each group cost more than a
    small group's analysis. Leaving it (`with`) ends them: their task pipes closed, they
    exit and are reaped (killed first when the run failed)."""

    def __init__(self, jobs: int, settings: Settings) -> None:
        self.jobs = jobs
        self.settings = settings
        self.members: List[_Member] = []
        self.todo: Deque[Tuple[int, bytes]] = deque()
        self.takers: Dict[int, Callable[[bytes], None]] = {}
        self.ended: Dict[int, bool] = {}
        self.by_pipe: Dict[int, _Member] = {}
        self.ready = Ready()
        self.receive = Receiver()
        self.stopped = False

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(kill=exc_type is not None)

    def close(self, kill: bool = False) -> None:
        members, self.members = self.members, []
        for m in members:
            m.tasks.close()                 # its next read is the end: it exits
        for m in members:
            if kill and m.process.is_alive():
                m.process.kill()
            else:                           # (what a stopped group still sends: dropped)
                try:
                    while True:
                        self.receive(m.messages)
                except (EOFError, OSError):
                    pass
            m.process.join()
            m.messages.close()

    def submit(self, n: int, task: bytes, take: Callable[[bytes], None]) -> None:
        """Task `n` (`task`: its files and work, pickled) queued; each of its messages to
        `take`."""
        self.todo.append((n, task))
        self.takers[n] = take
        self.ended[n] = False

    def done(self, n: int) -> bool:
        """Whether task `n` has sent its last message (it is then forgotten)."""
        if self.ended.get(n):
            del self.ended[n], self.takers[n]
            return True
        return False

    def pump(self, timeout: float) -> None:
        """Tasks to the members that have room, then the messages that came (waiting up to
        `timeout`), each to its task's taker; raises ShardFailed if a member ends with
        tasks left but for a stop (`stop`)."""
        while self.todo and not self.stopped:
            m = min(self.members, key=lambda m: len(m.queue), default=None)
            if m is None or (m.queue and len(self.members) < self.jobs):
                m = self._start()
            elif len(m.queue) >= DEPTH or (m.queue and len(self.todo[0][1]) > AHEAD_BYTES):
                break
            n, task = self.todo.popleft()
            try:
                m.tasks.send_bytes(task)
            except BrokenPipeError:         # (not this process's output: a failed run)
                m.process.join()
                raise ShardFailed("the process for group task %d ended with exit code %s"
                                  % (n, m.process.exitcode))
            m.queue.append(n)
        for r in self.ready(timeout):
            m = self.by_pipe[r.fileno()]
            try:
                chunk = self.receive(r)
            except EOFError:                # it has exited: its tasks left never start
                self.ready.drop(r)
                self.members.remove(m)
                del self.by_pipe[r.fileno()]
                m.tasks.close()
                m.messages.close()
                m.process.join()
                if m.queue and not self.stopped:
                    raise ShardFailed("the process of group task %d ended with exit code %s"
                                      % (m.queue[0], m.process.exitcode))
                continue
            n = m.queue[0]
            self.takers[n](chunk)
            if chunk[:1] == b"E":           # its last message: the member takes the next
                m.queue.popleft()
                self.ended[n] = True

    def holds(self, n: int) -> bool:
        """Whether task `n` is queued or sent and may still end."""
        return any(n == t for t, _ in self.todo) or any(n in m.queue for m in self.members)

    def stop(self) -> None:
        """After a signal: no task starts any more (a member stops after the group it is
        analysing, stopped by SIGTERM as a `--jobs` shard is)."""
        self.stopped = True
        self.todo.clear()
        for m in self.members:
            pid = m.process.pid
            if m.queue and pid is not None and m.process.is_alive():
                os.kill(pid, signal.SIGTERM)

    def _start(self) -> _Member:
        tasks_r, tasks_w = pipe()
        r, w = pipe()
        widen(w)
        # The new process closes the parent's ends it inherits: the other members' and its own.
        inherited = [fd for m in self.members for fd in (m.tasks.fileno(), m.messages.fileno())]
        inherited += [tasks_w.fileno(), r.fileno()]
        p = launch(_member, (self.settings, tasks_r, w, os.getpid(), inherited),
                   "tcpflow-check group worker %d" % len(self.members))
        tasks_r.close()
        w.close()
        member = _Member(tasks_w, r, p)
        self.members.append(member)
        self.by_pipe[r.fileno()] = member
        self.ready.add(r)
        return member


#: Groups sent ahead to one of a `Pool`'s processes (the one it analyses included).
DEPTH = 2
#: A group is sent ahead only if its task fits in a pipe at once (a group of thousands of
#: files waits until its process is idle): a write to the pipe of a process busy with its
#: group would wait for it, while it waits for this process to read its messages.
AHEAD_BYTES = 8192


def _pipeline(groups: Sequence[Group], settings: Settings, pool: Pool,
              make_sink: Callable[[], Optional[ResultSink]], frames: Callable[[int], None],
              done: List[int]) -> Iterator[Tuple[Group, Report]]:
    """`_batches` on a `Pool`: each group's report as soon as it and those before it have
    ended, with at most `WINDOW` groups a process sent and not yet reported; the processes
    go on with the groups sent to them while a report is written."""
    limit = max(1, pool.jobs * WINDOW)
    flight: Deque[Tuple[int, Group, Merger]] = deque()
    following = 0
    while True:
        if received() and not pool.stopped:
            pool.stop()
        while following < len(groups) and len(flight) < limit and not pool.stopped:
            group = groups[following]
            sink = make_sink()
            work = travelling_work(sink)
            task = pickle.dumps((list(group.files), work), pickle.HIGHEST_PROTOCOL)
            merger = Merger(1, settings, sink, work is not None)
            pool.submit(following, task, functools.partial(merger.take, 0))
            flight.append((following, group, merger))
            following += 1
        if not flight:
            return
        n, group, merger = flight[0]
        if pool.done(n):
            flight.popleft()
            done[0] += merger.frames()
            yield group, merger.report()
            continue
        if pool.stopped and not pool.holds(n):
            return                          # not started before the signal, nor those after
        pool.pump(0.25)
        frames(sum(m.frames() for _, _, m in flight))


def _member(settings: Settings, tasks: Reader, pipe: Writer, parent: int,
            inherited: Sequence[int]) -> None:
    """A `Pool`'s process (local.py's `worker`): each group whose files and work come through
    `tasks` analysed as shard 0 of 1, for one group after another, its messages to `pipe`,
    until `tasks` ends or a signal has stopped a group."""
    receive = Receiver()

    def groups(alive: Callable[[int], None]) -> None:
        while not received():
            try:
                paths, work = pickle.loads(receive(tasks))
            except EOFError:
                break
            run_shard(paths, settings, 0, 1, pipe.send_bytes, alive, work, False)

    worker(pipe, parent, inherited, groups, (tasks,))
