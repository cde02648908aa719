"""One shard of a parallel run: the body of a worker, on any executor.

`run_shard` analyses shard `index` of `count` (`analyze(..., shard=...)`: every frame is read,
the other shards' are skipped at header speed) and hands the parent a stream of messages
through `emit`, each one `bytes` object of bounded size, its first byte saying what it is:

* `R`: finished connections, up to `BATCH` at a time, in the order they finished, as their
  plain values (`ConnResult.flat()`, written with `marshal`: a fraction of the cost of pickling
  the objects); their ids (and `reused_from`) are first-frame numbers (tcp/flows.py, Shards);
* `S`: `(through, numbers)` with marshal: the numbers this shard took (an `array('q')` of
  frame numbers, ascending, as bytes) since the last such message; every number it will ever
  take for a frame up to `through` has now been sent;
* `P` instead of `R` when the parent's sink lets the shards encode and choose its results
  (`Sender`; a sink that keeps only its `best` most severe, the terminal report's, gets
  only each shard's `best`, at the end);
* `E`: `(CaptureSummary, [Finding], counts, notes)`, pickled: the shard's capture summary,
  its capture-wide findings other than floods and scans (which the parent finds from all
  results), with `P` its counts (`tally_state`, with `marshal`), and what the flow table's
  warnings need (`pipeline.Shard.notes`); last, but for `L` and `F`;
* with `lines` (the parent's sink keeps text lines it can renumber: `ResultStore.shard_lines`),
  the shard keeps the lines of `P` itself (but those naming an earlier connection), in a
  store of its own (spilled as one process spills), and sends them after `E`, in key order:
  `L` messages, the count of lines (`LINES_HEAD`), the keys and where each line ends in the
  text as `array('q')` bytes, then the text, the lines in UTF-8 one after another; then `F`.
  The parent reads them as it writes the report (merge.py, `lines_run`): the shard waits on
  its pipe until then;
* `X`: a defect's traceback, as UTF-8 text, instead of `E`.

The parent (merge.py) needs nothing else: no shared memory, no order between shards.
"""

from __future__ import annotations

import marshal
import pickle
import struct
from array import array
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from analyzer.judge.result import ConnResult
from analyzer.pipeline import Shard, Tally, analyze
from analyzer.report.runs import spans
from analyzer.report.store import ResultStore, offer
from analyzer.settings import Settings

#: Results per message.
BATCH = 512
#: Bytes of lines per `L` message (a line more if one passes it): with its keys and ends,
#: most messages are read from the pipe in one piece (parallel/local.py, `Receiver`).
LINES_BYTES = 1 << 15
#: An `L` message's count of lines, after its letter.
LINES_HEAD = struct.Struct("<Q")

Emit = Callable[[bytes], None]
#: What the shards may do for the parent's sink (`ResultStore.shard_work`): its encoding and
#: its choice of results; None: the parent gets every result.
Work = Optional[Tuple[Optional[Callable[[ConnResult], Any]], Optional[Callable[[ConnResult], bool]],
                      Optional[Tuple[int, Callable[[Any], int]]]]]


class Sender:
    """A result sink that sends results to the parent in batches, and keeps none.

    Without `work`, every result goes as its plain values (message `R`). With it (message
    `P`), a result the sink would not keep is only counted, and a kept one goes encoded, as
    `(number, encoding)` (or `(number, values)` when the sink keeps results themselves), but
    for a result that names an earlier connection (`reused_from`), which goes as
    `(-1, values)` for the parent to renumber and encode. When the sink keeps only its
    `best` results of lowest rank (work's third part), the shard keeps its own `best` (in
    memory, `store.offer`) and sends them at the end (`finish`): the others are only counted.
    """

    def __init__(self, emit: Emit, work: Work = None,
                 lines: Optional[ResultStore] = None) -> None:
        self.emit = emit
        #: With `lines`: the kept lines that name no earlier connection go there, not to
        #: the parent (until `send_lines`).
        self.lines = lines
        self.batch: List[Any] = []
        self.count = 0
        self.dropped = 0
        self.work = work is not None
        self.encode, self.keep, select = work if work is not None else (None, None, None)
        self.best = 0
        self.rank: Optional[Callable[[Any], int]] = None
        if select is not None:
            self.best, self.rank = select
        self.offered = 0
        self.heap: List[Tuple[int, int, Any]] = []

    def add(self, r: ConnResult) -> None:
        self.count += 1
        if not self.work:
            self.batch.append(r.flat())
        elif self.keep is not None and not self.keep(r):
            self.dropped += 1
            return
        elif self.rank is not None:
            self.offered += 1
            offer(self.heap, self.best, self.rank(r), r.id, r)
            return
        else:
            self._take(r)
        if len(self.batch) >= BATCH:
            self.flush()

    def _take(self, r: ConnResult) -> None:
        if r.reused_from is not None:
            self.batch.append((-1, r.flat()))
        elif self.lines is not None:
            self.lines.add(r)
        else:
            self.batch.append((r.id, r.flat() if self.encode is None else self.encode(r)))

    def finish(self) -> None:
        """The shard's `best` results into the batch (the others counted as not kept)."""
        for _, _, r in self.heap:
            self._take(r)
        self.dropped += self.offered - len(self.heap)
        self.offered = 0
        self.heap = []

    def flush(self) -> None:
        if self.batch:
            self.emit((b"P" if self.work else b"R") + marshal.dumps(self.batch))
            self.batch = []

    def __iter__(self) -> Iterator[ConnResult]:
        return iter(())

    def __len__(self) -> int:
        return self.count


