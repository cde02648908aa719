"""decode.py against real bytes: frames built by `analyzer.testing.synth` and, independently, by dpkt.

Every decoded segment is compared field by field (packed addresses, ports, seq, ack, 12 flag
bits, window, payload length, MSS, window scale) with what dpkt reads from the same bytes.
"""

from __future__ import annotations

import socket

import csv
import gzip
import re
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.testing import synth
from analyzer.decode.frames import (FrameDecoder, QuotedTCP, SKIP_REASONS, SUPPORTED_LINKTYPES, decode_at, decode_frame,
                             decoder_for)
from analyzer.decode.segment import ACK, CWR, ECE, FIN, NS, PSH, RST, SYN, Segment

V4 = ("192.0.2.1", "198.51.100.7")
V6 = ("2001:db8::1", "2001:db8:ffff::2")
MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


# ---------------------------------------------------------------- helpers

def fields(seg: Segment) -> tuple:
    """Every field decode_frame fills, in Segment order."""
    return (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.win,
            seg.paylen, seg.mss, seg.wscale)


def dpkt_fields(ip) -> tuple:
    """The same fields as read by dpkt from a parsed dpkt IP / IP6 object carrying TCP."""
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP), type(tcp)
    if isinstance(ip, dpkt.ip.IP):
        paylen = ip.len - ip.hl * 4 - tcp.off * 4
    else:
        paylen = ip.plen - sum(h.length for h in ip.all_extension_headers) - tcp.off * 4
    mss = wscale = -1
    if tcp.flags & SYN:
        for kind, data in dpkt.tcp.parse_opts(tcp.opts):
            if kind == 2 and len(data) == 2:
                mss = struct.unpack("!H", data)[0]
            elif kind == 3 and len(data) == 1:
                wscale = data[0]
    return (ip.src, ip.dst, tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win, paylen,
            mss, wscale)


def decode(linktype: int, buf: bytes) -> Segment:
    """decode_frame, asserting a segment came out (and that decoder_for agrees)."""
    seg = decode_frame(linktype, buf)
    assert isinstance(seg, Segment), seg
    assert fields(decoder_for(linktype)(buf)) == fields(seg)
    assert (seg.ts, seg.num) == (0, 0)
    return seg


def ether(payload: bytes, etype: int) -> bytes:
    return MAC + struct.pack("!H", etype) + payload


def mpls(*labels: int) -> bytes:
    """An MPLS label stack; the last label gets the bottom-of-stack bit."""
    return b"".join(struct.pack("!I", (lbl << 12) | (0x100 if i == len(labels) - 1 else 0) | 64)
                    for i, lbl in enumerate(labels))


def pppoe(ip: bytes, compressed: bool = False) -> bytes:
    proto = (b"\x21" if ip[0] >> 4 == 4 else b"\x57") if compressed else \
        (b"\x00\x21" if ip[0] >> 4 == 4 else b"\x00\x57")
    body = proto + ip
    return struct.pack("!BBHH", 0x11, 0, 0x1234, len(body)) + body


def sample_ips():
    """(name, ip packet) for a spread of segments: SYN with options, data, FIN, RST, both families."""
    out = []
    for fam, (a, b) in (("v4", V4), ("v6", V6)):
        out += [
            (fam + "-syn", synth.tcp_packet(a, b, 40000, 80, SYN, 1000, options=synth.syn_options())),
            (fam + "-synack", synth.tcp_packet(b, a, 80, 40000, SYN | ACK, 5000, 1001,
                                               options=synth.syn_options(1380, 9))),
            (fam + "-data", synth.tcp_packet(a, b, 40000, 80, PSH | ACK, 1001, 5001, b"x" * 333)),
            (fam + "-fin", synth.tcp_packet(a, b, 40000, 80, FIN | ACK, 1334, 5001, win=1234)),
            (fam + "-rst", synth.tcp_packet(b, a, 80, 40000, RST, 5001)),
            (fam + "-ecn", synth.tcp_packet(a, b, 1, 2, SYN | ECE | CWR | NS, 0xFFFFFFFF, 0)),
        ]
    return out


SAMPLES = sample_ips()


def parse_ip(ip: bytes):
    return dpkt.ip.IP(ip) if ip[0] >> 4 == 4 else dpkt.ip6.IP6(ip)


# ---------------------------------------------------------------- every link type, cross-checked

@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
@pytest.mark.parametrize("link,linktype,dpkt_ip", [
    ("ether", 1, lambda b: dpkt.ethernet.Ethernet(b).data),
    ("sll", 113, lambda b: dpkt.sll.SLL(b).data),
    ("sll2", 276, lambda b: dpkt.sll2.SLL2(b).data),
    ("null", 0, lambda b: dpkt.loopback.Loopback(b).data),
    ("raw", 101, lambda b: parse_ip(b)),
])
def test_synth_frames_match_dpkt(name, ip, link, linktype, dpkt_ip):
    buf = synth.frame(ip, link)
    assert fields(decode(linktype, buf)) == dpkt_fields(dpkt_ip(buf))


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_raw_aliases_and_family_specific_raw(name, ip):
    expected = dpkt_fields(parse_ip(ip))
    for linktype in (12, 14, 101):
        assert fields(decode(linktype, ip)) == expected
    right, wrong = (228, 229) if ip[0] >> 4 == 4 else (229, 228)
    assert fields(decode(right, ip)) == expected
    assert decode_frame(wrong, ip) == "bad_ip_header"


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_bsd_loopback_families_and_byte_orders(name, ip):
    expected = dpkt_fields(parse_ip(ip))
    families = (2,) if ip[0] >> 4 == 4 else (24, 28, 30)
    for family in families:
        for order in "<>":                              # NULL: host order, either accepted
            assert fields(decode(0, struct.pack(order + "I", family) + ip)) == expected
        assert fields(decode(108, struct.pack("!I", family) + ip)) == expected   # LOOP
    assert decode_frame(0, struct.pack("<I", 7) + ip) == "not_ip"      # OSI
    assert decode_frame(108, struct.pack("!I", 23) + ip) == "not_ip"   # IPX


