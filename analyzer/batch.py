"""The batch reader: frames in batches, the common TCP layouts decoded with numpy at once.

Most packets of a capture are ACK or data segments of established connections. Decoding each
into a `Segment` and replaying it costs microseconds; this module decodes a whole batch of
frames with vectorised reads at fixed offsets, and hands each such segment to its connection
as plain fields (`Connection.advance`, which takes the same fast path as `on_segment`).
Everything else -- SYN, FIN, RST, zero windows, other layouts, anything the fast path turns
down -- goes through the per-frame path (`decode_frame`, `FlowTable.feed`) in its place in the
capture, so the analysis is the same packet for packet: frame numbers, stream numbers, sweeps
and every verdict are those of the per-frame loop (tests/test_batch.py compares the two).

Vectorised layouts (anything else is decoded per frame): link types Ethernet (1) with at most
one VLAN tag, Linux SLL (113) and SLL2 (276), NULL/LOOP (0, 108) and raw IP (12, 14, 101, 228,
229); IPv4 with a 20-byte header and no fragmentation, or IPv6 without extension headers; then
TCP with ACK set and SYN, FIN, RST clear, a non-zero window and the whole payload captured. The
checks are those of `analyzer.iptcp.ip4`/`ip6`, so a frame decoded here gives the same fields
as `decode_frame`.

numpy is imported by this module only; `analyzer.pipeline` uses it when numpy is installed.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from analyzer.pcap import PcapSource

#: Frames per batch when frames come one by one (several files, pcapng, stdin).
BATCH = 16384

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_VLAN = (0x8100, 0x88A8, 0x9100)
_RAW = (12, 14, 101)

#: One batch's vectorised segments: for frame i of the batch, key[i] is -1 (take the per-frame
#: path) or an index into `flows` (the flow's table key, sender address, sender port).
Decoded = Tuple[List[int], list, list, list, list, List[Tuple[tuple, bytes, int]]]


def _at(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Bytes at `pos`; positions past the end (frames too short for the read, never then
    used) are clipped into the buffer."""
    return a.take(pos, mode="clip")


