"""analyzer.capture.files on real bytes: files written by analyzer.testing.synth, by dpkt's writers (a second,
independent implementation) and by hand, then read back from disk, gzip and a pipe."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import struct
import sys
import threading
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import dpkt
import pytest

from analyzer.capture.files import (CaptureError, CaptureStats, open_capture, open_captures,
                              read_frames)
from analyzer.testing.synth import (LINKTYPE_ETHERNET, LINKTYPE_RAW, Dialog, PcapngWriter, PcapWriter,
                            frame, tcp_packet)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
T0 = 1_700_000_000 * 10**9


def dialog_frames(link: str = "ether", step: float = 0.000123457, payload: int = 300):
    """A whole TCP conversation as (ts_ns, frame) pairs; timestamps with odd nanoseconds."""
    d = Dialog(step=step)
    d.handshake().data("c", payload).data("s", payload * 3).fin("c").fin("s").ack("c")
    return [(ts + 89, fr) for ts, fr in d.frames(link)]


def read_path(path, stats=None):
    stats = stats if stats is not None else CaptureStats()
    return list(open_capture(str(path), stats)), stats


def write(tmp_path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def pcap_bytes(frames, nano=False, big_endian=False, linktype=LINKTYPE_ETHERNET) -> bytes:
    f = io.BytesIO()
    w = PcapWriter(f, linktype, nano=nano, big_endian=big_endian)
    for ts, fr in frames:
        w.write(ts, fr)
    return f.getvalue()


# --- pcapng built by hand, block by block --------------------------------------------------

def block(bo: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def shb(bo: str = "<") -> bytes:
    return block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def opt(bo: str, code: int, value: bytes) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def idb(bo: str, linktype: int, tsresol=None, tsoffset=None, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += opt(bo, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += opt(bo, 14, struct.pack(bo + "q", tsoffset))
    if opts:
        opts += opt(bo, 0, b"")
    return block(bo, 1, struct.pack(bo + "HHI", linktype, 0, snaplen) + opts)


def epb(bo: str, ifid: int, units: int, data: bytes) -> bytes:
    return block(bo, 6, struct.pack(bo + "IIIII", ifid, units >> 32, units & 0xFFFFFFFF,
                                    len(data), len(data)) + data + opt(bo, 1, b"comment"))


def spb(bo: str, data: bytes, origlen=None) -> bytes:
    return block(bo, 3, struct.pack(bo + "I", len(data) if origlen is None else origlen) + data)


def pb(bo: str, ifid: int, units: int, data: bytes) -> bytes:
    return block(bo, 2, struct.pack(bo + "HHIIII", ifid, 0, units >> 32, units & 0xFFFFFFFF,
                                    len(data), len(data)) + data)


# --- classic pcap ----------------------------------------------------------------------------

@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_each_resolution_and_byte_order(tmp_path, nano, big_endian):
    frames = dialog_frames()
    p = write(tmp_path, "x.pcap", pcap_bytes(frames, nano, big_endian))
    got, stats = read_path(p)
    want = [(ts if nano else ts // 1000 * 1000, LINKTYPE_ETHERNET, fr) for ts, fr in frames]
    assert got == want
    assert all(type(ts) is int for ts, _, _ in got)
    assert stats.packets == len(frames) and stats.linktypes == {LINKTYPE_ETHERNET: len(frames)}
    assert (stats.first_ts, stats.last_ts) == (want[0][0], want[-1][0])
    assert not stats.truncated and stats.warnings == [] and stats.files == [str(p)]


@pytest.mark.parametrize("nano", [False, True])
def test_pcap_written_by_dpkt(tmp_path, nano):
    frames = [fr for _, fr in dialog_frames("raw")]
    p = tmp_path / "dpkt.pcap"
    with open(p, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, linktype=LINKTYPE_RAW, nano=nano)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + i / 8)        # exact in binary and in decimal
    got, _ = read_path(p)
    assert got == [(T0 + i * 125_000_000, LINKTYPE_RAW, fr) for i, fr in enumerate(frames)]
    with open(p, "rb") as f:
        assert [buf for _, buf in dpkt.pcap.Reader(f)] == frames


def test_pcap_fcs_bits_masked_off_link_type(tmp_path):
    frames = dialog_frames()[:2]
    # FCS length 2 (16-bit words) in bits 28-31 and the "FCS length present" bit 26
    got, stats = read_path(write(tmp_path, "fcs.pcap", pcap_bytes(frames, linktype=0x24000001)))
    assert {lt for _, lt, _ in got} == {1} and stats.linktypes == {1: 2}


def test_pcap_invalid_nanoseconds_are_just_added(tmp_path):
    data = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    data += struct.pack("<IIII", 10, 1_999_999_999, 4, 4) + b"abcd"
    got, stats = read_path(write(tmp_path, "badns.pcap", data))
    assert got == [(10 * 10**9 + 1_999_999_999, 1, b"abcd")] and not stats.truncated


# --- pcapng ------------------------------------------------------------------------------------

def test_pcapng_interfaces_keep_their_own_link_type_and_resolution(tmp_path):
    eth, raw = dialog_frames("ether"), dialog_frames("raw")
    f = io.BytesIO()
    w = PcapngWriter(f, interfaces=((LINKTYPE_ETHERNET, 6), (LINKTYPE_RAW, 9)))
    want = []
    for (ts, e), (_, r) in zip(eth, raw):
        w.write(ts, e, interface=0)
        w.write(ts + 1, r, interface=1)
        want += [(ts // 1000 * 1000, LINKTYPE_ETHERNET, e), (ts + 1, LINKTYPE_RAW, r)]
    got, stats = read_path(write(tmp_path, "two.pcapng", f.getvalue()))
    assert got == want
    assert stats.linktypes == {LINKTYPE_ETHERNET: len(eth), LINKTYPE_RAW: len(raw)}


def test_pcapng_written_by_dpkt_with_two_interfaces(tmp_path):
    ng = dpkt.pcapng
    le = sys.byteorder == "little"
    IDB, EPB = ((ng.InterfaceDescriptionBlockLE, ng.EnhancedPacketBlockLE) if le
                else (ng.InterfaceDescriptionBlock, ng.EnhancedPacketBlock))
    Opt = ng.PcapngOptionLE if le else ng.PcapngOption
    idbs = [IDB(linktype=LINKTYPE_ETHERNET, snaplen=65535),
            IDB(linktype=LINKTYPE_RAW, snaplen=65535,
                opts=[Opt(code=ng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"), Opt(code=0)])]
    eth, raw = dialog_frames("ether"), dialog_frames("raw")
    p = tmp_path / "dpkt.pcapng"
    want = []
    with open(p, "wb") as f:
        w = ng.Writer(f, idb=idbs)
        for (ts, e), (_, r) in zip(eth, raw):
            us, ns = ts // 1000, ts + 7
            w.writepkt(EPB(iface_id=0, ts_high=us >> 32, ts_low=us & 0xFFFFFFFF, pkt_data=e))
            w.writepkt(EPB(iface_id=1, ts_high=ns >> 32, ts_low=ns & 0xFFFFFFFF, pkt_data=r))
            want += [(us * 1000, LINKTYPE_ETHERNET, e), (ns, LINKTYPE_RAW, r)]
    got, _ = read_path(p)
    assert got == want


def test_pcapng_tsoffset_and_power_of_two_resolution(tmp_path):
    data = (shb() + idb("<", 1, tsresol=0x80 | 20, tsoffset=1_000)
            + idb("<", 101, tsresol=3, tsoffset=-5)
            + epb("<", 0, 3 << 19, b"two-pow") + epb("<", 1, 2_500, b"millis"))
    got, stats = read_path(write(tmp_path, "res.pcapng", data))
    assert got == [(1_000 * 10**9 + 1_500_000_000, 1, b"two-pow"),    # 1.5 s in 2^-20 units
                   (2_500_000_000 - 5 * 10**9, 101, b"millis")]
    assert (stats.first_ts, stats.last_ts) == (-2_500_000_000, 1_001_500_000_000)


def test_pcapng_simple_packet_block(tmp_path):
    data = (shb() + idb("<", 1, snaplen=6) + epb("<", 0, 5, b"timed")
            + spb("<", b"abcdefgh") + spb("<", b"xyz", origlen=1500))
    got, stats = read_path(write(tmp_path, "spb.pcapng", data))
    # SPB: interface 0, no timestamp of its own (the previous one is reused), captured
    # length = min(original length, bytes in the block, snaplen)
    assert got == [(5000, 1, b"timed"), (5000, 1, b"abcdef"), (5000, 1, b"xyz\x00")]
    assert stats.packets == 3 and not stats.warnings


def test_pcapng_sections_with_different_byte_orders(tmp_path):
    data = (shb(">") + idb(">", 101, tsresol=9) + epb(">", 0, 42, b"big")
            + shb("<") + idb("<", 1) + epb("<", 0, 42, b"little"))
    got, stats = read_path(write(tmp_path, "sections.pcapng", data))
    # interface 0 of the second section is a new interface (Ethernet, microseconds)
    assert got == [(42, 101, b"big"), (42_000, 1, b"little")]
    assert stats.linktypes == {101: 1, 1: 1} and not stats.warnings


def test_pcapng_skips_other_blocks_and_reads_obsolete_packet_block(tmp_path):
    data = (shb() + idb("<", 1)
            + block("<", 4, b"\x00" * 8)                  # name resolution
            + block("<", 5, b"\x00" * 12)                 # interface statistics
            + block("<", 0x0BAD, b"unknown block type")
            + block("<", 0x00000BAD | 0x80000000, b"")    # reserved, empty body
            + pb("<", 0, 7, b"old") + epb("<", 0, 8, b"new"))
    got, stats = read_path(write(tmp_path, "skip.pcapng", data))
    assert got == [(7000, 1, b"old"), (8000, 1, b"new")] and not stats.warnings


def test_pcapng_undefined_interface_is_skipped_with_a_warning(tmp_path):
    data = shb() + idb("<", 1) + epb("<", 3, 1, b"nowhere") + epb("<", 0, 2, b"here")
    p = write(tmp_path, "undef.pcapng", data)
    got, stats = read_path(p)
    assert got == [(2000, 1, b"here")]
    assert stats.warnings == [f"{p}: 1 packets refer to interface 3, which no interface "
                              f"block defined; skipped"]
    assert not stats.truncated


@pytest.mark.parametrize("bad", ["trailer", "odd length", "huge length", "caplen"])
def test_pcapng_corrupt_block_stops_reading(tmp_path, bad):
    good = shb() + idb("<", 1) + epb("<", 0, 1, b"first")
    broken = bytearray(epb("<", 0, 2, b"second"))
    if bad == "trailer":
        broken[-4:] = struct.pack("<I", 999)
    elif bad == "caplen":
        broken[20:24] = struct.pack("<I", 1000)       # more than the block holds
    else:
        broken[4:8] = struct.pack("<I", 33 if bad == "odd length" else 0xFFFFFFF0)
    got, stats = read_path(write(tmp_path, "corrupt.pcapng", good + bytes(broken)
                                 + epb("<", 0, 3, b"third")))
    assert got == [(1000, 1, b"first")]
    assert stats.truncated and len(stats.warnings) == 1 and "corrupt block" in stats.warnings[0]


# --- gzip and stdin --------------------------------------------------------------------------

def sample_pcapng() -> bytes:
    return (shb() + idb("<", 1) + idb("<", 101, tsresol=9)
            + b"".join(epb("<", i % 2, T0 // 1000 + i, fr) for i, (_, fr) in
                       enumerate(dialog_frames())))


def big_frames():
    """120 frames of up to 64 KB (about 4 MB): many chunks, frames across chunk edges."""
    return [(T0 + i, frame(tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, 0x18, i,
                                      payload=bytes([i % 251]) * (i * 997 % 65000))))
            for i in range(120)]


SAMPLES = {"pcap": lambda: pcap_bytes(dialog_frames(payload=1400)), "pcapng": sample_pcapng,
           "big": lambda: pcap_bytes(big_frames(), nano=True)}


@pytest.mark.parametrize("kind", SAMPLES)
def test_gzip_of_each_format(tmp_path, kind):
    data = SAMPLES[kind]()
    plain, _ = read_path(write(tmp_path, "x", data))
    got, stats = read_path(write(tmp_path, "x.gz", gzip.compress(data)))
    assert got == plain and len(got) > 5 and not stats.warnings


@pytest.mark.parametrize("kind", SAMPLES)
def test_gzip_cut_short_is_a_warning(tmp_path, kind):
    data = SAMPLES[kind]()
    plain, _ = read_path(write(tmp_path, "x", data))
    z = gzip.compress(data)
    got, stats = read_path(write(tmp_path, "cut.gz", z[: len(z) * 2 // 3]))
    assert got == plain[: len(got)]
    assert stats.truncated and len(stats.warnings) == 1


def test_gzip_corrupt_or_not_a_capture_inside(tmp_path):
    with pytest.raises(CaptureError, match="gzip"):
        read_path(write(tmp_path, "bad.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 40))
    with pytest.raises(CaptureError, match="not a capture file inside gzip"):
        read_path(write(tmp_path, "text.gz", gzip.compress(b"<!DOCTYPE html>")))


def pipe_stdin(monkeypatch, data: bytes):
    """Replace sys.stdin by a real pipe fed by a thread: reading works, seeking fails."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    reader = os.fdopen(r, "rb")
    with pytest.raises(OSError):
        reader.seek(0)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=reader))
    return reader, thread


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "big", "pcap.gz", "pcapng.gz", "big.gz"])
def test_stdin_pipe(tmp_path, monkeypatch, kind):
    data = SAMPLES[kind.split(".")[0]]()
    want, _ = read_path(write(tmp_path, "x", data))
    data = gzip.compress(data) if kind.endswith(".gz") else data
    reader, thread = pipe_stdin(monkeypatch, data)
    stats = CaptureStats()
    got = list(open_capture("-", stats))
    thread.join()
    reader.close()
    assert got == want and stats.files == ["-"] and not stats.warnings