def test_dpkt_built_ethernet_ipv4_and_ipv6():
    tcp = dpkt.tcp.TCP(sport=443, dport=51000, seq=123456789, ack=987654321, flags=ACK | PSH,
                       win=501, data=b"hello world")
    ip4 = dpkt.ip.IP(src=bytes([10, 1, 2, 3]), dst=bytes([10, 3, 2, 1]), p=6, data=tcp)
    eth = dpkt.ethernet.Ethernet(src=MAC[6:], dst=MAC[:6], type=0x0800, data=ip4)
    assert fields(decode(1, bytes(eth))) == (bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1]), 443,
                                             51000, 123456789, 987654321, ACK | PSH, 501, 11, -1, -1)
    syn = dpkt.tcp.TCP(sport=1, dport=2, seq=7, flags=SYN, off=7, win=29200,
                       opts=b"\x02\x04\x05\x64\x01\x03\x03\x0e")
    ip6 = dpkt.ip6.IP6(src=b"\xfe\x80" + b"\x00" * 13 + b"\x01", dst=b"\xfe\x80" + b"\x00" * 13 + b"\x02",
                       nxt=6, hlim=64, data=syn, plen=len(bytes(syn)))
    eth6 = bytes(dpkt.ethernet.Ethernet(src=MAC[6:], dst=MAC[:6], type=0x86DD, data=ip6))
    seg = decode(1, eth6)
    assert fields(seg) == dpkt_fields(dpkt.ethernet.Ethernet(eth6).data)
    assert (seg.mss, seg.wscale, seg.paylen) == (1380, 14, 0)


@pytest.mark.parametrize("vlans", [[10], [100, 200], [4095]])
@pytest.mark.parametrize("name,ip", SAMPLES[:3] + SAMPLES[6:9])
def test_vlan_and_qinq_match_dpkt(vlans, name, ip):
    buf = synth.frame(ip, "ether", vlans=vlans)
    assert fields(decode(1, buf)) == dpkt_fields(dpkt.ethernet.Ethernet(buf).data)


def test_triple_tag_with_0x9100():
    ip = SAMPLES[2][1]
    tags = struct.pack("!HHHHHH", 0x9100, 5, 0x88A8, 6, 0x8100, 7)
    buf = MAC + tags + b"\x08\x00" + ip
    assert fields(decode(1, buf)) == dpkt_fields(dpkt.ip.IP(ip))


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
@pytest.mark.parametrize("etype,labels", [(0x8847, (16,)), (0x8847, (1000, 2000, 3000)),
                                          (0x8848, (42,))])
def test_mpls_label_stacks(name, ip, etype, labels):
    buf = ether(mpls(*labels) + ip, etype)
    assert fields(decode(1, buf)) == dpkt_fields(parse_ip(ip))
    assert fields(decode(1, buf)) == dpkt_fields(dpkt.ethernet.Ethernet(buf).data)


def test_mpls_pseudowire_and_non_ip():
    # An Ethernet pseudowire after its RFC 4385 control word (first nibble 0) is read on
    inner_eth = synth.frame(SAMPLES[2][1], "ether")
    seg = decode(1, ether(mpls(5) + b"\x00\x00\x00\x00" + inner_eth, 0x8847))
    assert fields(seg) == dpkt_fields(parse_ip(SAMPLES[2][1]))
    assert decode_frame(1, ether(mpls(5) + b"\x00\x00\x00\x00" + inner_eth[:13], 0x8847)) == \
        "truncated_link"
    assert decode_frame(1, ether(mpls(5) + b"\x81" + bytes(40), 0x8847)) == "not_ip"
    assert decode_frame(1, ether(mpls(5, 6)[:6], 0x8847)) == "truncated_link"
    assert decode_frame(1, ether(mpls(5), 0x8847)) == "truncated_link"


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_pppoe_session(name, ip, compressed):
    buf = ether(pppoe(ip, compressed), 0x8864)
    expected = dpkt_fields(parse_ip(ip))
    assert fields(decode(1, buf)) == expected
    if not compressed:
        assert fields(decode(1, buf)) == dpkt_fields(dpkt.ethernet.Ethernet(buf).data.data.data)
    tagged = MAC + struct.pack("!HHHH", 0x88A8, 3, 0x8100, 4) + b"\x88\x64" + pppoe(ip, compressed)
    assert fields(decode(1, tagged)) == expected


def test_pppoe_non_ip_and_discovery():
    lcp = struct.pack("!BBHH", 0x11, 0, 1, 6) + b"\xc0\x21" + b"\x01\x01\x00\x04"
    assert decode_frame(1, ether(lcp, 0x8864)) == "not_ip"
    assert decode_frame(1, ether(b"\x11\x09\x00\x00\x00\x00", 0x8863)) == "not_ip"
    assert decode_frame(1, ether(b"\x11\x00\x00\x01\x00", 0x8864)) == "truncated_link"


