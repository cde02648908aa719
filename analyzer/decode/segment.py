"""The TCP segment as the analysis sees it: one decoded packet, nothing else.

`decode.py` makes these from frames; `flows.py` and `tcpstate.py` consume them. Nothing here
reads a file, a clock or a screen.
"""

from __future__ import annotations

from typing import Final

from analyzer.common.native import mypyc_attr

# TCP header flag bits (RFC 9293 §3.1, RFC 3168 for ECE/CWR, RFC 3540 for NS/AE).
FIN: Final = 0x001
SYN: Final = 0x002
RST: Final = 0x004
PSH: Final = 0x008
ACK: Final = 0x010
URG: Final = 0x020
ECE: Final = 0x040
CWR: Final = 0x080
NS: Final = 0x100

_FLAG_LETTERS: Final = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
                 (ECE, "E"), (CWR, "W"), (NS, "N"))


def flags_str(flags: int) -> str:
    """tcpdump's spelling of a flag set: `S`, `S.`, `F.`, `R.`, `P.`; `.` alone for a bare ACK."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"


#: A sequence or acknowledgment number not known yet (real ones are 0 .. 2**32-1).
UNSET: Final = -1


def seq_lt(a: int, b: int) -> bool:
    """a < b in 32-bit sequence space (RFC 9293 §3.4)."""
    return 0 < ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_le(a: int, b: int) -> bool:
    """a <= b in 32-bit sequence space."""
    return ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space, in [-2**31, 2**31)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


_OCTETS: Final = tuple(str(i) for i in range(256))


def addr_str(addr: bytes) -> str:
    """Printable form of a 4- or 16-byte packed address: dotted quad, or RFC 5952 for IPv6
    (the longest run of two or more zero groups, the first of equal runs, shortened to `::`;
    an IPv4-mapped address in hex groups, `::ffff:a00:1`, as Python's ipaddress before 3.13
    writes it, so that reports do not change with the Python version)."""
    if len(addr) == 4:
        return ".".join([_OCTETS[addr[0]], _OCTETS[addr[1]], _OCTETS[addr[2]], _OCTETS[addr[3]]])
    groups = [addr[i] << 8 | addr[i + 1] for i in range(0, 16, 2)]
    start, length, i = 0, 0, 0
    while i < 8:
        if groups[i]:
            i += 1
            continue
        j = i + 1
        while j < 8 and not groups[j]:
            j += 1
        if j - i > length:
            start, length = i, j - i
        i = j
    if length < 2:
        return ":".join(["%x" % g for g in groups])
    return (":".join(["%x" % g for g in groups[:start]]) + "::"
            + ":".join(["%x" % g for g in groups[start + length:]]))


@mypyc_attr(acyclic=True)
class Segment:
    """One TCP segment.

    `src`/`dst` are packed addresses (4 bytes IPv4, 16 bytes IPv6), read from `key`, the 4-tuple
    as one bytes object (the flow table's key; the decoder slices it from the packet, where
    addresses and ports lie in this order, and a connection tells its sides apart by it: a
    segment stores one bytes object, not three). `paylen` is the TCP payload
    length the IP header announces (not what a short snaplen kept). `ts` is capture time in
    integer nanoseconds since the epoch; `num` is the 1-based frame number in the (merged)
    capture, as Wireshark numbers frames. `mss`/`wscale` are the SYN options, or -1 when absent.
    `cut` says the snaplen cut the payload (its length is still the real one). `iplen` is the
    IP packet's length as its header announces it (Zeek's `ip_bytes` count; 0 when unknown).
    `tunnel` is the tunnel context (outer endpoints and shared ids of each tunnel layer) of a
    segment that came through tunnels, empty otherwise. `dup` tells a frame captured twice:
    the IPv4 ID and the TCP checksum (`id << 16 | sum`), -1 where there is no IP ID (IPv6).

    Acyclic (it points only to bytes and numbers): the compiled build makes one a packet
    without the cyclic collector's header, tracking and clearing.
    """

    __slots__ = ("ts", "num", "key", "sport", "dport", "seq", "ack", "flags", "win",
                 "paylen", "seglen", "mss", "wscale", "cut", "bad_csum", "iplen", "tunnel",
                 "dup")

    def __init__(self, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                 flags: int, win: int, paylen: int, mss: int = -1, wscale: int = -1,
                 cut: bool = False, ts: int = 0, num: int = 0, key: bytes = b"",
                 iplen: int = 0, dup: int = -1, seglen: int = -1) -> None:
        self.sport = sport
        self.dport = dport
        #: src, dst, sport, dport (ports big-endian); given as `key` by the decoder's fast
        #: paths (then `src` and `dst` are left empty), else made from the fields.
        self.key = key or src + dst + ((sport << 16) | dport).to_bytes(4, "big")
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.win = win
        self.paylen = paylen
        #: Sequence space the segment occupies: payload plus one for SYN and one for FIN.
        #: Made here, read as a field (a property costs a call each time the replay reads
        #: it); whoever changes `paylen` changes it too. The decoder passes it made from
        #: its machine integers (`seglen`; -1: made here).
        self.seglen = seglen if seglen >= 0 else paylen + ((flags & SYN) >> 1) + (flags & FIN)
        self.mss = mss
        self.wscale = wscale
        self.cut = cut              # the snaplen cut the payload: not all of it was captured
        self.bad_csum = False       # set by the pipeline when --checksums finds it wrong
        self.ts = ts
        self.num = num
        self.iplen = iplen
        #: The tunnels the segment came through, as `analyzer.decode.tunnels` records them
        #: (empty when it came through none); part of the connection's flow key.
        self.tunnel = b""
        self.dup = dup

    @property
    def src(self) -> bytes:
        return self.key[:(len(self.key) - 4) >> 1]

    @property
    def dst(self) -> bytes:
        n = (len(self.key) - 4) >> 1
        return self.key[n:n + n]

    def __repr__(self) -> str:
        return "Segment(#%d %s:%d > %s:%d [%s] seq=%d ack=%d win=%d len=%d)" % (
            self.num, addr_str(self.src), self.sport, addr_str(self.dst), self.dport,
            flags_str(self.flags), self.seq, self.ack, self.win, self.paylen)


def describe(seg: Segment) -> str:
    """A segment in a finding's words: `[S.]`, or `120 bytes of data [P.]`."""
    if seg.paylen:
        return "%d bytes of data [%s]" % (seg.paylen, flags_str(seg.flags))
    return "[%s]" % flags_str(seg.flags)
