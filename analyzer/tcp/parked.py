"""Connections parked out of memory: how the flow table keeps to `--max-connections` without
changing the report.

Rules (README "How connections are found", docs/robustness.md):

* **Park, never finalize.** Past `max_live` connections in memory, the flow table parks some:
  each is written whole (frozen.py; pickled.py for what it cannot write) into an anonymous
  temporary file and leaves the table;
  the next packet on its 4-tuple (a lookup that misses the table) brings it back as it was,
  and it takes that packet as if it had never left. A parked connection keeps its stream number, its
  place in the queue of finished connections and its 2*MSL hold, so verdicts, findings, stream
  numbers and every output are what they would be with no bound. Memory costs what stays in
  memory plus a small index entry per parked connection; the rest costs disk.
* **Victims without sorting.** First the front of the finished queue (connections that
  finished longest ago: only a late packet or a reuse can want them again); they keep their
  place in that queue as a slot (`front`), which the sweep reads before the queue in memory.
  Then, once the table has been over the bound, a CLOCK over the live connections (`ring`):
  a connection whose last frame changed since the hand last passed gets a second chance. A
  batch of a tenth of the bound is parked at a time; every park and every return is one
  record written or read, so a connection that comes and goes costs what its packets cost,
  and nothing at all is done while the table stays under the bound.
* **Finished ones early.** Past `max_held` connections in memory (40 % of `max_live`,
  `HELD_PERCENT`), the front of the finished queue is parked the same way whatever the bound
  (`hold`), until the table is back at `max_held`: a held connection then costs its index
  entry and its slot in `front`, about 160 bytes. So the finished connections give way to the
  live ones: a capture whose connections are mostly open at once (all starting within
  seconds) keeps its live ones in memory and its finished ones parked, and one that never has
  40 % of the bound in memory parks nothing. These are not counted in `parks` (the report's
  `capture.parked`: parking for the bound), and one that cannot be parked stays in memory.
* **Not parked:** a tunnelled connection whose replies carry other tunnel ids than its first
  packet (flows.py `unbound`, `rtunnel`), and the connection being fed.
* **Where a bound still bites.** More than `max_parked` connections parked, or a temporary
  file that cannot be written (no space, no writable directory): the connection that would
  have been parked is finalized early instead and carries the finding MEMORY_BOUND, which
  says so in every format; `bound` counts them (`capture.memory_bound`).
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from typing import Any, BinaryIO, Deque, Dict, Final, Iterator, List, Optional, Tuple

from analyzer.decode.tunnels import loose
from analyzer.tcp.conn import Connection
from analyzer.tcp.finished import DONE, REQUEUE, WAIT, Front, canonical_key, settle, table_key
from analyzer.tcp.frozen import dumps, loads
from analyzer.tcp.states import END_STATES

#: Parked connections at most, by default: about 160 bytes of index each in memory (and a
#: record of about 1 KB on disk, tcp/frozen.py).
DEFAULT_MAX_PARKED: Final = 1_000_000
#: Connections in memory past which finished ones are parked, in percent of `max_live`: the
#: front of the finished queue is parked past it (40,000 with the default bound). Each parking
#: costs about twice a connection's own work (freezing and thawing ~150 attributes,
#: bench/README.md), so the default leaves an ordinary capture alone (the reference capture of
#: bench/ has at most 37,000 connections in memory) and bounds only the large ones; a smaller
#: --max-connections parks sooner.
HELD_PERCENT: Final = 40
#: Records gathered before one write to the file.
WRITE_BATCH: Final = 1 << 20
#: Unused bytes in the file (taken back, or parked again since) before it is rewritten, at
#: least (and at least as many as the records in use).
COMPACT_AT: Final = 64 << 20

# An index entry packs a parked connection's record into one int: file offset and length, its
# stream id, two flags, and its last packet time (offset by 2**63: times may be negative).
_TS: Final = 64
_END: Final = 1 << 64               # both endpoints CLOSED or in TIME_WAIT
_LATE: Final = 1 << 65              # a packet came after it was queued as finished
_LEN: Final = 66
_OFF: Final = 98
_ID: Final = 146                    # on top: records sort by stream id as plain ints
_M32: Final = (1 << 32) - 1
_M48: Final = (1 << 48) - 1
_M64: Final = (1 << 64) - 1


def _pack(offset: int, length: int, conn: Connection) -> int:
    a, b = conn.e0, conn.e1
    flags = 0
    if a.state in END_STATES and b.state in END_STATES:
        flags |= _END
    if conn.queued and conn.last_ts != conn.queued_ts:
        flags |= _LATE
    return ((offset << _OFF) | (length << _LEN) | (conn.id << _ID) | flags
            | ((conn.last_ts + (1 << 63)) & _M64))


def _stream_id(v: int) -> int:
    return v >> _ID


def _last_ts(v: int) -> int:
    return (v & _M64) - (1 << 63)


def index_key(key: bytes, tunnel: bytes) -> bytes:
    """A parked connection's key: its 4-tuple in the smaller direction, and its tunnel
    context."""
    return canonical_key(key) + tunnel


class Parked:
    """The parked connections of one flow table, and how victims are chosen."""

    def __init__(self, max_parked: int = DEFAULT_MAX_PARKED, max_held: int = 1 << 62) -> None:
        self.max_parked = max_parked
        #: Connections in memory past which the finished queue's front is parked
        #: (`HELD_PERCENT`).
        self.max_held = max_held
        #: index key -> packed record (above): what is parked now.
        self.index: Dict[bytes, int] = {}
        #: The front of the finished queue (flows.FlowTable.finished), taken from it in order:
        #: slots of parked (or since returned) connections, and connections that stayed in
        #: memory. The sweep reads it before the queue.
        self.front = Front()
        #: The CLOCK: (table key, stream id, last frame when the hand passed), once the table
        #: has been over the bound.
        self.ring: Optional[Deque[Tuple[bytes, int, int]]] = None
        self.file: Optional[BinaryIO] = None
        self.pending = bytearray()      # records not yet written
        self.written = 0                # bytes in the file
        self.used = 0                   # bytes of records parked now
        self.parks = 0                  # times a connection was parked (for the bound)
        self.held = 0                   # ... (finished, past `max_held`: not in the report)
        self.bound = 0                  # connections finalized early: a bound bit (MEMORY_BOUND)
        #: Why the disk could not be used (then nothing more is parked).
        self.error: Optional[str] = None

    def __len__(self) -> int:
        return len(self.index)

    # -- storage -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> int:
        offset = self.written + len(self.pending)
        self.pending += data
        if len(self.pending) >= WRITE_BATCH:
            self._flush()
        return offset

    def _flush(self) -> None:
        if self.file is None:
            import tempfile                 # (here: most runs make no file)
            self.file = tempfile.TemporaryFile(prefix="tcpflow-check-parked-")
        assert self.file is not None
        self.file.seek(self.written)
        self.file.write(self.pending)
        self.file.flush()
        self.written += len(self.pending)
        self.pending = bytearray()

    def _read(self, v: int) -> Connection:
        offset, length = (v >> _OFF) & _M48, (v >> _LEN) & _M32
        if offset >= self.written:
            data = bytes(self.pending[offset - self.written:offset - self.written + length])
        else:
            assert self.file is not None
            data = os.pread(self.file.fileno(), length, offset)
        self.used -= length
        return loads(data)

    def _compact(self) -> None:
        """The records in use into a new file, in index order (dead ones are dropped)."""
        self._flush()
        old = self.file
        assert old is not None
        self.file, self.written, self.used = None, 0, 0
        fd = old.fileno()
        for key, v in self.index.items():
            length = (v >> _LEN) & _M32
            data = os.pread(fd, length, (v >> _OFF) & _M48)
            offset = self._write(data)
            self.used += length
            self.index[key] = ((v >> _ID) << _ID | (v & ((1 << _LEN) - 1)) | (length << _LEN)
                               | (offset << _OFF))
        old.close()
        self._flush()

    # -- the table's side --------------------------------------------------------------------

    def holds(self, key: bytes) -> bool:
        """Whether a connection is parked under this index key."""
        return key in self.index

    def park(self, table: Any, conn: Connection, held: bool = False) -> Optional[bytes]:
        """Out of memory with `conn` (a connection in the table; `held`: a finished one past
        `max_held`); its index key, or None when it cannot be parked (a bound or the disk):
        the caller keeps it, or finalizes it early."""
        if self.error is not None or len(self.index) >= self.max_parked:
            return None
        try:
            if self.file is None:           # the first one: does the disk take it at all?
                import tempfile                 # (here: most runs make no file)
                self.file = tempfile.TemporaryFile(prefix="tcpflow-check-parked-")
            data = dumps(conn)
            offset = self._write(data)
        except OSError as exc:
            self.error = "%s (%s)" % (exc.strerror or exc, getattr(exc, "filename", "") or
                                      tempfile.gettempdir())
            return None
        self.used += len(data)
        key = index_key(conn.key, conn.tunnel)
        self.index[key] = _pack(offset, len(data), conn)
        if held:
            self.held += 1
        else:
            self.parks += 1
        table._remove(conn)
        return key

    def take(self, table: Any, key: bytes, tunnel: bytes, now: int) -> Optional[Connection]:
        """The connection parked under the 4-tuple and tunnel of a packet of time `now`, back
        in the table; None when there is none."""
        v = self.index.pop(index_key(key, tunnel), None)
        if v is None:
            return None
        conn = self._read(v)
        self._relink(table, conn)
        if table.size > table.max_live:
            self.make_room(table, now, conn)
        return conn

    def _relink(self, table: Any, conn: Connection) -> None:
        live = table.live
        tunnel = conn.tunnel
        if len(tunnel):
            live[conn.key + tunnel] = live[conn.rkey + tunnel] = conn
        else:
            live[conn.key] = live[conn.rkey] = conn
        table.size += 1
        if self.ring is not None:
            self.track(conn)

    def _load(self, key: bytes) -> Connection:
        """A parked connection out of the index, not back in the table (it is finalized)."""
        return self._read(self.index.pop(key))

    def track(self, conn: Connection) -> None:
        """A connection new in the table, for the CLOCK."""
        assert self.ring is not None
        self.ring.append((table_key(conn), conn.id, conn.last_frame))

    def _parkable(self, table: Any, conn: Connection) -> bool:
        if conn.rtunnel != conn.tunnel:
            return False
        ids = loose(conn.tunnel) if len(conn.tunnel) else b""
        return not (ids and table.unbound.get(conn.rkey + ids) is conn)

    def _park_front(self, table: Any, want: int, keep: Optional[Connection], now: int,
                    held: bool) -> int:
        """Parks up to `want` connections from the front of the finished queue, in order
        (not `keep`), as slots of `front`; `held`: past `max_held`, where one that cannot be
        parked stays in memory (else it is finalized early). What is left of `want`."""
        live = table.live
        queue = table.finished
        front = self.front
        while want and queue:
            conn = queue.popleft()
            if conn is not keep and live.get(table_key(conn)) is conn and conn.queued \
                    and self._parkable(table, conn):
                a, b = conn.e0, conn.e1
                if a.state in END_STATES and b.state in END_STATES:
                    want -= 1
                    key = self.park(table, conn, held)
                    if key is not None:
                        front.append(key, conn.id)
                    elif not held:
                        self._end(table, conn, now)
                    else:
                        front.append(conn, -1)
                    continue                    # (or finalized early: out of the queue too)
            front.append(conn, -1)              # as the sweep will find it
        return want

    def hold(self, table: Any, keep: Connection, now: int) -> None:
        """More than `max_held` connections in memory: finished ones are parked, the oldest
        first (only a late packet or a reuse can want them before the sweep finalizes them),
        until the table is back at `max_held` or only `keep` is left in the queue."""
        want = min(table.size - self.max_held, len(table.finished) - 1)
        if self.error is None and want > 0:
            self._park_front(table, want, keep, now, True)
            self._tidy()

    def make_room(self, table: Any, now: int, keep: Optional[Connection]) -> None:
        """Over `max_live`: park a tenth of the bound (not `keep`)."""
        # 1. the front of the finished queue, in order
        want = self._park_front(table, max(1, table.max_live // 10), keep, now, False)
        if not want:
            self._tidy()
            return
        live = table.live
        ring = self.ring
        if ring is None:                    # 2. the CLOCK, from the first time it is needed
            table.tracking = True
            ring = self.ring = deque((table_key(c), c.id, c.last_frame)
                                     for c in table.connections())
        elif len(ring) > 2 * table.size + 64:
            ring = self.ring = deque(e for e in ring
                                     if getattr(live.get(e[0]), "id", -1) == e[1])
        steps = 2 * len(ring) + want
        while want and ring and steps:
            steps -= 1
            key, sid, frame = ring.popleft()
            conn = live.get(key)
            if conn is None or conn.id != sid:
                continue                        # gone, parked, or replaced (it has its own)
            if conn is keep or conn.queued or conn.last_frame != frame \
                    or not self._parkable(table, conn):
                ring.append((key, sid, conn.last_frame))     # a second chance
                continue
            want -= 1
            self._park_or_end(table, conn, now)     # (or finalized early: MEMORY_BOUND)
        self._tidy()

    def _tidy(self) -> None:
        """The file compacted once enough of it is dead."""
        if self.error is None and self.written + len(self.pending) - self.used > max(
                COMPACT_AT, self.used):
            try:
                self._compact()
            except OSError as exc:
                self.error = str(exc)

    def _park_or_end(self, table: Any, conn: Connection, now: int) -> None:
        """Park `conn`; where that cannot be, finalize it now with MEMORY_BOUND."""
        if self.park(table, conn) is None:
            self._end(table, conn, now)

    def _end(self, table: Any, conn: Connection, now: int) -> None:
        """`conn` finalized now, with MEMORY_BOUND: it could not be parked."""
        why = ("the disk could not take it: %s" % self.error if self.error is not None else
               "%d connections were parked already (--max-parked)" % len(self.index))
        conn.note_at("MEMORY_BOUND", max(now, conn.last_ts), conn.last_frame, None,
                     "finalized before it ended: more than %d connections were in memory "
                     "(--max-connections) and %s; a later packet on its 4-tuple starts a new "
                     "connection" % (table.max_live, why))
        self.bound += 1
        table._remove(conn)
        table.evicted += 1
        table.evicted_early += 1
        table.on_done(conn, now)

    # -- the sweep's side --------------------------------------------------------------------

    def sweep_front(self, table: Any, now: int, horizon: int) -> bool:
        """The front of the finished queue, as the sweep reads the queue: finished connections
        past 2*MSL finalized one by one as they come (`table.finish`), connections reopened or
        replaced out, those with a late packet to the back of the queue. True when the sweep
        stops here (the queue behind waits)."""
        front, live = self.front, table.live
        while front:
            entry, sid = front.first()
            if isinstance(entry, bytes):
                key = entry
                conn = live.get(key)
                if conn is None or conn.id != sid:
                    v = self.index.get(key)
                    if v is None or _stream_id(v) != sid:
                        front.popleft()         # finalized or replaced meanwhile
                        continue
                    if v & _END and not v & _LATE:
                        if now - _last_ts(v) < horizon:
                            return True
                        front.popleft()
                        table.finish(self._load(key), now)
                        continue
                    conn = self._load(key)      # it moves: back in the table first
                    self._relink(table, conn)
            else:
                conn = entry
            step = settle(conn, live, now, horizon)
            if step == WAIT:
                return True
            front.popleft()
            if step == DONE:
                table.finish(conn, now)
            elif step == REQUEUE:               # a late packet: back of the queue
                table.finished.append(conn)
        return False

    def idle(self, now: int, idle_ns: int, done: List[Connection]) -> int:
        """Parked connections silent for `idle_ns` (not finished ones) into `done`."""
        keys = [k for k, v in self.index.items()
                if not v & _END and now - _last_ts(v) >= idle_ns]
        for key in keys:
            done.append(self._load(key))
        return len(keys)

    def merged(self, in_memory: Iterator[Connection]) -> Iterator[Connection]:
        """The end of the capture: the connections in memory (in stream order) and the parked
        ones, in stream order, each parked one read back as it comes."""
        self.front.clear()
        self.ring = None
        if not self.index:
            return in_memory
        # (Records sort as their stream ids: the sort's keys are the index's own ints.)
        order = sorted(self.index, key=self.index.__getitem__, reverse=True)
        return heapq.merge(in_memory, self._unload(order), key=_by_id)

    def _unload(self, keys: List[bytes]) -> Iterator[Connection]:
        """The connections parked under `keys`, from the end of the list, each out of it (and
        out of the index) as it is read."""
        while keys:
            yield self._load(keys.pop())

    def close(self) -> None:
        self.index.clear()
        self.front.clear()
        self.ring = None
        if self.file is not None:
            self.file.close()
            self.file = None


def _by_id(conn: Connection) -> int:
    return conn.id