def test_cisco_fabricpath():
    ip = SAMPLES[8][1]
    buf = ether(b"\x00\x00" + MAC + b"\x86\xdd" + ip, 0x8903)
    assert fields(decode(1, buf)) == dpkt_fields(dpkt.ip6.IP6(ip))


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_sll_sll2_with_vlan_tag(name, ip):
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    tag = struct.pack("!HH", 12, etype)
    sll = struct.pack("!HHH8sH", 0, 1, 6, MAC[:8], 0x8100) + tag + ip
    sll2 = struct.pack("!HHIHBB8s", 0x8100, 0, 2, 1, 0, 6, MAC[:8]) + tag + ip
    expected = dpkt_fields(parse_ip(ip))
    assert fields(decode(113, sll)) == expected
    assert fields(decode(276, sll2)) == expected


def nflog(ip: bytes, order: str = "<", family: int = 2, extra_after: bool = False) -> bytes:
    """An NFLOG record: header, then PACKET_HDR, PREFIX (odd length, padded) and PAYLOAD TLVs."""
    def tlv(tlv_type: int, value: bytes) -> bytes:
        raw = struct.pack(order + "HH", 4 + len(value), tlv_type) + value
        return raw + b"\x00" * (-len(raw) % 4)
    body = tlv(1, b"\x08\x00\x03\x00") + tlv(10, b"drop\x00") + tlv(9, ip)
    if extra_after:
        body += tlv(11, b"\x00\x00\x03\xe8")
    return struct.pack("!BBH", family, 0, 42) + body


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_nflog(name, ip, order):
    family = 2 if ip[0] >> 4 == 4 else 10
    expected = dpkt_fields(parse_ip(ip))
    assert fields(decode(239, nflog(ip, order, family))) == expected
    assert fields(decode(239, nflog(ip, order, family, extra_after=True))) == expected


def test_nflog_without_payload_or_malformed():
    head = struct.pack("!BBH", 2, 0, 1)
    assert decode_frame(239, head + struct.pack("<HH", 8, 1) + bytes(4)) == "not_ip"
    assert decode_frame(239, head + struct.pack("<HH", 2, 1) + bytes(4)) == "bad_link_header"
    assert decode_frame(239, head + struct.pack("<HH", 8, 1) + bytes(2)) == "truncated_link"
    assert decode_frame(239, head[:3]) == "truncated_link"
    assert decode_frame(239, nflog(SAMPLES[0][1], family=7)) == "not_ip"


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_ipoib(name, ip):
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    header = bytes(16) + b"\x2f\xa3\x00\x0a" + b"\x80\x00\x05\x50" + bytes(16) + \
        struct.pack("!HH", etype, 0)
    assert len(header) == 44
    assert fields(decode(242, header + ip)) == dpkt_fields(parse_ip(ip))
    assert decode_frame(242, header[:43]) == "truncated_link"
    assert decode_frame(242, header[:40] + b"\x08\x06\x00\x00" + bytes(28)) == "not_ip"


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_arcnet_linux(name, ip):
    expected = dpkt_fields(parse_ip(ip))
    if ip[0] >> 4 == 4:
        assert fields(decode(129, b"\xbe\x50\x00\x00\xf0" + ip)) == expected        # RFC 1051
        assert fields(decode(129, b"\xbe\x50\x00\x00\xd4\x00\x00\x01" + ip)) == expected
    else:
        assert fields(decode(129, b"\xbe\x50\x00\x00\xc4\x00\x00\x01" + ip)) == expected
    assert decode_frame(129, b"\xbe\x00\xed\x08\xf1" + bytes(18)) == "not_ip"     # old ARP
    assert decode_frame(129, b"\xbe\x00\xed\x08\xd4\x00") == "truncated_link"
    assert decode_frame(129, b"\xbe\x00") == "truncated_link"


def test_unsupported_linktype():
    assert decode_frame(147, synth.frame(SAMPLES[0][1])) == "unsupported_linktype"   # USER0
    assert decoder_for(147)(b"") == "unsupported_linktype"
    assert 147 not in SUPPORTED_LINKTYPES and 276 in SUPPORTED_LINKTYPES and \
        105 in SUPPORTED_LINKTYPES


def test_bytes_like_inputs():
    buf = synth.frame(SAMPLES[0][1])
    expected = fields(decode(1, buf))
    assert fields(decode_frame(1, bytearray(buf))) == expected
    assert fields(decode_frame(1, memoryview(buf))) == expected
    seg = decode_frame(1, memoryview(synth.frame(SAMPLES[8][1], vlans=[3])))
    assert isinstance(seg.src, bytes) and len(seg.src) == 16


# ---------------------------------------------------------------- IP layer

def test_ipv4_options_match_dpkt():
    for opts in (b"\x01\x01\x01\x00", b"\x07\x07\x04" + bytes(4) + b"\x00" * 9, b"\x94\x04\x00\x00"):
        tcp = dpkt.tcp.TCP(sport=22, dport=60000, seq=5, ack=6, flags=SYN | ACK, off=6, win=9,
                           opts=b"\x02\x04\x02\x18", data=b"")
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6,
                        hl=5 + len(opts) // 4, opts=opts, data=tcp)
        buf = ether(bytes(ip), 0x0800)
        seg = decode(1, buf)
        assert fields(seg) == dpkt_fields(dpkt.ethernet.Ethernet(buf).data)
        assert (seg.mss, seg.wscale) == (536, -1)


