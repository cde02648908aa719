"""The network and transport layers of a frame: IP header(s) at an offset -> a TCP `Segment`,
or what the IP packet carries instead (a short stable reason from
`analyzer.decode.frames.SKIP_REASONS`, or a payload other modules open: `Carried`, `Fragment`).

IPv4 with options; IPv6 with hop-by-hop, routing, destination options, AH, mobility/HIP/shim6
headers and atomic fragments (RFC 6946); AH inside IPv4; IPv4 total length 0 (TSO/GSO) and
IPv6 jumbograms (RFC 2675, and Linux BIG TCP's payload length 0 without the option), read to
the end of the captured frame or the jumbo length. `ip4_at` and `ip6_at` read IPv4 with a
20-byte header or IPv6 without extension headers, then TCP, at fixed offsets (also inside the
reader's buffer, given where the frame ends); anything else goes to `ip_general`, which checks
every length against both the captured bytes and the IP length fields. No exception is raised
or caught.

The TCP payload length comes from the IP length fields, never from the captured bytes, so
Ethernet padding is ignored and a snaplen cut after the TCP header keeps the real length.
TCP options are read only on SYN segments, for MSS (kind 2) and window scale (kind 3).
An ICMP error quoting a TCP header gives its quoted 4-tuple as a `QuotedTCP`. Payloads that
may be tunnels (UDP, IP-in-IP, GRE, EtherIP, L2TPv3, MPLS-in-IP) come back as `Carried` for
`analyzer.decode.tunnels`; fragments as `Fragment` for `analyzer.decode.reassembly`. This
module reads one IP layer: nesting is bounded by the caller (`analyzer.decode.frames`).
"""

from __future__ import annotations

import struct
from typing import Final, Optional, Tuple, Union

from analyzer.common.native import i64, mypyc_attr
from analyzer.decode.segment import Segment

try:
    from analyzer.decode._flowkey import key_of
except ImportError:                     # the pure-Python build
    from analyzer.decode.flowkey import key_of

#: A 4-tuple key as one object per 4-tuple in the compiled build (decode/_flowkey.c: the flow
#: table's lookup then finds its hash made and its key by identity); itself in Python.
_key_of: Final = key_of

#: A decoded frame: a segment, or a skip reason from `analyzer.decode.frames.SKIP_REASONS`.
Decoded = Union[Segment, str]

# Fast-path layouts, big-endian. IPv4 fields: version/IHL, total length, flags/fragment
# offset, protocol, addresses; IPv6: version word, payload length, next header, addresses;
# then TCP ports, seq, ack, data offset/flags, window.
_IP4_HDR: Final = struct.Struct("!2xH2xHxB2x4s4s")   # total length, frag, proto, src, dst
_IP6_HDR: Final = struct.Struct("!4xHBx16s16s")      # payload length, next header, src, dst
_TCP: Final = struct.Struct("!HHIIHH")
_PORTS: Final = struct.Struct("!HH")

_IP6_EXT: Final = frozenset((0, 43, 44, 51, 60, 135, 139, 140))   # 44 = Fragment, 51 = AH
_IP4_EXT: Final = frozenset((51,))                                 # AH
NO_OPTIONS: Final = (-1, -1)   # (mss, wscale) of a segment without those options


def syn_options(buf: bytes, i: i64, stop: i64) -> Tuple[int, int]:
    """(mss, wscale) from the TCP options in buf[i:stop], -1 for each one absent.

    Follows Linux `tcp_parse_options`: an option of the wrong size is ignored; a length below 2
    or past the end stops parsing. Every step advances, so the loop is bounded by `stop - i`.
    """
    mss: i64 = -1
    wscale: i64 = -1
    while i < stop:
        kind = i64(buf[i])
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= stop:
            break
        size = i64(buf[i + 1])
        if size < 2 or i + size > stop:
            break
        if kind == 2 and size == 4:
            mss = i64(buf[i + 2]) << 8 | i64(buf[i + 3])
        elif kind == 3 and size == 3:
            wscale = i64(buf[i + 2])
        i += size
    return mss, wscale


