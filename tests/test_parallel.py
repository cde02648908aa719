"""Issue 16, item 4: `--jobs N` splits the analysis over N processes by a hash of the unordered
4-tuple, and every output is byte-identical to the one-process run: stream numbers (order of
first packet, ICMP-quoted reservations included), order, summary, findings, lingering,
conn.log, JSON, text. Ctrl-C and SIGTERM stop every worker; a worker that dies is an internal
error (exit 70), never a silently short report."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from analyzer.decode.segment import ACK, RST, SYN
from analyzer.capture.files import open_capture
from analyzer.capture.source import CaptureStats
from analyzer.decode.shard import ShardTest, shard_at, shard_key
try:
    from analyzer.decode import _skip
except ImportError:                     # the pure-Python build
    _skip = None
from analyzer.decode.frames import decode_at
from analyzer.parallel import local, workers
from analyzer.parallel.local import analyze_jobs, jobs_for
from analyzer.parallel.merge import Merger, ShardFailed, Walk
from analyzer.pipeline import analyze
from analyzer.render import make_sink, render
from analyzer.report.store import ResultStore
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, frame, merge, tcp_packet, write_pcap
from conftest import REPO, every_capture

SETTINGS = Settings(checksums=True)


def outputs(path: str, jobs: int, settings: Settings = SETTINGS) -> Dict[str, str]:
    """JSON, conn.log and the text report of every connection, from one analysis."""
    report = (analyze([path], settings) if jobs == 1
              else analyze_jobs([path], settings, jobs))
    out = {}
    for fmt, kw in (("json", {}), ("zeek", {}), ("text", dict(show_all=True, color=False))):
        buf = io.StringIO()
        render(fmt, report, buf, **kw)
        out[fmt] = buf.getvalue()
    return out


@pytest.mark.parametrize("capture", every_capture(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_capture_gives_the_same_reports_in_two_and_three_processes(capture):
    one = outputs(str(capture), 1)
    for jobs in (2, 3):
        assert outputs(str(capture), jobs) == one, jobs



def test_a_scan_across_shards_is_one_finding_with_the_whole_counts(tmp_path):
    """A source's probes land in every shard (each probe is its own 4-tuple): the parent
    adds up ports, hosts, kinds and the first probe exactly as one process counts them."""
    probes = []
    for i in range(60):
        d = Dialog(client=("10.9.9.9", 40000 + i), server=("10.0.0.%d" % (2 + i % 3), 1 + i % 40),
                   t0=1_700_000_000 + i / 10)
        probes.append(d.syn().send("s", RST | ACK, seq=0) if i % 2 else d.syn())
    path = str(tmp_path / "scan.pcap")
    write_pcap(path, merge(*probes))
    one = outputs(path, 1)
    assert "probed 40 ports on 3 hosts (60 probes: 30 SYN refused, 30 SYN unanswered)" \
        in one["text"]
    for jobs in (2, 3):
        assert outputs(path, jobs) == one, jobs


def _lone_probe_scan(path: Path, lone: int) -> None:
    """A scan of 20 ports of one host from 10.9.9.9, of which exactly one probe (the first,
    refused) lands in shard `lone` of 2 and the 19 others (unanswered) in the other shard;
    and 30 sources of one unanswered probe each, in both shards."""
    def part(client, server) -> int:
        f = frame(tcp_packet(client[0], server[0], client[1], server[1], SYN, 1))
        return shard_at(1, f, 0, len(f), 2)

    picked: List[Tuple[int, int]] = []
    for port in range(1, 2000):
        client, server = ("10.9.9.9", 50000 + 7 * port * port % 9973), ("10.0.0.2", port)
        if (part(client, server) == lone) == (not picked):
            picked.append((client[1], port))
        if len(picked) == 20:
            break
    probes = []
    for i, (cport, port) in enumerate(picked):
        d = Dialog(client=("10.9.9.9", cport), server=("10.0.0.2", port),
                   t0=1_700_000_000 + i / 10)
        probes.append(d.syn().send("s", RST | ACK, seq=0) if i == 0 else d.syn())
    sides = set()
    for i in range(30):
        client, server = ("10.8.0.%d" % (1 + i), 41000 + 37 * i * i % 9973), ("10.0.0.3", 443)
        sides.add(part(client, server))
        probes.append(Dialog(client=client, server=server, t0=1_700_000_001 + i / 10).syn())
    assert sides == {0, 1}
    write_pcap(str(path), merge(*probes))


@pytest.mark.parametrize("lone", [0, 1])
def test_a_scan_source_with_one_probe_in_a_shard_adds_up_with_the_others(tmp_path, lone):
    """A shard sends a scan source that has one port, one host and one kind of probe as its
    plain values (flat lists, `shard.tally_state`): the parent counts that probe with the
    other shard's 19 (20 ports: the threshold) and dates the scan from it."""
    path = tmp_path / "scan.pcap"
    _lone_probe_scan(path, lone)
    one = outputs(str(path), 1)
    assert "probed 20 ports on 1 host (20 probes: 1 SYN refused, 19 SYN unanswered)" \
        in one["text"]
    scan = [f for f in json.loads(one["json"])["findings"] if f["code"] == "PORT_SCAN"]
    assert len(scan) == 1 and scan[0]["frame"] == 1
    assert outputs(str(path), 2) == one


