"""Tunnels on real bytes: every kind `analyzer.decode.tunnels` opens, built by
`analyzer.testing.encap` around a TCP packet from `analyzer.testing.synth`, decoded, and the
inner segment compared field by field with what dpkt reads from the inner packet alone; the
tunnel context in the flow key (two tenants, per-direction ids) and in every output; the bounds
(nesting, malformed headers) and `--udp-tunnel`.
"""

from __future__ import annotations

import io
import json
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decode.frames import SKIP_REASONS, FrameDecoder, decode_frame
from analyzer.decode.segment import ACK, SYN, Segment
from analyzer.decode.tunnels import describe
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.testing import encap as E
from analyzer.testing import synth

INNER4 = synth.tcp_packet("10.1.0.1", "10.1.0.2", 40000, 80, SYN, 1000,
                          options=synth.syn_options())
INNER6 = synth.tcp_packet("2001:db8::1", "2001:db8::2", 40000, 80, ACK, 7, 9, payload=b"x" * 50)
OUT = ("192.0.2.1", "198.51.100.2")
OUT6 = ("2001:db8:f::1", "2001:db8:f::2")


def _fields(seg) -> tuple:
    return (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.win,
            seg.paylen, seg.mss)


def _dpkt_fields(ip: bytes) -> tuple:
    pkt = dpkt.ip.IP(ip) if ip[0] >> 4 == 4 else dpkt.ip6.IP6(ip)
    tcp = pkt.data
    mss = -1
    for kind, data in dpkt.tcp.parse_opts(tcp.opts):
        if kind == 2:
            mss = struct.unpack("!H", data)[0]
    return (pkt.src, pkt.dst, tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win,
            len(tcp.data), mss if tcp.flags & SYN else -1)


def _udp(dport: int, payload: bytes, out=OUT, sport: int = 50000) -> bytes:
    return E.ether_ip(E.udp(out[0], out[1], sport, dport, payload))


def _gre(payload: bytes, out=OUT) -> bytes:
    return E.ether_ip(E.ip(out[0], out[1], 47, payload))


L2TP_PPP = b"\x00\x21" + INNER4
PPTP = struct.pack("!HHHH", 0x3001, 0x880B, len(INNER4) + 4, 7) + struct.pack("!I", 1) + \
    b"\xff\x03\x00\x21" + INNER4

