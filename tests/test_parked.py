"""Past --max-connections connections are parked on disk, not finalized: every output is the one
an unbounded run gives. Where a bound on parking bites, every format says which connections it
touched (MEMORY_BOUND). Real bytes throughout: synth builds the packets, the analyzer reads a
capture file.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
from pathlib import Path
from typing import List

import pytest

from conftest import REPO, run_cli
from analyzer.decode.frames import decode_frame
from analyzer.pipeline import analyze
from analyzer.render.zeek_out import render as zeek_render
from analyzer.settings import Settings
from analyzer.tcp import parked as parked_mod
from analyzer.tcp.flows import FlowTable
from analyzer.testing.synth import Dialog, frame, merge, write_pcap

UNBOUNDED = 10 ** 9


def interleaved(n: int, seed: int = 1) -> List[Dialog]:
    """`n` connections started 1 ms apart, each living seconds (so all are open at once),
    ending every way: FIN both ways, RST, half-closed, a late FIN after TIME_WAIT began; a
    4-tuple used again every 97th; 50 SYNs sent twice and never answered."""
    rnd = random.Random(seed)
    dialogs = []
    for i in range(n):
        d = Dialog(client=("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 30000 + i % 20000),
                   server=("192.0.2.%d" % (1 + i % 7), 443),
                   isn=(rnd.randrange(2 ** 32), rnd.randrange(2 ** 32)),
                   t0=1_700_000_000 + i * 0.001, step=0.0005)
        d.handshake()
        for _ in range(rnd.randrange(1, 5)):
            d.wait(rnd.random() * 3).data("c", 100).data("s", 1400).ack("c")
        end = rnd.random()
        if end < 0.5:
            d.fin("c").fin("s").ack("c")
        elif end < 0.6:
            d.rst("s")
        elif end < 0.7:
            d.fin("c").ack("s")
        elif end < 0.75:
            d.fin("c").fin("s").ack("c").wait(5).fin("s", advance=False)
        dialogs.append(d)
    for j in range(0, n, 97):
        d = Dialog(client=("10.%d.%d.%d" % (j >> 16, (j >> 8) & 255, j & 255), 30000 + j % 20000),
                   server=("192.0.2.%d" % (1 + j % 7), 443), isn=(rnd.randrange(2 ** 32), 7),
                   t0=1_700_000_020 + j * 0.001)
        dialogs.append(d.handshake().data("c", 10).fin("c").fin("s").ack("c"))
    for j in range(50):
        d = Dialog(client=("172.16.0.%d" % j, 5555), server=("192.0.2.99", 22),
                   t0=1_700_000_000 + j * 0.01)
        dialogs.append(d.syn().wait(1).syn(seq=d.nxt["c"] - 1, advance=False))
    return dialogs


@pytest.fixture(scope="module")
def thousand(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parked") / "thousand.pcap"
    write_pcap(path, merge(*interleaved(1000)))
    return path


def outputs(path: Path, **settings) -> tuple:
    """The JSON document (less `capture.parked`) and the conn.log of one run."""
    rep = analyze([str(path)], Settings(**settings))
    doc = rep.to_dict()
    parked = doc["capture"].pop("parked")
    log = io.StringIO()
    zeek_render(rep, log)
    return doc, log.getvalue(), parked


def test_a_thousand_open_at_once_past_a_bound_of_100_report_as_without_it(thousand):
    # The whole command line, three formats: byte for byte (but the count of parkings).
    runs = {}
    for bound in ("100", str(UNBOUNDED)):
        js = run_cli(str(thousand), "--format", "json", "--checksums", "--max-connections", bound)
        log = run_cli(str(thousand), "--format", "zeek", "--max-connections", bound)
        text = run_cli(str(thousand), "--all", "--no-color", "--max-connections", bound)
        assert js.returncode == log.returncode == text.returncode == 0, js.stderr
        doc = json.loads(js.stdout)
        runs[bound] = (doc, log.stdout, text.stdout, js.stderr + log.stderr + text.stderr)
    (doc, log, text, err), (doc0, log0, text0, err0) = runs["100"], runs[str(UNBOUNDED)]
    assert doc["capture"].pop("parked") > 1000 and doc0["capture"].pop("parked") == 0
    assert doc == doc0 and log == log0 and err == err0 == b""
    lines, lines0 = text.splitlines(), text0.splitlines()
    memory = [ln for ln in lines if ln.startswith(b"Memory")]
    assert len(memory) == 1 and b"parked on disk" in memory[0]
    assert [ln for ln in lines if not ln.startswith(b"Memory")] == lines0
    # Stream ids are Wireshark's (order of first packet): 1,000 + 11 reuses + 50, all numbered.
    assert [c["id"] for c in doc["connections"]] == list(range(1061))
    assert doc["capture"]["evicted_early"] == doc["capture"]["memory_bound"] == 0
    assert doc["summary"]["handshakes"].get("not_seen", 0) == 0


@pytest.mark.parametrize("bound,idle,msl", [(1, None, 30.0), (10, None, 1.0), (3, None, 0.5),
                                            (10, 2.5, 1.0), (1, 1.0, 0.3), (50, 0.8, 30.0)])
def test_sweeps_and_idle_timeouts_run_as_without_the_bound(thousand, bound, idle, msl):
    # A short MSL finalizes finished connections (parked ones among them) while the capture
    # runs; the idle timeout finalizes silent ones, parked or not, as it always did.
    doc, log, parked = outputs(thousand, max_live=bound, idle_timeout=idle, msl=msl)
    doc0, log0, parked0 = outputs(thousand, max_live=UNBOUNDED, idle_timeout=idle, msl=msl)
    assert parked > 0 and parked0 == 0
    assert doc == doc0 and log == log0
    assert doc["capture"]["memory_bound"] == 0


@pytest.mark.parametrize("sample", sorted(p.name for p in (REPO / "samples").glob("*.pcap*")))
def test_every_sample_reads_the_same_with_one_connection_in_memory(sample):
    # Every connection of every sample goes to disk and back at every other packet: the
    # pickles carry the whole state (compiled classes too: @mypyc_attr(serializable=True)).
    path = REPO / "samples" / sample
    doc, log, _ = outputs(path, max_live=1)
    doc0, log0, _ = outputs(path)
    assert doc == doc0 and log == log0


def test_where_the_bound_on_parking_bites_every_format_says_so(thousand, tmp_path):
    opts = ("--max-connections", "100", "--max-parked", "300")
    js = run_cli(str(thousand), "--format", "json", *opts)
    doc = json.loads(js.stdout)
    cap = doc["capture"]
    touched = [c for c in doc["connections"] if any(f["code"] == "MEMORY_BOUND"
                                                    for f in c["findings"])]
    assert cap["memory_bound"] == len(touched) > 0
    assert cap["evicted_early"] == cap["memory_bound"] and cap["parked"] > 0
    assert doc["summary"]["findings_by_code"]["MEMORY_BOUND"] == len(touched)
    (f,) = [f for f in touched[0]["findings"] if f["code"] == "MEMORY_BOUND"]
    assert f["severity"] == "warning" and "--max-connections" in f["message"]
    assert any("MEMORY_BOUND" in w and "--max-parked" in w for w in cap["warnings"])
    assert b"MEMORY_BOUND" in js.stderr
    # conn.log: one more field, T on exactly those connections.
    log = run_cli(str(thousand), "--format", "zeek", *opts).stdout.decode().splitlines()
    fields = next(ln for ln in log if ln.startswith("#fields")).split("\t")[1:]
    types = next(ln for ln in log if ln.startswith("#types")).split("\t")[1:]
    assert fields[-1] == "memory_bound" and types[-1] == "bool" and len(fields) == len(types)
    rows = [ln.split("\t") for ln in log if not ln.startswith("#")]
    assert all(len(r) == len(fields) for r in rows)
    assert sum(r[-1] == "T" for r in rows) == len(touched)
    assert {r[-1] for r in rows} == {"T", "F"}
    # Text, HTML, JUnit: the finding on the connection and the count in the summary.
    text = run_cli(str(thousand), "--all", "--no-color", *opts).stdout.decode()
    assert "MEMORY_BOUND" in text
    assert "%d finalized early by a bound (finding MEMORY_BOUND)" % len(touched) in text
    html = run_cli(str(thousand), "--format", "html", *opts).stdout.decode()
    assert "MEMORY_BOUND" in html and "finalized early by a bound" in html
    junit = run_cli(str(thousand), "--format", "junit", *opts).stdout.decode()
    assert junit.count("MEMORY_BOUND") >= 1
    # The gate: the capture rule `evicted` counts them, and can fail the run.
    policy = tmp_path / "policy.toml"
    policy.write_text('[capture]\nevicted = "fail"\n')
    gated = run_cli(str(thousand), "--policy", str(policy), "-q", *opts)
    assert gated.returncode == 1 and b"evicted" in gated.stderr
    assert run_cli(str(thousand), "--policy", str(policy), "-q").returncode == 0


def test_a_temporary_directory_that_cannot_be_written_finalizes_early_and_says_why(
        thousand, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    rep = analyze([str(thousand)], Settings(max_live=100))
    assert rep.capture.memory_bound > 0 and rep.capture.parked == 0
    (warning,) = [w for w in rep.capture.warnings if "MEMORY_BOUND" in w]
    assert "parking them on disk failed" in warning and "missing" in warning


def test_the_parked_file_is_compacted_and_reads_back_the_same(thousand, monkeypatch):
    monkeypatch.setattr(parked_mod, "COMPACT_AT", 1 << 16)
    monkeypatch.setattr(parked_mod, "WRITE_BATCH", 1 << 12)
    compacted = []
    real = parked_mod.Parked._compact
    monkeypatch.setattr(parked_mod.Parked, "_compact",
                        lambda self: (compacted.append(self.used), real(self)))
    doc, log, _ = outputs(thousand, max_live=20, msl=1.0)
    doc0, log0, _ = outputs(thousand, max_live=UNBOUNDED, msl=1.0)
    assert compacted and doc == doc0 and log == log0


def _feed_all(table: FlowTable, packets) -> List[int]:
    sizes = []
    for n, (ts, ip, side) in enumerate(packets, 1):
        seg = decode_frame(1, frame(ip))
        seg.ts, seg.num = ts, n
        table.feed(seg)
        sizes.append(table.size)
    return sizes


def test_memory_holds_the_bound_and_a_connection_that_comes_and_goes_costs_one_pickle_a_packet():
    # Two connections taking turns, one allowed in memory: every packet brings one back and
    # parks the other; the table never holds more than the bound, the work stays linear.
    a = Dialog(client=("10.0.0.1", 40000)).handshake()
    b = Dialog(client=("10.0.0.3", 40001), t0=1_700_000_000.0005).handshake()
    for _ in range(200):
        a.data("c", 10)
        b.data("c", 10)
    done = []
    table = FlowTable(lambda c, now: done.append(c.id), 30_000_000_000, max_live=1)
    sizes = _feed_all(table, merge(a, b))
    assert max(sizes) <= 2 and table.parked.parks <= len(sizes) + 2
    table.flush(2_000_000_000_000_000_000)
    assert done == [0, 1] and not table.parked.index


def test_a_spoofed_syn_flood_keeps_the_table_and_the_index_bounded():
    # 3,000 SYNs from as many sources, 200 in memory, 1,000 parked at most: the rest are
    # finalized early with MEMORY_BOUND; nothing grows past its bound.
    dialogs = [Dialog(client=("10.%d.%d.9" % (i >> 8, i & 255), 40000),
                      t0=1_700_000_000 + i * 1e-4).syn() for i in range(3000)]
    done = []
    table = FlowTable(lambda c, now: done.append(c), 30_000_000_000, max_live=200,
                      max_parked=1000)
    sizes = _feed_all(table, merge(*dialogs))
    assert max(sizes) <= 201 and len(table.parked.index) <= 1000
    assert len(done) == table.parked.bound >= 1800
    assert all("MEMORY_BOUND" in c.findings for c in done)


def test_an_icmp_quote_of_a_parked_connection_takes_no_new_number(tmp_path):
    # Wireshark numbers a quoted 4-tuple only if it has not been seen: a parked connection
    # has been seen, so no number is reserved for it (or stream ids would shift).
    import dpkt
    a = Dialog(client=("10.0.0.1", 40000)).handshake().wait(2).data("c", 10)
    others = [Dialog(client=("10.1.0.%d" % i, 40000), t0=1_700_000_000.5 + i * 0.01).handshake()
              for i in range(5)]
    quoted = a.packets[0][1][:28]
    unreach = dpkt.icmp.ICMP(type=3, code=4, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x02", dst=b"\x0a\x00\x00\x01", p=1, data=unreach)
    packets = sorted(merge(a, *others) + [(1_700_000_001_000_000_000, bytes(ip), "s")],
                     key=lambda p: p[0])
    path = tmp_path / "icmp.pcap"
    write_pcap(path, packets)
    doc, _, parked = outputs(path, max_live=1)
    doc0, _, _ = outputs(path)
    assert parked > 0 and doc == doc0
    assert [c["id"] for c in doc["connections"]] == list(range(6))


def test_forgotten_icmp_reservations_are_warned_about(tmp_path):
    # More quoted 4-tuples than the bound, none seen before: the oldest reservations are
    # forgotten, and the report says that stream numbers may stop matching Wireshark's.
    import dpkt
    packets = []
    for i in range(5):
        quoted = Dialog(client=("10.0.0.%d" % (i + 1), 40000)).syn().packets[0][1][:28]
        unreach = dpkt.icmp.ICMP(type=3, code=4, data=dpkt.icmp.ICMP.Unreach(data=quoted))
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\xfe", dst=b"\x0a\x00\x00\x01", p=1, data=unreach)
        packets.append((1_700_000_000_000_000_000 + i, bytes(ip), "s"))
    path = tmp_path / "quotes.pcap"
    write_pcap(path, packets)
    assert not analyze([str(path)]).capture.warnings
    (w,) = analyze([str(path)], Settings(max_live=2)).capture.warnings
    assert w.startswith("3 stream numbers taken by TCP headers quoted in ICMP errors were forgotten")