def test_the_shards_counts_merge_the_same_whichever_shard_ends_first(tmp_path):
    """The parent merges a shard's counts as soon as it and the shards before it have ended
    (`Merger.merged`), in shard order whatever order they end in: the report is the same."""
    from analyzer.parallel.shard import run_shard
    path = tmp_path / "scan.pcap"
    _lone_probe_scan(path, 1)
    one = outputs(str(path), 1)
    sent: List[List[bytes]] = [[], []]
    for i in (0, 1):
        sink = ResultStore(SETTINGS.result_budget)
        run_shard([str(path)], SETTINGS, i, 2, sent[i].append, work=sink.shard_work())
    for order in ((0, 1), (1, 0)):
        sink = ResultStore(SETTINGS.result_budget)
        merger = Merger(2, SETTINGS, sink, True)
        for k, i in enumerate(order):
            for chunk in sent[i]:
                merger.take(i, chunk)
            # shard 0 first: merged at once; shard 1 first: waits for shard 0
            assert merger.merged == (k + 1 if order == (0, 1) else 2 * k), order
        report = merger.report()
        out = {}
        for fmt, kw in (("json", {}), ("text", dict(show_all=True, color=False))):
            buf = io.StringIO()
            render(fmt, report, buf, **kw)
            out[fmt] = buf.getvalue()
        assert out == {k: one[k] for k in out}, order


def test_shard_of_a_frame_is_the_shard_of_its_segment_either_way():
    """The header-speed shard (from the frame's bytes) agrees with the decoded segment's, for
    both directions, IPv4 and IPv6, every link layer the fast path reads."""
    for link in ("ether", "sll", "sll2", "raw"):
        for src, dst in (("10.0.0.1", "192.168.7.9"), ("2001:db8::1", "2001:db8:ffff::20")):
            for sport in (1, 443, 40000, 65535):
                fwd = frame(tcp_packet(src, dst, sport, 80, SYN, 1), link)
                rev = frame(tcp_packet(dst, src, 80, sport, SYN | ACK, 9, 2), link)
                lt = {"ether": 1, "sll": 113, "sll2": 276, "raw": 101}[link]
                for n in (2, 3, 7):
                    a = shard_at(lt, fwd, 0, len(fwd), n)
                    b = shard_at(lt, rev, 0, len(rev), n)
                    seg = decode_at(lt, fwd, 0, len(fwd))
                    assert seg is not None and 0 <= a < n
                    assert a == b == shard_key(seg.key, n)


def test_shards_share_the_connections_out(tmp_path):
    """Connections spread over the shards (no shard empty, none with nearly all)."""
    counts = [0, 0, 0]
    for port in range(1024, 1024 + 600):
        ip = tcp_packet("10.0.0.1", "10.0.0.2", port, 443, SYN, 1)
        f = frame(ip)
        counts[shard_at(1, f, 0, len(f), 3)] += 1
    assert min(counts) > 120, counts


def test_a_shards_reader_steps_over_the_other_shards_frames(tmp_path):
    """With a shard's test (`Cursor.skip`) the pcap reader hands out only the frames of its
    shard, those it cannot place (a UDP datagram) and every 65536th frame (the progress
    marks), and still counts every frame, every frame stamped earlier than the one before,
    and the last frame's time."""
    ips = [tcp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 80, SYN, 1) for i in range(8)]
    udp = bytearray(ips[0])
    udp[9] = 17
    ips.append(bytes(udp))
    n = 0x10000 + 300
    packets = []
    for i in range(n):
        ts = 1_700_000_000_000_000_000 + i * 1000 - (5000 if i % 997 == 3 else 0)
        packets.append((ts, ips[i * 5 % 9], "c"))
    path = str(tmp_path / "many.pcap")
    write_pcap(path, packets)
    frames = [frame(ip) for ip in ips]
    parts = [shard_at(1, f, 0, len(f), 2) for f in frames]
    assert set(parts) == {-1, 0, 1}
    back = sum(packets[i][0] < packets[i - 1][0] for i in range(1, n))
    assert back > 60 and parts[(0x10000 - 1) * 5 % 9] >= 0     # a mark on a shard's frame
    for mine in (0, 1):
        cursor = open_capture(path, CaptureStats()).cursor()
        test = ShardTest(cursor.linktype, 2, mine)
        assert cursor.skip(test)
        handed = []
        while cursor.advance():
            handed.append(cursor.count)
            part = parts[(cursor.count - 1) * 5 % 9]
            assert test.part == part
            assert cursor.buf[cursor.start:cursor.end] == frames[(cursor.count - 1) * 5 % 9]
            assert cursor.ts == packets[cursor.count - 1][0]
        assert handed == [i + 1 for i in range(n)
                          if parts[i * 5 % 9] in (-1, mine) or not (i + 1) & 0xFFFF]
        assert 0x10000 in handed
        assert (cursor.count, cursor.back, cursor.ts) == (n, back, packets[-1][0])


def _variants(rng: random.Random, link: str) -> List[bytes]:
    """Frames of one link layer: TCP over IPv4 and IPv6 of many 4-tuples (with a VLAN tag,
    options, payload), what the shard test cannot place (UDP, fragments, IPv4 options, short
    headers, ARP) and the same frames with bytes changed or cut at random."""
    ips = []
    for i in range(40):
        v6 = i % 3 == 0
        src = "2001:db8::%x" % (1 + i) if v6 else "10.%d.0.%d" % (i % 4, 1 + i)
        dst = "2001:db8:ffff::%x" % (7 + i % 5) if v6 else "192.168.%d.9" % (i % 7)
        ips.append(tcp_packet(src, dst, rng.randrange(1, 65536), rng.choice((80, 443, 1)),
                              SYN if i % 2 else ACK, i, payload=b"x" * rng.randrange(0, 40),
                              options=b"\x01" * 4 * rng.randrange(0, 3)))
    udp = bytearray(ips[1])
    udp[9] = 17
    more = bytearray(ips[2])
    more[6] = 0x20
    late = bytearray(ips[5])
    late[7] = 0x01
    ihl = bytearray(ips[4])
    ihl[0] = 0x46
    frames = [frame(ip, link) for ip in ips + [bytes(udp), bytes(more), bytes(late), bytes(ihl)]]
    if link == "ether":
        frames += [frame(ip, link, vlans=(7,)) for ip in ips[:6]]
        frames += [frame(ip, link, vlans=(7, 8)) for ip in ips[:3]]      # QinQ: not placed
        frames.append(frames[0][:12] + b"\x08\x06" + frames[0][14:])      # ARP
    out = list(frames)
    for f in frames:
        for _ in range(6):
            g = bytearray(f)
            for _ in range(rng.randrange(1, 4)):
                g[rng.randrange(min(len(g), 80))] = rng.randrange(256)
            out.append(bytes(g[:rng.randrange(len(g) + 1)] if rng.random() < 0.3 else g))
    out += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 90))) for _ in range(50)]
    return out


