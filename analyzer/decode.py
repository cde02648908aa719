"""One captured frame -> one TCP `Segment`, or the reason it carries none.

This is the per-packet hot path. The common layouts (Ethernet, Linux cooked SLL/SLL2, BSD
NULL/LOOP and raw IP, each carrying IPv4 with a 20-byte header or IPv6 without extension
headers, then TCP) are read with one precompiled `struct.Struct.unpack_from` at a fixed
offset; anything else falls back to a general path that checks every length before reading.
No exception is raised or caught on any path: short or malformed input yields a reason.

Link types (https://www.tcpdump.org/linktypes.html):
  0 NULL, 108 LOOP (4-byte family, either byte order accepted: 2 = IPv4; 24, 28, 30 = IPv6)
  1 Ethernet, with any number of 802.1Q / 802.1ad / QinQ tags (0x8100, 0x88a8, 0x9100),
    MPLS label stacks (0x8847, 0x8848; IPv4/IPv6 guessed from the version nibble after the
    bottom of stack), PPPoE session (0x8864; PPP 0x0021 IPv4, 0x0057 IPv6) and Cisco
    FabricPath (0x8903; the inner Ethernet header is decoded like the outer one)
  12, 14, 101 raw IP (version nibble); 228 raw IPv4; 229 raw IPv6
  113 Linux cooked SLL (16-byte header); 276 SLL2 (20-byte header, what `tcpdump -i any` writes)
  129 Linux ARCNET (5-byte RFC 1051 header, 8-byte RFC 1201 header)
  239 NFLOG (TLVs with host-byte-order length/type, either order accepted; payload TLV 9)
  242 IP over InfiniBand (44-byte header, ethertype at offset 40, as libpcap and tcpdump write it)
Network layer: IPv4 with options; IPv6 with hop-by-hop, routing, destination options, AH,
mobility/HIP/shim6 headers and atomic fragments (RFC 6946); AH inside IPv4; IP-in-IP
(IPv4 protocol 4, IPv6 protocol 41, in either family, nested at most `_MAX_NEST` deep).
The TCP payload length comes from the IP length fields, never from the captured bytes, so
Ethernet padding is ignored and a snaplen cut after the TCP header keeps the real length.
TCP options are read only on SYN segments, for MSS (kind 2) and window scale (kind 3).

Skipped, with a reason from `SKIP_REASONS`: non-IP link payloads, non-TCP IP payloads
(including TCP quoted inside ICMP errors), IP fragments (no reassembly), tunnels other than
IP-in-IP (GRE, ERSPAN, EtherIP, L2TP, VXLAN, Geneve, GTP-U, Teredo, MPLS pseudowires),
headers cut short by the snaplen and malformed headers.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Callable, Dict, Tuple, Union

from analyzer.segment import Segment

#: Every reason `decode_frame` can return instead of a segment; the report counts skipped
#: frames by these names, so they are stable.
SKIP_REASONS: Dict[str, str] = {
    "not_ip": "The link layer carries something other than IPv4 or IPv6 (ARP, LLDP, STP, ...).",
    "not_tcp": "The IP packet carries another protocol (UDP, ICMP, ESP, ...).",
    "icmp_quoted_tcp": "An ICMP error quoting a TCP header: not a segment of the connection (a "
                       "4-tuple first seen here still takes a stream number, as in Wireshark).",
    "ip_fragment": "A fragment of a fragmented IP datagram; fragments are not reassembled.",
    "truncated_link": "The captured bytes end inside the link-layer header or its tags.",
    "truncated_ip": "The captured bytes end inside the IP header or its extension headers.",
    "truncated_tcp": "The captured bytes end inside the TCP header or its options.",
    "bad_link_header": "The link-layer header is malformed (an NFLOG TLV shorter than 4 bytes).",
    "bad_ip_header": "Wrong IP version, IHL below 5, total length below the header length, or "
                     "extension headers past the payload length.",
    "bad_tcp_header": "TCP data offset below 5 or past the end of the IP payload.",
    "unsupported_linktype": "The capture's link type is not one this decoder reads.",
    "tunnel_not_decoded": "A tunnel other than IP-in-IP (GRE, ERSPAN, L2TP, VXLAN, Geneve, GTP-U, "
                          "Teredo, MPLS pseudowire), or IP-in-IP nested too deep.",
}

Decoded = Union[Segment, str]

# Fast-path layouts, big-endian. IPv4 fields: version/IHL, total length, flags/fragment
# offset, protocol, addresses; IPv6: version word, payload length, next header, addresses;
# then TCP ports, seq, ack, data offset/flags, window.
_ETH_IP4_TCP = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIHH")   # Ethernet + IPv4 (IHL 5) + TCP
_IP4_TCP = struct.Struct("!BxH2xHxB2x4s4sHHIIHH")
_IP6_TCP = struct.Struct("!IHBx16s16sHHIIHH")
_IP4_HDR = struct.Struct("!2xH2xHxB2x4s4s")   # total length, frag, proto, src, dst
_IP6_HDR = struct.Struct("!4xHBx16s16s")      # payload length, next header, src, dst
_TCP = struct.Struct("!HHIIHH")
_PORTS = struct.Struct("!HH")
_U16LE_PAIR = struct.Struct("<HH")
_U16BE_PAIR = struct.Struct(">HH")

_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_IP6_EXT = frozenset((0, 43, 44, 51, 60, 135, 139, 140))   # 44 = Fragment, 51 = AH
_IP4_EXT = frozenset((51,))                                 # AH
_TUNNEL_PROTOS = frozenset((47, 97, 115, 137))   # GRE (incl. ERSPAN), EtherIP, L2TPv3, MPLS-in-IP
_UDP_TUNNEL_PORTS = frozenset((1701, 2152, 3544, 4754, 4789, 6081, 6635))
_NULL_INET6 = frozenset((24, 28, 30))
_NO_OPTIONS = (-1, -1)   # (mss, wscale) of a segment without those options
_MAX_NEST = 4      # IP headers followed through IP-in-IP before giving up
_MAX_TAGS = 16     # VLAN tags / FabricPath headers followed before giving up


def _syn_options(buf: bytes, i: int, stop: int) -> Tuple[int, int]:
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


def _tcp(buf: bytes, src: bytes, dst: bytes, t: int, end: int) -> Decoded:
    """The TCP header at `t` of an IP payload ending (per the IP header) at `end`."""
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
    mss, wscale = (_syn_options(buf, t + 20, min(t + hl, n)) if offflags & 2 and hl > 20
                   else _NO_OPTIONS)
    return Segment(src, dst, sport, dport, seq, ack, offflags & 0xFFF, win, end - t - hl,
                   mss, wscale)


class QuotedTCP(Segment):
    """The TCP ports quoted inside an ICMP error (destination unreachable, time exceeded, ...).

    Not a segment of the connection, and never analysed as one; the flow table only gives a
    4-tuple it has not seen a stream number, as Wireshark numbers `tcp.stream`.
    """

    __slots__ = ()


_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))


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


def _ip_general(buf: bytes, off: int, want: int) -> Decoded:
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
        elif ver == 6:
            if n < off + 40:
                return "truncated_ip"
            plen, proto, src, dst = _IP6_HDR.unpack_from(buf, off)
            t, end, exts = off + 40, off + 40 + plen, _IP6_EXT
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
            return _tcp(buf, src, dst, t, end)
        if proto != 4 and proto != 41:
            return _not_tcp(buf, proto, t)
        off, want = t, (4 if proto == 4 else 6)
    return "tunnel_not_decoded"


def _ip4(buf: bytes, off: int) -> Decoded:
    """IPv4 at `off`: one unpack for IHL 5 + TCP, else the general path."""
    if len(buf) >= off + 40:
        vihl, tot, frag, proto, src, dst, sport, dport, seq, ack, offflags, win = \
            _IP4_TCP.unpack_from(buf, off)
        hl = offflags >> 10 & 0x3C
        if (vihl == 0x45 and proto == 6 and not frag & 0x3FFF and 20 <= hl <= tot - 20
                and len(buf) >= off + 20 + hl):
            mss, wscale = (_syn_options(buf, off + 40, off + 20 + hl) if offflags & 2 and hl > 20
                           else _NO_OPTIONS)
            return Segment(src, dst, sport, dport, seq, ack, offflags & 0xFFF, win, tot - 20 - hl,
                           mss, wscale)
    return _ip_general(buf, off, 4)


def _ip6(buf: bytes, off: int) -> Decoded:
    """IPv6 at `off`: one unpack when TCP follows the fixed header, else the general path."""
    if len(buf) >= off + 60:
        vtf, plen, nxt, src, dst, sport, dport, seq, ack, offflags, win = \
            _IP6_TCP.unpack_from(buf, off)
        hl = offflags >> 10 & 0x3C
        if vtf >> 28 == 6 and nxt == 6 and 20 <= hl <= plen and len(buf) >= off + 40 + hl:
            mss, wscale = (_syn_options(buf, off + 60, off + 40 + hl) if offflags & 2 and hl > 20
                           else _NO_OPTIONS)
            return Segment(src, dst, sport, dport, seq, ack, offflags & 0xFFF, win, plen - hl,
                           mss, wscale)
    return _ip_general(buf, off, 6)


def _ip_any(buf: bytes, off: int) -> Decoded:
    """IPv4 or IPv6 at `off`, chosen by the version nibble (raw IP, MPLS payloads)."""
    if off >= len(buf):
        return "truncated_ip"
    ver = buf[off] >> 4
    if ver == 4:
        return _ip4(buf, off)
    if ver == 6:
        return _ip6(buf, off)
    return "bad_ip_header"


def _mpls(buf: bytes, off: int) -> Decoded:
    """An MPLS label stack at `off`; after bottom of stack, IP guessed by the version nibble."""
    n = len(buf)
    while True:                       # bounded: each label consumes 4 bytes of `buf`
        if n < off + 4:
            return "truncated_link"
        off += 4
        if buf[off - 2] & 1:          # S bit: bottom of stack
            break
    if off >= n:
        return "truncated_link"
    ver = buf[off] >> 4
    if ver == 4 or ver == 6:
        return _ip_any(buf, off)
    # 0 is the RFC 4385 pseudowire control word, typically before an Ethernet frame.
    return "tunnel_not_decoded" if ver == 0 else "not_ip"


def _pppoe(buf: bytes, off: int) -> Decoded:
    """A PPPoE session header at `off` (6 bytes), then the PPP protocol (1 byte if compressed)."""
    n = len(buf)
    if n < off + 7:
        return "truncated_link"
    proto, off = buf[off + 6], off + 7
    if not proto & 1:                 # uncompressed: two bytes
        if n < off + 1:
            return "truncated_link"
        proto, off = proto << 8 | buf[off], off + 1
    if proto == 0x21:
        return _ip4(buf, off)
    if proto == 0x57:
        return _ip6(buf, off)
    return "not_ip"


def _ethertype(buf: bytes, etype: int, off: int) -> Decoded:
    """The payload at `off` of a link header whose ethertype is `etype`: tags, MPLS, PPPoE, IP."""
    n = len(buf)
    for _ in range(_MAX_TAGS):
        if etype == _ETH_IPV4:
            return _ip4(buf, off)
        if etype == _ETH_IPV6:
            return _ip6(buf, off)
        if etype in _VLAN_TPIDS:              # TCI, then the next ethertype
            if n < off + 4:
                return "truncated_link"
            etype, off = buf[off + 2] << 8 | buf[off + 3], off + 4
        elif etype == 0x8903:                 # FabricPath: FTag/TTL, inner MACs, ethertype
            if n < off + 16:
                return "truncated_link"
            etype, off = buf[off + 14] << 8 | buf[off + 15], off + 16
        elif etype == 0x8847 or etype == 0x8848:
            return _mpls(buf, off)
        elif etype == 0x8864:
            return _pppoe(buf, off)
        else:
            return "not_ip"
    return "not_ip"


def _ether(buf: bytes) -> Decoded:
    """LINKTYPE_ETHERNET (1): Ethernet + IPv4 (IHL 5) + TCP in one unpack, else the general path."""
    n = len(buf)
    if n >= 54:
        etype, vihl, tot, frag, proto, src, dst, sport, dport, seq, ack, offflags, win = \
            _ETH_IP4_TCP.unpack_from(buf)
        if etype != _ETH_IPV4:
            return _ip6(buf, 14) if etype == _ETH_IPV6 else _ethertype(buf, etype, 14)
        hl = offflags >> 10 & 0x3C
        if (vihl == 0x45 and proto == 6 and not frag & 0x3FFF and 20 <= hl <= tot - 20
                and n >= 34 + hl):
            mss, wscale = (_syn_options(buf, 54, 34 + hl) if offflags & 2 and hl > 20
                           else _NO_OPTIONS)
            return Segment(src, dst, sport, dport, seq, ack, offflags & 0xFFF, win, tot - 20 - hl,
                           mss, wscale)
        return _ip_general(buf, 14, 4)
    if n < 14:
        return "truncated_link"
    return _ethertype(buf, buf[12] << 8 | buf[13], 14)


def _sll(buf: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL (113): 16-byte header, protocol type at offset 14."""
    if len(buf) < 16:
        return "truncated_link"
    etype = buf[14] << 8 | buf[15]
    return _ip4(buf, 16) if etype == _ETH_IPV4 else _ethertype(buf, etype, 16)


