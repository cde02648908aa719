"""IP fragment reassembly (`analyzer.decode.reassembly`) on real bytes: datagrams split by
`analyzer.testing.encap`, in any order, through the pipeline; Linux's overlap rules, the
limits, the age, and what the report says about the datagrams it could not use.
"""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decode.frames import FrameDecoder, decode_frame
from analyzer.decode.iptcp import Fragment, ip_general
from analyzer.decode.reassembly import Reassembler
from analyzer.decode.segment import ACK, PSH, SYN, Segment
from analyzer.pipeline import analyze
from analyzer.testing import encap as E
from analyzer.testing import synth

SYN4 = synth.tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, SYN, 1000, payload=b"s" * 100,
                        options=synth.syn_options())
DATA6 = synth.tcp_packet("2001:db8::1", "2001:db8::2", 40000, 80, ACK | PSH, 7, 9,
                         payload=bytes(range(256)) * 4)


def _run(tmp_path, frames, gap_ns: int = 1_000_000) -> dict:
    buf = io.BytesIO()
    w = synth.PcapWriter(buf)
    for i, f in enumerate(frames):
        w.write(1_000_000_000 + i * gap_ns, f)
    path = tmp_path / "f.pcap"
    path.write_bytes(buf.getvalue())
    return analyze([str(path)]).to_dict()


def _frames(packets):
    return [E.ether_ip(p) for p in packets]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_ipv4_fragments_in_any_order(tmp_path, order):
    parts = E.fragments(SYN4, [48, 40])
    doc = _run(tmp_path, _frames([parts[i] for i in order]))
    [conn] = doc["connections"]
    assert conn["first_frame"] == 3                  # the frame that completed the datagram
    assert conn["packets"] == {"orig": 1, "resp": 0}
    assert doc["capture"]["skipped"] == {"ip_fragment": 2}
    assert doc["capture"]["tcp_packets"] == 1


def test_the_reassembled_segment_is_the_whole_packet():
    d = FrameDecoder()
    parts = E.fragments(SYN4, [48, 40])
    assert [d.decode(1, f) for f in _frames(parts[:2])] == ["ip_fragment"] * 2
    seg = d.decode(1, _frames(parts[2:])[0])
    whole = decode_frame(1, E.ether_ip(SYN4))
    assert isinstance(seg, Segment)
    assert (seg.key, seg.seq, seg.flags, seg.paylen, seg.mss, seg.wscale, seg.iplen, seg.cut) == \
        (whole.key, whole.seq, whole.flags, whole.paylen, whole.mss, whole.wscale, whole.iplen,
         False)
    assert decode_frame(1, _frames(parts[:1])[0]) == "ip_fragment"    # stateless: counted only


def test_ipv6_fragments():
    d = FrameDecoder()
    frags = [E.fragment6(DATA6, 512, 536, False), E.fragment6(DATA6, 0, 512, True)]
    assert d.decode(101, frags[0]) == "ip_fragment"
    seg = d.decode(101, frags[1])
    whole = decode_frame(101, DATA6)
    assert isinstance(seg, Segment)
    assert (seg.key, seg.ack, seg.paylen, seg.iplen) == (whole.key, whole.ack, whole.paylen,
                                                         whole.iplen)


def test_duplicates_are_ignored_and_overlaps_discard(tmp_path):
    parts = E.fragments(SYN4, [48, 40])
    doc = _run(tmp_path, _frames([parts[0], parts[0], parts[1], parts[2]]))
    assert len(doc["connections"]) == 1
    # a fragment overlapping another (offset 40 inside 0-48) discards the datagram, as Linux does
    overlap = E.fragments(SYN4, [40, 48])[1]
    doc = _run(tmp_path, _frames([parts[0], overlap, parts[1], parts[2]]))
    assert doc["connections"] == []
    assert doc["capture"]["skipped"]["ip_fragment_malformed"] == 1
    [f] = doc["capture_findings"] if "capture_findings" in doc else doc["findings"]
    assert f["code"] == "IP_FRAGMENTS_MALFORMED" and f["frame"] == 2
    assert "overlap (0-48 and 40-88)" in f["message"]
    assert any("never completed" in w for w in doc["capture"]["warnings"])


def _frag(offset: int, size: int, more: bool, ident: bytes = b"\x00\x01") -> Fragment:
    return Fragment(b"\x04key" + ident, 4, offset, size, more, bytes(size), 6, b"a" * 4,
                    b"b" * 4, 20)


