"""The link layer of a frame: one function per link type, each finding the IP header and
handing it to `analyzer.decode.iptcp` (or returning a skip reason from `analyzer.decode.frames.SKIP_REASONS`).

Link types (https://www.tcpdump.org/linktypes.html):
  0 NULL, 108 LOOP (4-byte family, either byte order accepted: 2 = IPv4; 24, 28, 30 = IPv6)
  1 Ethernet, with any number of 802.1Q / 802.1ad / QinQ tags (0x8100, 0x88a8, 0x9100),
    MPLS label stacks (0x8847, 0x8848; IPv4/IPv6 guessed from the version nibble after the
    bottom of stack), PPPoE session (0x8864; PPP 0x0021 IPv4, 0x0057 IPv6) and Cisco
    FabricPath (0x8903; the inner Ethernet header is decoded like the outer one)
  12, 14, 101 raw IP (version nibble); 228 raw IPv4; 229 raw IPv6 (`analyzer.decode.frames` maps
    228 and 229 straight to `ip4` and `ip6`)
  113 Linux cooked SLL (16-byte header); 276 SLL2 (20-byte header, what `tcpdump -i any` writes)
  129 Linux ARCNET (5-byte RFC 1051 header, 8-byte RFC 1201 header)
  239 NFLOG (TLVs with host-byte-order length/type, either order accepted; payload TLV 9)
  242 IP over InfiniBand (44-byte header, ethertype at offset 40, as libpcap and tcpdump write it)

`ether` reads Ethernet + IPv4 (IHL 5) + TCP, the commonest layout, in one unpack. No
exception is raised or caught: a header cut short gives truncated_link.
"""

from __future__ import annotations

from typing import Final

import struct

from analyzer.decode.iptcp import Decoded, ip4, ip6, ip_any
from analyzer.decode.segment import Segment

# Ethernet + IPv4 (IHL 5) + TCP, big-endian: ethertype, then the fields of `analyzer.decode.iptcp`'s
# IPv4 fast path.
_U16LE_PAIR: Final = struct.Struct("<HH")
_U16BE_PAIR: Final = struct.Struct(">HH")

_ETH_IPV4: Final = 0x0800
_ETH_IPV6: Final = 0x86DD
_VLAN_TPIDS: Final = frozenset((0x8100, 0x88A8, 0x9100))
_NULL_INET6: Final = frozenset((24, 28, 30))
_MAX_TAGS: Final = 16     # VLAN tags / FabricPath headers followed before giving up


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
        return ip_any(buf, off)
    # 0 is the RFC 4385 pseudowire control word, typically before an Ethernet frame.
    return "tunnel_not_decoded" if ver == 0 else "not_ip"


def _pppoe(buf: bytes, off: int) -> Decoded:
    """A PPPoE session header at `off` (6 bytes), then the PPP protocol (1 byte if compressed)."""
    n = len(buf)
    if n < off + 7:
        return "truncated_link"
    start = off
    proto, off = buf[off + 6], off + 7
    if not proto & 1:                 # uncompressed: two bytes
        if n < off + 1:
            return "truncated_link"
        proto, off = proto << 8 | buf[off], off + 1
    if proto == 0x21:
        seg = ip4(buf, off)
    elif proto == 0x57:
        seg = ip6(buf, off)
    else:
        return "not_ip"
    # The PPPoE LENGTH bounds the PPP frame: an IP header that claims more (padding counted
    # in its total length) does not make those bytes TCP payload (as Wireshark reads it).
    if seg.__class__ is Segment and seg.paylen and n >= off + 6:
        ppp_end = start + 6 + (buf[start + 4] << 8 | buf[start + 5])
        ip_len = (buf[off + 2] << 8 | buf[off + 3]) if proto == 0x21 else \
            40 + (buf[off + 4] << 8 | buf[off + 5])
        excess = off + ip_len - ppp_end
        if excess > 0:
            seg.paylen = max(0, seg.paylen - excess)
    return seg


def _ethertype(buf: bytes, etype: int, off: int) -> Decoded:
    """The payload at `off` of a link header whose ethertype is `etype`: tags, MPLS, PPPoE, IP."""
    n = len(buf)
    for _ in range(_MAX_TAGS):
        if etype == _ETH_IPV4:
            return ip4(buf, off)
        if etype == _ETH_IPV6:
            return ip6(buf, off)
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


def ether(buf: bytes) -> Decoded:
    """LINKTYPE_ETHERNET (1): Ethernet II, then IP (fast paths in iptcp) or tags."""
    if len(buf) < 14:
        return "truncated_link"
    etype = buf[12] << 8 | buf[13]
    if etype == _ETH_IPV4:
        return ip4(buf, 14)
    if etype == _ETH_IPV6:
        return ip6(buf, 14)
    return _ethertype(buf, etype, 14)


def sll(buf: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL (113): 16-byte header, protocol type at offset 14."""
    if len(buf) < 16:
        return "truncated_link"
    etype = buf[14] << 8 | buf[15]
    return ip4(buf, 16) if etype == _ETH_IPV4 else _ethertype(buf, etype, 16)


def sll2(buf: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL2 (276): 20-byte header, protocol type at offset 0."""
    if len(buf) < 20:
        return "truncated_link"
    etype = buf[0] << 8 | buf[1]
    return ip4(buf, 20) if etype == _ETH_IPV4 else _ethertype(buf, etype, 20)


def null(buf: bytes) -> Decoded:
    """LINKTYPE_NULL (0) and LOOP (108): a 4-byte address family, then IP.

    NULL writes the family in the capturing host's byte order, LOOP in network order; either
    order is accepted for both (families fit in one byte, the other three are zero).
    """
    if len(buf) < 4:
        return "truncated_link"
    family = buf[0] or buf[3]
    if family == 2:
        return ip4(buf, 4)
    return ip6(buf, 4) if family in _NULL_INET6 else "not_ip"


def raw(buf: bytes) -> Decoded:
    """LINKTYPE_RAW (101, also 12 and 14): IPv4 or IPv6 by the version nibble."""
    return ip_any(buf, 0)


def arcnet_linux(buf: bytes) -> Decoded:
    """LINKTYPE_ARCNET_LINUX (129): src, dst, 2-byte offset, type; RFC 1201 types add flag+seqid."""
    n = len(buf)
    if n < 5:
        return "truncated_link"
    arctype = buf[4]
    if arctype == 0xF0:                       # RFC 1051 IP: 5-byte header
        return ip4(buf, 5)
    if arctype != 0xD4 and arctype != 0xC4:   # only RFC 1201 IP and IPv6 carry TCP
        return "not_ip"
    if n < 8:
        return "truncated_link"
    return ip4(buf, 8) if arctype == 0xD4 else ip6(buf, 8)


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


def nflog(buf: bytes) -> Decoded:
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
        return ip4(buf, off)
    if family == 10:
        return ip6(buf, off)
    return "not_ip"


def ipoib(buf: bytes) -> Decoded:
    """LINKTYPE_IPOIB (242): 44-byte header with the ethertype at offset 40 (tcpdump's layout)."""
    if len(buf) < 44:
        return "truncated_link"
    return _ethertype(buf, buf[40] << 8 | buf[41], 44)
