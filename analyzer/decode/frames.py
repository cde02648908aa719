"""One captured frame -> one TCP `Segment`, or the reason it carries none.

This is the per-packet hot path. The common layouts (Ethernet with at most one VLAN tag,
Linux cooked SLL/SLL2 and raw IP, each carrying IPv4 with a 20-byte header or IPv6 without
extension headers, then TCP) are read at fixed offsets, by `decode_at` where the frame lies
in the reader's buffer; anything else is copied out and goes to `decode_frame`, whose general
path checks every length before reading. No exception is raised or caught on any path: short
or malformed input yields a reason.

Two layers, two modules: `analyzer.decode.linklayer` frames each link type down to its IP header
(Ethernet with VLAN tags, MPLS, PPPoE and FabricPath; Linux cooked SLL/SLL2; NULL/LOOP; raw
IP; ARCNET; NFLOG; IP over InfiniBand), and `analyzer.decode.iptcp` reads IPv4/IPv6 with options,
extension headers and IP-in-IP, then TCP. This module picks the link decoder and names every
skip reason.

Skipped, with a reason from `SKIP_REASONS`: non-IP link payloads, non-TCP IP payloads
(including TCP quoted inside ICMP errors), IP fragments (no reassembly), tunnels other than
IP-in-IP (GRE, ERSPAN, EtherIP, L2TP, VXLAN, Geneve, GTP-U, Teredo, MPLS pseudowires),
headers cut short by the snaplen and malformed headers.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, Final, Optional, Union

from analyzer.decode.iptcp import Decoded, QuotedTCP, ip4, ip4_at, ip6, ip6_at
from analyzer.decode.linklayer import arcnet_linux, ether, ipoib, nflog, null, raw, sll, sll2
from analyzer.decode.segment import Segment

__all__ = ["SKIP_REASONS", "SUPPORTED_LINKTYPES", "Decoded", "QuotedTCP", "decode_at",
           "decode_frame", "decoder_for"]

#: Every reason `decode_frame` can return instead of a segment; the report counts skipped
#: frames by these names, so they are stable.
SKIP_REASONS: Final[Dict[str, str]] = {
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


def _unsupported(buf: bytes) -> Decoded:
    """Any link type not in `_DECODERS`."""
    return "unsupported_linktype"


_DECODERS: Final[Dict[int, Callable[[bytes], Decoded]]] = {
    0: null, 1: ether, 12: raw, 14: raw, 101: raw, 108: null, 113: sll, 129: arcnet_linux,
    228: partial(ip4, off=0), 229: partial(ip6, off=0),   # LINKTYPE_IPV4, LINKTYPE_IPV6
    239: nflog, 242: ipoib, 276: sll2,
}

#: The link types `decode_frame` reads.
SUPPORTED_LINKTYPES: Final = frozenset(_DECODERS)


def decoder_for(linktype: int) -> Callable[[bytes], Decoded]:
    """The decoder `decode_frame` uses for `linktype`, to look up once per interface."""
    return _DECODERS.get(linktype, _unsupported)


def decode_frame(linktype: int, buf: Union[bytes, bytearray, memoryview]) -> Decoded:
    """One captured frame -> a Segment (ts/num left 0: the caller sets them), or a skip reason
    (a short stable snake_case string from SKIP_REASONS). Never raises on any bytes; any
    bytes-like frame is read (the decoders themselves take `bytes`)."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    if linktype == 1:
        return ether(buf)
    return _DECODERS.get(linktype, _unsupported)(buf)


def decode_at(linktype: int, buf: bytes, start: int, end: int) -> Optional[Segment]:
    """The commonest layouts, read where the frame lies: `buf[start:end]` (the reader's
    buffer), without copying it out. Ethernet with at most one 802.1Q tag, Linux cooked
    SLL and SLL2, or raw IP; then IPv4 with a 20-byte header or IPv6 without extension
    headers; then TCP. None for every other frame: the caller slices it for `decode_frame`.
    For the frames it reads, the segment is the one `decode_frame` gives (tests/test_decode.py
    holds the two equal)."""
    size = end - start
    if linktype == 1:
        if size < 14:
            return None
        etype = buf[start + 12] << 8 | buf[start + 13]
        off = start + 14
        if etype == 0x8100 and size >= 18:
            etype = buf[start + 16] << 8 | buf[start + 17]
            off = start + 18
    elif linktype == 276:                       # SLL2 (`tcpdump -i any`)
        if size < 20:
            return None
        etype = buf[start] << 8 | buf[start + 1]
        off = start + 20
    elif linktype == 113:                       # SLL
        if size < 16:
            return None
        etype = buf[start + 14] << 8 | buf[start + 15]
        off = start + 16
    elif linktype == 101 or linktype == 12 or linktype == 14:
        if size < 1:
            return None
        ver = buf[start] >> 4
        if ver == 4:
            return ip4_at(buf, start, end)
        return ip6_at(buf, start, end) if ver == 6 else None
    else:
        return None
    if etype == 0x0800:
        return ip4_at(buf, off, end)
    if etype == 0x86DD:
        return ip6_at(buf, off, end)
    return None
