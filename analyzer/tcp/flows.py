"""Connections keyed by 4-tuple: who the originator is, when a 4-tuple starts a new connection,
and when a connection leaves memory.

Rules (documented in README "How connections are found"):

* **Key.** The unordered pair of (address, port) endpoints; IPv4 and IPv6 alike; for a
  segment that came through tunnels, with its tunnel context (`Segment.tunnel`: each layer's
  outer endpoints and id), so that two tenants' identical 4-tuples stay two connections. The
  table holds each connection under both directions of `Segment.key` plus the context, so a
  packet is one lookup. Where a tunnel's ids differ per direction (GTP-U TEIDs, L2TP ids,
  some GRE keys and Geneve VNIs), the first reply that matches the 4-tuple and the outer
  endpoints but not the ids is bound to the connection (`unbound`), once.
* **Numbering.** Connections are numbered 0, 1, 2... in order of their first packet, as
  Wireshark numbers `tcp.stream`, so `tcp.stream eq N` opens the same connection there.
  Like Wireshark, a TCP header quoted in an ICMP error takes a number for a 4-tuple not seen
  before; if no connection follows on it, that number is a gap in the report.
* **Originator.** The sender of the first SYN. If the first packet is a SYN-ACK, its receiver.
  Otherwise (the capture began mid-connection) the side whose port looks like a client's: if
  exactly one port is a well-known (< 1024) or common service port, that side is the
  responder; if that does not decide, the sender of the first packet is the originator.
* **Reuse.** A SYN without ACK starts a new connection on a 4-tuple already in use when its
  sender has sent before on this connection and the SYN's sequence number differs from that
  sender's base sequence number (its ISN, or first seq - 1) — exactly Wireshark's rule, so a
  retransmitted SYN (same ISN) stays in its connection and stream numbers agree. RFC 9293
  §3.6.1 / RFC 1122 §4.2.2.13 let a new SYN end a TIME_WAIT early; when that happens the
  finding TIME_WAIT_REUSE says how much of 2*MSL had passed.
* **Memory.** A connection whose two endpoints are both CLOSED or in TIME_WAIT is finished:
  it stays in the table for 2*MSL of capture time (to catch late retransmissions and reuse)
  and is then finalized and dropped. Live connections cost memory; finished ones only their
  compact result. `idle_timeout` (capture seconds, None = never) also finalizes silent ones.
  `max_live` bounds the connections held in memory (a flood of spoofed SYNs must not exhaust
  it): past it connections are parked on disk and come back with their next packet, which
  changes nothing in the report (parked.py); only where a bound on parking bites is a
  connection finalized early, and it says so (MEMORY_BOUND). Past 40 % of `max_live`
  connections in memory, finished ones are parked too, the oldest first (parked.py `hold`).
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from typing import Callable, Deque, Dict, Final, Iterator, List, Optional

from analyzer.tcp.conn import Connection
from analyzer.decode.segment import ACK, RST, SYN, Segment
from analyzer.decode.tunnels import loose
from analyzer.tcp.finished import DONE, REQUEUE, WAIT, canonical_key, reverse_key, settle, \
    table_key
from analyzer.tcp.parked import DEFAULT_MAX_PARKED, HELD_PERCENT, Parked
from analyzer.tcp.reuse import RecentConnections, note_reuse
from analyzer.tcp.states import END_STATES, ended

#: Service ports above 1024 that are servers far more often than clients.
SERVICE_PORTS: Final = frozenset({1080, 1433, 1521, 1883, 2049, 2375, 3128, 3306, 3389, 5060, 5432,
                           5672, 5900, 6379, 6443, 8000, 8008, 8080, 8443, 8888, 9000, 9092,
                           9200, 11211, 27017})

#: A 4-tuple as the decoder gives it (`Segment.key`): source and destination address, then
#: source and destination port (two bytes each, big-endian), as one bytes object.
Key = bytes

#: Connections in memory at most; beyond it a tenth of the bound is parked on disk (parked.py).
#: About 1.1 to 2 KB each (bench/README.md), so the default bounds the table near 150 MB
#: even under a SYN flood.
DEFAULT_MAX_LIVE: Final = 100_000
#: Bytes a key of the table's dict (`FlowTable.live`) past which a sweep copies it into a
#: fresh one (`_fit`). A dict that grows makes its table three times its keys and more, and
#: never gives back what its keys left behind: 10.5 MB for ~100 k keys after the window
#: shape of bench/shapes.py had its connections in memory at once; a fresh dict of the same
#: keys takes 30-60 bytes a key (5.2 MB).
_LIVE_BYTES_A_KEY: Final = 80


def _is_service(port: int) -> bool:
    return port < 1024 or port in SERVICE_PORTS


def orig_is_sender(seg: Segment) -> bool:
    """Whether the sender of a connection's first packet is its originator (rules above)."""
    flags = seg.flags
    if flags & SYN:
        return not flags & ACK
    src_srv, dst_srv = _is_service(seg.sport), _is_service(seg.dport)
    if src_srv != dst_srv:
        return dst_srv
    return True