# name -> (frame, inner IP packet, [(kind, endpoint, endpoint, id)])
CASES = {
    "gre": (_gre(E.gre(0x0800, INNER4)), INNER4, [("gre", *OUT, -1)]),
    "gre-key-csum-seq": (_gre(E.gre(0x86DD, INNER6, key=77, seq=5, checksum=True)), INNER6,
                         [("gre", *OUT, 77)]),
    "gre-ethernet": (_gre(E.gre(0x6558, E.ether_ip(INNER4), key=5)), INNER4, [("gre", *OUT, 5)]),
    "gre-over-ipv6": (E.ether_ip(E.ip(OUT6[0], OUT6[1], 47, E.gre(0x0800, INNER4))), INNER4,
                      [("gre", *OUT6, -1)]),
    "pptp": (_gre(PPTP), INNER4, [("gre", *OUT, -1)]),
    "erspan-i": (_gre(E.gre(0x88BE, E.ether_ip(INNER4))), INNER4, [("erspan", *OUT, -1)]),
    "erspan-ii": (_gre(E.gre(0x88BE, E.erspan2(300, E.ether_ip(INNER4)), seq=1)), INNER4,
                  [("erspan", *OUT, 300)]),
    "erspan-iii": (_gre(E.gre(0x22EB, E.erspan3(9, E.ether_ip(INNER6)), seq=1)), INNER6,
                   [("erspan", *OUT, 9)]),
    "erspan-iii-ip": (_gre(E.gre(0x22EB, E.erspan3(9, INNER4, frame_type=2), seq=1)), INNER4,
                      [("erspan", *OUT, 9)]),
    "vxlan": (_udp(4789, E.vxlan(4242, E.ether_ip(INNER4))), INNER4, [("vxlan", *OUT, 4242)]),
    "vxlan-8472": (_udp(8472, E.vxlan(1, E.ether_ip(INNER6))), INNER6, [("vxlan", *OUT, 1)]),
    "geneve": (_udp(6081, E.geneve(99, E.ether_ip(INNER4), options=bytes(8))), INNER4,
               [("geneve", *OUT, 99)]),
    "geneve-ip": (_udp(6081, E.geneve(99, INNER6, ptype=0x86DD)), INNER6,
                  [("geneve", *OUT, 99)]),
    "gtp-u": (_udp(2152, E.gtpu(0xABCD, INNER4), sport=2152), INNER4,
              [("gtp-u", *OUT, 0xABCD)]),
    "gtp-u-ext": (_udp(2152, E.gtpu(5, INNER6, ext=b"\x01\x00\x09\x00")), INNER6,
                  [("gtp-u", *OUT, 5)]),
    "teredo": (_udp(3544, E.teredo_origin(INNER6)), INNER6, [("teredo", *OUT, -1)]),
    "ayiya": (_udp(5072, E.ayiya(INNER6)), INNER6, [("ayiya", *OUT, -1)]),
    "ayiya-ipv4": (_udp(5072, E.ayiya(INNER4, 4)), INNER4, [("ayiya", *OUT, -1)]),
    "l2tp": (_udp(1701, E.l2tp2(3, 4, L2TP_PPP)), INNER4, [("l2tp", *OUT, 0x30004)]),
    "l2tpv3-ip": (E.ether_ip(E.ip(OUT[0], OUT[1], 115, struct.pack("!I", 0x1234) +
                                  E.ether_ip(INNER4))), INNER4, [("l2tpv3", *OUT, 0x1234)]),
    "l2tpv3-cookie": (E.ether_ip(E.ip(OUT[0], OUT[1], 115, struct.pack("!I", 9) + bytes(4) +
                                      E.ether_ip(INNER6))), INNER6, [("l2tpv3", *OUT, 9)]),
    "etherip": (E.ether_ip(E.ip(OUT[0], OUT[1], 97, b"\x30\x00" + E.ether_ip(INNER4))), INNER4,
                [("etherip", *OUT, -1)]),
    "mpls-in-ip": (E.ether_ip(E.ip(OUT[0], OUT[1], 137, b"\x00\x01\x01\x40" + INNER4)), INNER4,
                   [("mpls", *OUT, -1)]),
    "mpls-in-udp": (_udp(6635, b"\x00\x01\x01\x40" + INNER6), INNER6, [("mpls", *OUT, -1)]),
    "gre-in-udp": (_udp(4754, E.gre(0x0800, INNER4)), INNER4, [("gre", *OUT, -1)]),
    "6in4": (E.ether_ip(E.ip(OUT[0], OUT[1], 41, INNER6)), INNER6, [("ip-in-ip", *OUT, -1)]),
    "4in6": (E.ether_ip(E.ip(OUT6[0], OUT6[1], 4, INNER4)), INNER4,
             [("ip-in-ip", *OUT6, -1)]),
    "vxlan-in-gre": (_gre(E.gre(0x0800, E.udp("10.9.0.1", "10.9.0.2", 1, 4789,
                                             E.vxlan(7, E.ether_ip(INNER4))))), INNER4,
                     [("gre", *OUT, -1), ("vxlan", "10.9.0.1", "10.9.0.2", 7)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_tunnel_is_opened(name):
    frame, inner, layers = CASES[name]
    seg = decode_frame(1, frame)
    assert isinstance(seg, Segment), seg
    assert _fields(seg) == _dpkt_fields(inner)
    assert describe(seg.tunnel) == layers
    # cut anywhere inside the tunnel headers: a reason, never a segment or an exception
    outer = len(frame) - len(inner)
    for cut in range(34, outer):
        assert isinstance(decode_frame(1, frame[:cut]), str)


def test_teredo_on_another_port_by_its_content():
    # A relay on a high port (zeek tunnels/Teredo.pcap): an IPv6 packet filling the datagram,
    # with a Teredo (2001::/32) address, is Teredo; the same bytes with other addresses are not.
    teredo6 = synth.tcp_packet("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::2", 1, 80,
                               SYN, 5)
    seg = decode_frame(1, _udp(32900, teredo6))
    assert isinstance(seg, Segment) and describe(seg.tunnel)[0][0] == "teredo"
    assert decode_frame(1, _udp(32900, INNER6)) == "not_tcp"
    assert decode_frame(1, _udp(32900, teredo6 + b"\x00")) == "not_tcp"   # length differs


def test_malformed_tunnel_headers():
    vx = E.vxlan(1, E.ether_ip(INNER4))
    assert decode_frame(1, _udp(4789, b"\x00" + vx[1:])) == "bad_tunnel_header"   # no I flag
    assert decode_frame(1, _udp(4789, vx[:5])) == "truncated_tunnel"
    assert decode_frame(1, _gre(b"\x00\x02\x08\x00" + INNER4)) == "bad_tunnel_header"  # version 2
    assert decode_frame(1, _gre(b"\x40\x00\x08\x00" + INNER4)) == "bad_tunnel_header"  # routing
    assert decode_frame(1, _udp(2152, E.gtpu(1, INNER4, msg=1))) == "not_tcp"   # echo request
    assert decode_frame(1, _udp(2152, b"\x50" + E.gtpu(1, INNER4)[1:])) == "bad_tunnel_header"
    assert decode_frame(1, _udp(1701, b"\xc8\x02" + bytes(10))) == "not_tcp"     # L2TP control
    assert decode_frame(1, _udp(5072, bytes((0x41, 0x52, 0x14, 41)) + bytes(40))) == "not_tcp"
    assert decode_frame(1, _udp(6081, b"\x80" + bytes(7) + INNER4)) == "bad_tunnel_header"
    # an L2TPv3 session whose cookie hides every Ethernet header we could find
    assert decode_frame(1, E.ether_ip(E.ip(OUT[0], OUT[1], 115, b"\x00\x00\x00\x09" + bytes(60)))) \
        == "tunnel_not_decoded"


def test_nesting_is_bounded():
    frame = INNER4
    for depth in range(1, 10):
        frame = E.udp("10.9.0.1", "10.9.0.2", 1, 4789, E.vxlan(depth, E.ether_ip(frame)))
        got = decode_frame(1, E.ether_ip(frame))
        if depth <= 7:      # 8 layers: 7 tunnels, and the IP layer that opens the first
            assert isinstance(got, Segment) and len(describe(got.tunnel)) == depth
        else:
            assert got == "tunnel_not_decoded"


def _capture(frames) -> str:
    buf = io.BytesIO()
    writer = synth.PcapWriter(buf)
    for i, f in enumerate(frames):
        writer.write(1_000_000_000 + i * 1_000_000, f)
    return buf.getvalue()


def _analyze(tmp_path, frames, settings: Settings = Settings()) -> dict:
    path = tmp_path / "t.pcap"
    path.write_bytes(_capture(frames))
    return analyze([str(path)], settings).to_dict()


def _handshake(wrap_c, wrap_s) -> list:
    d = synth.Dialog(("10.1.0.1", 40000), ("10.1.0.2", 80)).handshake().data("c", 10)
    return [wrap_c(ip) if side == "c" else wrap_s(ip)
            for side, ip in ((p[2], p[1]) for p in synth.merge(d))]


def test_two_tenants_keep_their_connections(tmp_path):
    def vxlan(vni):
        return lambda ip: _udp(4789, E.vxlan(vni, E.ether_ip(ip)))
    frames = _handshake(vxlan(1), vxlan(1)) + _handshake(vxlan(2), vxlan(2)) + \
        _handshake(E.ether_ip, E.ether_ip)
    doc = _analyze(tmp_path, frames)
    conns = doc["connections"]
    assert [c["handshake"] for c in conns] == ["complete"] * 3
    assert [c.get("tunnel") for c in conns] == [
        [{"kind": "vxlan", "endpoints": list(OUT), "id": 1}],
        [{"kind": "vxlan", "endpoints": list(OUT), "id": 2}], None]
    assert [c["packets"] for c in conns] == [{"orig": 3, "resp": 1}] * 3


def test_ids_chosen_per_direction_bind_once(tmp_path):
    # GTP-U: each side's TEID is the receiver's; the reply is the same connection
    up = lambda ip: _udp(2152, E.gtpu(0x100, ip), out=OUT)                          # noqa: E731
    down = lambda ip: _udp(2152, E.gtpu(0x200, ip), out=(OUT[1], OUT[0]))          # noqa: E731
    doc = _analyze(tmp_path, _handshake(up, down))
    [conn] = doc["connections"]
    assert conn["handshake"] == "complete" and conn["packets"] == {"orig": 3, "resp": 1}
    assert conn["tunnel"] == [{"kind": "gtp-u", "endpoints": list(OUT), "id": 0x100,
                               "reply_id": 0x200}]
    assert conn["conn_state"] == "S1"


def test_outputs_carry_the_tunnel(tmp_path):
    from analyzer.render import json_line, zeek_out
    frames = _handshake(lambda ip: _udp(4789, E.vxlan(7, E.ether_ip(ip))),
                        lambda ip: _udp(4789, E.vxlan(7, E.ether_ip(ip))))
    path = tmp_path / "t.pcap"
    path.write_bytes(_capture(frames))
    report = analyze([str(path)])
    [r] = list(report.connections)
    assert json.loads(json_line.connection_json(r)) == r.to_dict()
    assert r.to_dict()["tunnel"] == [{"kind": "vxlan", "endpoints": list(OUT), "id": 7}]
    out = io.StringIO()
    zeek_out.render(report, out)
    row = out.getvalue().splitlines()[8].split("\t")
    assert row[-1] == "vxlan vni 7 192.0.2.1<->198.51.100.2"
    assert r.tunnel_text() == "vxlan vni 7 192.0.2.1<->198.51.100.2"


def test_udp_tunnel_ports_from_settings(tmp_path):
    wrap = lambda ip: _udp(9999, E.vxlan(3, E.ether_ip(ip)))                        # noqa: E731
    frames = _handshake(wrap, wrap)
    assert _analyze(tmp_path, frames)["connections"] == []
    doc = _analyze(tmp_path, frames, Settings(udp_tunnels=((9999, "vxlan"),)))
    assert [c["tunnel"][0]["id"] for c in doc["connections"]] == [3]
    assert FrameDecoder({9999: 4}).decode(1, frames[0]).tunnel       # 4: VXLAN
    for bad in (((0, "vxlan"),), ((9999, "vxlan2"),), ((True, "gre"),)):
        with pytest.raises(ValueError, match="udp_tunnels"):
            Settings(udp_tunnels=bad)


def test_cli_udp_tunnel_option(tmp_path):
    import subprocess
    import sys
    wrap = lambda ip: _udp(9999, E.vxlan(3, E.ether_ip(ip)))                        # noqa: E731
    path = tmp_path / "t.pcap"
    path.write_bytes(_capture(_handshake(wrap, wrap)))
    run = lambda *a: subprocess.run([sys.executable, "-m", "analyzer", "--format", "json",  # noqa
                                     *a, str(path)], capture_output=True, text=True, timeout=120)
    proc = run("--udp-tunnel", "9999=VXLAN")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["connections"][0]["tunnel"][0]["kind"] == "vxlan"
    for bad in ("9999", "x=vxlan", "9999=nope", "70000=vxlan"):
        proc = run("--udp-tunnel", bad)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip().splitlines()[-1].startswith("Error:")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.lists(st.tuples(st.integers(0, 400),
                                                         st.integers(0, 255)), max_size=6),
       st.integers(20, 600))
def test_mutated_tunnel_frames_never_raise(name, edits, cut):
    # Any byte of any tunnel header changed, the frame cut anywhere: a segment or a stable
    # reason, never an exception (the fragments go through a stateful decoder too).
    frame = bytearray(CASES[name][0])
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    for buf in (bytes(frame), bytes(frame[:cut])):
        got = decode_frame(1, buf)
        assert isinstance(got, Segment) or got in SKIP_REASONS
        got = FrameDecoder().decode(1, buf)
        assert isinstance(got, Segment) or got in SKIP_REASONS