_LINK_TYPES = {"ether": 1, "sll": 113, "sll2": 276, "raw": 101, "null": 0}


@pytest.mark.skipif(_skip is None, reason="the pure-Python build has no C skipper")
def test_the_c_skipper_places_every_frame_as_shard_at_does():
    """decode/_skip.c computes a frame's shard as decode/shard.py `shard_at` does, for every
    link layer the fast path reads and for frames changed or cut at random (one with the
    frame inside a larger buffer, read only between its start and end)."""
    rng = random.Random(16)
    assert _skip is not None
    for link, lt in _LINK_TYPES.items():
        for f in _variants(rng, link):
            pad = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
            buf = pad + f + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
            for count in (1, 2, 3, 7, 64):
                want = shard_at(lt, f, 0, len(f), count)
                assert _skip.part(lt, f, 0, len(f), count) == want
                assert _skip.part(lt, buf, len(pad), len(pad) + len(f), count) == want
                for other in (12, 14, 228, 105):      # raw IP by another number; not read
                    assert _skip.part(other, f, 0, len(f), count) == \
                        shard_at(other, f, 0, len(f), count)


@pytest.mark.skipif(_skip is None, reason="the pure-Python build has no C skipper")
def test_the_c_skipper_places_every_hash_value_as_shard_at_does():
    """decode/_skip.c's fold of the 4-tuple and its remainders (modulo the prime, then the
    shard count) agree with decode/shard.py's for every value of the fold modulo the prime
    (source port 0 to 65535 over IPv4, the other end zero), every shard reached, for shard
    counts small, large, powers of two and not, past the prime and past 32 bits; raw IP, and
    Ethernet with no VLAN tag and with one (the skipper's own path for those, by whole words)."""
    assert _skip is not None
    ip = bytearray(tcp_packet("10.0.0.0", "10.1.0.0", 1, 0, SYN, 1))
    ip[14:16] = b"\0\0"                         # the low 16 bits of the source address
    ether = bytes(12) + b"\x08\x00"
    vlan = bytes(12) + b"\x81\x00\x00\x07\x08\x00"
    for count in (1, 2, 3, 4, 5, 7, 8, 100, 255, 256, 4099, 8190, 65520, 65521, 65536, 70000,
                  1 << 40):
        got, want, eth, tag = [], [], [], []
        for port in range(65536):
            ip[20:22] = port.to_bytes(2, "big")
            f = bytes(ip)
            got.append(_skip.part(101, f, 0, len(f), count))
            want.append(shard_at(101, f, 0, len(f), count))
            f = ether + f
            eth.append(_skip.part(1, f, 0, len(f), count))
            f = vlan + f[14:]
            tag.append(_skip.part(1, f, 0, len(f), count))
        assert got == want == eth == tag and len(set(want)) == min(count, 65521), count


def _pcap(path: Path, lt: int, records: List[Tuple[int, bytes]], nano: bool, big: bool,
          snaplen: int = 262144, caplens: Dict[int, int] = {}) -> None:
    """A classic pcap of (ts_ns, frame) records; `caplens`: record index -> captured length
    written instead of the frame's (a corrupt header)."""
    bo = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, lt)]
    for i, (ts, f) in enumerate(records):
        sec, frac = divmod(ts, 1_000_000_000)
        out.append(struct.pack(bo + "IIII", sec, frac if nano else frac // 1000,
                               caplens.get(i, len(f)), len(f)) + f)
    path.write_bytes(b"".join(out))


def _read(path: Path, chunk: int, shard: Tuple[int, int] = (0, 0)):
    """A cursor's frames as (number, time, shard, bytes), with its counts at the end and the
    run's capture statistics: with `shard` (count, mine), the shard's reader (`Cursor.skip`);
    else every frame, with its `shard_at` among `count`."""
    count, mine = shard
    stats = CaptureStats()
    cursor = open_capture(str(path), stats, chunk).cursor()
    test = ShardTest(cursor.linktype, count, mine) if mine >= 0 else None
    assert test is None or cursor.skip(test)
    out = []
    back = 0
    while cursor.advance():
        if test is not None:
            part = test.part
        else:                       # the plain reader counts no frames stamped backwards
            part = shard_at(cursor.linktype, cursor.buf, cursor.start, cursor.end, count)
            back += bool(out) and cursor.ts < out[-1][1]
        out.append((cursor.count, cursor.ts, part, cursor.buf[cursor.start:cursor.end]))
    if test is None:
        return out, (cursor.count, back, cursor.ts), stats
    return out, (cursor.count, cursor.back, cursor.ts), stats


