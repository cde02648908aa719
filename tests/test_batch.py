"""The batch reader (analyzer/batch.py) gives the same analysis as the per-frame loop.

Three layers, each against the per-frame code it stands in for:
* the vectorised decoder: every frame it takes gives the fields `decode_frame` gives, and it
  takes the common layouts (frames built here for every link type and many IP/TCP layouts,
  plus random bytes);
* the block reader of classic pcap files: the same frames, warnings and tallies as iteration,
  on whole, cut and corrupt files;
* the whole analysis: the same report, field for field, on every sample capture, on captures
  built here, and on every file of the shared corpus (skipped when it is absent).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from analyzer import batch
from analyzer.capture import CaptureStats, open_capture
from analyzer.decode import decode_frame
from analyzer.pipeline import analyze
from analyzer.segment import ACK, FIN, PSH, RST, SYN, Segment
from analyzer.synth import (LINKS, Dialog, PcapngWriter, frame, merge, syn_options, tcp_packet,
                            write_pcap)
from conftest import CORPUS, REPO

SAMPLES = sorted(str(p.relative_to(REPO)) for p in (REPO / "samples").rglob("*.pcap*"))


def _vector(frames, linktypes):
    """batch.decode on frames -> {index: (seq, ack, win, paylen, flow)} of the fast frames."""
    lens = np.array([len(f) for f in frames], np.int64)
    offs = np.zeros(len(frames), np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    keys, seqs, acks, wins, paylens, flows = batch.decode(b"".join(frames), offs, lens,
                                                          linktypes)
    return {i: (seqs[i], acks[i], wins[i], paylens[i], flows[k])
            for i, k in enumerate(keys) if k >= 0}


def _agrees(frames, linktypes):
    """Every vectorised frame decodes per frame to the same segment; returns their indices."""
    got = _vector(frames, linktypes)
    for i, (seq, ack, win, paylen, (key, src, sport)) in got.items():
        lt = linktypes[i] if len(linktypes) > 1 else linktypes[0]
        seg = decode_frame(lt, frames[i])
        assert isinstance(seg, Segment), (i, seg)
        assert seg.flags & (SYN | FIN | RST | ACK) == ACK and seg.win and not seg.cut
        assert (seg.seq, seg.ack, seg.win, seg.paylen, seg.src, seg.sport) == \
            (seq, ack, win, paylen, src, sport)
        ends = sorted([(seg.src, seg.sport), (seg.dst, seg.dport)])
        assert key == (ends[0][0], ends[0][1], ends[1][0], ends[1][1])
    return set(got)


ADDRS = [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")]


@pytest.mark.parametrize("link", ["ether", "null", "loop", "raw", "sll", "sll2"])
@pytest.mark.parametrize("src,dst", ADDRS)
def test_common_layouts_are_vectorised_and_agree(link, src, dst):
    lt = LINKS[link]
    ip = [tcp_packet(src, dst, 40000, 80, ACK, 1000, 2000),
          tcp_packet(dst, src, 80, 40000, ACK | PSH, 2000, 1000, payload=b"x" * 300),
          tcp_packet(src, dst, 40000, 80, ACK, 1000, 2300, win=0),            # zero window
          tcp_packet(src, dst, 40000, 80, SYN, 999, options=syn_options()),
          tcp_packet(src, dst, 40000, 80, FIN | ACK, 1000, 2300),
          tcp_packet(src, dst, 40000, 80, RST | ACK, 1000, 2300),
          tcp_packet(src, dst, 40000, 80, ACK, 1000, 2300, options=b"\x01\x01\x08\x0a" + bytes(8))]
    frames = [frame(p, link) for p in ip]
    fast = _agrees(frames, (lt,))
    assert fast == {0, 1, 6}
    if link == "ether":                                  # one VLAN tag: vectorised; QinQ: not
        tagged = [frame(p, link, vlans=(7,)) for p in ip] + [frame(ip[0], link, vlans=(7, 8))]
        assert _agrees(tagged, (lt,)) == {0, 1, 6}


def test_other_layouts_take_the_per_frame_path():
    data = tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, ACK, 5, 6, payload=b"abc")
    opts = bytearray(data)                                # IPv4 with options (IHL 6)
    opts[0] = 0x46
    opts[2:4] = struct.pack("!H", len(data) + 4)
    with_opts = bytes(opts[:20]) + b"\x01\x01\x01\x00" + bytes(opts[20:])
    frag = bytearray(data)
    frag[6:8] = b"\x20\x00"                               # more fragments
    cut = frame(data)[:-2]                                # snaplen cut inside the payload
    frames = [frame(with_opts), frame(bytes(frag)), cut, frame(data)[:40], frame(data)]
    assert _agrees(frames, (1,)) == {4}
    assert decode_frame(1, cut).cut


def test_mixed_link_types_in_one_batch():
    p = tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, ACK, 5, 6)
    frames = [frame(p, "ether"), frame(p, "sll2"), frame(p, "null"), b"\x00" * 3]
    assert _agrees(frames, (1, 276, 0, 1)) == {0, 1, 2}
    assert _agrees(frames, (147, 147, 147, 147)) == set()   # a link type not vectorised


def test_random_bytes_never_disagree():
    rng = random.Random(7)
    base = [frame(tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, ACK, 5, 6, payload=b"ab")),
            frame(tcp_packet("2001:db8::1", "2001:db8::2", 1, 2, ACK, 5, 6))]
    frames = []
    for _ in range(3000):
        f = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        frames.append(bytes(f[:rng.randint(0, len(f))]) if rng.random() < 0.2 else bytes(f))
    assert _agrees(frames, (1,))           # some survive the mutations and all of them agree


# -- the block reader of classic pcap -------------------------------------------------------

def _frames_and_stats(path: str, blocks: bool):
    stats = CaptureStats()
    src = open_capture(path, stats)
    if blocks:
        out = []
        for buf, offs, lens, ts in src.batches():
            out += [(t, src.linktype, buf[o:o + n])
                    for t, o, n in zip(ts.tolist(), offs.tolist(), lens.tolist())]
    else:
        out = list(src)
    return out, (stats.packets, stats.truncated, stats.warnings, stats.first_ts, stats.last_ts,
                 stats.linktypes)


@pytest.mark.parametrize("cut", [None, 24, 30, 40, 100, -1, "corrupt"])
@pytest.mark.parametrize("nano,order", [(False, "<"), (True, ">")])
def test_block_reader_matches_frame_reader(tmp_path, cut, nano, order):
    d = Dialog().handshake().data("c", 100).data("s", 3000).fin("c").fin("s").ack("c")
    path = tmp_path / "c.pcap"
    write_pcap(path, merge(d), nano=nano, big_endian=order == ">")
    raw = path.read_bytes()
    if cut == "corrupt":
        raw = raw[:24 + 16 + 60] + b"\xff" * 16 + raw[24 + 16 + 60:]
    elif cut is not None:
        raw = raw[:cut]
    path.write_bytes(raw)
    try:
        a = _frames_and_stats(str(path), True)
    except Exception as e:                 # the header itself is cut: both refuse alike
        with pytest.raises(type(e)):
            _frames_and_stats(str(path), False)
        return
    assert a == _frames_and_stats(str(path), False)


# -- the whole analysis ---------------------------------------------------------------------

def _same_report(paths, **kw):
    fast = analyze(paths, **kw).to_dict()
    slow = analyze(paths, batched=False, **kw).to_dict()
    assert fast == slow
    return fast


@pytest.mark.parametrize("sample", SAMPLES)
def test_samples_same_report(sample):
    _same_report([str(REPO / sample)])


def test_many_interleaved_connections_same_report(tmp_path):
    """Hundreds of connections interleaved, with losses, reordering, keep-alives, zero windows,
    reuse of 4-tuples and every ending: batches of 16384 frames cut through all of them."""
    rng = random.Random(3)
    dialogs = []
    for i in range(400):
        d = Dialog(client=("10.1.%d.%d" % (i // 200, i % 200 + 1), 30000 + i % 50),
                   server=("10.2.0.%d" % (i % 3 + 1), 80), t0=1.7e9 + rng.random() * 20)
        d.handshake()
        for _ in range(rng.randint(1, 30)):
            d.wait(rng.random() * 0.05)
            r = rng.random()
            if r < 0.05:
                d.data("c", 100, seq=d.nxt["c"] + 50)            # a gap: lost segment
            elif r < 0.08:
                d.send("s", ACK, win=0)
            else:
                d.data(rng.choice("cs"), rng.randint(0, 1448))
        end = rng.random()
        if end < 0.5:
            d.fin("c").fin("s").ack("c")
        elif end < 0.7:
            d.rst(rng.choice("cs"))
        elif end < 0.8:
            d.fin("c")
        dialogs.append(d)
    path = tmp_path / "many.pcap"
    write_pcap(path, merge(*dialogs))
    doc = _same_report([str(path)])
    assert len(doc["connections"]) >= 400
    # the per-frame path of several files and of pcapng goes through `frame_batches`
    with open(tmp_path / "many.pcapng", "wb") as fh:
        w = PcapngWriter(fh)
        for ts, ip, side in merge(*dialogs):
            w.write(ts, frame(ip, outbound=side == "c"))
    _same_report([str(tmp_path / "many.pcapng")])
    _same_report([str(path), str(tmp_path / "many.pcapng")])


def _corpus_files():
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return ["<no corpus>"]
    import csv
    with open(manifest, newline="") as fh:
        return [row["local_path"] for row in csv.DictReader(fh, delimiter="\t")]


@pytest.mark.parametrize("local_path", _corpus_files())
def test_corpus_same_report(corpus, local_path):
    _same_report([str(Path(corpus) / local_path)])
