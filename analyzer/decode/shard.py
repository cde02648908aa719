"""Which shard a packet belongs to, when the analysis is split over several processes
(`--jobs`): a hash of the unordered 4-tuple, so both directions of a connection, and every
incarnation of a 4-tuple, land in the same shard.

The rule: the shard of a TCP segment is `shard_key(seg.key)` — its source and destination
addresses and ports, whatever tunnels carried it (the inner 4-tuple) — and `shard_at` computes
the same number from a frame's bytes where they lie in the reader's buffer, without decoding
the frame, for exactly the frames `decode_at` would decode (-1 for any other, which the caller
decodes to find its 4-tuple). The hash is a fixed function of the bytes (not Python's `hash`,
which differs between processes), so every worker, on any machine, agrees. `ShardTest` hands
the same test to a reader that steps over the other shards' frames itself (`Cursor.skip`,
capture/source.py `FrameTest`: the reader is a stage below, so the test is passed down as a
compiled object rather than imported there).
"""

from __future__ import annotations

from typing import Final, Optional

from analyzer.capture.source import FrameTest, Skipper
from analyzer.common.native import i64
from analyzer.decode.frames import ip_offset

try:                # the compiled build's C skipper (setup.py); the pure build has none
    from analyzer.decode import _skip
    _SKIPPER = True
except ImportError:
    _SKIPPER = False

#: A prime below 2**16: the folded 4-tuple modulo it spreads over the shards evenly.
_PRIME: Final = 65521


def _shard(buf: bytes, at: i64, alen: i64, count: i64) -> i64:
    """The shard of the 4-tuple `buf[at:at + 2 * alen + 4]` (source address, destination
    address, source port, destination port, as in `Segment.key`). Each end is the last 16 bits
    of its address and its port; the two ends are combined by XOR, the same from either end.
    Eight bytes read, every step in machine integers (`i64`, analyzer/common/native.py): the
    frames of other shards cost little more than reading them."""
    p = at + 2 * alen
    q = at + alen
    h: i64 = ((i64(buf[q - 2]) << 24 | i64(buf[q - 1]) << 16 | i64(buf[p]) << 8 | i64(buf[p + 1]))
              ^ (i64(buf[p - 2]) << 24 | i64(buf[p - 1]) << 16 | i64(buf[p + 2]) << 8
                 | i64(buf[p + 3])))
    h ^= h >> 15
    return h % _PRIME % count


def shard_key(key: bytes, count: int) -> int:
    """The shard of a segment's 4-tuple key (`Segment.key`) among `count`."""
    return _shard(key, 0, (len(key) - 4) >> 1, count)


def shard_at(linktype: int, buf: bytes, start: int, end: int, count: int) -> int:
    """The shard of the frame `buf[start:end]` among `count`, for a frame `decode_at` decodes
    to a segment (the same checks); -1 for every other frame."""
    return _part(linktype, buf, start, end, count)


def _part(linktype: i64, buf: bytes, start: i64, end: i64, count: i64) -> i64:
    """`shard_at`, every argument and step a machine integer (`ShardTest` calls it for every
    frame of the capture)."""
    at = ip_offset(linktype, buf, start, end)
    if at < 0:
        return -1
    off = at >> 1
    stop: i64 = end
    if at & 1:
        if stop >= off + 60:
            t = off + 40
            hl = i64(buf[t + 12]) >> 2 & 0x3C
            plen = i64(buf[off + 4]) << 8 | i64(buf[off + 5])
            if (i64(buf[off]) >> 4 == 6 and buf[off + 6] == 6 and 20 <= hl <= plen
                    and stop >= t + hl):
                return _shard(buf, off + 8, 16, count)
        return -1
    if stop >= off + 40:
        t = off + 20
        hl = i64(buf[t + 12]) >> 2 & 0x3C
        tot = i64(buf[off + 2]) << 8 | i64(buf[off + 3])
        if (buf[off] == 0x45 and buf[off + 9] == 6
                and not (i64(buf[off + 6]) & 0x3F or buf[off + 7])
                and 20 <= hl <= tot - 20 and stop >= t + hl):
            return _shard(buf, off + 12, 4, count)
    return -1


class ShardTest(FrameTest):
    """Shard `mine` of `count`'s test, for a reader that steps over the other shards' frames
    itself (`Cursor.skip`): a frame is foreign when `shard_at` puts it in another shard.
    `part` is the last frame's `shard_at` (the caller reads it for the frames it is handed:
    -1 for a frame to decode to find its 4-tuple)."""

    def __init__(self, linktype: int, count: int, mine: int) -> None:
        super().__init__()
        self.linktype: i64 = linktype
        self.count: i64 = count
        self.mine: i64 = mine

    def foreign(self, buf: bytes, start: i64, end: i64) -> bool:
        part = _part(self.linktype, buf, start, end, self.count)
        self.part = part
        return part >= 0 and part != self.mine

    def skipper(self, le: bool, limit: int, frac_ns: int) -> Optional[Skipper]:
        """This test in C (decode/_skip.c: the same checks and hash as `shard_at`), where the
        compiled build has it and its result's fields hold the shard."""
        if not _SKIPPER or self.count > _skip.MAX_COUNT:
            return None
        return _skip.Skipper(self.linktype, self.count, self.mine, le, limit, frac_ns)