def _tcp(buf: bytes, src: bytes, dst: bytes, t: int, end: int, iplen: int,
         ipid: int = -1) -> Decoded:
    """The TCP header at `t` of an IP payload ending (per the IP header) at `end`, in an IP
    packet of `iplen` bytes (per its header) with IPv4 ID `ipid` (-1: IPv6)."""
    if end - t < 20:
        return "bad_tcp_header"
    n = len(buf)
    if n < t + 20:
        return "truncated_tcp"
    sport, dport, seq, ack, offflags, win = _TCP.unpack_from(buf, t)
    hl = offflags >> 10 & 0x3C
    if hl < 20 or t + hl > end:
        return "bad_tcp_header"
    # Options cut by the snaplen (tcpdump's old default of 68 bytes cuts most SYNs there):
    # the fixed header has everything the analysis needs; read the options that were kept.
    mss, wscale = (syn_options(buf, t + 20, min(t + hl, n)) if offflags & 2 and hl > 20
                   else NO_OPTIONS)
    return Segment(src, dst, sport, dport, seq, ack, offflags & 0xFFF, win, end - t - hl,
                   mss, wscale, n < end, iplen=iplen,
                   dup=ipid << 16 | buf[t + 16] << 8 | buf[t + 17] if ipid >= 0 else -1)


@mypyc_attr(acyclic=True)
class QuotedTCP(Segment):
    """The TCP ports quoted inside an ICMP error (destination unreachable, time exceeded, ...).

    Not a segment of the connection, and never analysed as one; the flow table only gives a
    4-tuple it has not seen a stream number, as Wireshark numbers `tcp.stream`.
    """

    __slots__ = ()


_ICMP4_ERRORS: Final = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS: Final = frozenset((1, 2, 3, 4))


def _icmp_quote(buf: bytes, proto: int, t: int) -> Decoded:
    """The quoted 4-tuple of an ICMP/ICMPv6 error about a TCP segment, else not_tcp."""
    n = len(buf)
    if proto == 1 and n >= t + 8 + 20 and buf[t] in _ICMP4_ERRORS:
        q = t + 8
        ihl = (buf[q] & 15) << 2
        if buf[q] >> 4 == 4 and ihl >= 20 and buf[q + 9] == 6 and n >= q + ihl + 4:
            sport, dport = _PORTS.unpack_from(buf, q + ihl)
            return QuotedTCP(buf[q + 12:q + 16], buf[q + 16:q + 20], sport, dport, 0, 0, 0, 0, 0)
    elif proto == 58 and n >= t + 8 + 44 and buf[t] in _ICMP6_ERRORS:
        q = t + 8
        if buf[q] >> 4 == 6 and buf[q + 6] == 6:
            sport, dport = _PORTS.unpack_from(buf, q + 40)
            return QuotedTCP(buf[q + 8:q + 24], buf[q + 24:q + 40], sport, dport, 0, 0, 0, 0, 0)
    return "not_tcp"


class Carried:
    """An IP payload this module does not read: a tunnel's (GRE, UDP, IP-in-IP, ...), handed to
    `analyzer.decode.tunnels` with the outer addresses. `proto` is the IP protocol, the payload
    lies at `buf[off:end]` (`end` as the IP header announces it)."""

    __slots__ = ("proto", "buf", "off", "end", "src", "dst")

    def __init__(self, proto: int, buf: bytes, off: int, end: int, src: bytes,
                 dst: bytes) -> None:
        self.proto = proto
        self.buf = buf
        self.off = off
        self.end = end
        self.src = src
        self.dst = dst


class Fragment:
    """One fragment of a fragmented IP datagram, for `analyzer.decode.reassembly`: its
    datagram's `key` (version, addresses, identification; IPv4 adds the protocol, as Linux
    keys them), where it lies (`offset`, `size` announced, `data` as captured), whether more
    follow, and the protocol after the fragmentable part's headers (`proto`) with the length
    of the headers before it (`hlen`)."""

    __slots__ = ("key", "ver", "offset", "size", "more", "data", "proto", "src", "dst", "hlen")

    def __init__(self, key: bytes, ver: int, offset: int, size: int, more: bool, data: bytes,
                 proto: int, src: bytes, dst: bytes, hlen: int) -> None:
        self.key = key
        self.ver = ver
        self.offset = offset
        self.size = size
        self.more = more
        self.data = data
        self.proto = proto
        self.src = src
        self.dst = dst
        self.hlen = hlen


#: What a layer of the general path gives: a segment, a payload for `analyzer.decode.tunnels`
#: or `analyzer.decode.reassembly`, or a skip reason.
Layer = Union[Segment, Carried, Fragment, str]

#: IP protocols handed over as `Carried`: UDP (tunnels by port), IP-in-IP, GRE/ERSPAN, EtherIP,
#: L2TPv3, MPLS-in-IP.
_CARRIED: Final = frozenset((4, 17, 41, 47, 97, 115, 137))