@pytest.mark.parametrize("link", sorted(_LINK_TYPES))
def test_a_shards_reader_hands_out_what_the_plain_reader_gives_its_shard(tmp_path, link):
    """The shard's reader (with the compiled build's C skipper, decode/_skip.c; the pure
    build's Python loop) against the plain reader filtered by `shard_at`: the same frames
    handed out (its shard's, those no shard test places, every 65536th), the same numbers and
    times, the same count of frames stamped before the one before, the same last time, lowest
    and highest time, warnings and end, whatever the byte order, the timestamp unit, the read
    size (records cut between reads), empty records (a run of them long enough to be warned
    about), and a capture that ends cut short or on a corrupt header."""
    rng = random.Random(link)
    lt = _LINK_TYPES[link]
    frames = _variants(rng, link)
    records = []
    ts = 1_700_000_000_000_000_000
    for i in range(3000):
        ts += rng.randrange(0, 3_000_000_000) - (2_000_000_000 if i % 37 == 5 else 0)
        f = b"" if i % 101 == 7 else rng.choice(frames)
        records.append((ts, f))
    records[1500:1500] = [(ts, b"")] * 10_001           # an empty run, warned about
    ends = {"whole": (records, {}),
            "cut": (records[:-1] + [(ts, rng.choice(frames[:40]))], {}),
            "corrupt": (records, {len(records) - 9: 300_000})}
    for end, (recs, caplens) in ends.items():
        for nano, big in ((False, False), (True, True)):
            path = tmp_path / ("%s-%s-%d.pcap" % (link, end, nano))
            _pcap(path, lt, recs, nano, big, caplens=caplens)
            if end == "cut":
                path.write_bytes(path.read_bytes()[:-7])
            for chunk in (1 << 20, 4096, 97):
                for count in (2, 3):
                    every, (n, back, last), plain = _read(path, chunk, (count, -1))
                    assert n > 10_000 and back > 10
                    for mine in range(count):
                        got, counts, stats = _read(path, chunk, (count, mine))
                        assert got == [x for x in every
                                       if x[2] in (-1, mine) or not x[0] & 0xFFFF]
                        assert counts == (n, back, last)
                        assert stats == plain
                        assert len(stats.warnings) == (1 if end == "whole" else 2)


def test_a_shards_reader_places_its_progress_marks_and_frames_past_them(tmp_path):
    """Past 65536 records: every 65536th is handed out whatever its shard, the numbers go on
    in step on either side of it, with each read size."""
    rng = random.Random(65536)
    frames = _variants(rng, "ether")[:40]
    ts = 1_600_000_000_000_000_000
    records = []
    for i in range(2 * 0x10000 + 50):
        ts += rng.randrange(0, 2000) - (1500 if i % 13 == 0 else 0)
        records.append((ts, frames[i % 40]))
    path = tmp_path / "marks.pcap"
    _pcap(path, 1, records, False, False)
    for chunk in (1 << 20, 65536 + 3):
        every, counts, plain = _read(path, chunk, (2, -1))
        for mine in (0, 1):
            got, mine_counts, stats = _read(path, chunk, (2, mine))
            assert got == [x for x in every if x[2] in (-1, mine) or not x[0] & 0xFFFF]
            assert [x[0] for x in got if x[2] not in (-1, mine)] == [0x10000, 0x20000] or \
                [x[0] for x in got if not x[0] & 0xFFFF] == [0x10000, 0x20000]
            assert (mine_counts, stats) == (counts, plain)


def test_frames_out_of_order_and_another_shards_last_frame(tmp_path):
    """Frames stamped earlier than the frame before (some of them another shard's, stepped
    over by the reader) are counted once, and a shard whose last frame is another's still
    ends the capture at the last frame: every report the same in 1, 2 and 3 processes."""
    dialogs = []
    for i in range(24):
        d = Dialog(client=("10.1.0.%d" % (1 + i % 7), 41000 + i), t0=1_700_000_000 + i * 0.5)
        d.handshake().data("c", 100)
        if i % 3 == 0:
            d.fin("c").ack("s").fin("s").ack("c")
        dialogs.append(d)
    packets = merge(*dialogs)
    for i in range(5, len(packets) - 3, 11):     # every 11th frame stamped 3 s too early
        ts, ip, side = packets[i]
        packets[i] = (ts - 3_000_000_000, ip, side)
    late = Dialog(client=("10.1.9.9", 50000), t0=1_700_000_100)
    late.syn()
    packets += late.packets                       # the last frame, 80 s after the others
    cap = tmp_path / "backwards.pcap"
    write_pcap(cap, packets)
    one = outputs(str(cap), 1)
    assert "11 frames are stamped earlier than the frame before" in one["json"]
    for jobs in (2, 3):
        assert outputs(str(cap), jobs) == one, jobs


