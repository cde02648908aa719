"""What the flow table (flows.py) and its parked connections (parked.py) share: the keys a
connection is held under, and the rule for the connection at the front of the finished queue.

A 4-tuple key is `Segment.key`: source and destination address, then source and destination
port (two bytes each, big-endian). The finished queue holds connections whose two endpoints are
CLOSED or in TIME_WAIT, in the order they finished; the sweep looks only at its front, and
`settle` says what becomes of that connection, wherever it is (in memory or parked); `Front`
holds the part of the queue parked.py took from it.
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Deque, Dict, Final, Tuple, Union

from analyzer.tcp.conn import Connection
from analyzer.tcp.states import END_STATES

try:
    from analyzer.decode._flowkey import reverse_key as _reverse_key
except ImportError:                     # the pure-Python build
    from analyzer.decode.flowkey import reverse_key as _reverse_key

#: `reverse_key`: in C in the compiled build (decode/_flowkey.c), one object per 4-tuple.
_reverse: Final = _reverse_key

#: `settle`'s answers: out of the queue (replaced by a reuse, or reopened: no longer
#: finished); finalize it (2*MSL past its last packet); to the back of the queue (a late
#: packet since it was queued); or not due yet (the sweep stops there).
DROP: Final = 0
DONE: Final = 1
REQUEUE: Final = 2
WAIT: Final = 3


def reverse_key(key: bytes) -> bytes:
    """The same 4-tuple seen from the other end (addresses swapped, ports swapped)."""
    return _reverse(key)


def canonical_key(key: bytes) -> bytes:
    """One key for both directions (the smaller), for what outlives the live table."""
    rev = _reverse(key)
    return rev if rev < key else key


def table_key(conn: Connection) -> bytes:
    """The key the table holds a connection under: its first packet's 4-tuple and tunnel."""
    tunnel = conn.tunnel
    return conn.key + tunnel if len(tunnel) else conn.key


def settle(conn: Connection, live: Dict[bytes, Connection], now: int, horizon: int) -> int:
    """The sweep's rule for `conn`, at the front of the finished queue at capture time `now`
    (`horizon`: 2*MSL); marks it as the answer requires (`queued`, `queued_ts`)."""
    a, b = conn.e0, conn.e1
    if live.get(table_key(conn)) is not conn or not (a.state in END_STATES
                                                     and b.state in END_STATES):
        conn.queued = False
        return DROP
    if now - conn.last_ts >= horizon:
        return DONE
    if conn.last_ts != conn.queued_ts:
        conn.queued_ts = conn.last_ts
        return REQUEUE
    return WAIT


class Front:
    """The front of the finished queue, taken from it in order by parked.py: an entry is a
    parked connection's index key (shared with the index: a pointer) and its stream id (in an
    array: 8 bytes, not an int object), or a Connection that stayed in memory (id -1)."""

    def __init__(self) -> None:
        self.entries: Deque[Union[bytes, Connection]] = deque()
        self.ids = array("q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: Union[bytes, Connection], stream_id: int) -> None:
        self.entries.append(entry)
        self.ids.append(stream_id)

    def first(self) -> Tuple[Union[bytes, Connection], int]:
        return self.entries[0], self.ids[self.head]

    def popleft(self) -> None:
        self.entries.popleft()
        head = self.head = self.head + 1
        if head >= 4096 and 2 * head >= len(self.ids):
            del self.ids[:head]
            self.head = 0

    def clear(self) -> None:
        self.entries.clear()
        self.ids = array("q")
        self.head = 0