def test_stdin_not_a_capture(monkeypatch):
    reader, thread = pipe_stdin(monkeypatch, b"hello")
    with pytest.raises(CaptureError, match=r"^<stdin>: not a capture file \(first bytes 68 65 6c 6c\)$"):
        open_capture("-", CaptureStats())
    thread.join()
    reader.close()


# --- several files ---------------------------------------------------------------------------

def test_close_before_and_while_reading(tmp_path):
    p = write(tmp_path, "x.pcap", SAMPLES["pcap"]())
    stats = CaptureStats()
    untouched = open_capture(str(p), stats)
    untouched.close()
    assert untouched._fh.closed and stats.packets == 0
    started = open_capture(str(p), stats)
    next(iter(started))
    started.close()
    assert started._fh.closed and stats.packets == 1 and not stats.warnings


def test_read_frames_merges_files_in_time_order(tmp_path):
    a = [(T0 + 1000, b"a1"), (T0 + 3000, b"a3"), (T0 + 5000, b"a5")]
    b = [(T0 + 2000, b"b2"), (T0 + 3000, b"b3"), (T0 + 9000, b"b9")]
    pa = write(tmp_path, "a.pcap", pcap_bytes(a, nano=True))
    pb_ = write(tmp_path, "b.pcapng", shb() + idb("<", 101, tsresol=9)
                + b"".join(epb("<", 0, ts, fr) for ts, fr in b))
    stats = CaptureStats()
    sources = [open_capture(str(pa), stats), open_capture(str(pb_), stats)]
    got = [(ts, fr) for ts, _, fr in read_frames(sources, stats)]
    assert got == sorted(a + b, key=lambda x: x[0])                 # stable: a3 before b3
    assert stats.packets == 6 and stats.files == [str(pa), str(pb_)]
    assert (stats.first_ts, stats.last_ts) == (T0 + 1000, T0 + 9000)
    assert stats.linktypes == {LINKTYPE_ETHERNET: 3, 101: 3}

    one = CaptureStats()
    assert list(read_frames([open_capture(str(pa), one)], one)) == [
        (ts, LINKTYPE_ETHERNET, fr) for ts, fr in a]


