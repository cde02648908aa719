"""The link layer of a frame: one function per link type, each finding the IP header and
handing it to `analyzer.decode.iptcp` (or returning a skip reason from
`analyzer.decode.frames.SKIP_REASONS`); the `*_at` functions read the same headers inside
tunnels (`analyzer.decode.tunnels`) and Wi-Fi frames (`analyzer.decode.wlan`).

Link types (https://www.tcpdump.org/linktypes.html):
  0 NULL, 108 LOOP (4-byte family, either byte order accepted: 2 = IPv4; 24, 28, 30 = IPv6)
  1 Ethernet, with any number of 802.1Q / 802.1ad / QinQ tags (0x8100, 0x88a8, 0x9100),
    802.1ah PBB (0x88e7; I-TAG and customer MACs, then the customer ethertype), Cisco VN-Tag
    (0x8926), MPLS label
    stacks (0x8847, 0x8848; IPv4/IPv6 guessed from the version nibble after the bottom of
    stack, an Ethernet pseudowire after an RFC 4385 control word), PPPoE session (0x8864;
    PPP 0x0021 IPv4, 0x0057 IPv6) and Cisco FabricPath (0x8903; the inner Ethernet header is
    decoded like the outer one)
  9 PPP, 50 PPP in HDLC framing (optional FF 03, protocol 0x0021, 0x0057, 0x0281 MPLS)
  12, 14, 101 raw IP (version nibble); 228 raw IPv4; 229 raw IPv6 (`analyzer.decode.frames`
    maps 228 and 229 straight to `ip4` and `ip6`)
  104 Cisco HDLC (address, control, ethertype)
  113 Linux cooked SLL (16-byte header); 276 SLL2 (20-byte header, what `tcpdump -i any` writes)
  129 Linux ARCNET (5-byte RFC 1051 header, 8-byte RFC 1201 header)
  219 MPLS (a label stack)
  226 Solaris IPNET (24-byte header, address family 2 or 26)
  239 NFLOG (TLVs with host-byte-order length/type, either order accepted; payload TLV 9)
  242 IP over InfiniBand (44-byte header, ethertype at offset 40, as libpcap and tcpdump write it)

`ether` reads Ethernet + IPv4 (IHL 5) + TCP, the commonest layout, in one unpack. No
exception is raised or caught: a header cut short gives truncated_link.
"""

from __future__ import annotations

from typing import Final

import struct

from analyzer.decode.iptcp import Layer, ip4, ip6, ip_any
from analyzer.decode.segment import Segment

# Ethernet + IPv4 (IHL 5) + TCP, big-endian: ethertype, then the fields of `analyzer.iptcp`'s
# IPv4 fast path.
_U16LE_PAIR: Final = struct.Struct("<HH")
_U16BE_PAIR: Final = struct.Struct(">HH")

_ETH_IPV4: Final = 0x0800
_ETH_IPV6: Final = 0x86DD
_VLAN_TPIDS: Final = frozenset((0x8100, 0x88A8, 0x9100))
_NULL_INET6: Final = frozenset((24, 28, 30))
_MAX_TAGS: Final = 16     # VLAN tags / FabricPath headers followed before giving up


def mpls_at(buf: bytes, off: int) -> Layer:
    """An MPLS label stack at `off`; after bottom of stack, IP guessed by the version nibble,
    or an Ethernet pseudowire after its control word (RFC 4385: first nibble 0)."""
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
    if ver == 0:                      # RFC 4385 control word, then (RFC 4448) Ethernet
        return ethernet_at(buf, off + 4)
    return "not_ip"


def _pppoe(buf: bytes, off: int) -> Layer:
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
            paylen = max(0, seg.paylen - excess)
            seg.seglen -= seg.paylen - paylen
            seg.paylen = paylen
    return seg


def ethertype_at(buf: bytes, etype: int, off: int) -> Layer:
    """The payload at `off` of a header whose ethertype is `etype`: tags, PBB, FabricPath,
    MPLS, PPPoE, IP."""
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
        elif etype == 0x8926:                 # Cisco VN-Tag: 4-byte tag, ethertype
            if n < off + 6:
                return "truncated_link"
            etype, off = buf[off + 4] << 8 | buf[off + 5], off + 6
        elif etype == 0x88E7:                 # 802.1ah PBB: I-TAG, customer MACs, ethertype
            if n < off + 18:
                return "truncated_link"
            etype, off = buf[off + 16] << 8 | buf[off + 17], off + 18
        elif etype == 0x8903:                 # FabricPath: FTag/TTL, inner MACs, ethertype
            if n < off + 16:
                return "truncated_link"
            etype, off = buf[off + 14] << 8 | buf[off + 15], off + 16
        elif etype == 0x8847 or etype == 0x8848:
            return mpls_at(buf, off)
        elif etype == 0x8864:
            return _pppoe(buf, off)
        else:
            return "not_ip"
    return "not_ip"


