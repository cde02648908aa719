"""Tunnels: the IP payloads `analyzer.decode.iptcp` hands over as `Carried`, opened to the frame
or packet inside, with the tunnel's context for the flow key.

Rule: a tunnel is opened only when its header checks out (version, flags, reserved bits, the
inner header's version); a payload that does not is not TCP (`not_tcp`), never a guess. Each
opened layer adds one context record (`layer`); `describe` reads the records back for the
reports. The outer endpoints are stored as an unordered pair (the same both ways); the
identifier (VXLAN/Geneve VNI, GRE key, ERSPAN session, GTP-U TEID, L2TP tunnel and session ids)
is the one the packet carries. Some are chosen by each receiver (GTP-U TEIDs, L2TP ids) and
real captures show GRE keys and Geneve VNIs that differ per direction too, so the flow table
accepts a reply whose ids differ once (`loose`: the context without ids; see
`analyzer.tcp.flows`).

Opened (RFC / reference):
  GRE (2784, 2890 keys and sequence numbers; version 1 PPTP, 2637) carrying IPv4, IPv6,
    Ethernet (0x6558, NVGRE), MPLS, PPP, ERSPAN type I/II (0x88be) and III (0x22eb), WCCP
    redirects (0x883e) and Aruba's 802.11 frames (0x8200-0x82ff); GRE in UDP (8086, port 4754)
  VXLAN (7348, ports 4789 and Linux's 8472), Geneve (8926, port 6081)
  GTP-U v1 G-PDUs with sequence/N-PDU fields and extension headers (3GPP TS 29.281, port 2152)
  Teredo (4380, port 3544, and on any port when the payload is an IPv6 packet of exactly
    the UDP payload's length with a Teredo (2001::/32) address, as Zeek and Wireshark's
    heuristic find relays on other ports), with authentication and origin indications
  AYIYA (port 5072, forward opcode, IPv4/IPv6 inside)
  L2TPv2 data messages (2661, port 1701) carrying PPP; L2TPv3 (3931) data over IP (protocol
    115) or UDP carrying Ethernet, without a cookie or with one the Ethernet header after it
    reveals
  IP-in-IP, 6in4, 4in6, 6in6 (protocols 4 and 41), EtherIP (3378, protocol 97),
    MPLS in IP (4023, protocol 137) and in UDP (7510, port 6635)
"""

from __future__ import annotations

from typing import Dict, Final, List, Tuple

from analyzer.decode.iptcp import Carried, Layer, ip_any, ip_general
from analyzer.decode.linklayer import ethernet_at, ethertype_at, mpls_at, ppp_at
from analyzer.decode.segment import addr_str
from analyzer.decode.wlan import ieee80211_at

# Tunnel kinds: the first byte of each context record, and the names the reports use.
IPIP: Final = 1
GRE: Final = 2
ERSPAN: Final = 3
VXLAN: Final = 4
GENEVE: Final = 5
GTPU: Final = 6
TEREDO: Final = 7
AYIYA: Final = 8
L2TP: Final = 9
L2TPV3: Final = 10
ETHERIP: Final = 11
MPLS: Final = 12

#: Tunnel kind -> the name reports and `--udp-tunnel` use.
KIND_NAMES: Final[Dict[int, str]] = {
    IPIP: "ip-in-ip", GRE: "gre", ERSPAN: "erspan", VXLAN: "vxlan", GENEVE: "geneve",
    GTPU: "gtp-u", TEREDO: "teredo", AYIYA: "ayiya", L2TP: "l2tp", L2TPV3: "l2tpv3",
    ETHERIP: "etherip", MPLS: "mpls",
}

#: Every tunnel this module opens, in words (docs/skipped.md).
TUNNELS_READ: Final = (
    "GRE (keys, sequence numbers, checksums; version 1 PPTP) carrying IPv4, IPv6, Ethernet, "
    "MPLS, PPP, WCCP redirects or Aruba 802.11", "ERSPAN types I, II and III",
    "GRE in UDP (port 4754)", "VXLAN (ports 4789, 8472)", "Geneve (port 6081)",
    "GTP-U v1 G-PDUs with extension headers (port 2152)",
    "Teredo (port 3544, and any port by content)", "AYIYA (port 5072)",
    "L2TPv2 data (port 1701, PPP inside)", "L2TPv3 data over IP and UDP (Ethernet inside)",
    "IP-in-IP, 6in4, 4in6, 6in6", "EtherIP", "MPLS in IP and in UDP (port 6635)",
    "nested up to 7 tunnels deep")

