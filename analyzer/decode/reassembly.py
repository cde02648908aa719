"""IP fragment reassembly: the fragments of one datagram held until it is whole, then read
on as one packet at the frame that completed it (as Wireshark shows it).

Rule: bounded in every direction, and as a Linux receiver decides. A datagram is keyed by its
tunnel context, version, addresses, identification and (IPv4) protocol. Limits: at most
`MAX_FRAGMENTS` fragments a datagram, `MAX_DATAGRAMS` datagrams and `MAX_BYTES` bytes held
at once (past either, the oldest datagram is dropped), and an age in capture time (30 s for
IPv4, 60 s for IPv6: Linux's ipfrag_time and ip6frag_time). Overlaps follow Linux (since 4.19
for IPv4, RFC 5722 for IPv6): a fragment lying wholly inside bytes already held is a duplicate
and ignored; any other overlap, a second last fragment with another end, a fragment past the
end, a non-last fragment whose length is not a multiple of 8, a datagram over 65535 bytes or
over `MAX_FRAGMENTS` fragments discards the whole datagram and is counted as malformed
(IP_FRAGMENTS_MALFORMED). Wireshark instead keeps the first bytes it saw at each offset and
flags the overlap; docs/conformance.md says where that changes a count.

A fragment cut short by the snaplen still counts for its announced length; the datagram is
then read as far as its bytes were captured, like any packet cut by the snaplen.
"""

from __future__ import annotations

from typing import Dict, Final, List, Optional, Tuple

from analyzer.decode.iptcp import Fragment, Layer, ip_payload

MAX_FRAGMENTS: Final = 128
MAX_DATAGRAMS: Final = 1024
MAX_BYTES: Final = 8 << 20
_TIMEOUT_NS: Final = (0, 0, 0, 0, 30_000_000_000, 0, 60_000_000_000)   # by IP version
_MAX_DATAGRAM: Final = 65535


class _Datagram:
    """The fragments of one datagram held so far."""

    __slots__ = ("first_ts", "deadline", "pieces", "total", "held", "cut", "head")

    def __init__(self, ts: int, frag: Fragment) -> None:
        self.first_ts = ts
        self.deadline = ts + _TIMEOUT_NS[frag.ver]
        #: (offset, announced end, captured bytes), in arrival order
        self.pieces: List[Tuple[int, int, bytes]] = []
        self.total = -1               # the end announced by the last fragment, once seen
        self.held = 0                 # captured bytes held
        self.cut = False
        self.head: Optional[Fragment] = None   # the fragment at offset 0 (its protocol counts)


class Reassembler:
    """The datagrams in flight and what happened to the others (counts for the report)."""

    def __init__(self, max_fragments: int = MAX_FRAGMENTS, max_datagrams: int = MAX_DATAGRAMS,
                 max_bytes: int = MAX_BYTES) -> None:
        self.max_fragments = max_fragments
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.pending: Dict[bytes, _Datagram] = {}
        self.held = 0
        self.reassembled = 0
        #: datagrams dropped incomplete: aged out, pushed out by the limits, or left at the end
        self.incomplete = 0
        #: datagrams discarded as malformed, and the first: (capture time, frame, why)
        self.malformed = 0
        self.first_malformed: Optional[Tuple[int, int, str]] = None

    def add(self, frag: Fragment, ctx: bytes, ts: int, num: int) -> Layer:
        """One fragment: the reassembled packet's payload read on (a segment, a `Carried`, a
        reason) when it completes its datagram, else "ip_fragment" (held), or
        "ip_fragment_malformed" when it makes its datagram malformed."""
        pending = self.pending
        if pending:
            self._expire(ts)
        key = ctx + frag.key
        dg = pending.get(key)
        if dg is None:
            dg = pending[key] = _Datagram(ts, frag)
        why = self._insert(dg, frag)
        if why:
            self._drop(key, dg)
            self.malformed += 1
            if self.first_malformed is None:
                self.first_malformed = (ts, num, why)
            return "ip_fragment_malformed"
        if dg.total < 0 or not _whole(dg.pieces, dg.total):
            while len(pending) > self.max_datagrams or self.held > self.max_bytes:
                oldest = next(iter(pending))
                self._drop(oldest, pending[oldest])
                self.incomplete += 1
            return "ip_fragment"
        self._drop(key, dg)
        self.reassembled += 1
        head = dg.head
        if head is None:
            return "ip_fragment"
        data = _join(dg.pieces)
        return ip_payload(data, head.proto, head.src, head.dst, 0, dg.total, head.ver,
                          dg.total + head.hlen)

    def _insert(self, dg: _Datagram, frag: Fragment) -> str:
        """Adds `frag`; the reason the datagram is malformed, or "" (also for a duplicate)."""
        off, end = frag.offset, frag.offset + frag.size
        if end + frag.hlen > _MAX_DATAGRAM:
            return "fragments past 65535 bytes (offset %d + %d)" % (off, frag.size)
        if frag.more:
            if frag.size & 7:
                return "a fragment of %d bytes (not a multiple of 8) before the last" % frag.size
            if 0 <= dg.total < end:
                return "a fragment at %d-%d past the last fragment's end %d" % (off, end, dg.total)
        else:
            if dg.total >= 0 and end != dg.total:
                return "two last fragments, ending at %d and %d" % (dg.total, end)
            if any(e > end for _, e, _ in dg.pieces):
                return "the last fragment ends at %d, before bytes held" % end
        for o, e, _ in dg.pieces:
            if o <= off and end <= e:
                return ""                               # a duplicate: ignored
            if off < e and o < end:
                return "fragments overlap (%d-%d and %d-%d)" % (o, e, off, end)
        if len(dg.pieces) >= self.max_fragments:
            return "more than %d fragments" % self.max_fragments
        if not frag.more:
            dg.total = end
        if off == 0:
            dg.head = frag
        dg.pieces.append((off, end, frag.data))
        dg.held += len(frag.data)
        self.held += len(frag.data)
        return ""

    def _drop(self, key: bytes, dg: _Datagram) -> None:
        del self.pending[key]
        self.held -= dg.held

    def _expire(self, now: int) -> None:
        """Drops datagrams past their age (oldest first; a datagram dated after `now` by a
        corrupt timestamp waits for the limits)."""
        pending = self.pending
        while pending:
            key = next(iter(pending))
            dg = pending[key]
            if now < dg.deadline:
                break
            self._drop(key, dg)
            self.incomplete += 1

    def finish(self) -> None:
        """End of capture: what is still held never completed."""
        self.incomplete += len(self.pending)
        self.pending.clear()
        self.held = 0


def _whole(pieces: List[Tuple[int, int, bytes]], total: int) -> bool:
    """Whether the pieces (which do not overlap) cover 0..total."""
    return sum(e - o for o, e, _ in pieces) == total


def _join(pieces: List[Tuple[int, int, bytes]]) -> bytes:
    """The datagram's payload as captured: the pieces in order, up to the first one the
    snaplen cut (the announced length still counts, as for any cut packet)."""
    out = []
    at = 0
    for off, end, data in sorted(pieces):
        if off != at:
            break
        out.append(data)
        at += len(data)
        if len(data) < end - off:
            break
    return b"".join(out)