def ipv6_with_ext(ext_chain: list, tcp: bytes, final: int = 6) -> bytes:
    """IPv6 with extension headers: ext_chain is [(type, body)], each body sized by the caller."""
    payload, types = b"", [t for t, _ in ext_chain]
    nxt_values = types[1:] + [final]
    for (_, body), nxt in zip(ext_chain, nxt_values):
        payload += bytes([nxt]) + body
    payload += tcp
    first = types[0] if types else final
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), first, 64,
                       bytes.fromhex("20010db8" + "00" * 11 + "01"),
                       bytes.fromhex("20010db8" + "00" * 11 + "02")) + payload


HBH = (0, b"\x00\x01\x04\x00\x00\x00\x00")               # 8 bytes, PadN
DSTOPT = (60, b"\x01\x01\x0c" + bytes(12))               # 16 bytes, PadN
ROUTING = (43, b"\x00\x00\x00" + bytes(4))               # 8 bytes, type 0 segs left 0
AH = (51, b"\x04\x00\x00" + b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01" + bytes(12))  # (4+2)*4 = 24


def tcp_bytes(flags=ACK | PSH, payload=b"abcdefg", options=b"") -> bytes:
    return bytes(dpkt.tcp.TCP(sport=1234, dport=80, seq=77, ack=88, flags=flags,
                              off=5 + len(options) // 4, opts=options, win=4096, data=payload))


@pytest.mark.parametrize("chain", [[HBH, DSTOPT], [HBH], [DSTOPT], [HBH, ROUTING, DSTOPT], [AH],
                                   [HBH, AH, DSTOPT]], ids=["hbh+dst", "hbh", "dst", "hbh+rt+dst",
                                                            "ah", "hbh+ah+dst"])
def test_ipv6_extension_headers(chain):
    ip = ipv6_with_ext(chain, tcp_bytes(SYN, b"", b"\x02\x04\x05\xa0\x03\x03\x02\x00"))
    for buf, linktype in ((ether(ip, 0x86DD), 1), (ip, 101), (synth.frame(ip, "sll2"), 276)):
        seg = decode(linktype, buf)
        assert (seg.paylen, seg.mss, seg.wscale, seg.flags) == (0, 1440, 2, SYN)
        assert fields(seg) == dpkt_fields(dpkt.ip6.IP6(ip))
    data = ipv6_with_ext(chain, tcp_bytes(payload=b"z" * 99))
    assert decode(101, data).paylen == 99


def test_ipv6_no_next_header_esp_icmpv6():
    assert decode_frame(101, ipv6_with_ext([HBH], b"", final=59)) == "not_tcp"
    assert decode_frame(101, ipv6_with_ext([], b"\x00\x00\x01\x00" + bytes(20), final=50)) == "not_tcp"
    assert decode_frame(101, ipv6_with_ext([], b"\x80\x00\x00\x00\x00\x01\x00\x01", final=58)) == \
        "not_tcp"


def test_ipv6_extension_header_past_payload_or_capture():
    ip = ipv6_with_ext([HBH, DSTOPT], tcp_bytes())
    short_plen = ip[:4] + struct.pack("!H", 12) + ip[6:]        # DSTOPT ends past the payload
    assert decode_frame(101, short_plen) == "bad_ip_header"
    assert decode_frame(101, ip[:40 + 8 + 10]) == "truncated_ip"
    assert decode_frame(101, ip[:40 + 2]) == "truncated_ip"


def v4_fragment(flags_frag: int, proto: int = 6) -> bytes:
    ip = bytearray(synth.tcp_packet(*V4, 1, 2, ACK, 1, 1, b"q" * 64))
    ip[6:8] = struct.pack("!H", flags_frag)
    ip[9] = proto
    return bytes(ip)


def test_ipv4_fragments():
    assert decode_frame(1, ether(v4_fragment(0x2000), 0x0800)) == "ip_fragment"      # MF, first
    assert decode_frame(1, ether(v4_fragment(0x0010), 0x0800)) == "ip_fragment"      # last
    assert decode_frame(1, ether(v4_fragment(0x2005), 0x0800)) == "ip_fragment"      # middle
    assert decode_frame(1, ether(v4_fragment(0x2000, 17), 0x0800)) == "ip_fragment"  # UDP too
    assert isinstance(decode_frame(1, ether(v4_fragment(0x4000), 0x0800)), Segment)  # DF only


def test_ipv6_fragments():
    tcp = tcp_bytes(payload=b"f" * 40)
    first = ipv6_with_ext([(44, b"\x00\x00\x01\x12\x34\x56\x78")], tcp)             # M set
    later = ipv6_with_ext([(44, b"\x00\x00\xb8\x12\x34\x56\x78")], tcp)             # offset 23
    after_hbh = ipv6_with_ext([HBH, (44, b"\x00\x00\x01\x00\x00\x00\x01")], tcp)
    for ip in (first, later, after_hbh):
        assert decode_frame(101, ip) == "ip_fragment"
        assert decode_frame(1, ether(ip, 0x86DD)) == "ip_fragment"
    atomic = ipv6_with_ext([(44, b"\x00\x00\x00\x12\x34\x56\x78")], tcp)            # RFC 6946
    assert decode(101, atomic).paylen == 40


def test_not_tcp_reasons():
    udp = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=17,
                           data=dpkt.udp.UDP(sport=5353, dport=53, data=b"dns?")))
    icmp = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=1,
                            data=dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=2))))
    arp = bytes(dpkt.arp.ARP())
    assert decode_frame(1, ether(udp, 0x0800)) == "not_tcp"
    assert decode_frame(1, ether(icmp, 0x0800)) == "not_tcp"
    assert decode_frame(1, ether(arp, 0x0806)) == "not_ip"
    assert decode_frame(1, ether(bytes(40), 0x88CC)) == "not_ip"                    # LLDP
    assert decode_frame(1, MAC + struct.pack("!H", 38) + b"\x42\x42\x03" + bytes(35)) == "not_ip"
    assert decode_frame(113, struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0806) + arp) == "not_ip"
    assert decode_frame(276, struct.pack("!HHIHBB8s", 0x0004, 0, 1, 1, 0, 6, bytes(8))) == "not_ip"