class FlowTable:
    """Routes segments to connections and hands finished connections to `on_done`."""

    def __init__(self, on_done: Callable[[Connection, int], None], msl_ns: int,
                 idle_timeout_ns: Optional[int] = None, max_live: int = DEFAULT_MAX_LIVE,
                 zeek_view: bool = True, max_parked: int = DEFAULT_MAX_PARKED,
                 starts: Optional[array] = None, max_held: Optional[int] = None) -> None:
        #: Every connection under both directions of its 4-tuple: a packet's own key finds it
        #: with one lookup, without ordering the addresses first.
        self.live: Dict[Key, Connection] = {}
        #: Connections in `live`.
        self.size = 0
        #: 4-tuples numbered from an ICMP quote, before (or without) any packet of their own
        #: (canonical keys, as below).
        self.reserved: Dict[Key, int] = {}
        #: Tunnelled connections whose replies have not come yet, under the reverse 4-tuple
        #: and the context without ids (`loose`): a reply with other ids is theirs.
        self.unbound: Dict[Key, Connection] = {}
        #: Finished connections that left the table, so that a later SYN is still called a
        #: reuse however the sweeps fell (reuse.py).
        self.recent = RecentConnections(msl_ns)
        #: Finished connections in the order they finished (`Connection.queued`; its
        #: `queued_ts` holds their last packet time then).
        self.finished: Deque[Connection] = deque()
        #: `finished.append`, bound once (a deque's method looked up by name costs some 150
        #: instructions a call in the compiled build, a bound one a call).
        self._queue: Callable[[Connection], None] = self.finished.append
        self.on_done = on_done
        #: Connections compute Zeek's view (`Settings.zeek_view`).
        self.zeek_view = zeek_view
        self.msl_ns = msl_ns
        self.idle_ns = idle_timeout_ns
        self.next_id = 0
        #: The numbers taken so far (frame numbers), when this is one shard (above).
        self.starts = starts
        self.evicted = 0                # finalized before the end of the capture (any reason)
        self.evicted_early = 0          # ... of which still open: idle, or a memory bound
        self.max_live = max_live
        #: Connections parked out of memory past `max_live`, and whether new ones are tracked
        #: for choosing the next (once the table has been over it).
        #: (`max_held`: connections in memory past which finished ones are parked; by default
        #: a share of the bound)
        self.parked = Parked(max_parked, max(1, max_live * HELD_PERCENT // 100)
                             if max_held is None else max_held)
        #: `parked.max_held`, read on every packet (Parked is interpreted: its attributes
        #: cost a lookup by name in the compiled build, this one a load).
        self.max_held: int = self.parked.max_held
        #: `parked.index` (the same dict), read when a packet's 4-tuple is not in the table.
        self.parked_index: Dict[bytes, int] = self.parked.index
        self.tracking = False
        #: Stream numbers reserved by ICMP quotes and forgotten (the bound above): a
        #: connection that follows on one is numbered as a new one (a warning says so).
        self.forgotten = 0
        self._next_sweep = 0
        self._last_sweep = 0
        #: Segments fed, their number at the last scan for idle connections, and the capture
        #: time from which the next scan is due.
        self.fed = 0
        self._idle_scanned = 0
        self._next_idle: Optional[int] = None

    def feed(self, seg: Segment) -> Connection:
        key = seg.key
        tunnel = seg.tunnel
        # (len(), not truthiness: the compiled build tests a bytes object's length inline)
        conn = self.live.get(key + tunnel if len(tunnel) else key)
        if conn is None and len(tunnel) and self.unbound:
            conn = self._bind(key, tunnel)
        if conn is None and len(self.parked_index):
            conn = self.parked.take(self, key, tunnel, seg.ts)
        if conn is None:
            conn = self._new(key, seg)
            if self.recent.entries:
                self.recent.note_if_reused(canonical_key(key) + tunnel if len(tunnel)
                                           else canonical_key(key), conn, seg)
        elif seg.flags & (SYN | ACK | RST) == SYN:
            x = conn.endpoint(conn.side_of(seg))
            if x.base_seq >= 0 and x.base_seq != seg.seq:
                old = conn
                if len(old.tunnel):             # its keys may not all be the new one's
                    self._unlink(old)
                conn = self._new(key, seg, replacing=True)
                note_reuse(old, conn, seg, self.msl_ns)
                self.on_done(old, seg.ts)
        if conn.on_segment(seg) and not conn.queued:
            if ended(conn.e0.state) and ended(conn.e1.state):
                conn.queued, conn.queued_ts = True, conn.last_ts
                self._queue(conn)
        if self.size > self.max_held and len(self.finished) > 1:
            self.parked.hold(self, conn, seg.ts)      # finished ones give way (parked.py)
        self.fed += 1
        if seg.ts >= self._next_sweep or seg.ts < self._last_sweep:
            self.sweep(seg.ts)
        return conn

    def connections(self) -> List[Connection]:
        """The connections in the table (each once)."""
        return [conn for key, conn in self.live.items() if key == table_key(conn)]

    def reserve(self, quoted: Segment) -> None:
        """A TCP header quoted in an ICMP error: a 4-tuple not seen before takes the next stream
        number now (Wireshark numbers it), and keeps it for a connection that may follow."""
        key = canonical_key(quoted.key) + quoted.tunnel
        if key not in self.live and key not in self.reserved and not self.parked.holds(key):
            if len(self.reserved) >= self.max_live:      # bounded: forget the oldest half
                for old in list(self.reserved)[: self.max_live // 2]:
                    del self.reserved[old]
                    self.forgotten += 1
            self.reserved[key] = self._take(quoted.num)

    def _new(self, key: Key, seg: Segment, replacing: bool = False) -> Connection:
        """A new connection for the segment's 4-tuple `key` and tunnel context (`replacing`
        the one that had them)."""
        tunnel = seg.tunnel
        stream_id = (self.reserved.pop(canonical_key(key) + tunnel, None) if self.reserved
                     else None)
        if stream_id is None:
            stream_id = self._take(seg.num)
        rkey = reverse_key(key)
        conn = Connection(stream_id, seg, orig_is_sender(seg), key, rkey, self.zeek_view)
        if len(tunnel):
            self.live[key + tunnel] = self.live[rkey + tunnel] = conn
            ids = loose(tunnel)
            if ids:
                self.unbound[rkey + ids] = conn
        else:
            self.live[key] = self.live[rkey] = conn
        if self.tracking:
            self.parked.track(conn)
        if not replacing:
            self.size += 1
            if self.size > self.max_live:
                self._shed(seg.ts, conn)
        return conn

    def _take(self, frame: int) -> int:
        """The next stream number; in a shard, the number of the frame that takes it."""
        starts = self.starts
        if starts is not None:
            starts.append(frame)
            return frame
        n = self.next_id
        self.next_id = n + 1
        return n

    def _bind(self, key: Key, tunnel: bytes) -> Optional[Connection]:
        """The connection whose reply this is, the reply's tunnel ids differing from the first
        packet's: it is now found under them too. None when there is none."""
        conn = self.unbound.pop(key + loose(tunnel), None)
        if conn is None or key != conn.rkey or self.live.get(conn.key + conn.tunnel) is not conn:
            return None
        conn.rtunnel = tunnel
        self.live[key + tunnel] = conn
        return conn

    def _remove(self, conn: Connection) -> None:
        if self.live.get(table_key(conn)) is not conn:
            return                          # read back from parking to be finalized
        if len(conn.tunnel):
            self._unlink(conn)
        else:
            del self.live[conn.key]
            if conn.rkey != conn.key:       # a socket connected to itself has one key
                del self.live[conn.rkey]
        self.size -= 1

    def _unlink(self, conn: Connection) -> None:
        """Takes a tunnelled connection's keys out of the table (those still its own)."""
        live = self.live
        for key in (conn.key + conn.tunnel, conn.rkey + conn.tunnel, conn.rkey + conn.rtunnel):
            if live.get(key) is conn:
                del live[key]
        ids = loose(conn.tunnel)
        if ids and self.unbound.get(conn.rkey + ids) is conn:
            del self.unbound[conn.rkey + ids]

    def _shed(self, now: int, keep: Connection) -> None:
        """Over `max_live` (a flood of spoofed SYNs, say): park a tenth of the bound on disk,
        not `keep` (parked.py)."""
        self.parked.make_room(self, now, keep)

    def sweep(self, now: int) -> None:
        """Finalize finished connections past the 2*MSL horizon, and idle ones."""
        horizon = 2 * self.msl_ns
        # Every 1 to 5 s of capture time; a timestamp far in the future (a corrupt record)
        # must not stop the sweeps: a packet dated before the last sweep starts one too.
        period = max(min(horizon, 10_000_000_000) // 2, 1_000_000_000)
        self._next_sweep = now + period
        self._last_sweep = now - 60_000_000_000
        done: List[Connection] = []
        # Finished connections wait in the order they finished: only the front is looked at
        # (a sweep costs what it evicts, not the size of the table).
        live, queue = self.live, self.finished
        # (the front of the queue may be parked: it comes first, each one finalized as it is
        # read back, so that connections due together are not all in memory at once)
        blocked = len(self.parked.front) > 0 and self.parked.sweep_front(self, now, horizon)
        while queue and not blocked:
            conn = queue[0]
            step = settle(conn, live, now, horizon)
            if step == WAIT:
                break
            queue.popleft()
            if step == DONE:
                done.append(conn)
            elif step == REQUEUE:               # a late packet: back of the queue
                queue.append(conn)
        # The scan for idle connections costs the whole table. It runs when capture time
        # passes the next scan's time (a period after the last scan's), or once the packets
        # fed since the last scan are half as many as the table holds: times that jump back
        # and forth (which start a sweep each) then cost a bounded amount per packet, not
        # the table's size. In time order it runs at every sweep, as before.
        due = self._next_idle is None or now >= self._next_idle
        if self.idle_ns is not None and (due or 2 * (self.fed - self._idle_scanned) >= self.size):
            self._idle_scanned = self.fed
            self._next_idle = now + period
            first = len(done)
            for conn in self.connections():
                a, b = conn.e0, conn.e1
                if not (a.state in END_STATES and b.state in END_STATES) \
                        and now - conn.last_ts >= self.idle_ns:
                    done.append(conn)
                    self.evicted_early += 1
            if len(self.parked.index):
                self.evicted_early += self.parked.idle(now, self.idle_ns, done)
            # In stream order: parking changes the table's own order, never the report.
            done[first:] = sorted(done[first:], key=_stream_order)
        done.reverse()
        for conn in _drain(done):           # (each out of memory once finalized)
            self.finish(conn, now)
        self.recent.forget_stale(now)
        self._fit()

    def _fit(self) -> None:
        """The table's dict copied into one of its size when it holds more than
        `_LIVE_BYTES_A_KEY` a key (in the same order: only its memory changes)."""
        live = self.live
        if sys.getsizeof(live) > _LIVE_BYTES_A_KEY * len(live) + 65536:
            fresh: Dict[Key, Connection] = {}
            fresh.update(live)              # (one table sized for the keys it is given)
            self.live = fresh

    def finish(self, conn: Connection, now: int) -> None:
        """A connection the sweep finalizes, out of the table."""
        self._remove(conn)
        self.evicted += 1
        key = canonical_key(conn.key)
        if len(conn.tunnel):
            key += conn.tunnel
        self.recent.remember(key, conn)
        self.on_done(conn, now)

    def flush(self, end_ts: int) -> None:
        """End of capture: finalize every connection still in the table, in stream order.
        The table lets go of them first, so that each leaves memory once finalized: what is
        made of them (results, counts) takes their place instead of adding to them."""
        conns = self.connections()
        conns.sort(key=_stream_order)
        conns.reverse()
        self.live.clear()
        self.unbound.clear()
        self.finished.clear()
        self.size = 0
        for conn in self.parked.merged(_drain(conns)):
            self.on_done(conn, end_ts)
        self.parked.close()


def _stream_order(conn: Connection) -> int:
    return conn.id


def _drain(conns: List[Connection]) -> Iterator[Connection]:
    """The connections from the end of `conns`, each out of the list as it is given."""
    while conns:
        yield conns.pop()