@pytest.mark.parametrize("name", ["pcap", "pcapng", "big"])
def test_every_read_size_gives_the_same_frames(tmp_path, name):
    # Records straddle the reader's reads at every offset (header, frame, block): the frames,
    # counts and warnings are those of one large read, for whole files and cut ones.
    data = SAMPLES[name]()
    for cut in (len(data), len(data) - 5):
        p = write(tmp_path, "x." + name, data[:cut])
        want_stats = CaptureStats()
        want = list(open_capture(str(p), want_stats))
        sizes = [97, 1000, 4096, 65_549, 262_147]
        for chunk in (sizes if name == "big" else list(range(1, 41)) + sizes):
            stats = CaptureStats()
            got = list(open_capture(str(p), stats, chunk=chunk))
            assert got == want, (cut, chunk)
            assert (stats.packets, stats.warnings, stats.truncated, stats.first_ts,
                    stats.last_ts) == (want_stats.packets, want_stats.warnings,
                                       want_stats.truncated, want_stats.first_ts,
                                       want_stats.last_ts), (cut, chunk)


def _cursor_frames(cursor):
    out = []
    while cursor.advance():
        out.append((cursor.ts, cursor.linktype, cursor.buf[cursor.start:cursor.end]))
    return out


def test_open_captures_merges_as_read_frames_does(tmp_path):
    # Overlapping files, equal timestamps across files (file order decides), a pcapng, a file
    # with no frames, one cut short, one that is not a capture: the lazy merge gives the
    # frames heapq.merge gives over files opened up front, and the same statistics.
    a = [(T0 + 1000, b"a1"), (T0 + 3000, b"a3"), (T0 + 5000, b"a5")]
    b = [(T0 + 2000, b"b2"), (T0 + 3000, b"b3"), (T0 + 9000, b"b9")]
    c = [(T0 + 3000, b"c3"), (T0 + 4000, b"c4")]
    paths = [write(tmp_path, "a.pcap", pcap_bytes(a, nano=True)),
             write(tmp_path, "b.pcapng", shb() + idb("<", 101, tsresol=9)
                   + b"".join(epb("<", 0, ts, fr) for ts, fr in b)),
             write(tmp_path, "empty.pcap", pcap_bytes([])),
             write(tmp_path, "c.pcap", pcap_bytes(c, nano=True)[:-1]),       # c4 cut short
             write(tmp_path, "text.pcap", b"<html>\n"),
             write(tmp_path, "c2.pcap", pcap_bytes(c, nano=True))]
    good = [str(p) for p in paths if p.name != "text.pcap"]
    want_stats = CaptureStats()
    want = list(read_frames([open_capture(p, want_stats) for p in good], want_stats))
    stats, errors = CaptureStats(), []
    got = _cursor_frames(open_captures([str(p) for p in paths], stats, errors))
    assert got == want
    assert [fr for _, _, fr in got] == [b"a1", b"b2", b"a3", b"b3", b"c3", b"c3", b"c4", b"a5",
                                        b"b9"]
    assert errors == ["%s: not a capture file (first bytes 3c 68 74 6d)" % paths[4]]
    assert (stats.packets, stats.first_ts, stats.last_ts, stats.linktypes, stats.truncated) == (
        want_stats.packets, want_stats.first_ts, want_stats.last_ts, want_stats.linktypes, True)
    assert sorted(stats.warnings) == sorted(want_stats.warnings) and len(stats.warnings) == 1