@pytest.mark.parametrize("frags,why", [
    ([_frag(16, 8, False), _frag(8, 24, False)], "two last fragments"),
    ([_frag(16, 8, False), _frag(24, 8, True)], "past the last fragment"),
    ([_frag(0, 12, True)], "not a multiple of 8"),
    ([_frag(65512, 8, True)], "past 65535"),
    ([_frag(0, 16, True), _frag(32, 8, True), _frag(8, 8, False)], "before bytes held"),
])
def test_malformed_sets(frags, why):
    r = Reassembler()
    results = [r.add(f, b"", 0, i) for i, f in enumerate(frags, 1)]
    assert results[-1] == "ip_fragment_malformed"
    assert r.malformed == 1 and why in r.first_malformed[2] and not r.pending


def test_limits_bound_memory():
    r = Reassembler(max_fragments=4, max_datagrams=2, max_bytes=1000)
    for i in range(3):                              # three datagrams, two may wait
        assert r.add(_frag(0, 8, True, bytes((0, i))), b"", 0, i) == "ip_fragment"
    assert len(r.pending) == 2 and r.incomplete == 1
    assert b"\x04key\x00\x00" not in r.pending      # the oldest went first
    for k in range(5):                              # the fifth fragment of one datagram
        got = r.add(_frag(8 * k, 8, True, b"\x00\x07"), b"", 0, 9)
    assert got == "ip_fragment_malformed" and "more than 4 fragments" in r.first_malformed[2]
    r.add(_frag(0, 800, True, b"\x00\x08"), b"", 0, 10)
    r.add(_frag(0, 800, True, b"\x00\x09"), b"", 0, 11)      # 1600 bytes > 1000: one goes
    assert r.held <= 1000


def test_fragments_expire_in_capture_time(tmp_path):
    parts = E.fragments(SYN4, [48, 40])
    # 31 s between the fragments of one datagram: Linux's 30 s ipfrag_time has passed
    doc = _run(tmp_path, _frames(parts), gap_ns=31_000_000_000)
    assert doc["connections"] == []
    assert any("3 fragmented IP datagrams never completed" in w
               for w in doc["capture"]["warnings"])


def test_a_fragment_cut_by_the_snaplen():
    d = FrameDecoder()
    parts = E.fragments(SYN4, [48, 40])
    d.decode(1, E.ether_ip(parts[0]))
    d.decode(1, E.ether_ip(parts[1])[:-10])         # 10 bytes of its payload not captured
    seg = d.decode(1, E.ether_ip(parts[2]))
    assert isinstance(seg, Segment) and seg.cut and seg.paylen == 100


def test_fragmented_tunnel_packets(tmp_path):
    # GTP-U whose outer IPv4 packets are fragmented (zeek gtp2_different_udp_port)
    outer = E.udp("192.0.2.1", "192.0.2.2", 2152, 2152, E.gtpu(5, SYN4))
    doc = _run(tmp_path, _frames(E.fragments(outer, [64])))
    [conn] = doc["connections"]
    assert conn["tunnel"][0]["kind"] == "gtp-u"


def test_ip_general_gives_fragments_to_the_caller():
    frag = ip_general(E.fragments(SYN4, [48])[1], 0, 4)
    assert isinstance(frag, Fragment)
    assert (frag.offset, frag.size, frag.more) == (48, len(SYN4) - 20 - 48, False)
    head = struct.unpack("!H", E.fragments(SYN4, [48])[0][6:8])[0]
    assert head == 0x2000


def test_checksums_do_not_judge_a_fragment(tmp_path):
    from analyzer.settings import Settings
    buf = io.BytesIO()
    w = synth.PcapWriter(buf)
    for i, f in enumerate(_frames(E.fragments(SYN4, [48, 40]))):
        w.write(1_000_000_000 + i, f)
    path = tmp_path / "f.pcap"
    path.write_bytes(buf.getvalue())
    [conn] = analyze([str(path)], Settings(checksums=True)).to_dict()["connections"]
    assert "BAD_CHECKSUM" not in {f["code"] for f in conn["findings"]}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9000), st.integers(0, 3000), st.booleans(),
                          st.integers(0, 3), st.integers(0, 40_000_000_000)), max_size=60))
def test_any_fragments_stay_bounded(frags):
    # Whatever fragments come, in whatever order and time: no exception, and what is held
    # stays within the limits.
    r = Reassembler(max_fragments=8, max_datagrams=3, max_bytes=6000)
    for i, (off, size, more, ident, ts) in enumerate(frags):
        got = r.add(Fragment(b"\x04k" + bytes((ident,)), 4, off & ~7, size, more,
                             bytes(size), 6, b"a" * 4, b"b" * 4, 20), b"", ts, i)
        assert isinstance(got, (str, Segment))
        assert len(r.pending) <= 3 and r.held <= 6000
        assert all(len(dg.pieces) <= 8 for dg in r.pending.values())
