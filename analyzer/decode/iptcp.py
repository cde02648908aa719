"""The network and transport layers of a frame: IP header(s) at an offset -> a TCP `Segment`,
or the reason it carries none (a short stable string from `analyzer.decode.frames.SKIP_REASONS`).

IPv4 with options; IPv6 with hop-by-hop, routing, destination options, AH, mobility/HIP/shim6
headers and atomic fragments (RFC 6946); AH inside IPv4; IP-in-IP (IPv4 protocol 4, IPv6
protocol 41, in either family, nested at most `_MAX_NEST` deep). `ip4_at` and `ip6_at` read
IPv4 with a 20-byte header or IPv6 without extension headers, then TCP, at fixed offsets
(also inside the reader's buffer, given where the frame ends); anything else goes to
`ip_general`, which checks every length against both the captured bytes and the IP length
fields. No exception is raised or caught.

The TCP payload length comes from the IP length fields, never from the captured bytes, so
Ethernet padding is ignored and a snaplen cut after the TCP header keeps the real length.
TCP options are read only on SYN segments, for MSS (kind 2) and window scale (kind 3).
An ICMP error quoting a TCP header gives its quoted 4-tuple as a `QuotedTCP`; tunnels other
than IP-in-IP are recognised by protocol or UDP port and left closed.
"""

from __future__ import annotations

import struct
from typing import Final, Optional, Tuple, Union

from analyzer.decode.segment import Segment

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
_TUNNEL_PROTOS: Final = frozenset((47, 97, 115, 137))   # GRE/ERSPAN, EtherIP, L2TPv3, MPLS-in-IP
_UDP_TUNNEL_PORTS: Final = frozenset((1701, 2152, 3544, 4754, 4789, 6081, 6635))
NO_OPTIONS: Final = (-1, -1)   # (mss, wscale) of a segment without those options
_MAX_NEST: Final = 4      # IP headers followed through IP-in-IP before giving up