@pytest.mark.parametrize("seed", range(6))
def test_merge_in_place_keeps_every_order_rule(tmp_path, seed, monkeypatch):
    # Random sets of rotated, interleaved, tied and out-of-order files (pcap and pcapng, some
    # cut short, some unreadable), merged in place, give heapq.merge's frames over the same
    # files opened up front: earliest (time, file index) first, each file in its own order.
    # Half the seeds allow two open files, so later ones go through the spill store.
    import random
    from analyzer.capture import files
    if seed % 2:
        monkeypatch.setattr(files, "open_budget", lambda: 2)
    rng = random.Random(seed)
    for case in range(40):
        paths, base = [], T0
        for k in range(rng.randint(2, 6)):
            n = rng.choice([0, 1, 2, 5, 20])
            mode = rng.choice(["rotated", "interleaved", "tied", "backwards"])
            if mode == "rotated":
                ts = [base + j * 1000 for j in range(n)]
                base += n * 1000 + rng.choice([0, 1, 500])
            elif mode == "tied":
                ts = [T0 + 3000] * n
            else:
                ts = [T0 + rng.randrange(30) * 500 for _ in range(n)]
                ts = sorted(ts) if mode == "interleaved" else ts
            frames = [(t, b"%d.%d" % (k, j) * rng.randint(1, 3)) for j, t in enumerate(ts)]
            kind = rng.choice(["pcap", "pcap", "pcapng", "cut", "bad"])
            if kind == "pcapng":
                data = shb() + idb("<", 101, tsresol=9) + b"".join(
                    epb("<", 0, t, fr) for t, fr in frames)
            else:
                data = pcap_bytes(frames, nano=True)
                data = data[:-rng.randint(1, 10)] if kind == "cut" and n else data
                data = data[:rng.randint(0, len(data))] if kind == "bad" else data
            paths.append(str(write(tmp_path, "%d-%d.cap" % (case, k), data)))
        want_stats, readable = CaptureStats(), []
        for p in paths:
            try:
                readable.append(open_capture(p, want_stats))
            except CaptureError:
                pass
        want = list(read_frames(readable, want_stats))
        stats, errors = CaptureStats(), []
        got = _cursor_frames(open_captures(paths, stats, errors))
        assert got == want, (seed, case)
        assert len(errors) == len(paths) - len(readable)
        assert (stats.packets, stats.linktypes, stats.first_ts, stats.last_ts,
                stats.truncated, sorted(stats.warnings)) == (
            want_stats.packets, want_stats.linktypes, want_stats.first_ts,
            want_stats.last_ts, want_stats.truncated, sorted(want_stats.warnings)), (seed, case)