def travelling(work: Work) -> Work:
    """`work` if it can be sent to another process or machine (pickled: functions defined at
    a module's top level), else None: every result then travels as its plain values."""
    try:
        pickle.dumps(work)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return work


def travelling_work(sink: Any) -> Work:
    """What a task sent to another process or machine does for `sink` (its `shard_work`,
    where it can travel: `travelling`); None for a sink that is not a `ResultStore`."""
    return travelling(sink.shard_work()) if isinstance(sink, ResultStore) else None


def run_shard(paths: Sequence[str], settings: Settings, index: int, count: int,
              emit: Emit, on_frame: Callable[[int], None] = lambda n: None,
              work: Work = None,
              lines: Union[bool, Callable[[ResultStore], None]] = False) -> None:
    """Analyse shard `index` of `count` of the capture `paths`, sending messages to `emit`
    (module docstring). `on_frame(n)` is called with each progress mark, after its message.
    With `work` (`ResultStore.shard_work` of the parent's sink), the shard encodes and
    chooses the results, and counts them itself (the end message carries the counts); with
    `lines` too, it keeps the lines and sends them last, sorted (`L`, `F`), or, when `lines`
    is a function (the shard the parent analyses itself, parallel/local.py), hands it its
    store of them after the end message (no `L`, no `F`)."""
    starts = array("q")
    store = ResultStore(settings.result_budget, encode=work[0]) \
        if lines and work is not None and work[0] is not None else None
    sender = Sender(emit, work, store)
    tally = Tally(settings, sender)
    tally.partial = True

    def mark(through: int) -> None:
        sender.flush()
        emit(b"S" + marshal.dumps((through, starts.tobytes())))
        del starts[:]
        on_frame(through)

    notes: list = []
    report = analyze(list(paths), settings, on_frame=mark,
                     shard=Shard(index, count, starts, notes), tally=tally)
    sender.finish()
    mark(report.capture.packets)
    found = report.findings             # (a partial tally's: no floods or scans)
    kept = 0 if store is None else len(store)   # counted in the parent as not kept there
    counts = tally_state(tally, sender.dropped + kept) if work is not None else None
    # (the counts, plain values only, with marshal: a fraction of pickle's time both ways)
    emit(b"E" + pickle.dumps((report.capture, found,
                              None if counts is None else marshal.dumps(counts), notes),
                             pickle.HIGHEST_PROTOCOL))
    if store is not None:
        if callable(lines):                 # (in the parent: its store, read in place)
            lines(store)
        else:
            send_lines(store, emit)
            store.close()


def send_lines(store: ResultStore, emit: Emit) -> None:
    """The lines `store` kept, in key order, as `L` messages of about `LINES_BYTES`, then `F`."""
    keys: List[int] = []
    ends: List[int] = []
    pieces: List[bytes] = []
    size = 0
    for block, j, k in spans(store.raw_sources()):
        data, at, sep = block.data, block.ends, block.sep
        start = 0 if j == 0 else at[j - 1] + sep
        keys.extend(block.keys[j:k])
        if sep == 0:                        # the stretch as it is
            base = size - start
            for i in range(j, k):
                ends.append(base + at[i])
            size = base + at[k - 1]
            pieces.append(data[start:at[k - 1]])
        else:
            for i in range(j, k):           # (the separators dropped: `ends` says it all)
                end = at[i]
                size += end - start
                ends.append(size)
                pieces.append(data[start:end])
                start = end + sep
        if size >= LINES_BYTES:
            emit(lines_message(keys, ends, pieces))
            keys, ends, pieces, size = [], [], [], 0
    if keys:
        emit(lines_message(keys, ends, pieces))
    emit(b"F")


def lines_message(keys: List[int], ends: List[int], pieces: List[bytes]) -> bytes:
    """An `L` message: `L`, the count of lines (`LINES_HEAD`), the keys and the ends
    (`array('q')` each, made by `struct`: an array converts each int through argument
    parsing, five times the cost), the text; one join (the parent reads it without a copy)."""
    ints = "=%dq" % len(keys)
    return b"".join([b"L", LINES_HEAD.pack(len(keys)), struct.pack(ints, *keys),
                     struct.pack(ints, *ends)] + pieces)


def tally_state(tally: Tally, dropped: int) -> tuple:
    """A shard's counts as plain values: its summary, floods, scans, and the results its sink
    did not keep (`merge.tally_parts` takes them back). A scan source with one port, one host
    and one kind of probe (nearly every source of a flood: thousands) goes as its plain values
    in three flat lists (its address; its port, host, first time, first frame and probes; its
    kind), the others with their sets as sorted lists."""
    s = tally.summary
    summary = (s.connections, s.handshakes, s.closes, s.resets, s.lingering, s.severities,
               s.codes, list(s.analysis), s.syn_retransmissions, s.attention)
    floods = {server: (a.tobytes(), b.tobytes(), c.tobytes())
              for server, (a, b, c) in tally.floods.attempts.items()}
    scans: Dict[bytes, tuple] = {}
    addresses: List[bytes] = []
    values: List[int] = []
    kinds: List[Optional[str]] = []
    for src, x in tally.scans.sources.items():
        if x.ports is None and x.hosts is None and x.kinds is None:
            addresses.append(src)
            values.extend((x.port, x.host, x.first_ts, x.first_frame, x.probes))
            kinds.append(x.kind)
        else:
            scans[src] = (sorted(x.port_set()), sorted(x.host_set()), x.kind_counts(),
                          x.first_ts, x.first_frame, x.probes)
    return summary, floods, (addresses, values, kinds, scans), dropped