def test_icmp_error_quoting_tcp_is_not_tcp():
    quoted = synth.tcp_packet(*V4, 40000, 80, SYN, 1000, options=synth.syn_options())
    unreach = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted[:28]))
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x09", dst=b"\x0a\x00\x00\x01", p=1, data=unreach)
    q = decode_frame(1, ether(bytes(ip), 0x0800))
    # Not a segment: the quoted 4-tuple only, for stream numbering (decode.QuotedTCP).
    assert type(q) is QuotedTCP
    assert (q.src, q.dst, q.sport, q.dport) == (socket.inet_aton(V4[0]), socket.inet_aton(V4[1]),
                                                40000, 80)
    unreach6 = b"\x01\x04\x00\x00" + bytes(4) + synth.tcp_packet(*V6, 1, 2, SYN, 3)
    q6 = decode_frame(101, ipv6_with_ext([], unreach6, final=58))
    assert type(q6) is QuotedTCP and (q6.sport, q6.dport) == (1, 2)
    echo = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(data=quoted[:28]))
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x09", dst=b"\x0a\x00\x00\x01", p=1, data=echo)
    assert decode_frame(1, ether(bytes(ip), 0x0800)) == "not_tcp"      # not an error message


def test_tunnel_headers_are_checked():
    # (tests/test_tunnels.py opens each tunnel; here: eight zero bytes are no tunnel header)
    inner = SAMPLES[2][1]
    gre = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=47, data=b"\x00\x00\x08\x00" + inner))
    assert fields(decode(1, ether(gre, 0x0800))) == dpkt_fields(parse_ip(inner))
    for port, reason in ((4789, "bad_tunnel_header"), (2152, "bad_tunnel_header"),
                         (3544, "not_tcp"), (6081, "not_ip"), (1701, "bad_tunnel_header")):
        udp = dpkt.udp.UDP(sport=40000, dport=port, data=bytes(8) + inner)
        ip = dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=17, data=udp)
        assert decode_frame(1, ether(bytes(ip), 0x0800)) == reason, port


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_ip_in_ip(name, ip):
    expected = dpkt_fields(parse_ip(ip))
    proto = 4 if ip[0] >> 4 == 4 else 41
    outer4 = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=proto, data=ip))
    outer6 = ipv6_with_ext([], ip, final=proto)
    assert fields(decode(1, ether(outer4, 0x0800))) == expected
    assert fields(decode(101, outer6)) == expected
    deep = ip
    for _ in range(8):
        deep = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=4 if deep[0] >> 4 == 4 else 41,
                                data=deep))
    assert decode_frame(101, deep) == "tunnel_not_decoded"


def test_bad_ip_headers():
    ip = bytearray(SAMPLES[2][1])
    ihl4 = bytes([0x44]) + ip[1:]
    assert decode_frame(1, ether(ihl4, 0x0800)) == "bad_ip_header"
    short_total = ip[:2] + struct.pack("!H", 19) + ip[4:]
    assert decode_frame(1, ether(bytes(short_total), 0x0800)) == "bad_ip_header"
    assert decode_frame(1, ether(bytes(SAMPLES[8][1]), 0x0800)) == "bad_ip_header"   # v6 in 0x0800
    assert decode_frame(1, ether(bytes(ip), 0x86DD)) == "bad_ip_header"              # v4 in 0x86DD
    assert decode_frame(101, b"\x50" + bytes(59)) == "bad_ip_header"
    assert decode_frame(101, b"") == "truncated_ip"


def test_bad_tcp_data_offset():
    ip = bytearray(synth.tcp_packet(*V4, 1, 2, ACK, 1, 1, b"p" * 30))
    for doff in (0, 4):
        ip[32] = doff << 4
        assert decode_frame(1, ether(bytes(ip), 0x0800)) == "bad_tcp_header"
    ip[32] = 15 << 4                    # 60-byte header inside a 50-byte IP payload
    assert decode_frame(1, ether(bytes(ip), 0x0800)) == "bad_tcp_header"
    tiny = synth.tcp_packet(*V4, 1, 2, ACK, 1, 1)
    tiny = tiny[:2] + struct.pack("!H", 30) + tiny[4:]   # IP says the TCP header is 10 bytes
    assert decode_frame(1, ether(tiny, 0x0800)) == "bad_tcp_header"
    v6 = bytearray(synth.tcp_packet(*V6, 1, 2, ACK, 1, 1, b"p" * 10))
    v6[52] = 9 << 4                     # 36-byte header inside a 30-byte payload
    assert decode_frame(101, bytes(v6)) == "bad_tcp_header"