@pytest.mark.parametrize("tsoffset, tsresol", [(2**62, None), (-2**62, None), (0, 0)])
def test_wild_pcapng_timestamps_are_read_as_written(tmp_path, tsoffset, tsresol):
    # 64-bit units, resolution and offset can say 10**28 ns (a real capture in the corpus has
    # an interface 584,000 years ahead): read as written, as Wireshark does, and the analysis
    # (SYN flood counting included, which keeps 64-bit arrays) goes on to the end.
    from analyzer.pipeline import analyze
    from analyzer.settings import Settings
    syn = tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, 0x02, 1000)
    units = (1 << 64) - 2 if tsresol == 0 else 5
    data = shb() + idb("<", LINKTYPE_RAW, tsresol=tsresol, tsoffset=tsoffset) + \
        epb("<", 0, units, syn) + epb("<", 0, units + 1, syn)
    report = analyze([str(write(tmp_path, "wild.pcapng", data))], Settings(flood_threshold=1))
    scale = 10**9 if tsresol == 0 else 1000
    conn = next(iter(report.connections))
    assert conn.start == units * scale + tsoffset * 10**9
    assert conn.handshake == "unanswered" and report.capture.packets == 2
    assert not report.capture.warnings
    assert json.loads(json.dumps(report.to_dict()))["connections"][0]["start"] == \
        conn.start / 10**9


