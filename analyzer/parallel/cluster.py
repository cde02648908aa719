"""`--dask ADDRESS|local`: the shards of a parallel run (shard.py), or whole capture groups
(groups.py), as tasks of a Dask cluster (the optional `dask` extra: `dask.distributed`).

The rule: the same tasks as `--jobs`, the same messages, the same `Merger`; only the transport
differs. Dask is imported here alone, and this module only when `--dask` is given.

Transport: every task puts its messages, tagged with its task number and a token of its own,
into one `distributed.Queue` of `QUEUE` slots held by the scheduler; a task waits while the
queue is full, so memory is bounded on every side (the scheduler holds at most `QUEUE`
messages of a few hundred KB; the client merges them as they come). The client takes them in
batches and hands each to `take(task, chunk)`. A task that dies is never run twice into the
same merge: a second token for a task (the scheduler rescheduled it after its worker was
lost) fails the run, as does a task that ends with an error.

Interruption (capture/interrupt.py): on SIGINT or SIGTERM the client sets a `distributed.Event`
that every task watches; a task that sees it stops reading as a signalled run does and sends
what it has, and the report covers what was read. A local cluster's processes are started
with SIGINT ignored, so a Ctrl-C in a terminal (which reaches the whole process group)
reaches them through the client only; the cluster is closed when the run ends.

The scheduler and the workers must import the same `analyzer` (install tcpflow-check where
they run: the scheduler unpickles the tasks too) and workers read the captures at the paths
given (shared storage: docs/scale.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from analyzer.capture.interrupt import STATE, received
from analyzer.parallel.local import jobs_for
from analyzer.parallel.merge import Merger, ShardFailed
from analyzer.parallel.shard import Work, run_shard, travelling_work
from analyzer.pipeline import analyze
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

#: Messages the queue holds at most (each up to a few hundred KB).
QUEUE = 32
#: Seconds between looks at an empty queue (client), and at the stop event (tasks).
POLL = 0.02
WATCH = 0.2

#: (capture files, shard index, shard count, what the task does for the client's sink): one
#: task (shard.py's `Work`: the task encodes, chooses and counts the results it keeps, as a
#: `--jobs` shard does; None: every result travels as its plain values).
Task = Tuple[Sequence[str], int, int, Work]


class ClusterError(Exception):
    """Dask is missing, the scheduler cannot be reached, or a task failed in Dask rather than
    in the analysis (one line; the CLI exits 3)."""


def workers_of(client: Any) -> int:
    """Threads the cluster has for tasks (at least 1)."""
    info = client.scheduler_info()
    return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))


@contextlib.contextmanager
def connect(address: str, workers: Optional[int] = None,
            processes: bool = True) -> Iterator[Any]:
    """A `distributed.Client` for `address` ('local': a LocalCluster of `workers` processes,
    one thread each, default one per core), closed (with its cluster) on leaving."""
    try:
        import distributed
    except ImportError:
        raise ClusterError("--dask needs the 'dask' extra: pip install 'tcpflow-check[dask]'")
    cluster = None
    try:
        if address == "local":
            with _no_sigint():
                cluster = distributed.LocalCluster(
                    n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                    processes=processes, dashboard_address=None, silence_logs=logging.ERROR)
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(address)    # waits distributed.comm.timeouts.connect
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError("cannot reach the Dask scheduler at %s: %s"
                           % (address, " ".join(str(exc).split()) or type(exc).__name__))
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """SIGINT ignored while the local cluster's processes start (they inherit it)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:                      # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_tasks(client: Any, tasks: Sequence[Task], settings: Settings,
              take: Callable[[int, bytes], None],
              on_batch: Callable[[], None] = lambda: None) -> None:
    """Run every task on the cluster and hand each message to `take(task number, chunk)`,
    each task's in the order it sent them; `on_batch()` after each batch (progress). Returns
    when every task has ended and every message was taken; raises ShardFailed (the analysis
    failed) or ClusterError (Dask did)."""
    import distributed
    run = "tcpflow-check-" + uuid.uuid4().hex
    queue = distributed.Queue(run, client=client, maxsize=QUEUE)
    stop = distributed.Event(run + "-stop", client=client)
    futures = [client.submit(_task, run, n, list(paths), settings, index, count, work,
                             pure=False, key="%s-%d" % (run, n))
               for n, (paths, index, count, work) in enumerate(tasks)]
    tokens: Dict[int, str] = {}
    stopping = False
    try:
        while True:
            if received() and not stopping:
                stopping = True
                stop.set()
            finished = all(f.status == "finished" for f in futures)
            batch = queue.get(batch=True)   # what is there (a wait that times out is logged
            if not batch and not finished:  # as an error by the scheduler: polled instead)
                time.sleep(POLL)
            for n, token, chunk in batch:
                if tokens.setdefault(n, token) != token:
                    raise ShardFailed("task %d was started again after its worker was lost; "
                                      "its first run's messages are already merged" % n)
                take(n, chunk)
            if batch:
                on_batch()
            for f in futures:               # not the analysis (it sends its errors): Dask
                if f.status in ("error", "cancelled"):
                    raise ClusterError("a task failed on the cluster (%s); is the same "
                                       "tcpflow-check installed on the scheduler and on every "
                                       "worker?" % _one_line(f))
            if finished and not batch:
                return
    finally:
        client.cancel(futures)
        with contextlib.suppress(Exception):
            queue.close()


