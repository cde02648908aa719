"""A 4-tuple used again: the findings that say so, and the memory of finished connections that
lets a later SYN be recognised as a reuse however the flow table's sweeps fell.

The flow table (flows.py) decides *when* a SYN starts a new connection (Wireshark's rule); this
module says what that reuse was: a new incarnation that ended the old one's TIME_WAIT early
(TIME_WAIT_REUSE, RFC 9293 §3.6.1, RFC 6191) or a plain reuse of the 4-tuple (PORT_REUSE),
also for a connection already finalized and gone from the table.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Final

from analyzer.decode.segment import ACK, RST, SYN, Segment
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import SIDES
from analyzer.tcp.states import NEW_INCARNATION, TIME_WAIT


def note_reuse(old: Connection, new: Connection, seg: Segment, msl_ns: int) -> None:
    """`new` (whose SYN is `seg`) took the 4-tuple of the live connection `old`."""
    new.reused_from = old.id
    two_msl = 2 * msl_ns
    for i, e in enumerate((old.e0, old.e1)):
        if e.state == TIME_WAIT and seg.ts - e.since < two_msl:
            new.note("TIME_WAIT_REUSE", seg, 0, "new SYN on the 4-tuple of connection %d "
                     "%.1f s into %s's %.0f s TIME_WAIT (%.1f s left)"
                     % (old.id, (seg.ts - e.since) / 1e9, SIDES[i], two_msl / 1e9,
                        (two_msl - (seg.ts - e.since)) / 1e9))
            # The new incarnation ends the old TIME_WAIT (RFC 6191).
            old.move(i, NEW_INCARNATION, seg)
            return
    new.note("PORT_REUSE", seg, 0, "new SYN (ISN %d) reuses the 4-tuple of connection %d"
             % (seg.seq, old.id))


class RecentConnections:
    """Finished connections that left the table: canonical key (with the tunnel context) ->
    stream id and last packet time, kept `memory_ns` of capture time.

    An entry's value is one int, the last packet time above 64 bits of stream id (exact for
    any time, negative ones too), not a tuple of two: about 100 bytes less an entry (a tuple
    and two int objects), on a capture's peak for 4 x MSL + 10 s of every connection that
    finished."""

    def __init__(self, msl_ns: int) -> None:
        self.memory_ns = 4 * msl_ns + 10_000_000_000
        self.entries: Dict[bytes, int] = {}
        #: The same keys in the order the entries were made: a dict read from its front after
        #: many deletions scans every deleted slot, a deque does not.
        self.order: Deque[bytes] = deque()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def remember(self, key: bytes, conn: Connection) -> None:
        self.entries[key] = (conn.last_ts << _ID_BITS) | conn.id
        self.order.append(key)

    def note_if_reused(self, key: bytes, conn: Connection, seg: Segment) -> None:
        """`conn` is new on `key`: a SYN soon after a finished connection there reuses it."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        old_id, last_ts = entry & _ID_MASK, entry >> _ID_BITS
        if seg.flags & (SYN | ACK | RST) == SYN and seg.ts - last_ts < self.memory_ns:
            conn.reused_from = old_id
            conn.note("PORT_REUSE", seg, 0, "new SYN (ISN %d) reuses the 4-tuple of connection "
                      "%d, %.1f s after its last packet" % (seg.seq, old_id,
                                                            (seg.ts - last_ts) / 1e9))

    def forget_stale(self, now: int) -> None:
        """Entries arrive in about the order they go stale: drop from the front. A key made
        again since (a later connection on the 4-tuple) stops the walk until that entry is
        stale in turn: late, never early (the reuse test checks the time itself)."""
        entries, order = self.entries, self.order
        while order:
            entry = entries.get(order[0])
            if entry is not None and now - (entry >> _ID_BITS) < self.memory_ns:
                break
            key = order.popleft()
            if entry is not None:
                del entries[key]


# An entry of RecentConnections: the last packet time, then the stream id in 64 bits (a stream
# id is a count of frames at most: never negative, never 2**64).
_ID_BITS: Final = 64
_ID_MASK: Final = (1 << 64) - 1