#: The kinds a UDP port can be mapped to (`--udp-tunnel PORT=KIND`).
UDP_KINDS: Final[Dict[str, int]] = {
    "vxlan": VXLAN, "geneve": GENEVE, "gtp-u": GTPU, "teredo": TEREDO, "ayiya": AYIYA,
    "l2tp": L2TP, "gre": GRE, "mpls": MPLS,
}

#: The UDP ports opened by default (either port of the datagram).
DEFAULT_UDP_PORTS: Final[Dict[int, int]] = {
    4789: VXLAN, 8472: VXLAN, 6081: GENEVE, 2152: GTPU, 3544: TEREDO, 5072: AYIYA,
    1701: L2TP, 4754: GRE, 6635: MPLS,
}

_NO_ID: Final = b""


def layer(kind: int, src: bytes, dst: bytes, ident: bytes = _NO_ID) -> bytes:
    """One context record: kind, address length, id length, the outer addresses as an
    unordered pair (the smaller first), the identifier both directions share (or none)."""
    lo, hi = (src, dst) if src <= dst else (dst, src)
    return bytes((kind, len(src), len(ident))) + lo + hi + ident


def loose(ctx: bytes) -> bytes:
    """The context without its identifiers (each record's id length 0), or b"" when it holds
    none: what both directions share when each receiver chose its own ids."""
    out = []
    i, n = 0, len(ctx)
    ids = False
    while i + 3 <= n:
        alen, ilen = ctx[i + 1], ctx[i + 2]
        ids = ids or ilen > 0
        out.append(bytes((ctx[i], alen, 0)) + ctx[i + 3:i + 3 + 2 * alen])
        i += 3 + 2 * alen + ilen
    return b"".join(out) if ids else b""


def describe(ctx: bytes) -> List[Tuple[str, str, str, int]]:
    """The records of a tunnel context, outermost first: (kind name, endpoint, endpoint, id),
    the id -1 where the kind keeps none."""
    out = []
    i = 0
    while i + 3 <= len(ctx):
        kind, alen, ilen = ctx[i], ctx[i + 1], ctx[i + 2]
        i += 3
        a, b = ctx[i:i + alen], ctx[i + alen:i + 2 * alen]
        i += 2 * alen
        ident = int.from_bytes(ctx[i:i + ilen], "big") if ilen else -1
        i += ilen
        out.append((KIND_NAMES.get(kind, str(kind)), addr_str(a), addr_str(b), ident))
    return out


def open_carried(c: Carried, ports: Dict[int, int]) -> Tuple[bytes, Layer]:
    """The context record of the tunnel `c` holds and what it carries (a segment, another
    `Carried`, or a skip reason); an empty record when `c` is no tunnel."""
    proto, buf, t, end = c.proto, c.buf, c.off, c.end
    if proto == 17:
        return _udp(c, ports)
    if proto == 4 or proto == 41:
        return layer(IPIP, c.src, c.dst), ip_general(buf, t, 4 if proto == 4 else 6)
    if proto == 47:
        return _gre(c, t)
    if proto == 97:                       # EtherIP: 4-bit version 3, 12 reserved bits
        if len(buf) < t + 2:
            return b"", "truncated_tunnel"
        if buf[t] != 0x30 or buf[t + 1]:
            return b"", "bad_tunnel_header"
        return layer(ETHERIP, c.src, c.dst), ethernet_at(buf, t + 2)
    if proto == 115:
        return _l2tpv3(c, t)
    if proto == 137:
        return layer(MPLS, c.src, c.dst), mpls_at(buf, t)
    return b"", "not_tcp"


def _udp(c: Carried, ports: Dict[int, int]) -> Tuple[bytes, Layer]:
    buf, t = c.buf, c.off
    if len(buf) < t + 8:
        return b"", "not_tcp"
    sport, dport = buf[t] << 8 | buf[t + 1], buf[t + 2] << 8 | buf[t + 3]
    kind = ports.get(dport) or ports.get(sport) or 0
    p = t + 8
    if kind == VXLAN:
        # flags with the I bit, 24 reserved bits, VNI, 8 reserved bits
        if len(buf) < p + 8:
            return b"", "truncated_tunnel"
        if not buf[p] & 0x08:
            return b"", "bad_tunnel_header"
        return layer(VXLAN, c.src, c.dst, buf[p + 4:p + 7]), ethernet_at(buf, p + 8)
    if kind == GENEVE:
        return _geneve(c, p)
    if kind == GTPU:
        return _gtpu(c, p)
    if kind == TEREDO or (kind == 0 and _teredo_like(buf, p, c.end)):
        return _teredo(c, p)
    if kind == AYIYA:
        return _ayiya(c, p)
    if kind == L2TP:
        return _l2tp(c, p)
    if kind == GRE:
        return _gre(c, p)
    if kind == MPLS:
        return layer(MPLS, c.src, c.dst), mpls_at(buf, p)
    return b"", "not_tcp"