_MANY_FILES = """
import json, os, resource, sys
from analyzer.pipeline import analyze
from analyzer.settings import Settings
resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
report = analyze(sys.argv[1:]).to_dict()
print(json.dumps([report["connections"], report["summary"], report["capture"]["errors"],
                  report["capture"]["packets"], len(os.listdir("/proc/self/fd"))]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
def test_hundreds_of_rotated_files_with_few_descriptors(tmp_path):
    # mixed.pcap cut into one file per packet (196 files), analysed by a process allowed 40
    # open files: the same connections as the whole file, and nothing left open.
    from conftest import REPO, run_python
    from analyzer.pipeline import analyze
    whole = REPO / "samples" / "mixed.pcap"
    frames = list(open_capture(str(whole), CaptureStats()))
    paths = []
    for n, (ts, linktype, fr) in enumerate(frames):
        paths.append(str(write(tmp_path, "part%04d.pcap" % n, pcap_bytes([(ts, fr)], nano=True))))
    assert len(paths) > 150
    p = run_python(_MANY_FILES, *paths)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    connections, summary, errors, packets, open_fds = json.loads(p.stdout)
    expected = analyze([str(whole)]).to_dict()
    assert errors == [] and packets == len(frames)
    assert connections == expected["connections"] and summary == expected["summary"]
    assert open_fds <= 6


# --- inputs that are not captures ------------------------------------------------------------

NOT_CAPTURES = {
    "text": (b"<!DOCTYPE html>\n<html>", "not a capture file (first bytes 3c 21 44 4f)"),
    "empty": (b"", "empty"),
    "three bytes": (b"\xd4\xc3\xb2", "not a capture file (first bytes d4 c3 b2)"),
    "pcap header cut": (struct.pack("<IHH", 0xA1B2C3D4, 2, 4), "header cut short (8 of 24"),
    "pcap version": (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1),
                     "unsupported pcap version 3.0"),
    "pcapng no bom": (b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00" + b"abcd" * 5, "byte-order"),
    "pcapng shb cut": (shb()[:20], "cut short (20 of 28"),
}


@pytest.mark.parametrize("case", NOT_CAPTURES)
def test_not_a_capture(tmp_path, case):
    data, why = NOT_CAPTURES[case]
    p = write(tmp_path, "input.bin", data)
    with pytest.raises(CaptureError) as e:
        open_capture(str(p), CaptureStats())
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and why in msg and "\n" not in msg


@pytest.mark.parametrize("case", ["directory", "missing"])
def test_cannot_open(tmp_path, case):
    p = tmp_path if case == "directory" else tmp_path / "nope.pcap"
    stats = CaptureStats()
    with pytest.raises(CaptureError, match=r"^%s: cannot open \(.+\)$" % str(p)):
        open_capture(str(p), stats)
    assert stats.files == []


# --- cut short, corrupt, garbage ---------------------------------------------------------------

def small_pcap():
    """A pcap and the byte offsets where its records end."""
    frames = dialog_frames()[:4]
    data = pcap_bytes(frames, nano=True)
    ends, off = [], 24
    for _, fr in frames:
        off += 16 + len(fr)
        ends.append(off)
    return data, [(ts, LINKTYPE_ETHERNET, fr) for ts, fr in frames], 24, ends


def small_pcapng():
    """A pcapng (two interfaces, a skipped block, an SPB) and the offsets where blocks end,
    with the frame each block yields (None for blocks that yield none)."""
    frames = dialog_frames()[:3]
    blocks = [(shb(), None), (idb("<", 1), None), (idb("<", 101, tsresol=9), None)]
    blocks.append((epb("<", 0, frames[0][0] // 1000, frames[0][1]),
                   (frames[0][0] // 1000 * 1000, 1, frames[0][1])))
    blocks.append((block("<", 0x0BAD, b"skip me"), None))
    blocks.append((epb("<", 1, frames[1][0], frames[1][1]), (frames[1][0], 101, frames[1][1])))
    blocks.append((spb("<", frames[2][1]), (frames[1][0], 1, frames[2][1])))
    blocks.append((block("<", 5, b"\x00" * 16), None))
    data, ends, off = b"", [], 0
    for blk, fr in blocks:
        data += blk
        off += len(blk)
        ends.append((off, fr))
    return data, ends


def test_pcap_cut_at_every_byte(tmp_path):
    data, frames, header, ends = small_pcap()
    p = tmp_path / "cut.pcap"
    for cut in range(len(data) + 1):
        p.write_bytes(data[:cut])
        if cut < header:
            with pytest.raises(CaptureError):
                open_capture(str(p), CaptureStats())
            continue
        got, stats = read_path(p)
        whole = sum(1 for e in ends if e <= cut)
        assert got == frames[:whole], cut
        assert stats.truncated == (cut not in ends and cut != header), cut
        assert len(stats.warnings) == stats.truncated, cut
        if stats.truncated:
            assert stats.warnings[0].startswith(f"{p}: cut short in the middle of a ")
            assert f"(record {whole + 1}, " in stats.warnings[0]
            assert stats.warnings[0].endswith(f"; {whole} packets before it were read")


def test_pcap_cut_short_message(tmp_path):
    data, frames, _, ends = small_pcap()
    p = write(tmp_path, "x.pcap", data[: ends[1] + 16 + 20])
    _, stats = read_path(p)
    n = len(frames[2][2])
    assert stats.warnings == [f"{p}: cut short in the middle of a packet (record 3, 20 of {n} "
                              f"bytes); 2 packets before it were read"]


def test_pcapng_cut_at_every_byte(tmp_path):
    data, ends = small_pcapng()
    p = tmp_path / "cut.pcapng"
    shb_end = ends[0][0]
    for cut in range(len(data) + 1):
        p.write_bytes(data[:cut])
        if cut < shb_end:
            with pytest.raises(CaptureError):
                open_capture(str(p), CaptureStats())
            continue
        got, stats = read_path(p)
        assert got == [fr for end, fr in ends if end <= cut and fr], cut
        boundary = any(end == cut for end, _ in ends)
        assert stats.truncated == (not boundary), cut
        assert len(stats.warnings) == (not boundary), cut
        if not boundary:
            assert stats.warnings[0].startswith(f"{p}: cut short in the middle of a block")


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_corrupt_length_no_big_allocation(tmp_path, kind):
    if kind == "pcap":
        data, frames, _, _ = small_pcap()
        data += struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 100
    else:
        data, ends = small_pcapng()
        frames = [fr for _, fr in ends if fr]
        data += struct.pack("<II", 6, 0xFFFFFFF0) + b"x" * 100
    p = write(tmp_path, "corrupt", data)
    tracemalloc.start()
    try:
        got, stats = read_path(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == frames
    assert stats.truncated and len(stats.warnings) == 1 and "corrupt" in stats.warnings[0]
    assert peak < 8 << 20        # a chunk or two, never the 4 GiB asked for


def test_pcap_caplen_within_bound_but_past_the_end(tmp_path):
    data, frames, _, _ = small_pcap()
    data += struct.pack("<IIII", 1, 0, 200_000, 200_000) + b"x" * 100
    got, stats = read_path(write(tmp_path, "x.pcap", data))
    assert got == frames and stats.truncated
    assert "cut short in the middle of a packet (record 5, 100 of 200000 bytes)" in stats.warnings[0]


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_garbage_after_good_packets(tmp_path, kind):
    if kind == "pcap":
        data, frames, _, _ = small_pcap()
    else:
        data, ends = small_pcapng()
        frames = [fr for _, fr in ends if fr]
    got, stats = read_path(write(tmp_path, "g", data + b"this is not a packet record, " * 5))
    assert got == frames and stats.truncated and len(stats.warnings) == 1


def test_big_frames_across_chunks(tmp_path):
    frames = big_frames()
    data = pcap_bytes(frames, nano=True)
    want = [(ts, 1, fr) for ts, fr in frames]
    assert read_path(write(tmp_path, "big.pcap", data))[0] == want
    assert read_path(write(tmp_path, "big.pcap.gz", gzip.compress(data, 1)))[0] == want


# --- the shared corpus ---------------------------------------------------------------------

def corpus_rows():
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as f:
        return [pytest.param(r["local_path"], int(r["packets"]), id=r["local_path"])
                for r in csv.DictReader(f, delimiter="\t")]


@pytest.mark.skipif(not (CORPUS / "MANIFEST.tsv").exists(),
                    reason=f"no capture corpus at {CORPUS} (shared/corpus beside the repo)")
@pytest.mark.parametrize("local_path, packets", corpus_rows())
def test_corpus_file_reads_every_packet(local_path, packets):
    # `packets` is tshark's frame count; every file in the corpus matches it exactly
    got, stats = read_path(CORPUS / local_path)
    assert len(got) == packets == stats.packets
    assert not stats.warnings and not stats.truncated