def ip_general(buf: bytes, off: int, want: int) -> Layer:
    """The general IP path: IPv4 (`want` 4), IPv6 (6) or either (0) at `off`.

    Handles IPv4 options, IPv6 extension headers (with the jumbo payload option), AH and
    fragments; checks every length against both the captured bytes and the IP length fields.
    A total length of 0 (IPv4) or a payload length of 0 before TCP (IPv6) is a GSO/BIG TCP
    packet as Linux hands it to the capture: the packet is the rest of the captured frame.
    """
    n = len(buf)
    if off >= n:
        return "truncated_ip"
    ver = buf[off] >> 4
    if want and ver != want:
        return "bad_ip_header"
    if ver == 4:
        if n < off + 20:
            return "truncated_ip"
        ihl = (buf[off] & 15) << 2
        tot, frag, proto, src, dst = _IP4_HDR.unpack_from(buf, off)
        if tot == 0:
            tot = n - off                       # TSO/GSO (Wireshark's ip.tso_support)
        if ihl < 20 or tot < ihl:
            return "bad_ip_header"
        if n < off + ihl:
            return "truncated_ip"
        if frag & 0x3FFF:
            t = off + ihl
            return Fragment(b"\x04" + src + dst + buf[off + 4:off + 6] + bytes((proto,)), 4,
                            (frag & 0x1FFF) << 3, tot - ihl, bool(frag & 0x2000),
                            buf[t:min(off + tot, n)], proto, src, dst, ihl)
        return ip_payload(buf, proto, src, dst, off + ihl, off + tot, 4, tot,
                          buf[off + 4] << 8 | buf[off + 5])
    if ver == 6:
        if n < off + 40:
            return "truncated_ip"
        plen, proto, src, dst = _IP6_HDR.unpack_from(buf, off)
        if plen == 0 and proto != 59:
            plen = _jumbo(buf, off + 40) if proto == 0 else n - off - 40
            if plen < 0:
                return "bad_ip_header"
        return ip_payload(buf, proto, src, dst, off + 40, off + 40 + plen, 6, plen + 40)
    return "bad_ip_header"


def _jumbo(buf: bytes, t: int) -> int:
    """The payload length of an IPv6 packet whose payload length is 0, from the jumbo payload
    option (RFC 2675) of its hop-by-hop header at `t`: the option's length less that header,
    or the rest of the captured frame when there is no such option (Linux BIG TCP since 6.3
    sends none); -1 when the header is cut or malformed."""
    n = len(buf)
    if n < t + 8:
        return -1
    stop = t + ((buf[t + 1] + 1) << 3)
    i = t + 2
    while i < stop and i < n:
        kind = buf[i]
        if kind == 0:
            i += 1
            continue
        if i + 1 >= n:
            return -1
        if kind == 0xC2 and buf[i + 1] == 4 and i + 6 <= n:
            size = buf[i + 2] << 24 | buf[i + 3] << 16 | buf[i + 4] << 8 | buf[i + 5]
            return size if size > 0xFFFF else -1
        i += 2 + buf[i + 1]
    return n - t


def ip_payload(buf: bytes, proto: int, src: bytes, dst: bytes, t: int, end: int, ver: int,
               iplen: int, ipid: int = -1) -> Layer:
    """The payload of an IP packet at `t`, ending (per its header) at `end`, whose header
    names `proto`: extension headers walked, then TCP, a `Carried` payload, an ICMP quote or
    not_tcp. Also reads a reassembled datagram (`analyzer.decode.reassembly`)."""
    n = len(buf)
    exts = _IP6_EXT if ver == 6 else _IP4_EXT
    while proto in exts:
        if end < t + 8:                         # every extension header is >= 8 bytes
            return "bad_ip_header"
        if n < t + 4:
            return "truncated_ip"
        if proto == 44:
            fo = buf[t + 2] << 8 | buf[t + 3]
            if fo & 0xFFF9:                     # offset or M set: a fragment
                if n < t + 8:
                    return "truncated_ip"
                if end - t - 8 < 0:
                    return "bad_ip_header"
                return Fragment(b"\x06" + src + dst + buf[t + 4:t + 8], 6, fo & 0xFFF8,
                                end - t - 8, bool(fo & 1), buf[t + 8:min(end, n)], buf[t],
                                src, dst, iplen - (end - t))   # (less the fragment header)
            size = 8                            # atomic fragment: a whole packet
        elif proto == 51:
            size = (buf[t + 1] + 2) << 2
        else:
            size = (buf[t + 1] + 1) << 3
        proto = buf[t]
        t += size
        if t > end:
            return "bad_ip_header"
        if t > n:
            return "truncated_ip"
    if proto == 6:
        return _tcp(buf, src, dst, t, end, iplen, ipid)
    if proto == 1 or proto == 58:
        return _icmp_quote(buf, proto, t)
    if proto in _CARRIED:
        return Carried(proto, buf, t, end, src, dst)
    return "not_tcp"