def _one_line(future: Any) -> str:
    try:
        exc = future.exception(timeout=5)
    except Exception as e:                  # cancelled, or the scheduler is gone
        exc = e
    return " ".join(("%s: %s" % (type(exc).__name__, exc)).split())


def _task(run: str, n: int, paths: List[str], settings: Settings, index: int,
          count: int, work: Work = None) -> None:
    """On a worker: shard `index` of `count` of `paths` (doing `work` for the client's sink),
    its messages into the run's queue."""
    import distributed
    queue = distributed.Queue(run)
    stop = distributed.Event(run + "-stop")
    token = uuid.uuid4().hex
    done = threading.Event()
    lock = threading.Lock()
    stopped = [False]

    def watch() -> None:                    # the client's stop: end the reading as a signal
        while not done.wait(WATCH):
            try:
                if not stop.is_set():
                    continue
            except Exception:               # the scheduler is gone: so is the client
                return
            with lock:
                if not done.is_set():
                    stopped[0] = True
                    STATE.signum = signal.SIGINT
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def emit(chunk: bytes) -> None:
        queue.put((n, token, chunk))

    try:
        run_shard(paths, settings, index, count, emit, work=work)
    except BaseException:                   # a defect: the client reports it (exit 70)
        emit(pickle.dumps(("error", traceback.format_exc())))
    finally:
        with lock:
            done.set()
            if stopped[0] and STATE.wakeup is None:
                STATE.signum = 0            # a worker process runs the next task afresh
        watcher.join()


def analyze_dask(paths: Sequence[str], settings: Settings, address: str, *, jobs: int = 0,
                 sink: Optional[ResultSink] = None,
                 on_frame: Optional[Callable[[int], None]] = None,
                 processes: bool = True) -> Report:
    """`analyze(paths, settings, sink=sink, on_frame=on_frame)` as shards on the Dask cluster
    at `address`, with the same report: `jobs` shards (0: one per thread of the cluster); in
    this process where the run cannot be split (local.py, `jobs_for`)."""
    if jobs_for(paths, settings, 2) == 1:
        return analyze(list(paths), settings, sink=sink, on_frame=on_frame)
    with connect(address, jobs or None, processes) as client:
        count = jobs or workers_of(client)
        if sink is None:
            sink = ResultStore(settings.result_budget)
        work = travelling_work(sink)
        merger = Merger(count, settings, sink, work is not None)
        shown = [0]

        def progress() -> None:
            if on_frame is not None and merger.frames() >= shown[0] + 0x10000:
                shown[0] = merger.frames()
                on_frame(shown[0])

        run_tasks(client, [(paths, i, count, work) for i in range(count)], settings,
                  merger.take, progress)
        return merger.report()