# ---------------------------------------------------------------- TCP fields

def test_all_twelve_flag_bits():
    ip = bytearray(synth.tcp_packet(*V4, 1, 2, ACK, 1, 1))
    for bits in (NS, ECE | CWR, 0xE00, 0xFFF, FIN | SYN | RST | PSH | ACK):
        ip[32:34] = struct.pack("!H", 5 << 12 | bits)
        assert decode(1, ether(bytes(ip), 0x0800)).flags == bits
        assert decode(1, ether(bytes(ip), 0x0800)).flags & 0x1FF == dpkt.tcp.TCP(bytes(ip[20:])).flags


@pytest.mark.parametrize("options,expected", [
    (b"\x02\x04\x05\xb4\x04\x02\x01\x03\x03\x07", (1460, 7)),       # Linux
    (b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02", (1460, 8)),
    (b"\x03\x03\x0e\x02\x04\xff\xff", (65535, 14)),
    (b"\x00\x02\x04\x05\xb4", (-1, -1)),                             # EOL first
    (b"\x02\x04\x05\xb4\x00\x03\x03\x07", (1460, -1)),               # EOL stops
    (b"\x02\x03\x05\x03\x03\x07", (-1, 7)),                          # MSS of wrong size skipped
    (b"\x03\x04\x07\x00\x02\x04\x01\x00", (256, -1)),                # WS of wrong size skipped
    (b"\x02\x00\x05\xb4\x03\x03\x07", (-1, -1)),                     # length 0 stops
    (b"\x02\x01\x05\xb4\x03\x03\x07", (-1, -1)),                     # length 1 stops
    (b"\x08\x28\x00\x00\x02\x04\x05\xb4", (-1, -1)),                 # length past the end
    (b"\x01\x01\x01\x02", (-1, -1)),                                 # kind with no length byte
    (b"\x01" * 39 + b"\x03", (-1, -1)),
    (b"\x02\x04\x05\xb4\x02\x04\x02\x18", (536, -1)),                # last one wins
    (b"\x03\x03\xff", (-1, 255)),                                    # raw value, not clamped
    (b"\xfe\x06\xf9\x89\x00\x00\x02\x04\x05\xb4", (1460, -1)),       # experimental, then MSS
])
def test_malformed_and_odd_syn_options(options, expected):
    pad = options + b"\x00" * (-len(options) % 4)
    for family in (V4, V6):
        ip = synth.tcp_packet(*family, 1, 2, SYN, 1, options=b"")
        hl = 20 + len(pad)
        ipb = bytearray(ip + pad)
        if family is V4:
            ipb[2:4] = struct.pack("!H", len(ipb))
            ipb[32] = (hl // 4) << 4
        else:
            ipb[4:6] = struct.pack("!H", len(ipb) - 40)
            ipb[52] = (hl // 4) << 4
        seg = decode(101, bytes(ipb))
        assert (seg.mss, seg.wscale, seg.paylen) == (*expected, 0)


def test_options_read_only_on_syn():
    ip = synth.tcp_packet(*V4, 1, 2, ACK, 1, 1, options=synth.syn_options())
    seg = decode(1, ether(ip, 0x0800))
    assert (seg.mss, seg.wscale) == (-1, -1)
    ip = synth.tcp_packet(*V4, 1, 2, SYN, 1, options=synth.syn_options(wscale=None))
    assert (decode(1, ether(ip, 0x0800)).mss, decode(1, ether(ip, 0x0800)).wscale) == (1460, -1)


def test_ethernet_trailer_padding_is_not_payload():
    ip = synth.tcp_packet(*V4, 40000, 80, ACK, 1, 1)
    frame = ether(ip, 0x0800)
    assert len(frame) == 54
    padded = frame + b"\x00" * 6
    assert decode(1, padded).paylen == 0
    assert decode(1, padded + b"\xde\xad\xbe\xef").paylen == 0        # with an FCS too
    tagged = synth.frame(ip, vlans=[7]) + bytes(2)
    assert decode(1, tagged).paylen == 0
    small = ether(synth.tcp_packet(*V4, 1, 2, PSH | ACK, 1, 1, b"hi"), 0x0800) + bytes(4)
    assert decode(1, small).paylen == 2


# ---------------------------------------------------------------- snaplen cuts

def cut_cases():
    payload = bytes(range(200))
    syn_data = synth.tcp_packet(*V4, 40000, 80, SYN | ACK, 9, 10, payload, options=synth.syn_options())
    v6 = synth.tcp_packet(*V6, 40000, 80, PSH | ACK, 9, 10, payload, options=b"\x01\x01\x08\x0a" + bytes(8))
    opts4 = bytes(dpkt.ip.IP(src=b"\x01" * 4, dst=b"\x02" * 4, p=6, hl=6, opts=b"\x01\x01\x01\x00",
                             data=dpkt.tcp.TCP(sport=1, dport=2, flags=ACK, data=payload)))
    ext6 = ipv6_with_ext([HBH, DSTOPT], tcp_bytes(payload=payload))
    return [  # (name, linktype, frame, link header length, IP header length, TCP header length)
        ("ether-v4-syn-opts", 1, ether(syn_data, 0x0800), 14, 20, 32),
        ("ether-v6", 1, ether(v6, 0x86DD), 14, 40, 32),
        ("vlan-v4-ipopts", 1, synth.frame(opts4, vlans=[1, 2]), 22, 24, 20),
        ("sll2-v6-ext", 276, synth.frame(ext6, "sll2"), 20, 64, 20),
        ("null-v4", 0, synth.frame(syn_data, "null"), 4, 20, 32),
    ]


@pytest.mark.parametrize("name,linktype,frame,link,iphl,tcphl", cut_cases(),
                         ids=[c[0] for c in cut_cases()])
def test_snaplen_cut_at_every_offset(name, linktype, frame, link, iphl, tcphl):
    full = decode(linktype, frame)
    assert full.paylen == 200
    for cut in range(len(frame) + 1):
        got = decode_frame(linktype, frame[:cut])
        if cut < link:
            assert got == "truncated_link", cut
        elif cut < link + iphl:
            assert got == "truncated_ip", cut
        elif cut < link + iphl + 20:
            assert got == "truncated_tcp", cut
        elif cut < link + iphl + tcphl:
            # Options cut by the snaplen: the fixed header is whole, so the segment is read,
            # with the real payload length; options only as far as they were captured.
            assert isinstance(got, Segment), (cut, got)
            assert fields(got)[:-2] == fields(full)[:-2], cut
        else:
            assert isinstance(got, Segment), (cut, got)
            assert fields(got) == fields(full), cut


# ---------------------------------------------------------------- robustness (Hypothesis)

LINKTYPES = sorted(SUPPORTED_LINKTYPES) + [2, 147, 65535]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=160))
def test_never_raises_on_garbage(linktype, data):
    got = decode_frame(linktype, data)
    assert isinstance(got, Segment) or got in SKIP_REASONS


def _seed_frames():
    out = []
    for _, ip in SAMPLES:
        for link, lt in (("ether", 1), ("sll", 113), ("sll2", 276), ("null", 0), ("loop", 108),
                         ("raw", 101)):
            out.append((lt, synth.frame(ip, link)))
        out += [(239, nflog(ip, family=2 if ip[0] >> 4 == 4 else 10)),
                (1, ether(mpls(3, 4) + ip, 0x8847)), (1, ether(pppoe(ip), 0x8864)),
                (1, synth.frame(ip, vlans=[5, 6]))]
    out += [(101, ipv6_with_ext([HBH, AH, DSTOPT], tcp_bytes(SYN, b"", b"\x02\x04\x05\xa0")))]
    return out


SEEDS = _seed_frames()


def mutated(frame: bytes, flips, cut: int) -> bytes:
    """`frame` cut at `cut` bytes, with the (position, value) `flips` that fall inside it."""
    buf = bytearray(frame[:cut])
    for pos, value in flips:
        if pos < len(buf):
            buf[pos] = value
    return bytes(buf)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS),
       st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), max_size=6),
       st.integers(0, 200))