def _geneve(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """Geneve: version 0, option length in 4-byte words, protocol type, VNI."""
    buf = c.buf
    if len(buf) < p + 8:
        return b"", "truncated_tunnel"
    if buf[p] >> 6:
        return b"", "bad_tunnel_header"
    inner = p + 8 + ((buf[p] & 0x3F) << 2)
    if len(buf) < inner:
        return b"", "truncated_tunnel"
    return (layer(GENEVE, c.src, c.dst, buf[p + 4:p + 7]),
            _by_ethertype(buf, buf[p + 2] << 8 | buf[p + 3], inner))


def _by_ethertype(buf: bytes, etype: int, off: int) -> Layer:
    """The payload at `off` whose type is the ethertype `etype` (GRE, Geneve)."""
    if etype == 0x6558:
        return ethernet_at(buf, off)
    return ethertype_at(buf, etype, off)


def _gre(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """GRE version 0 (with checksum, key, sequence number) or 1 (PPTP), then its payload."""
    buf = c.buf
    n = len(buf)
    if n < p + 4:
        return b"", "truncated_tunnel"
    flags, ver = buf[p], buf[p + 1] & 7
    etype = buf[p + 2] << 8 | buf[p + 3]
    if ver > 1 or flags & 0x40 or (ver == 1 and (etype != 0x880B or not flags & 0x20)):
        return b"", "bad_tunnel_header"         # routing present (RFC 1701) or bad version
    q = p + 4
    if flags & 0x80:                            # checksum and reserved
        q += 4
    key = b""
    if flags & 0x20:
        key = buf[q:q + 4] if ver == 0 else b""  # PPTP's key field is length + call id
        q += 4
    seq = bool(flags & 0x10)
    if seq:
        q += 4
    if ver == 1 and buf[p + 1] & 0x80:          # PPTP acknowledgment number
        q += 4
    if n < q:
        return b"", "truncated_tunnel"
    if etype == 0x88BE and seq:                 # ERSPAN type II: 8-byte header
        if n < q + 8:
            return b"", "truncated_tunnel"
        if buf[q] >> 4 != 1:
            return b"", "bad_tunnel_header"
        return (layer(ERSPAN, c.src, c.dst, _session(buf, q)), ethernet_at(buf, q + 8))
    if etype == 0x88BE:                         # ERSPAN type I: no header, no sequence
        return layer(ERSPAN, c.src, c.dst), ethernet_at(buf, q)
    if etype == 0x22EB:                         # ERSPAN type III: 12 bytes (+ 8 optional)
        if n < q + 12:
            return b"", "truncated_tunnel"
        if buf[q] >> 4 != 2:
            return b"", "bad_tunnel_header"
        inner = q + 12 + (8 if buf[q + 11] & 1 else 0)
        ctx = layer(ERSPAN, c.src, c.dst, _session(buf, q))
        frame_type = buf[q + 10] >> 2 & 0x1F   # after the P bit; 0 Ethernet, 2 IP
        if frame_type == 0:
            return ctx, ethernet_at(buf, inner)
        return ctx, (ip_any(buf, inner) if frame_type == 2 else "not_ip")
    ctx = layer(GRE, c.src, c.dst, key)
    if etype == 0x880B:
        return ctx, ppp_at(buf, q)
    if etype == 0x883E:                         # WCCP redirect header, then IPv4
        return ctx, ip_any(buf, q + 4)
    if 0x8200 <= etype <= 0x82FF:               # Aruba: 802.11 frames from access points
        return ctx, ieee80211_at(buf, q, False)
    return ctx, _by_ethertype(buf, etype, q)


def _session(buf: bytes, q: int) -> bytes:
    """ERSPAN II/III session id (10 bits) as two bytes."""
    return bytes((buf[q + 2] & 3, buf[q + 3]))


def _gtpu(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """GTPv1-U: a G-PDU (message 255) carries an IP packet after the optional fields and the
    extension headers (each 4*n bytes, its last byte the next type)."""
    buf = c.buf
    n = len(buf)
    if n < p + 8:
        return b"", "truncated_tunnel"
    flags = buf[p]
    if flags >> 5 != 1 or not flags & 0x10:
        return b"", "bad_tunnel_header"
    if buf[p + 1] != 0xFF:
        return b"", "not_tcp"                   # echo, error indication, end marker, ...
    q = p + 8
    if flags & 7:
        if n < q + 4:
            return b"", "truncated_tunnel"
        nxt = buf[q + 3] if flags & 4 else 0
        q += 4
        for _ in range(16):
            if not nxt:
                break
            if n < q + 1:
                return b"", "truncated_tunnel"
            size = buf[q] << 2
            if not size:
                return b"", "bad_tunnel_header"
            if n < q + size:
                return b"", "truncated_tunnel"
            nxt = buf[q + size - 1]
            q += size
        else:
            return b"", "bad_tunnel_header"
    return layer(GTPU, c.src, c.dst, buf[p + 4:p + 8]), ip_any(buf, q)


def _teredo_like(buf: bytes, p: int, end: int) -> bool:
    """An IPv6 packet filling the UDP payload exactly, one of its addresses Teredo's."""
    if end > len(buf) or end - p < 40 or buf[p] >> 4 != 6:
        return False
    if (buf[p + 4] << 8 | buf[p + 5]) + 40 != end - p:
        return False
    return buf[p + 8:p + 12] == b"\x20\x01\x00\x00" or buf[p + 24:p + 28] == b"\x20\x01\x00\x00"


def _teredo(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """Teredo: optional authentication (type 1) and origin indication (type 0), then IPv6."""
    buf = c.buf
    n = len(buf)
    for _ in range(2):
        if n < p + 2:
            return b"", "truncated_tunnel"
        if buf[p] or buf[p + 1] > 1:
            break
        if buf[p + 1] == 1:                     # id length, auth length, nonce, confirmation
            if n < p + 4:
                return b"", "truncated_tunnel"
            p += 4 + buf[p + 2] + buf[p + 3] + 9
        else:
            p += 8
    if n <= p or buf[p] >> 4 != 6:
        return b"", "not_tcp"
    return layer(TEREDO, c.src, c.dst), ip_general(buf, p, 6)


def _ayiya(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """AYIYA: identity and signature lengths in the first bytes; opcode 1 forwards a packet."""
    buf = c.buf
    if len(buf) < p + 8:
        return b"", "truncated_tunnel"
    if buf[p + 2] & 0x0F != 1:
        return b"", "not_tcp"                   # heartbeat, echo, ...
    q = p + 8 + (1 << (buf[p] >> 4)) + ((buf[p + 1] >> 4) << 2)
    nxt = buf[p + 3]
    if nxt != 4 and nxt != 41:
        return b"", "not_tcp"
    return layer(AYIYA, c.src, c.dst), ip_general(buf, q, 4 if nxt == 4 else 6)


def _l2tp(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """L2TP over UDP: version 2 (PPP) or 3 (session id 0 is control)."""
    buf = c.buf
    n = len(buf)
    if n < p + 2:
        return b"", "truncated_tunnel"
    flags, ver = buf[p], buf[p + 1] & 0x0F
    if ver == 3:
        return _l2tpv3(c, p + 4)                # 16 reserved bits, then the session id
    if ver != 2:
        return b"", "bad_tunnel_header"
    if flags & 0x80:
        return b"", "not_tcp"                   # a control message
    ids = p + 2 + (2 if flags & 0x40 else 0)    # tunnel id and session id
    q = ids + 4 + (4 if flags & 0x08 else 0)
    if flags & 0x02:
        if n < q + 2:
            return b"", "truncated_tunnel"
        q += 2 + (buf[q] << 8 | buf[q + 1])
    if n < q:
        return b"", "truncated_tunnel"
    return layer(L2TP, c.src, c.dst, buf[ids:ids + 4]), ppp_at(buf, q)


def _l2tpv3(c: Carried, p: int) -> Tuple[bytes, Layer]:
    """L2TPv3 data: session id, then a cookie of 0, 4 or 8 bytes and an optional 4-byte
    sublayer (both set by configuration, not in the packet): the first layout after which an
    Ethernet header carries IPv4 or IPv6 of the right version is taken."""
    buf = c.buf
    n = len(buf)
    if n < p + 4:
        return b"", "truncated_tunnel"
    if not (buf[p] | buf[p + 1] | buf[p + 2] | buf[p + 3]):
        return b"", "not_tcp"                   # session 0: a control message
    for extra in (0, 4, 8, 12):
        e = p + 4 + extra
        if n >= e + 15:
            etype = buf[e + 12] << 8 | buf[e + 13]
            if (etype == 0x0800 and buf[e + 14] >> 4 == 4) or (
                    etype == 0x86DD and buf[e + 14] >> 4 == 6):
                return layer(L2TPV3, c.src, c.dst, buf[p:p + 4]), ethernet_at(buf, e)
    return b"", "tunnel_not_decoded"
