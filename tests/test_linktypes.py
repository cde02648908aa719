"""The long tail of link layers and IP lengths on real bytes: BIG TCP (IPv4 total length 0,
IPv6 jumbograms), 802.1ah PBB, VN-Tag, PPP, Cisco HDLC, MPLS, Solaris IPNET, and Wi-Fi (802.11
bare, behind radiotap, PPI, Prism and AVS headers), each segment compared with dpkt's reading
of the IP packet inside. Radiotap headers are read by dpkt: its silent fallbacks are guarded.
"""

from __future__ import annotations

import struct

import dpkt
import pytest

from analyzer.decode.frames import decode_frame
from analyzer.decode.segment import ACK, PSH, SYN, Segment
from analyzer.decode.wlan import radiotap_flags
from analyzer.testing import encap as E
from analyzer.testing import synth

IP4 = synth.tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, SYN, 1000, options=synth.syn_options())
IP6 = synth.tcp_packet("2001:db8::1", "2001:db8::2", 40000, 80, ACK | PSH, 5, 6, payload=b"x" * 9)


def _same(seg, ip: bytes) -> None:
    pkt = dpkt.ip.IP(ip) if ip[0] >> 4 == 4 else dpkt.ip6.IP6(ip)
    assert isinstance(seg, Segment), seg
    assert (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags) == \
        (pkt.src, pkt.dst, pkt.data.sport, pkt.data.dport, pkt.data.seq, pkt.data.ack,
         pkt.data.flags)
    assert seg.paylen == len(pkt.data.data)


def _tcp(size: int) -> bytes:
    """A TCP header (ACK, no options) and `size` bytes of payload."""
    return struct.pack("!HHIIHHHH", 1, 2, 5, 6, 0x5010, 65535, 0, 0) + b"y" * size


def test_big_tcp_ipv4_total_length_zero():
    tcp = _tcp(70000)
    big = E.ip("10.0.0.1", "10.0.0.2", 6, tcp, total=0)   # GSO: total length 0
    seg = decode_frame(1, E.ether_ip(big))
    assert isinstance(seg, Segment) and seg.paylen == 70000 and not seg.cut
    assert seg.iplen == 20 + 20 + 70000


