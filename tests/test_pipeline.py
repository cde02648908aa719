"""The whole analysis on damaged input: everything readable before the damage is analysed."""

from __future__ import annotations

import io
import struct

from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.render import render
from analyzer.judge.result import ConnResult
from analyzer.testing.synth import Dialog, write_pcap


def _records(data: bytes) -> list:
    """End offsets of the whole records of a little-endian µs pcap."""
    ends, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
        if pos <= len(data):
            ends.append(pos)
    return ends


def test_truncation_at_every_byte_keeps_every_whole_packet(tmp_path):
    d = Dialog().handshake().data("c", 30).fin("c").fin("s").ack("c")
    full = tmp_path / "full.pcap"
    write_pcap(full, d.packets)
    data = full.read_bytes()
    ends = _records(data)
    cut = tmp_path / "cut.pcap"
    for n in range(24, len(data) + 1):
        cut.write_bytes(data[:n])
        rep = analyze([str(cut)])
        whole = sum(1 for e in ends if e <= n)
        assert rep.capture.packets == whole, n
        assert rep.capture.tcp_packets == whole, n
        assert rep.capture.truncated == (n not in ends and n != 24), n
        if whole:
            assert len(rep.connections) == 1
    # and a header cut short is not a capture at all
    cut.write_bytes(data[:10])
    assert analyze([str(cut)]).capture.errors


def test_garbage_after_good_packets(tmp_path):
    d = Dialog().handshake().data("c", 30)
    path = tmp_path / "g.pcap"
    write_pcap(path, d.packets)
    with open(path, "ab") as fh:
        fh.write(b"\xde\xad\xbe\xef" * 40)
    rep = analyze([str(path)])
    assert rep.capture.packets == 4 and rep.capture.truncated
    assert rep.connections[0].handshake == "complete"
    assert len(rep.capture.warnings) == 1


def test_finished_connections_leave_memory(tmp_path):
    # 50 short connections one after another, 3 minutes apart: each is finalized 2*MSL after
    # it finished, long before the capture ends, so at most a couple are live at once.
    from analyzer.tcp.flows import FlowTable
    from analyzer.decode.frames import decode_frame
    from analyzer.testing.synth import frame
    done = []
    table = FlowTable(lambda c, now: done.append((c.id, now)), 30_000_000_000)
    peak = 0
    for i in range(50):
        d = Dialog(client=("10.0.0.1", 30000 + i), t0=1_700_000_000 + 180 * i)
        d.handshake().fin("c").fin("s").ack("c")
        for ts, ip, side in d.packets:
            seg = decode_frame(1, frame(ip))
            seg.ts = ts
            table.feed(seg)
            peak = max(peak, table.size)
    assert peak <= 2
    assert len(done) == 49 and table.evicted == 49


def test_results_spilled_to_disk_come_back_identical_and_in_order():
    from conftest import REPO
    path = str(REPO / "samples" / "mixed.pcap")
    in_memory = analyze([path]).to_dict()
    spilled = analyze([path], Settings(result_budget=3))
    assert len(spilled.connections.runs) >= 4          # several sorted runs were written
    assert spilled.to_dict() == in_memory
    assert [r.id for r in spilled.connections] == list(range(16))


def test_a_flood_of_spoofed_syns_stays_within_the_live_cap(tmp_path):
    from analyzer.testing.synth import merge
    dialogs = [Dialog(client=("10.%d.%d.9" % (i >> 8, i & 255), 40000), t0=1_700_000_000 + i * 1e-4)
               .syn() for i in range(3000)]
    path = tmp_path / "flood.pcap"
    write_pcap(path, merge(*dialogs))
    rep = analyze([str(path)], Settings(max_live=500))
    assert len(rep.connections) == 3000                  # every attempt is still reported
    assert rep.capture.evicted_early == 0 and rep.capture.memory_bound == 0
    assert rep.capture.parked >= 2500                    # ... the rest waited on disk
    assert not rep.capture.warnings
    assert rep.summary.handshakes["unanswered"] == 3000
    assert [f.code for f in rep.findings] == ["HALF_OPEN_FLOOD"]
    unbounded = analyze([str(path)], Settings(max_live=10 ** 9)).to_dict()
    doc = rep.to_dict()
    assert doc["capture"].pop("parked") >= 2500 and unbounded["capture"].pop("parked") == 0
    assert doc == unbounded