def _be16(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (_at(a, pos).astype(np.int64) << 8) | _at(a, pos + 1)


def _be32(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (_be16(a, pos) << 16) | _be16(a, pos + 2)


def _link(a: np.ndarray, offs: np.ndarray, lts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(IP version 4/6 or 0, IP header offset within the frame) for every frame."""
    n = len(offs)
    ver = np.zeros(n, np.int64)
    l3 = np.zeros(n, np.int64)

    def by_ethertype(mask: np.ndarray, etype: np.ndarray, at: int) -> None:
        ver[mask] = np.where(etype == 0x0800, 4, np.where(etype == 0x86DD, 6, 0))[mask]
        l3[mask] = at

    for lt in np.unique(lts).tolist():
        m = lts == lt if len(lts) > 1 else np.ones(n, bool)
        if lt == 1:
            et = _be16(a, offs + 12)
            tagged = np.isin(et, _VLAN)
            inner = _be16(a, offs + 16)
            by_ethertype(m & ~tagged, et, 14)
            by_ethertype(m & tagged, inner, 18)
        elif lt == 113:
            by_ethertype(m, _be16(a, offs + 14), 16)
        elif lt == 276:
            by_ethertype(m, _be16(a, offs), 20)
        elif lt in (0, 108):
            first = _at(a, offs)
            fam = np.where(first != 0, first, _at(a, offs + 3))
            ver[m] = np.where(fam == 2, 4, np.where(np.isin(fam, (24, 28, 30)), 6, 0))[m]
            l3[m] = 4
        elif lt in _RAW or lt in (228, 229):
            nib = _at(a, offs) >> 4
            if lt == 228:
                nib = np.where(nib == 4, 4, 0)
            elif lt == 229:
                nib = np.where(nib == 6, 6, 0)
            ver[m] = np.where((nib == 4) | (nib == 6), nib, 0)[m]
    return ver, l3


def decode(data: bytes, offs: np.ndarray, lens: np.ndarray, lts: Sequence[int]) -> Decoded:
    """Vectorised decode of one batch (frame i is ``data[offs[i]:offs[i] + lens[i]]``, link
    type ``lts[i]``, or ``lts[0]`` for all when it has one element): which frames are
    candidates for the fast path, with their fields as Python lists."""
    n = len(offs)
    a = np.frombuffer(data, np.uint8)
    lts = np.array(lts, np.int64)
    ver, l3 = _link(a, offs, lts)
    ip = offs + l3
    vihl = _at(a, ip)
    v4 = ((ver == 4) & (lens >= l3 + 40) & (vihl == 0x45) & (_at(a, ip + 9) == 6)
          & ((_be16(a, ip + 6) & 0x3FFF) == 0))
    v6 = (ver == 6) & (lens >= l3 + 60) & ((vihl >> 4) == 6) & (_at(a, ip + 6) == 6)
    t = ip + np.where(v6, 40, 20)
    hl = (_at(a, t + 12) >> 4).astype(np.int64) << 2
    iplen = np.where(v6, _be16(a, ip + 4), _be16(a, ip + 2) - 20)     # bytes after 20 or 40
    fixed = np.where(v6, 40, 20)
    ok = (v4 | v6) & (hl >= 20) & (hl <= iplen) & (lens >= l3 + fixed + hl)
    flags = _be16(a, t + 12) & 0xFFF
    win = _be16(a, t + 14)
    ok &= ((flags & 0x17) == 0x10) & (win != 0) & (lens >= l3 + fixed + iplen)
    idx = np.flatnonzero(ok)
    key = np.full(n, -1, np.int64)
    if not len(idx):
        return key.tolist(), [], [], [], [], []
    ti, ipi, v6i = t[idx], ip[idx], v6[idx]
    seq = np.zeros(n, np.int64)
    ack = np.zeros(n, np.int64)
    seq[idx] = _be32(a, ti + 4)
    ack[idx] = _be32(a, ti + 8)
    paylen = np.zeros(n, np.int64)
    paylen[idx] = (iplen - hl)[idx]
    # The directional flow key: version, source and destination address, ports (40 bytes).
    m = len(idx)
    rows = np.zeros((m, 40), np.uint8)
    rows[:, 0] = np.where(v6i, 6, 4)
    four, six = ~v6i, v6i
    rows[four, 1:9] = a[ipi[four, None] + np.arange(12, 20)]
    rows[four, 9:13] = a[ti[four, None] + np.arange(4)]
    rows[six, 1:33] = a[ipi[six, None] + np.arange(8, 40)]
    rows[six, 33:37] = a[ti[six, None] + np.arange(4)]
    first, inverse = _group(rows)
    key[idx] = inverse
    flows = [_flow(rows[i].tobytes()) for i in first.tolist()]
    return key.tolist(), seq.tolist(), ack.tolist(), win.tolist(), paylen.tolist(), flows


def _group(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct key, key index of every row): a 64-bit hash of the rows
    grouped with np.unique, checked row by row; on a collision, grouped by the bytes."""
    words = rows.view(np.uint64)
    h = words[:, 0] * _GOLDEN
    for j in range(1, words.shape[1]):
        h = (h ^ words[:, j]) * _GOLDEN
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not (rows[first[inverse]] == rows).all():
        _, first, inverse = np.unique(np.ascontiguousarray(rows).view("V40").ravel(),
                                      return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return first, inverse


def _flow(row: bytes) -> Tuple[tuple, bytes, int]:
    """A directional key row -> (FlowTable key, sender address, sender port)."""
    if row[0] == 4:
        src, dst, ports = row[1:5], row[5:9], row[9:13]
    else:
        src, dst, ports = row[1:17], row[17:33], row[33:37]
    sport, dport = ports[0] << 8 | ports[1], ports[2] << 8 | ports[3]
    key = (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)
    return key, src, sport


def batches_of(sources: Sequence, frames: Iterable[Tuple[int, int, bytes]]) -> Iterator[
        Tuple[bytes, np.ndarray, np.ndarray, Sequence[int], Sequence[int]]]:
    """The batches of a run: one classic pcap file is read in large blocks with no object per
    frame (`PcapSource.batches`); anything else is batched from its frames."""
    if len(sources) == 1 and isinstance(sources[0], PcapSource):
        lt = (sources[0].linktype,)
        return ((buf, offs, lens, ts, lt) for buf, offs, lens, ts in sources[0].batches())
    return frame_batches(frames)


def frame_batches(frames: Iterable[Tuple[int, int, bytes]], size: int = BATCH
                  ) -> Iterator[Tuple[bytes, np.ndarray, np.ndarray, list, Sequence[int]]]:
    """Batches of `size` frames from any frame iterator (several files, pcapng, stdin):
    (buffer, offsets, lengths, timestamps, link types), the frames joined into one buffer."""
    it = iter(frames)
    while True:
        batch = list(islice(it, size))
        if not batch:
            return
        tss, lts, bufs = zip(*batch)
        del batch
        n = len(bufs)
        lens = np.fromiter(map(len, bufs), np.int64, n)
        offs = np.zeros(n, np.int64)
        np.cumsum(lens[:-1], out=offs[1:])
        lt0 = lts[0]
        yield b"".join(bufs), offs, lens, list(tss), (lt0,) if lts.count(lt0) == n else lts


def run(batches: Iterable[Tuple[bytes, np.ndarray, np.ndarray, Sequence[int], Sequence[int]]],
        table, frame: Callable[[int, int, bytes, int], None],
        on_frame: Optional[Callable[[int], None]]) -> Tuple[int, int, int]:
    """Feed every frame of `batches` to the analysis: fast-path segments straight to their
    connection, every other frame to `frame(ts, linktype, buf, num)` (the per-frame path).
    Returns (frames, fast-path TCP segments, timestamp of the last frame)."""
    num = fast = 0
    end_ts = 0
    live = table.live
    for data, offs, lens, tss, lts in batches:
        keys, seqs, acks, wins, paylens, flows = decode(data, offs, lens, lts)
        if not isinstance(tss, list):
            tss = tss.tolist()
        starts, ends = offs.tolist(), (offs + lens).tolist()
        one = lts[0] if len(lts) == 1 else -1
        before = num
        for i, k in enumerate(keys):
            num += 1
            if k >= 0:
                fkey, src, sport = flows[k]
                conn = live.get(fkey)
                if conn is not None and conn.steady:
                    o = conn.ep[0]
                    ts = tss[i]
                    if conn.advance(sport == o.port and src == o.addr, seqs[i], acks[i],
                                    wins[i], paylens[i], ts, num):
                        fast += 1
                        if ts >= table.next_sweep or ts < table.last_sweep:
                            table.sweep(ts)
                        continue
            frame(tss[i], one if one >= 0 else lts[i], data[starts[i]:ends[i]], num)
        if keys:
            end_ts = tss[-1]
        if on_frame is not None and num >> 16 != before >> 16:
            on_frame(num & ~0xFFFF)
    return num, fast, end_ts