def _sll2(buf: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL2 (276): 20-byte header, protocol type at offset 0."""
    if len(buf) < 20:
        return "truncated_link"
    etype = buf[0] << 8 | buf[1]
    return _ip4(buf, 20) if etype == _ETH_IPV4 else _ethertype(buf, etype, 20)


def _null(buf: bytes) -> Decoded:
    """LINKTYPE_NULL (0) and LOOP (108): a 4-byte address family, then IP.

    NULL writes the family in the capturing host's byte order, LOOP in network order; either
    order is accepted for both (families fit in one byte, the other three are zero).
    """
    if len(buf) < 4:
        return "truncated_link"
    family = buf[0] or buf[3]
    if family == 2:
        return _ip4(buf, 4)
    return _ip6(buf, 4) if family in _NULL_INET6 else "not_ip"


def _raw(buf: bytes) -> Decoded:
    """LINKTYPE_RAW (101, also 12 and 14): IPv4 or IPv6 by the version nibble."""
    return _ip_any(buf, 0)


def _arcnet_linux(buf: bytes) -> Decoded:
    """LINKTYPE_ARCNET_LINUX (129): src, dst, 2-byte offset, type; RFC 1201 types add flag+seqid."""
    n = len(buf)
    if n < 5:
        return "truncated_link"
    arctype = buf[4]
    if arctype == 0xF0:                       # RFC 1051 IP: 5-byte header
        return _ip4(buf, 5)
    if arctype != 0xD4 and arctype != 0xC4:   # only RFC 1201 IP and IPv6 carry TCP
        return "not_ip"
    if n < 8:
        return "truncated_link"
    return _ip4(buf, 8) if arctype == 0xD4 else _ip6(buf, 8)


def _nflog_payload(buf: bytes, pair: struct.Struct) -> int:
    """Offset of the NFULA_PAYLOAD value, walking TLVs read with `pair` (a byte order).

    Returns -1 if the walk ends cleanly without a payload, -2 if a TLV runs past the captured
    bytes, -3 if a TLV is shorter than its own header. The payload TLV itself may be cut.
    """
    off, n = 4, len(buf)
    while off + 4 <= n:
        size, tlv_type = pair.unpack_from(buf, off)
        if size < 4:
            return -3
        if tlv_type == 9:
            return off + 4
        off += (size + 3) & ~3
    return -1 if off == n else -2


def _nflog(buf: bytes) -> Decoded:
    """LINKTYPE_NFLOG (239): 4-byte header (family, version, resource id), then TLVs."""
    if len(buf) < 4:
        return "truncated_link"
    off = _nflog_payload(buf, _U16LE_PAIR)
    if off < 0:
        other = _nflog_payload(buf, _U16BE_PAIR)
        if other < 0:
            return ("", "not_ip", "truncated_link", "bad_link_header")[-off]
        off = other
    family = buf[0]
    if family == 2:
        return _ip4(buf, off)
    if family == 10:
        return _ip6(buf, off)
    return "not_ip"


def _ipoib(buf: bytes) -> Decoded:
    """LINKTYPE_IPOIB (242): 44-byte header with the ethertype at offset 40 (tcpdump's layout)."""
    if len(buf) < 44:
        return "truncated_link"
    return _ethertype(buf, buf[40] << 8 | buf[41], 44)


def _unsupported(buf: bytes) -> Decoded:
    """Any link type not in `_DECODERS`."""
    return "unsupported_linktype"


_DECODERS: Dict[int, Callable[[bytes], Decoded]] = {
    0: _null, 1: _ether, 12: _raw, 14: _raw, 101: _raw, 108: _null, 113: _sll, 129: _arcnet_linux,
    228: partial(_ip4, off=0), 229: partial(_ip6, off=0),   # LINKTYPE_IPV4, LINKTYPE_IPV6
    239: _nflog, 242: _ipoib, 276: _sll2,
}

#: The link types `decode_frame` reads.
SUPPORTED_LINKTYPES = frozenset(_DECODERS)


def decoder_for(linktype: int) -> Callable[[bytes], Decoded]:
    """The decoder `decode_frame` uses for `linktype`, to look up once per interface."""
    return _DECODERS.get(linktype, _unsupported)


def decode_frame(linktype: int, buf: bytes) -> Decoded:
    """One captured frame -> a Segment (ts/num left 0: the caller sets them), or a skip reason
    (a short stable snake_case string from SKIP_REASONS). Never raises on any bytes."""
    if linktype == 1:
        return _ether(buf)
    return _DECODERS.get(linktype, _unsupported)(buf)