def ether(buf: bytes) -> Layer:
    """LINKTYPE_ETHERNET (1): Ethernet II, then IP (fast paths in iptcp) or tags."""
    if len(buf) < 14:
        return "truncated_link"
    etype = buf[12] << 8 | buf[13]
    if etype == _ETH_IPV4:
        return ip4(buf, 14)
    if etype == _ETH_IPV6:
        return ip6(buf, 14)
    return ethertype_at(buf, etype, 14)


def ethernet_at(buf: bytes, off: int) -> Layer:
    """An Ethernet II header at `off` (inside a tunnel or pseudowire), then its payload."""
    if len(buf) < off + 14:
        return "truncated_link"
    return ethertype_at(buf, buf[off + 12] << 8 | buf[off + 13], off + 14)


def ppp_at(buf: bytes, off: int) -> Layer:
    """A PPP frame at `off`: address and control (FF 03) if present, then the protocol (one
    byte when compressed): 0x0021 IPv4, 0x0057 IPv6, 0x0281 MPLS."""
    n = len(buf)
    if n >= off + 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
        off += 2
    if n < off + 1:
        return "truncated_link"
    proto, off = buf[off], off + 1
    if not proto & 1:
        if n < off + 1:
            return "truncated_link"
        proto, off = proto << 8 | buf[off], off + 1
    if proto == 0x21:
        return ip4(buf, off)
    if proto == 0x57:
        return ip6(buf, off)
    return mpls_at(buf, off) if proto == 0x281 else "not_ip"


def ppp(buf: bytes) -> Layer:
    """LINKTYPE_PPP (9) and PPP_HDLC (50): a PPP frame."""
    return ppp_at(buf, 0)


def c_hdlc(buf: bytes) -> Layer:
    """LINKTYPE_C_HDLC (104): Cisco HDLC, address, control, then an ethertype."""
    if len(buf) < 4:
        return "truncated_link"
    return ethertype_at(buf, buf[2] << 8 | buf[3], 4)


def ipnet(buf: bytes) -> Layer:
    """LINKTYPE_IPNET (226): Solaris IPNET, a 24-byte header whose second byte is the address
    family (2 IPv4, 26 IPv6)."""
    if len(buf) < 24:
        return "truncated_link"
    family = buf[1]
    if family == 2:
        return ip4(buf, 24)
    return ip6(buf, 24) if family == 26 else "not_ip"


def mpls(buf: bytes) -> Layer:
    """LINKTYPE_MPLS (219): an MPLS label stack."""
    return mpls_at(buf, 0)


def sll(buf: bytes) -> Layer:
    """LINKTYPE_LINUX_SLL (113): 16-byte header, protocol type at offset 14."""
    if len(buf) < 16:
        return "truncated_link"
    etype = buf[14] << 8 | buf[15]
    return ip4(buf, 16) if etype == _ETH_IPV4 else ethertype_at(buf, etype, 16)


def sll2(buf: bytes) -> Layer:
    """LINKTYPE_LINUX_SLL2 (276): 20-byte header, protocol type at offset 0."""
    if len(buf) < 20:
        return "truncated_link"
    etype = buf[0] << 8 | buf[1]
    return ip4(buf, 20) if etype == _ETH_IPV4 else ethertype_at(buf, etype, 20)


def null(buf: bytes) -> Layer:
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


def raw(buf: bytes) -> Layer:
    """LINKTYPE_RAW (101, also 12 and 14): IPv4 or IPv6 by the version nibble."""
    return ip_any(buf, 0)


def arcnet_linux(buf: bytes) -> Layer:
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


def nflog(buf: bytes) -> Layer:
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


def ipoib(buf: bytes) -> Layer:
    """LINKTYPE_IPOIB (242): 44-byte header with the ethertype at offset 40 (tcpdump's layout)."""
    if len(buf) < 44:
        return "truncated_link"
    return ethertype_at(buf, buf[40] << 8 | buf[41], 44)