def syn_options(buf: bytes, i: int, stop: int) -> Tuple[int, int]:
    """(mss, wscale) from the TCP options in buf[i:stop], -1 for each one absent.

    Follows Linux `tcp_parse_options`: an option of the wrong size is ignored; a length below 2
    or past the end stops parsing. Every step advances, so the loop is bounded by `stop - i`.
    """
    mss = wscale = -1
    while i < stop:
        kind = buf[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= stop:
            break
        size = buf[i + 1]
        if size < 2 or i + size > stop:
            break
        if kind == 2 and size == 4:
            mss = buf[i + 2] << 8 | buf[i + 3]
        elif kind == 3 and size == 3:
            wscale = buf[i + 2]
        i += size
    return mss, wscale


def _tcp(buf: bytes, src: bytes, dst: bytes, t: int, end: int, iplen: int,
         ipid: int) -> Decoded:
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


def _not_tcp(buf: bytes, proto: int, t: int) -> Decoded:
    """Reason for an IP payload that is not TCP: a tunnel we leave closed, or plain not_tcp;
    an ICMP error quoting TCP gives its quoted 4-tuple (`QuotedTCP`)."""
    if proto == 1 or proto == 58:
        return _icmp_quote(buf, proto, t)
    if proto in _TUNNEL_PROTOS:
        return "tunnel_not_decoded"
    if proto == 17 and len(buf) >= t + 4:
        sport, dport = _PORTS.unpack_from(buf, t)
        if sport in _UDP_TUNNEL_PORTS or dport in _UDP_TUNNEL_PORTS:
            return "tunnel_not_decoded"
    return "not_tcp"


def ip_general(buf: bytes, off: int, want: int) -> Decoded:
    """The general IP path: IPv4 (`want` 4), IPv6 (6) or either (0) at `off`.

    Handles IPv4 options, IPv6 extension headers, AH, fragments and IP-in-IP; checks every
    length against both the captured bytes and the IP length fields.
    """
    n = len(buf)
    for _ in range(_MAX_NEST):
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
            if ihl < 20 or tot < ihl:
                return "bad_ip_header"
            if n < off + ihl:
                return "truncated_ip"
            if frag & 0x3FFF:
                return "ip_fragment"
            t, end, exts = off + ihl, off + tot, _IP4_EXT
            ipid = buf[off + 4] << 8 | buf[off + 5]
        elif ver == 6:
            if n < off + 40:
                return "truncated_ip"
            plen, proto, src, dst = _IP6_HDR.unpack_from(buf, off)
            t, end, exts = off + 40, off + 40 + plen, _IP6_EXT
            ipid = -1
        else:
            return "bad_ip_header"
        while proto in exts:
            if end < t + 8:                         # every extension header is >= 8 bytes
                return "bad_ip_header"
            if n < t + 4:
                return "truncated_ip"
            if proto == 44:
                if (buf[t + 2] << 8 | buf[t + 3]) & 0xFFF9:   # offset or M set
                    return "ip_fragment"
                size = 8                                    # atomic fragment: a whole packet
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
            return _tcp(buf, src, dst, t, end, end - off, ipid)
        if proto != 4 and proto != 41:
            return _not_tcp(buf, proto, t)
        off, want = t, (4 if proto == 4 else 6)
    return "tunnel_not_decoded"


def ip4(buf: bytes, off: int) -> Decoded:
    """IPv4 at `off`: the fixed-offset fast path (`ip4_at`), else the general path."""
    seg = ip4_at(buf, off, len(buf))
    return seg if seg is not None else ip_general(buf, off, 4)


def ip6(buf: bytes, off: int) -> Decoded:
    """IPv6 at `off`: the fixed-offset fast path (`ip6_at`), else the general path."""
    seg = ip6_at(buf, off, len(buf))
    return seg if seg is not None else ip_general(buf, off, 6)


def ip4_at(buf: bytes, off: int, n: int) -> Optional[Segment]:
    """IPv4 with a 20-byte header at `off`, then TCP, in a frame whose captured bytes end at
    `n` (`buf` may hold more: the reader's buffer). Read byte by byte at fixed offsets (in the
    compiled build each is one C operation, with no tuple and no int objects). None for
    anything else (options, fragments, another protocol, a header cut short), which the
    general path reads."""
    if n >= off + 40:
        t = off + 20                                      # the TCP header
        offflags = buf[t + 12] << 8 | buf[t + 13]
        hl = offflags >> 10 & 0x3C
        tot = buf[off + 2] << 8 | buf[off + 3]
        if (buf[off] == 0x45 and buf[off + 9] == 6 and not (buf[off + 6] & 0x3F or buf[off + 7])
                and 20 <= hl <= tot - 20 and n >= t + hl):
            return _tcp_at(buf, off + 12, t, offflags, hl, tot - 20 - hl, n < off + tot, tot,
                           buf[off + 4] << 24 | buf[off + 5] << 16 | buf[t + 16] << 8 | buf[t + 17])
    return None


def ip6_at(buf: bytes, off: int, n: int) -> Optional[Segment]:
    """IPv6 at `off` with TCP right after the fixed header, as `ip4_at`; None otherwise."""
    if n >= off + 60:
        t = off + 40                                      # the TCP header
        offflags = buf[t + 12] << 8 | buf[t + 13]
        hl = offflags >> 10 & 0x3C
        plen = buf[off + 4] << 8 | buf[off + 5]
        if buf[off] >> 4 == 6 and buf[off + 6] == 6 and 20 <= hl <= plen and n >= t + hl:
            return _tcp_at(buf, off + 8, t, offflags, hl, plen - hl, n < t + plen, plen + 40, -1)
    return None


def _tcp_at(buf: bytes, addrs: int, t: int, offflags: int, hl: int, paylen: int,
            cut: bool, iplen: int, dup: int) -> Segment:
    """The segment whose source and destination addresses start at `addrs`, back to back,
    right before its TCP header at `t` (so `buf[addrs:t + 4]` is its 4-tuple key); `dup` is
    `Segment.dup` (IPv4 ID and TCP checksum; -1 for IPv6)."""
    mss, wscale = (syn_options(buf, t + 20, t + hl) if offflags & 2 and hl > 20
                   else NO_OPTIONS)
    return Segment(b"", b"",
                   buf[t] << 8 | buf[t + 1], buf[t + 2] << 8 | buf[t + 3],
                   buf[t + 4] << 24 | buf[t + 5] << 16 | buf[t + 6] << 8 | buf[t + 7],
                   buf[t + 8] << 24 | buf[t + 9] << 16 | buf[t + 10] << 8 | buf[t + 11],
                   offflags & 0xFFF, buf[t + 14] << 8 | buf[t + 15], paylen,
                   mss, wscale, cut, key=buf[addrs:t + 4], iplen=iplen, dup=dup)


def ip_any(buf: bytes, off: int) -> Decoded:
    """IPv4 or IPv6 at `off`, chosen by the version nibble (raw IP, MPLS payloads)."""
    if off >= len(buf):
        return "truncated_ip"
    ver = buf[off] >> 4
    if ver == 4:
        return ip4(buf, off)
    if ver == 6:
        return ip6(buf, off)
    return "bad_ip_header"