def test_never_raises_on_mutated_frames(seed, flips, cut):
    # ... and where the in-place decoder reads the frame, it reads what decode_frame reads.
    linktype, frame = seed
    buf = mutated(frame, flips, cut)
    for lt in (linktype, 1, 101, 113, 276):
        assert _same_as_decode_frame(lt, buf)
        got = decode_frame(lt, buf)
        assert isinstance(got, Segment) or got in SKIP_REASONS
        if isinstance(got, Segment):
            assert got.paylen >= 0 and len(got.src) in (4, 16) and len(got.dst) == len(got.src)


@settings(max_examples=400, deadline=None)
@given(v6=st.booleans(), sport=st.integers(0, 65535), dport=st.integers(0, 65535),
       seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1), flags=st.integers(0, 0x1FF),
       win=st.integers(0, 65535), paylen=st.integers(0, 300), mss=st.integers(0, 65535),
       wscale=st.one_of(st.none(), st.integers(0, 255)),
       link=st.sampled_from([("ether", 1), ("sll", 113), ("sll2", 276), ("null", 0), ("raw", 101)]))
def test_random_segments_match_dpkt(v6, sport, dport, seq, ack, flags, win, paylen, mss, wscale, link):
    ip = synth.tcp_packet(*(V6 if v6 else V4), sport, dport, flags, seq, ack, bytes(paylen), win,
                          synth.syn_options(mss, wscale))
    buf = synth.frame(ip, link[0])
    assert fields(decode(link[1], buf)) == dpkt_fields(parse_ip(ip))


# ---------------------------------------------------------------- corpus smoke test

CORPUS_FILES = [  # one or more per unusual layout
    "pcapplusplus/sll.pcap", "pcapplusplus/sll2.pcap", "tcpdump/resp_1_benchmark.pcap",
    "pcapplusplus/null_loopback.pcap", "gopacket/test_loopback.pcap", "zeek/redis__attr.pcap",
    "pcapplusplus/raw_ip.pcap", "pcapplusplus/four_ipv6_http_streams.pcap",   # linktype 101, 12
    "pcapplusplus/linktype_ipv6.pcap", "tcpdump/arcnet-rfc1051-arp-icmp-http.pcap",
    "tcpdump/ipoib.pcap", "zeek/nflog-http.pcap", "zeek/mixed-vlan-mpls.pcap",
    "zeek/pppoe-over-qinq.pcap", "pcapplusplus/one_http_stream_rst.pcap", "zeek/http-qinq-0.pcap",
    "zeek/vlan-collisions.pcap", "zeek/cisco-fabric-path.pcap", "suricata-verify/bug-814__input.pcap",
    "ppa-chrissanders/http_ip4and6.pcapng", "dpkt/nb6-http.pcap", "pcapplusplus/tcp-reassembly.pcap",
    "stopddos/amp.TCP.reflection.SYNACK.pcap", "suricata-verify/bug-5437-02__input.pcap",
    "zeek/tunnels__gtp__gtp2_different_udp_port.pcap", "zeek/tcp__truncated-header.pcap",
]