def test_the_cyclic_collector_is_back_on_after_the_analysis():
    import gc
    from conftest import REPO
    assert gc.isenabled()
    analyze([str(REPO / "samples" / "mixed.pcap")])
    assert gc.isenabled()


def test_spilled_runs_read_back_across_pickle_blocks(monkeypatch):
    """Runs longer than one pickled block (runs.BLOCK) come back whole and in order."""
    from analyzer.report import runs
    from conftest import REPO
    monkeypatch.setattr(runs, "BLOCK", 2)
    path = str(REPO / "samples" / "mixed.pcap")
    in_memory = analyze([path]).to_dict()
    spilled = analyze([path], Settings(result_budget=5))          # runs of 5 results: blocks 2, 2, 1
    assert [n for _, n in spilled.connections.runs] == [5, 5, 5]
    assert spilled.to_dict() == in_memory


def test_keeping_only_what_the_terminal_lists_changes_nothing_it_shows():
    # The terminal renderer's sink keeps only the connections needing attention; the report
    # it prints must be the one printed from every result, spilled or not.
    from conftest import REPO
    from analyzer.render import make_sink
    checked = bounded = 0
    settings = Settings(result_budget=2)
    for path in sorted((REPO / "samples").rglob("*.pcap")):
        full = analyze([str(path)], settings)
        kept = analyze([str(path)], settings, sink=make_sink("text", settings, show_all=False))
        assert len(kept.connections) == len(full.connections)
        assert [r.id for r in kept.connections] == \
            [r.id for r in full.connections if r.needs_attention()]
        for limit in (0, 1, 2, 3, 100):
            # With --limit, only the limit + 1 most severe are kept (the first among equals).
            best = analyze([str(path)], sink=make_sink("text", Settings(), show_all=False,
                                                       limit=limit))
            assert len(best.connections) == len(full.connections)
            if limit:
                assert len(list(best.connections)) == min(limit + 1, len(list(kept.connections)))
            outs = []
            for report in (full, kept, best):
                out = io.StringIO()
                render("text", report, out, show_all=False, color=False, limit=limit)
                outs.append(out.getvalue())
            assert outs[0] == outs[1] == outs[2], (path, limit)
            bounded += bool(limit and len(list(best.connections)) < len(list(kept.connections)))
        checked += bool(len(kept.connections) != len(list(kept.connections)))
    assert checked >= 5          # samples where some connections were counted, not kept
    assert bounded >= 3          # ... and where the limit left some needing attention out


def test_the_terminal_keeps_the_first_of_equally_severe_connections(tmp_path):
    # Twelve unanswered SYNs (the same severity) and a refused one: with --limit 3 the report
    # lists the first three in stream order, whatever it kept of the others.
    from analyzer.render import make_sink
    from analyzer.testing.synth import Dialog, merge, write_pcap
    dialogs = []
    for i in range(13):
        d = Dialog(client=("10.0.0.%d" % (i + 1), 40000 + i), t0=1_700_000_000.0 + i)
        d.syn().wait(1).syn(advance=False, seq=1000)
        if i == 7:
            d.rst("s")
        dialogs.append(d)
    path = tmp_path / "ties.pcap"
    write_pcap(path, merge(*dialogs))
    full = analyze([str(path)])
    assert sum(r.needs_attention() for r in full.connections) == 13
    for limit in (1, 3, 12, 13):
        best = analyze([str(path)], sink=make_sink("text", Settings(), show_all=False,
                                                   limit=limit))
        assert len(list(best.connections)) == min(limit + 1, 13)
        outs = []
        for report in (full, best):
            out = io.StringIO()
            render("text", report, out, show_all=False, color=False, limit=limit)
            outs.append(out.getvalue())
        assert outs[0] == outs[1], limit
        assert "40000" in outs[1]           # the first connection is among those listed