def _mixed_capture(path: Path, connections: int = 40) -> None:
    """Connections of every kind interleaved (`connections` of them), a 4-tuple used again
    (PORT_REUSE naming the earlier stream), an ICMP error quoting a 4-tuple never seen (a
    reserved number), and a SYN flood to one server: what the parent must renumber and count
    across shards."""
    dialogs = []
    for i in range(connections):
        d = Dialog(client=("10.0.0.%d" % (1 + i % 5), 40000 + i), t0=1_700_000_000 + i * 0.01)
        d.handshake().data("c", 100).data("s", 300)
        if i % 4 == 0:
            d.fin("c").ack("s").fin("s").ack("c")
        elif i % 4 == 1:
            d.rst("s")
        elif i % 4 == 2:
            d.fin("c").ack("s")
        dialogs.append(d)
    old = Dialog(client=("10.9.0.1", 5555), t0=1_700_000_000.05)
    old.handshake().fin("c").ack("s").fin("s").ack("c")
    new = Dialog(client=("10.9.0.1", 5555), isn=(900000, 7), t0=1_700_000_000.5)
    new.handshake().rst("c")
    flood = []
    for i in range(150):
        f = Dialog(client=("172.16.%d.%d" % (i // 200, i % 200 + 1), 20000 + i),
                   server=("10.0.0.99", 80), t0=1_700_000_000.2 + i * 0.001)
        f.syn()
        flood.append(f)
    packets = merge(*dialogs, old, new, *flood)
    # An ICMP port unreachable quoting a TCP segment of a 4-tuple nobody else used.
    quoted = tcp_packet("10.5.5.5", "10.6.6.6", 33333, 8080, SYN, 77)
    icmp = b"\x03\x03\x00\x00\x00\x00\x00\x00" + quoted[:28]
    ip = bytearray(tcp_packet("10.6.6.6", "10.5.5.5", 1, 1, 0, 0)[:20])
    ip[9], ip[2:4] = 1, (20 + len(icmp)).to_bytes(2, "big")
    packets.insert(30, (packets[30][0], bytes(ip) + _icmp_checksummed(icmp), "s"))
    write_pcap(path, packets)


def _icmp_checksummed(icmp: bytes) -> bytes:
    from analyzer.decode.checksum import inet_checksum
    c = inet_checksum(icmp)
    return icmp[:2] + c.to_bytes(2, "big") + icmp[4:]


def test_renumbering_across_shards_keeps_wireshark_numbers_reuse_and_floods(tmp_path):
    cap = tmp_path / "mixed.pcap"
    _mixed_capture(cap)
    one = outputs(str(cap), 1)
    doc = json.loads(one["json"])
    conns = doc["connections"]
    reuse = [c for c in conns if c["reused_from"] is not None]
    assert len(reuse) == 1
    old = [c for c in conns if c["id"] == reuse[0]["reused_from"]][0]
    assert old["orig"] == reuse[0]["orig"] and old["resp"] == reuse[0]["resp"]
    assert any("of connection %d" % old["id"] in f["message"] for f in reuse[0]["findings"])
    ids = [c["id"] for c in conns]
    assert len(ids) == 40 + 2 + 150 and ids != list(range(len(ids)))   # one number reserved
    assert doc["capture"]["skipped"]["icmp_quoted_tcp"] == 1
    assert any(f["code"] == "HALF_OPEN_FLOOD" for f in doc["findings"])
    for jobs in (2, 3, 5):
        assert outputs(str(cap), jobs) == one, jobs


def test_the_parents_store_spills_and_numbers_what_the_shards_kept(tmp_path):
    """The results the shards keep go into the parent's store keyed by first frame and get
    their stream numbers when it is read: also when it spilled runs to disk (a budget of a few
    results), for every renderer's sink, read twice."""
    cap = tmp_path / "mixed.pcap"
    _mixed_capture(cap)
    tiny = Settings(checksums=True, result_budget=7)
    one = outputs(str(cap), 1, tiny)
    for jobs in (2, 3):
        assert outputs(str(cap), jobs, tiny) == one, jobs
    for fmt, kw in (("json", {}), ("text", dict(color=False))):
        sink = make_sink(fmt, tiny, **kw)
        assert isinstance(sink, ResultStore)
        reference = io.StringIO()
        render(fmt, analyze([str(cap)], tiny, sink=make_sink(fmt, tiny, **kw)), reference, **kw)
        report = analyze_jobs([str(cap)], tiny, 2, sink=sink)
        assert sink.runs and sink.numbering is not None         # spilled, numbered when read
        for _ in range(2):
            buf = io.StringIO()
            render(fmt, report, buf, **kw)
            assert buf.getvalue() == reference.getvalue(), fmt


def test_json_lines_kept_in_the_shards_are_merged_and_numbered_as_bytes(tmp_path):
    """Read once (the command), the JSON lines stay in the shards (spilled there too, with a
    budget of a few lines) and are merged with the parent's own (a reuse, renumbered there)
    as UTF-8 as the report is written: the same document as one process, written as bytes
    to a UTF-8 stream or decoded into any other; a second read is refused, not short."""
    cap = tmp_path / "mixed.pcap"
    _mixed_capture(cap)
    for budget in (7, 5000):
        tiny = Settings(checksums=True, result_budget=budget)
        reference = io.StringIO()
        render("json", analyze([str(cap)], tiny, sink=make_sink("json", tiny)), reference)
        for jobs, stream in ((2, "bytes"), (3, "bytes"), (2, "text")):
            sink = make_sink("json", tiny)
            assert isinstance(sink, ResultStore) and sink.shard_lines()
            report = analyze_jobs([str(cap)], tiny, jobs, sink=sink, once=True)
            assert sink.remote is not None and len(sink) == len(json.loads(
                reference.getvalue())["connections"])
            if stream == "bytes":
                raw = io.BytesIO()
                out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                out.write("x")              # (written before the bytes: kept in order)
                render("json", report, out)
                out.flush()
                assert raw.getvalue().decode("utf-8") == "x" + reference.getvalue(), jobs
            else:
                buf = io.StringIO()
                render("json", report, buf)
                assert buf.getvalue() == reference.getvalue(), jobs
            with pytest.raises(ValueError, match="read once"):
                render("json", report, io.StringIO())
    # Not read: releasing the pipes ends the shards waiting to send their lines.
    big = tmp_path / "big.pcap"
    _mixed_capture(big, connections=3000)
    report = analyze_jobs([str(big)], SETTINGS, 2, sink=make_sink("json", SETTINGS), once=True)
    assert workers.running()                            # waiting on their pipes
    workers.release()
    for p in workers.running():
        p.join()
        assert p.exitcode is not None
    assert workers.running() == []
    assert report.summary.connections > 3000


def test_numbers_walked_in_ascending_order_are_the_searched_ones():
    """`Walk` (one pass through every shard's numbers, for the store read in order) gives
    `Merger.number` for each connection, in ascending order and, searched, in any other."""
    merger = Merger(3, Settings())
    taken = [[1, 4, 9, 10, 30], [2, 3, 11, 12], [5, 6, 7, 31, 40]]
    for s, numbers in zip(merger.starts, taken):
        s.extend(numbers)
    every = sorted(n for numbers in taken for n in numbers)
    assert [merger.number(p) for p in every] == list(range(len(every)))
    walk = merger.walk()
    assert [walk(p) for p in every] == list(range(len(every)))
    assert [walk(p) for p in (12, 2, 31, 40)] == [every.index(p) for p in (12, 2, 31, 40)]
    assert merger.walk()(41) == len(every) and merger.walk()(0) == 0
    for block in (1, 2, 3, 100):            # read a block of numbers at a time
        walk = Walk(merger.starts, block).number
        assert [walk(p) for p in range(45)] == [merger.number(p) for p in range(45)], block
        walk = Walk(merger.starts, block).number
        assert [walk(p) for p in every[::3]] == list(range(len(every)))[::3], block


def test_a_worker_that_dies_is_an_internal_error_not_a_short_report(tmp_path, monkeypatch):
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    real = local.run_shard

    def dying(paths, settings, index, count, emit, on_frame, work=None, lines=False):
        if index == 1:
            os._exit(3)
        real(paths, settings, index, count, emit, on_frame, work, lines)

    monkeypatch.setattr(local, "run_shard", dying)
    with pytest.raises(ShardFailed, match=r"shard 1 of 2 ended without its report \(exit code 3\)"):
        analyze_jobs([str(cap)], SETTINGS, 2)


def test_a_defect_in_a_worker_comes_to_the_parent_with_its_traceback(tmp_path, monkeypatch):
    """A worker that raises sends its traceback (message `X`) and exits 70; the parent raises
    ShardFailed with it (the command's internal error)."""
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    real = local.run_shard

    def failing(paths, settings, index, count, emit, on_frame, work=None, lines=False):
        if index == 1:
            raise ValueError("a defect in shard one")
        real(paths, settings, index, count, emit, on_frame, work, lines)

    monkeypatch.setattr(local, "run_shard", failing)
    with pytest.raises(ShardFailed, match="(?s)shard 1 of 2 failed:.*Traceback.*"
                                          "ValueError: a defect in shard one"):
        analyze_jobs([str(cap)], SETTINGS, 2)


def test_the_report_does_not_wait_for_workers_to_exit_after_their_last_message(tmp_path,
                                                                              monkeypatch):
    """A worker's end message is all the parent waits for: a worker still busy after it
    (here: one that lingers for minutes, its pipe open) does not hold the report back, and
    is reaped later."""
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    real = local.run_shard

    def lingering(paths, settings, index, count, emit, on_frame, work=None, lines=False):
        real(paths, settings, index, count, emit, on_frame, work, lines)
        if index == 1:
            time.sleep(300)

    monkeypatch.setattr(local, "run_shard", lingering)
    started = time.monotonic()
    try:
        assert outputs(str(cap), 2) == outputs(str(cap), 1)
        assert time.monotonic() - started < 120         # not the 300 s the worker lingers
    finally:
        for p in workers.running():
            p.kill()
            p.join()


def test_the_parent_analyses_a_shard_itself_where_the_workers_send_little_before_their_end(
        tmp_path, monkeypatch):
    """The JSON report's and conn.log's shards keep their lines and the terminal report's
    choose their most severe: their workers send only their numbers before their end
    messages, so the parent analyses shard 0 itself (one worker fewer, its lines merged in
    place); for JUnit (every result needing attention goes to the parent) every shard is a
    worker. Same report either way; the
    pipes are read at the parent's progress marks (a budget of a few results a run, a capture
    past a mark) and after."""
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap, connections=10_000)             # (67 k frames: past a mark)
    launched: List[int] = []
    here: List[int] = []
    real_launch, real_run = local.launch, local.run_shard

    def launch(target, args, name):
        launched.append(args[2])
        return real_launch(target, args, name)

    def run_shard(paths, settings, index, count, emit, on_frame, work=None, lines=False):
        here.append(index)              # (a forked worker's calls: in its own memory)
        real_run(paths, settings, index, count, emit, on_frame, work, lines)

    monkeypatch.setattr(local, "launch", launch)
    small = Settings(checksums=True, result_budget=7)   # (the JSON lines: runs of 7)
    for fmt, options, parent, settings in (("json", {}, True, small),
                                           ("text", {"limit": 20}, True, SETTINGS),
                                           ("zeek", {}, True, small),
                                           ("junit", {}, False, small)):
        reference = io.StringIO()
        sink = make_sink(fmt, settings, **options)
        render(fmt, analyze([str(cap)], settings, sink=sink), reference, **options)
        for jobs in (2, 3):
            del launched[:], here[:]
            monkeypatch.setattr(local, "run_shard", run_shard)
            sink = make_sink(fmt, settings, **options)
            report = analyze_jobs([str(cap)], settings, jobs, sink=sink, once=True)
            monkeypatch.setattr(local, "run_shard", real_run)
            out = io.StringIO()
            render(fmt, report, out, **options)
            assert out.getvalue() == reference.getvalue(), (fmt, jobs)
            if parent:
                assert here == [0] and launched == list(range(1, jobs)), (fmt, jobs)
            else:
                assert here == [] and launched == list(range(jobs)), (fmt, jobs)
    for p in workers.running():
        p.join()


def test_runs_that_cannot_be_split_run_in_one_process(tmp_path):
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    assert jobs_for([str(cap)], SETTINGS, 4) == 4
    assert jobs_for(["-"], SETTINGS, 4) == 1                    # stdin: read once
    assert jobs_for([str(cap)], Settings(ladders=frozenset({3})), 4) == 1
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert jobs_for([str(fifo)], SETTINGS, 4) == 1


def _cli(*args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], input=stdin,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_the_cli_option(tmp_path):
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    # Each renderer's own sink: JSON lines encoded in the shards, the terminal's connections
    # needing attention chosen there, conn.log and a filtered report from every result.
    for args in (["-f", "json"], [], ["-f", "zeek"], ["--filter", "tcp.port == 80"],
                 ["-f", "json", "--report", "junit=%s" % (tmp_path / "j.xml")]):
        one = _cli(str(cap), *args)
        for value in ("2", "auto"):
            p = _cli(str(cap), *args, "--jobs", value)
            assert (p.returncode, p.stdout, p.stderr) == (one.returncode, one.stdout, one.stderr)
    one = _cli(str(cap), "-f", "json")
    piped = _cli("-", "-f", "json", "-j", "3", stdin=cap.read_bytes())
    assert piped.stdout.replace(b'"-"', b'"%s"' % str(cap).encode()) == one.stdout
    for bad in ("0", "x", "-2"):
        p = _cli(str(cap), "--jobs", bad)
        assert p.returncode == 2 and b"--jobs" in p.stderr and b"Traceback" not in p.stderr


def test_json_of_two_and_three_workers_filtered_sorted_or_to_a_file_is_one_processs(tmp_path):
    """The JSON report of `--jobs 2` and `3` (the shards' lines merged and numbered as bytes,
    by common/_join.c in the compiled build, common/join.py in the pure one) is one
    process's, byte for byte: on a mix whose numbers have gaps (a reserved number, a reuse
    renumbered in the parent) and on a sample without; filtered (numbered lines dropped),
    sorted, grouped, and written with -o."""
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap, connections=300)
    ids = [c["id"] for c in json.loads(_cli(str(cap), "-f", "json").stdout)["connections"]]
    assert ids == sorted(ids) and ids[-1] + 1 > len(ids) > 300      # gaps: a number reserved
    sample = REPO / "samples" / "mixed.pcap"
    runs = [(cap, []), (cap, ["--filter", "close == four_way"]), (cap, ["--sort", "-duration"]),
            (sample, []), (sample, ["--filter", "tcp.port == 80"]),
            (sample, ["--group-by", "server"])]
    for path, args in runs:
        one = _cli(str(path), "-f", "json", *args)
        assert one.returncode == 0 and one.stdout.count(b'{"id": ') >= 1, (path, args)
        for jobs in ("2", "3"):
            p = _cli(str(path), "-f", "json", "--jobs", jobs, *args)
            assert (p.returncode, p.stdout, p.stderr) == (one.returncode, one.stdout, one.stderr), \
                (path, args, jobs)
    out = tmp_path / "out.json"
    p = _cli(str(cap), "-f", "json", "-j", "2", "-o", str(out), "--filter", "tcp.port == 80")
    assert p.returncode == 0 and p.stdout == b""
    assert out.read_bytes() == _cli(str(cap), "-f", "json", "--filter", "tcp.port == 80").stdout