def _manifest() -> dict:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return {row["local_path"]: row for row in csv.DictReader(fh, delimiter="\t")}


def _frames(path: Path):
    fh = gzip.open(path) if path.suffix == ".gz" else open(path, "rb")
    with fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)   # single-interface files only: dpkt uses IDB 0
        linktype = reader.datalink()
        return linktype, [buf for _, buf in reader]


@pytest.mark.skipif(not (CORPUS / "MANIFEST.tsv").exists(), reason="no shared corpus at %s" % CORPUS)
@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_corpus_tcp_counts(rel):
    row = _manifest()[rel]
    linktype, frames = _frames(CORPUS / rel)
    decoder = FrameDecoder()            # with fragment reassembly, as the pipeline runs it
    results = [decoder.decode(linktype, buf) for buf in frames]
    segments = sum(type(r) is Segment for r in results)
    assert all(isinstance(r, Segment) or r in SKIP_REASONS for r in results)
    # tshark's tcp_packets also counts TCP that we skip on purpose: TCP quoted inside ICMP
    # errors, and TCP headers sampled in sFlow datagrams. MANIFEST lists the protocol stacks
    # that carried TCP; those through icmp/sflow are left out (tunnels are read).
    stacks = re.findall(r"(\S+)\((\d+)\)", row["tcp_encapsulations"])
    expected = sum(int(n) for stack, n in stacks if not re.search(r":(icmp|sflow):", stack))
    skipped_by_design = sum(int(n) for stack, n in stacks if re.search(r":(icmp|sflow):", stack))
    assert expected + skipped_by_design == int(row["tcp_packets"])
    if rel == "zeek/tcp__truncated-header.pcap":
        # snaplen 68 cuts one SYN inside its 40-byte TCP options; its fixed header is whole,
        # so it is read (as tshark reads it).
        assert results.count("truncated_tcp") == 0
    assert segments == expected, (rel, int(row["tcp_packets"]), stacks)


def test_addresses_are_written_as_ipaddress_writes_them():
    import ipaddress
    import random
    from analyzer.decode.segment import addr_str
    rng = random.Random(7)
    for _ in range(20000):
        groups = [rng.choice((0, 0, 0, 1, 0xFFFF, rng.randrange(65536))) for _ in range(8)]
        packed = b"".join(g.to_bytes(2, "big") for g in groups)
        ip = ipaddress.IPv6Address(packed)
        if ip.ipv4_mapped is None:       # Python 3.13 writes those dotted; we keep hex groups
            assert addr_str(packed) == str(ip), groups
        v4 = bytes(rng.randrange(256) for _ in range(4))
        assert addr_str(v4) == str(ipaddress.IPv4Address(v4))
    assert addr_str(bytes(10) + b"\xff\xff\x0a\x00\x00\x01") == "::ffff:a00:1"
    assert addr_str(bytes(16)) == "::" and addr_str(bytes(15) + b"\x01") == "::1"
    assert addr_str(b"\x00\x01" + bytes(2) + b"\x00\x02" + bytes(10)) == "1:0:2::"


# ---------------------------------------------------------------- in place (the reader's buffer)

def _in_place(linktype: int, frame: bytes, before: bytes = b"\xff" * 7,
              after: bytes = b"\xee" * 90):
    """decode_at on the frame lying inside a larger buffer, between bytes that are not its."""
    buf = before + frame + after
    return decode_at(linktype, buf, len(before), len(before) + len(frame))


def _same_as_decode_frame(linktype: int, frame: bytes) -> bool:
    got = _in_place(linktype, frame)
    if got is None:
        return True
    want = decode_frame(linktype, frame)
    return (isinstance(want, Segment) and not isinstance(want, QuotedTCP)
            and fields(got) == fields(want) and got.key == want.key and got.cut == want.cut)


@pytest.mark.parametrize("name,ip", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_in_place_reads_the_common_layouts(name, ip):
    frames = [(1, synth.frame(ip, "ether")), (1, synth.frame(ip, vlans=[7])),
              (113, synth.frame(ip, "sll")), (276, synth.frame(ip, "sll2")),
              (101, synth.frame(ip, "raw"))]
    for linktype, frame in frames:
        got = _in_place(linktype, frame)
        assert got is not None, linktype
        assert _same_as_decode_frame(linktype, frame)
    # Rarer layouts are left to decode_frame (the caller copies the frame out).
    assert _in_place(1, synth.frame(ip, vlans=[5, 6])) is None
    assert _in_place(0, synth.frame(ip, "null")) is None


def test_in_place_agrees_on_every_seed():
    assert all(_same_as_decode_frame(linktype, frame) for linktype, frame in SEEDS)


@pytest.mark.parametrize("name,linktype,frame,link,iphl,tcphl", cut_cases(),
                         ids=[c[0] for c in cut_cases()])
def test_in_place_at_every_snaplen_cut(name, linktype, frame, link, iphl, tcphl):
    for cut in range(len(frame) + 1):
        assert _same_as_decode_frame(linktype, frame[:cut]), cut