def test_big_tcp_ipv6_jumbogram_and_zero_length():
    tcp = _tcp(70000)
    hbh = struct.pack("!BBBBI", 6, 0, 0xC2, 4, 8 + len(tcp))        # RFC 2675 jumbo option
    v6 = struct.pack("!IHBB16s16s", 0x60000000, 0, 0, 64, b"\x20\x01\x0d\xb8" + bytes(12),
                     b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02")
    seg = decode_frame(101, v6 + hbh + tcp)
    assert isinstance(seg, Segment) and seg.paylen == 70000 and seg.iplen == 40 + 8 + 20 + 70000
    # Linux BIG TCP since 6.3: payload length 0 and no hop-by-hop header
    v6tcp = v6[:6] + b"\x06" + v6[7:]
    seg = decode_frame(101, v6tcp + tcp)
    assert isinstance(seg, Segment) and seg.paylen == 70000
    # a jumbo option below 65536 is invalid (RFC 2675)
    small = struct.pack("!BBBBI", 6, 0, 0xC2, 4, 8 + 20)
    assert decode_frame(101, v6 + small + tcp[:20]) == "bad_ip_header"


@pytest.mark.parametrize("ip", [IP4, IP6])
def test_pbb_vntag_and_cisco_hdlc(ip):
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    pbb = struct.pack("!I", 0x00001234) + E.MAC + struct.pack("!H", etype) + ip
    _same(decode_frame(1, E.ether(pbb, 0x88E7)), ip)
    vntag = struct.pack("!I", 0x80010002) + struct.pack("!H", 0x8100) + b"\x00\x05" + \
        struct.pack("!H", etype) + ip
    _same(decode_frame(1, E.ether(vntag, 0x8926)), ip)
    _same(decode_frame(104, b"\x0f\x00" + struct.pack("!H", etype) + ip), ip)
    assert decode_frame(1, E.ether(pbb[:17], 0x88E7)) == "truncated_link"


@pytest.mark.parametrize("ip", [IP4, IP6])
def test_ppp_mpls_and_ipnet(ip):
    proto = b"\x00\x57" if ip[0] >> 4 == 6 else b"\x00\x21"
    _same(decode_frame(9, b"\xff\x03" + proto + ip), ip)
    _same(decode_frame(9, proto[1:] + ip), ip)                  # compressed protocol field
    _same(decode_frame(50, b"\xff\x03" + proto + ip), ip)
    _same(decode_frame(219, struct.pack("!I", (16 << 12) | 0x1FF) + ip), ip)
    family = 26 if ip[0] >> 4 == 6 else 2
    ipnet = struct.pack("!BBHIIIII", 2, family, 0, len(ip), 1, 0, 0, 0)
    _same(decode_frame(226, ipnet + ip), ip)
    assert decode_frame(226, ipnet[:1] + b"\x07" + ipnet[2:] + ip) == "not_ip"
    assert decode_frame(9, b"\xff\x03\xc0\x21" + bytes(8)) == "not_ip"       # LCP


@pytest.mark.parametrize("ip", [IP4, IP6])
@pytest.mark.parametrize("kw", [{}, {"qos": True}, {"qos": True, "htc": True},
                                {"qos": True, "amsdu": True}, {"from_ds": False}])
def test_80211_data_frames(ip, kw):
    frame = E.dot11_data(ip, **kw)
    _same(decode_frame(105, frame), ip)
    _same(decode_frame(127, E.radiotap(frame)), ip)
    ppi = struct.pack("<BBHI", 0, 0, 8, 105)
    _same(decode_frame(192, ppi + frame), ip)
    prism = struct.pack("<II", 0x41, 144) + bytes(136)
    _same(decode_frame(119, prism + frame), ip)
    avs = struct.pack("!II", 0x80211001, 64) + bytes(56)
    _same(decode_frame(163, avs + frame), ip)
    _same(decode_frame(119, avs + frame), ip)


def test_80211_radiotap_padding_flag():
    frame = E.dot11_data(IP4, qos=True)             # a 26-byte header, padded to 28
    hdr, body = frame[:26], frame[26:]
    _same(decode_frame(127, E.radiotap(hdr + b"\x00\x00" + body, flags=0x20)), IP4)
    assert radiotap_flags(E.radiotap(b"", flags=0x30)) == 0x30


def test_80211_frames_without_tcp():
    assert decode_frame(105, E.dot11_data(IP4, protected=True)) == "wlan_protected"
    beacon = b"\x80\x00" + bytes(22) + bytes(12)
    assert decode_frame(105, beacon) == "not_ip"
    null = b"\x48\x01" + bytes(22)
    assert decode_frame(105, null) == "not_ip"
    assert decode_frame(105, b"\x09" + E.dot11_data(IP4)[1:]) == "bad_link_header"  # version 1
    assert decode_frame(105, E.dot11_data(IP4)[:30]) == "truncated_link"
    not_snap = E.dot11_data(IP4)[:24] + b"\x42\x42\x03" + bytes(20)
    assert decode_frame(105, not_snap) == "not_ip"


def test_radiotap_guards_dpkt():
    frame = E.dot11_data(IP4)
    # a header whose present bitmap names Flags but whose stated length ends before it:
    # dpkt would read the Flags byte from the 802.11 frame; we call the header bad
    short = struct.pack("<BBHI", 0, 0, 8, 0x2) + frame
    assert decode_frame(127, short) == "bad_link_header"
    assert radiotap_flags(struct.pack("<BBHI", 0, 0, 8, 0x2)) == -1
    # TSFT (8 bytes, aligned to 8) then Flags: both inside a 17-byte header
    tsft = struct.pack("<BBHI", 0, 0, 17, 0x3) + bytes(8) + b"\x20"
    assert radiotap_flags(tsft) == 0x20
    assert radiotap_flags(tsft[:12]) == -1
    assert decode_frame(127, b"\x01" + E.radiotap(frame)[1:]) == "bad_link_header"  # version
    assert decode_frame(127, E.radiotap(frame)[:6]) == "truncated_link"
    assert decode_frame(127, struct.pack("<BBHI", 0, 0, 400, 0) + frame) == "truncated_link"