def ip4(buf: bytes, off: int) -> Layer:
    """IPv4 at `off`: the fixed-offset fast path (`ip4_at`), else the general path."""
    seg = ip4_at(buf, off, len(buf))
    return seg if seg is not None else ip_general(buf, off, 4)


def ip6(buf: bytes, off: int) -> Layer:
    """IPv6 at `off`: the fixed-offset fast path (`ip6_at`), else the general path."""
    seg = ip6_at(buf, off, len(buf))
    return seg if seg is not None else ip_general(buf, off, 6)


def ip4_at(buf: bytes, off: i64, n: i64) -> Optional[Segment]:
    """IPv4 with a 20-byte header at `off`, then TCP, in a frame whose captured bytes end at
    `n` (`buf` may hold more: the reader's buffer). Read byte by byte at fixed offsets, in
    machine integers (`i64`: in the compiled build each is one C operation, with no tuple and
    no int objects). None for anything else (options, fragments, another protocol, a header
    cut short), which the general path reads."""
    if n >= off + 40:
        t = off + 20                                      # the TCP header
        offflags = i64(buf[t + 12]) << 8 | i64(buf[t + 13])
        hl = offflags >> 10 & 0x3C
        tot = i64(buf[off + 2]) << 8 | i64(buf[off + 3])
        if (buf[off] == 0x45 and buf[off + 9] == 6
                and not (i64(buf[off + 6]) & 0x3F or buf[off + 7])
                and 20 <= hl <= tot - 20 and n >= t + hl):
            return _tcp_at(buf, off + 12, t, offflags, hl, tot - 20 - hl, n < off + tot, tot,
                           i64(buf[off + 4]) << 24 | i64(buf[off + 5]) << 16
                           | i64(buf[t + 16]) << 8 | i64(buf[t + 17]))
    return None


def ip6_at(buf: bytes, off: i64, n: i64) -> Optional[Segment]:
    """IPv6 at `off` with TCP right after the fixed header, as `ip4_at`; None otherwise."""
    if n >= off + 60:
        t = off + 40                                      # the TCP header
        offflags = i64(buf[t + 12]) << 8 | i64(buf[t + 13])
        hl = offflags >> 10 & 0x3C
        plen = i64(buf[off + 4]) << 8 | i64(buf[off + 5])
        if i64(buf[off]) >> 4 == 6 and buf[off + 6] == 6 and 20 <= hl <= plen and n >= t + hl:
            return _tcp_at(buf, off + 8, t, offflags, hl, plen - hl, n < t + plen, plen + 40, -1)
    return None


def _tcp_at(buf: bytes, addrs: i64, t: i64, offflags: i64, hl: i64, paylen: i64,
            cut: bool, iplen: i64, dup: i64) -> Segment:
    """The segment whose source and destination addresses start at `addrs`, back to back,
    right before its TCP header at `t` (so `buf[addrs:t + 4]` is its 4-tuple key, through `_key_of`);
    `dup` is `Segment.dup` (IPv4 ID and TCP checksum; -1 for IPv6)."""
    mss, wscale = (syn_options(buf, t + 20, t + hl) if offflags & 2 and hl > 20
                   else NO_OPTIONS)
    return Segment(b"", b"",
                   i64(buf[t]) << 8 | i64(buf[t + 1]), i64(buf[t + 2]) << 8 | i64(buf[t + 3]),
                   i64(buf[t + 4]) << 24 | i64(buf[t + 5]) << 16 | i64(buf[t + 6]) << 8
                   | i64(buf[t + 7]),
                   i64(buf[t + 8]) << 24 | i64(buf[t + 9]) << 16 | i64(buf[t + 10]) << 8
                   | i64(buf[t + 11]),
                   offflags & 0xFFF, i64(buf[t + 14]) << 8 | i64(buf[t + 15]), paylen,
                   mss, wscale, cut, key=_key_of(buf[addrs:t + 4]), iplen=iplen,
                   dup=dup, seglen=paylen + (offflags >> 1 & 1) + (offflags & 1))


def ip_any(buf: bytes, off: int) -> Layer:
    """IPv4 or IPv6 at `off`, chosen by the version nibble (raw IP, MPLS payloads)."""
    if off >= len(buf):
        return "truncated_ip"
    ver = buf[off] >> 4
    if ver == 4:
        return ip4(buf, off)
    if ver == 6:
        return ip6(buf, off)
    return "bad_ip_header"
