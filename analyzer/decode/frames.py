"""One captured frame -> one TCP `Segment`, or the reason it carries none.

This is the per-packet hot path. The common layouts (Ethernet with at most one VLAN tag,
Linux cooked SLL/SLL2 and raw IP, each carrying IPv4 with a 20-byte header or IPv6 without
extension headers, then TCP) are read at fixed offsets, by `decode_at` where the frame lies
in the reader's buffer; anything else is copied out and goes to the general path, which
checks every length before reading. No exception is raised or caught on any path: short
or malformed input yields a reason.

The general path, layer by layer: `analyzer.decode.linklayer` and `analyzer.decode.wlan`
frame each link type down to its IP header, `analyzer.decode.iptcp` reads one IP layer, and
what that layer carries instead of TCP goes on here, in a loop bounded by `MAX_LAYERS`: a
tunnel to `analyzer.decode.tunnels` (each adds a record to the segment's `tunnel` context, so
the flow table keeps tenants apart), a fragment to the `FrameDecoder`'s reassembly
(`analyzer.decode.reassembly`). `FrameDecoder` is the stage the pipeline owns (it holds the
fragments in flight and the UDP tunnel ports); `decode_frame` is the same path without
state: fragments are counted, not reassembled. This module names every skip reason.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, Final, Optional, Union

from analyzer.common.native import i64
from analyzer.decode.iptcp import Carried, Decoded, Fragment, Layer, QuotedTCP, ip4, ip4_at, \
    ip6, ip6_at
from analyzer.decode.linklayer import arcnet_linux, c_hdlc, ether, ipnet, ipoib, mpls, nflog, \
    null, ppp, raw, sll, sll2
from analyzer.decode.reassembly import Reassembler
from analyzer.decode.segment import Segment
from analyzer.decode.tunnels import DEFAULT_UDP_PORTS, open_carried
from analyzer.decode.wlan import avs, ieee80211, ppi, prism, radiotap

__all__ = ["SKIP_REASONS", "SUPPORTED_LINKTYPES", "Decoded", "FrameDecoder", "QuotedTCP",
           "decode_at", "decode_frame", "decoder_for"]

#: Every reason `decode_frame` can return instead of a segment; the report counts skipped
#: frames by these names, so they are stable.
SKIP_REASONS: Final[Dict[str, str]] = {
    "not_ip": "The link layer carries something other than IPv4 or IPv6 (ARP, LLDP, STP, "
              "802.11 management and control frames, ...).",
    "not_tcp": "The IP packet carries another protocol (UDP, ICMP, ESP, ...), or a tunnel "
               "message that carries no packet (GTP-U echo, L2TP control, ...).",
    "icmp_quoted_tcp": "An ICMP error quoting a TCP header: not a segment of the connection (a "
                       "4-tuple first seen here still takes a stream number, as in Wireshark).",
    "ip_fragment": "A fragment of a fragmented IP datagram, held for reassembly (the datagram "
                   "is analysed at the frame that completes it), or of one that never completed "
                   "(the report's warnings count those).",
    "ip_fragment_malformed": "A fragment that made its datagram malformed (overlap, conflicting "
                             "ends, over 65535 bytes or too many fragments): the datagram is "
                             "discarded, as Linux discards it (finding IP_FRAGMENTS_MALFORMED).",
    "truncated_link": "The captured bytes end inside the link-layer header or its tags.",
    "truncated_ip": "The captured bytes end inside the IP header or its extension headers.",
    "truncated_tcp": "The captured bytes end inside the TCP header or its options.",
    "truncated_tunnel": "The captured bytes end inside a tunnel header.",
    "bad_link_header": "The link-layer header is malformed (an NFLOG TLV shorter than 4 bytes, a "
                       "radiotap header that does not parse, an 802.11 version other than 0).",
    "bad_ip_header": "Wrong IP version, IHL below 5, total length below the header length, or "
                     "extension headers past the payload length.",
    "bad_tcp_header": "TCP data offset below 5 or past the end of the IP payload.",
    "bad_tunnel_header": "A tunnel header with a wrong version or flags (GRE with routing, "
                         "VXLAN without its I flag, GTP other than version 1, ...).",
    "unsupported_linktype": "The capture's link type is not one this decoder reads.",
    "wlan_protected": "An 802.11 data frame with the Protected bit: encrypted (WEP/WPA), its "
                      "payload cannot be read without the keys.",
    "tunnel_not_decoded": "A tunnel whose inner layout is not in the packet (L2TPv3 with a cookie "
                          "no Ethernet header follows), or tunnels nested deeper than %d layers."
                          % 8,
}

#: Layers (tunnels and reassembled datagrams) followed in one frame before giving up.
MAX_LAYERS: Final = 8


def _unsupported(buf: bytes) -> Layer:
    """Any link type not in `_LINKS`."""
    return "unsupported_linktype"


_LINKS: Final[Dict[int, Callable[[bytes], Layer]]] = {
    0: null, 1: ether, 9: ppp, 12: raw, 14: raw, 50: ppp, 101: raw, 104: c_hdlc, 105: ieee80211,
    108: null, 113: sll, 119: prism, 127: radiotap, 129: arcnet_linux, 163: avs, 192: ppi,
    219: mpls, 226: ipnet, 228: partial(ip4, off=0), 229: partial(ip6, off=0),
    239: nflog, 242: ipoib, 276: sll2,
}

#: The link types `decode_frame` reads.
SUPPORTED_LINKTYPES: Final = frozenset(_LINKS)

#: What each link type read is (tcpdump's LINKTYPE_ names), for docs/skipped.md.
LINKTYPE_NAMES: Final[Dict[int, str]] = {
    0: "NULL (BSD loopback)", 1: "ETHERNET (with VLAN, QinQ, PBB, VN-Tag, MPLS, PPPoE, "
    "FabricPath)", 9: "PPP", 12: "RAW (OpenBSD)", 14: "RAW (BSD/OS)", 50: "PPP_HDLC",
    101: "RAW", 104: "C_HDLC (Cisco HDLC)", 105: "IEEE802_11", 108: "LOOP",
    113: "LINUX_SLL", 119: "PRISM_HEADER (and AVS)", 127: "IEEE802_11_RADIOTAP",
    129: "ARCNET_LINUX", 163: "IEEE802_11_AVS", 192: "PPI (802.11 or Ethernet inside)",
    219: "MPLS", 226: "IPNET (Solaris)", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
    242: "IPOIB", 276: "LINUX_SLL2",
}

#: Encapsulations and link types seen in public captures and left unread, with the reason.
NOT_READ: Final[Dict[str, str]] = {
    "802.11 protected frames": "encrypted (WEP/WPA/WPA2/WPA3); no keys (`wlan_protected`)",
    "A-MSDU subframes after the first": "one frame is one segment here; the first is read",
    "802.11 mesh data frames (mesh control field)": "rare; `not_ip` when the LLC is not at the "
                                                    "expected offset",
    "VXLAN-GPE (port 4790), NSH": "no TCP in the public captures found",
    "GRE with routing (RFC 1701), GRE versions above 1": "obsolete; `bad_tunnel_header`",
    "L2TPv3 with a cookie no Ethernet header follows": "cookie length is configuration, not in "
                                                       "the packet; `tunnel_not_decoded`",
    "MPLS pseudowires without a control word": "the Ethernet header cannot be told from IP "
                                               "by its first nibble; `not_ip`",
    "TCP headers sampled in sFlow datagrams": "samples, not segments of a connection",
    "Juniper link types (PPPoE, ATM, ES, MONITOR; 132, 137, 164, 178)": "vendor headers of "
    "variable layout; `unsupported_linktype`",
    "PKTAP (149, 258)": "Apple's per-packet metadata header; `unsupported_linktype`",
    "IEEE 802.15.4 (230) and other non-IP radios": "carry no TCP/IP framing we read",
    "snoop files (Solaris)": "a file format, not a link type: the capture readers read pcap and "
                             "pcapng only (convert with `editcap`)",
}


class FrameDecoder:
    """The decode stage of one analysis: the general path with its state, the IP fragments in
    flight (`fragments`, None: not reassembled), and the UDP ports opened as tunnels
    (`udp_ports`: port -> `analyzer.decode.tunnels` kind)."""

    def __init__(self, udp_ports: Optional[Dict[int, int]] = None,
                 reassemble: bool = True) -> None:
        self.udp_ports: Dict[int, int] = dict(DEFAULT_UDP_PORTS)
        if udp_ports:
            self.udp_ports.update(udp_ports)
        self.fragments: Optional[Reassembler] = Reassembler() if reassemble else None

    def decode(self, linktype: int, buf: Union[bytes, bytearray, memoryview], ts: int = 0,
               num: int = 0) -> Decoded:
        """One captured frame (frame `num`, at capture time `ts`) -> a Segment (ts/num left
        0: the caller sets them), or a skip reason. Never raises on any bytes."""
        if not isinstance(buf, bytes):
            buf = bytes(buf)
        return self.resolve(_LINKS.get(linktype, _unsupported)(buf), ts, num)

    def resolve(self, res: Layer, ts: int, num: int) -> Decoded:
        """Opens what the first IP layer carried, tunnel by tunnel, until a segment or a
        reason; the segment takes the tunnel context gathered on the way."""
        ctx = b""
        for _ in range(MAX_LAYERS):
            if isinstance(res, Segment):
                if ctx:
                    res.tunnel = ctx
                return res
            if isinstance(res, str):
                return res
            if isinstance(res, Fragment):
                frags = self.fragments
                if frags is None:
                    return "ip_fragment"
                res = frags.add(res, ctx, ts, num)
            elif isinstance(res, Carried):
                record, res = open_carried(res, self.udp_ports)
                ctx += record
        return "tunnel_not_decoded"


#: The general path without state, for `decode_frame`.
_STATELESS: Final = FrameDecoder(reassemble=False)


def decoder_for(linktype: int) -> Callable[[bytes], Decoded]:
    """What `decode_frame` does for `linktype`, to look up once per interface."""
    return partial(decode_frame, linktype)


def decode_frame(linktype: int, buf: Union[bytes, bytearray, memoryview]) -> Decoded:
    """One captured frame -> a Segment (ts/num left 0: the caller sets them), or a skip reason
    (a short stable snake_case string from SKIP_REASONS). Never raises on any bytes; any
    bytes-like frame is read. Stateless: fragments are not reassembled (`FrameDecoder` does)."""
    return _STATELESS.decode(linktype, buf)


def decode_at(linktype: int, buf: bytes, start: int, end: int) -> Optional[Segment]:
    """The commonest layouts, read where the frame lies: `buf[start:end]` (the reader's
    buffer), without copying it out. Ethernet with at most one 802.1Q tag, Linux cooked
    SLL and SLL2, or raw IP; then IPv4 with a 20-byte header or IPv6 without extension
    headers; then TCP. None for every other frame: the caller slices it for `decode_frame`.
    For the frames it reads, the segment is the one `decode_frame` gives (tests/test_decode.py
    holds the two equal)."""
    at = ip_offset(linktype, buf, start, end)
    if at < 0:
        return None
    if at & 1:
        return ip6_at(buf, at >> 1, end)
    return ip4_at(buf, at >> 1, end)


def ip_offset(linktype: i64, buf: bytes, start: i64, end: i64) -> i64:
    """Where the IP header of a frame in one of `decode_at`'s layouts starts, times two, plus
    one for IPv6 (by the link layer's type field, or the version of raw IP); -1 for every other
    frame. In machine integers (`i64`): every frame of a capture comes here."""
    first: i64 = start
    size: i64 = end - first
    etype: i64
    off: i64
    if linktype == 1:
        if size < 14:
            return -1
        etype = i64(buf[first + 12]) << 8 | i64(buf[first + 13])
        off = first + 14
        if etype == 0x8100 and size >= 18:
            etype = i64(buf[first + 16]) << 8 | i64(buf[first + 17])
            off = first + 18
    elif linktype == 276:                       # SLL2 (`tcpdump -i any`)
        if size < 20:
            return -1
        etype = i64(buf[first]) << 8 | i64(buf[first + 1])
        off = first + 20
    elif linktype == 113:                       # SLL
        if size < 16:
            return -1
        etype = i64(buf[first + 14]) << 8 | i64(buf[first + 15])
        off = first + 16
    elif linktype == 101 or linktype == 12 or linktype == 14:
        if size < 1:
            return -1
        ver = i64(buf[first]) >> 4
        if ver == 4:
            return first << 1
        return first << 1 | 1 if ver == 6 else -1
    else:
        return -1
    if etype == 0x0800:
        return off << 1
    if etype == 0x86DD:
        return off << 1 | 1
    return -1