def _children(pid: int):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc to see workers")
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_worker_and_the_report_so_far_is_written(tmp_path, sig, code):
    sys.path.insert(0, str(REPO / "tests"))
    from test_interrupt import _header, _records
    cap = tmp_path / "big.pcap"
    connections = 100_000                   # (the compiled build reads a million packets a second)
    cap.write_bytes(_header() + _records(connections))
    # Three shards: the parent analyses the first itself (the JSON report's shards keep their
    # lines), two workers the others.
    p = subprocess.Popen([sys.executable, "-m", "analyzer", str(cap), "-f", "json", "-j", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(REPO)),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while len(_children(p.pid)) < 2 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    children = _children(p.pid)
    assert len(children) == 2, "the workers did not start"
    time.sleep(0.05)
    p.send_signal(sig)               # the parent alone, as `kill` does
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert b"Traceback" not in err and b"internal error" not in err, err
    doc = json.loads(out)
    assert doc["capture"]["interrupted"] is True
    assert doc["capture"]["packets"] < connections * 8
    for w in children:
        assert not os.path.exists("/proc/%d" % w) or _zombie_or_gone(w)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_the_terminal_reports_most_severe_are_chosen_in_the_shards(tmp_path):
    """The terminal report lists its `--limit` most severe connections (the first in stream
    order among equals) and keeps `limit + 1` of them: each shard keeps its own `limit + 1`
    and sends only those at its end, the others counted; the report is the one-process one
    however the connections fall into the shards."""
    from analyzer.parallel.shard import Sender
    dialogs = []
    for i in range(40):                     # refused connections: a warning each
        d = Dialog(client=("10.1.%d.%d" % (i // 7, 1 + i), 50000 + i),
                   server=("10.0.0.%d" % (1 + i % 5), 80 + i % 7), t0=1_700_000_000 + i / 10)
        dialogs.append(d.syn().send("s", RST | ACK, seq=0))
    for i in range(10):                     # complete ones, needing no attention
        d = Dialog(client=("10.2.0.%d" % (1 + i), 40000 + i), server=("10.0.0.9", 443),
                   t0=1_700_000_000 + i / 7)
        dialogs.append(d.handshake())
    path = str(tmp_path / "refused.pcap")
    write_pcap(path, merge(*dialogs))
    settings = Settings()

    def text(jobs: int, limit: int) -> str:
        sink = make_sink("text", settings, limit=limit)
        report = (analyze([path], settings, sink=sink) if jobs == 1
                  else analyze_jobs([path], settings, jobs, sink=sink))
        buf = io.StringIO()
        render("text", report, buf, limit=limit, color=False, width=200)
        return buf.getvalue()

    for limit in (1, 3, 100):
        one = text(1, limit)
        assert ("Connections needing attention (%d of 50" % min(limit, 40)) in one
        for jobs in (2, 3):
            assert text(jobs, limit) == one, (limit, jobs)
    # What a shard sends: its 4 most severe (limit 3), first in stream order among equals.
    store = make_sink("text", settings, limit=3)
    assert isinstance(store, ResultStore)
    sent: list = []
    sender = Sender(sent.append, store.shard_work())
    results = list(analyze([path], settings).connections)
    for r in reversed(results):             # finishing order is not stream order
        sender.add(r)
    sender.finish()
    sender.flush()
    import marshal
    items = [item for message in sent for item in marshal.loads(message[1:])]
    assert sorted(n for n, _ in items) == [r.id for r in results if r.needs_attention()][:4]
    assert sender.dropped == len(results) - 4 and len(sender) == len(results)


def test_the_parent_reads_each_message_whole_whatever_its_size():
    """`workers.Receiver` reads what `send_bytes` wrote (small, over a pipe's 64 KiB, over a
    megabyte, empty, small again after a large one), one message at a time, and says
    EOFError at the end of the pipe."""
    import multiprocessing
    from analyzer.parallel.workers import Receiver
    receive = Receiver()
    messages = [b"S" + bytes(range(256)) * 40, b"P" + os.urandom(3 << 20), b"", b"E" * 70000,
                b"x" * 65536, b"y" * 65537, os.urandom(100)]
    r, w = multiprocessing.Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:                                            # the writer: another process
        r.close()
        for m in messages:
            w.send_bytes(m)
        os._exit(0)
    w.close()
    try:
        assert [receive(r) for _ in messages] == messages
        with pytest.raises(EOFError):
            receive(r)
    finally:
        r.close()
        os.waitpid(pid, 0)


@pytest.mark.skipif(not os.path.exists("/proc/sys/fs/pipe-max-size")
                    or int(open("/proc/sys/fs/pipe-max-size").read()) < workers.PIPE_BYTES,
                    reason="Linux lets a pipe grow to 1 MiB")
def test_a_workers_pipe_holds_a_shards_last_messages_whole():
    """`workers.widen`: a worker's pipe takes a message of a few hundred KiB (a shard's counts
    at its end) in one write, nobody reading yet (a 64 KiB pipe would not: the write would
    wait), and the parent then reads it whole."""
    import multiprocessing
    from analyzer.parallel.workers import Receiver, widen
    r, w = multiprocessing.Pipe(duplex=False)
    try:
        widen(w)
        os.set_blocking(w.fileno(), False)
        message = b"E" + os.urandom(300_000)
        w.send_bytes(message)               # BlockingIOError if the pipe did not grow
        w.close()
        assert Receiver()(r) == message
    finally:
        r.close()
        if not w.closed:
            w.close()


def _raw(read_fd: int) -> bytes:
    out = []
    while True:
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return b"".join(out)
        out.append(chunk)


def test_a_forked_workers_messages_are_framed_as_multiprocessing_frames_them():
    """`workers.End.send_bytes` (a forked worker's end of its pipe) writes the bytes
    `multiprocessing`'s `Connection.send_bytes` writes, whatever the size (a 4-byte length,
    the message in one piece or two), and `Receiver` reads them back, the empty message too."""
    import multiprocessing
    messages = [b"", b"E", os.urandom(16384), os.urandom(16385), b"S" * 60000]
    for message in messages:
        r, w = os.pipe()
        end = workers.End(w)
        end.send_bytes(message)
        end.close()
        ours = _raw(r)
        os.close(r)
        theirs_r, theirs_w = multiprocessing.Pipe(duplex=False)
        theirs_w.send_bytes(message)
        theirs_w.close()
        assert ours == _raw(theirs_r.fileno()) == struct.pack("!i", len(message)) + message
        theirs_r.close()
    import threading
    r, w = os.pipe()
    end = workers.End(w)

    def write() -> None:                    # (more than a pipe holds: read meanwhile)
        for message in messages:
            end.send_bytes(message)
        end.close()

    writer = threading.Thread(target=write)
    writer.start()
    reader = workers.End(r)
    receive = workers.Receiver()
    assert [receive(reader) for _ in messages] == messages
    with pytest.raises(EOFError):
        receive(reader)
    writer.join()
    reader.close()
    assert reader.closed


@pytest.mark.parametrize("cut", [0, 1, 4, 5, 4000])
def test_a_message_whose_write_a_signal_cut_short_goes_on_where_it_stopped(monkeypatch, cut):
    """A write to a pipe that a signal interrupts returns what it wrote: `End.send_bytes`
    writes the rest (of the length, then of the message), and the message arrives whole.
    (`os.writev` here writes only the first `cut` bytes, as such a write would.)"""
    def short(fd, buffers):
        return os.write(fd, b"".join(bytes(b) for b in buffers)[:cut])

    message = os.urandom(9000)
    r, w = os.pipe()
    monkeypatch.setattr(workers.os, "writev", short)
    end = workers.End(w)
    end.send_bytes(message)
    end.send_bytes(b"after")
    monkeypatch.undo()
    end.close()
    reader = workers.End(r)
    assert workers.Receiver()(reader) == message
    assert workers.Receiver()(reader) == b"after"
    reader.close()


def test_workers_still_running_when_the_process_exits_are_stopped_and_reaped(tmp_path):
    """A worker that lingers after its report (its pipe open) does not keep the process from
    exiting: at the exit it is killed and reaped, and none is left behind."""
    cap = tmp_path / "c.pcap"
    _mixed_capture(cap)
    script = (
        "import os, sys, time\n"
        "from analyzer.parallel import local, workers\n"
        "from analyzer.settings import Settings\n"
        "real = local.run_shard\n"
        "def lingering(paths, settings, index, count, emit, on_frame, work=None, lines=False):\n"
        "    real(paths, settings, index, count, emit, on_frame, work, lines)\n"
        "    time.sleep(300)\n"
        "local.run_shard = lingering\n"
        "report = local.analyze_jobs([sys.argv[1]], Settings(), 2)\n"
        "print(' '.join(str(w.pid) for w in workers.running()), report.summary.connections)\n")
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:    # (not pipes: the workers hold them)
        p = subprocess.run([sys.executable, "-c", script, str(cap)], stdout=o, stderr=e,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=200)
    assert p.returncode == 0, err.read_bytes()
    *pids, connections = map(int, out.read_bytes().split())
    assert len(pids) == 2 and connections > 0
    left = [pid for pid in pids if os.path.exists("/proc/%d" % pid) and not _zombie_or_gone(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
