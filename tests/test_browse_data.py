"""The browser's plain-Python parts, without a screen: the ladder of one stream read again, the
table's model (filter, sort, cells), the export, and how `--browse` starts or says why not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import REPO, every_capture, run_cli, run_python
from analyzer.browse.export import ExportError, export_json
from analyzer.browse.model import COLUMNS, Model, address_filter, display_filter
from analyzer.browse import stream
from analyzer.browse.reader import ladder_in_process
from analyzer.browse.stream import Cancelled, LadderError, stream_ladder
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, merge, write_pcap

SAMPLES = sorted((REPO / "samples").rglob("*.pcap*"))
MIXED = str(REPO / "samples" / "mixed.pcap")


def _results(path: str, settings: Settings = Settings()):
    report = analyze([path], settings)
    return report, list(report.connections)


def _picked(results):
    """A few streams of a capture: the first, the last, and the one with most packets."""
    if len(results) <= 3:
        return results
    busiest = max(results, key=lambda r: r.packets[0] + r.packets[1])
    return [results[0], busiest, results[-1]]


@pytest.mark.parametrize("path", every_capture(), ids=lambda p: p.name)
def test_stream_ladder_is_the_analysis_ladder(path: Path) -> None:
    """Reading one stream again gives, row for row, the ladder `--stream N` records."""
    if path.stat().st_size > 4_000_000:
        pytest.skip("large capture: re-reading is covered by the smaller ones")
    _, results = _results(str(path))
    chosen = results if path in SAMPLES else _picked(results)
    traced = analyze([str(path)], Settings(ladders=frozenset(r.id for r in chosen)))
    for r in chosen:
        assert stream_ladder([str(path)], Settings(), r) == traced.ladders[r.id], r.id


def test_stream_ladder_of_a_reused_four_tuple(tmp_path: Path) -> None:
    """Two connections on one 4-tuple: each gets only its own packets."""
    first = Dialog(t0=1_700_000_000).handshake().data("c", 10).fin("c").fin("s").ack("c")
    other = Dialog(client=("10.0.0.3", 50000), t0=1_700_000_000.0025).handshake().rst("c")
    second = Dialog(t0=1_700_000_200, isn=(9000, 20000)).handshake().rst("c")
    path = tmp_path / "reuse.pcap"
    write_pcap(path, merge(first, other, second))
    _, results = _results(str(path))
    assert [(r.id, r.orig.port, r.reused_from) for r in results] == [
        (0, 40000, None), (1, 50000, None), (2, 40000, 0)]
    ladders = {r.id: stream_ladder([str(path)], Settings(), r) for r in results}
    assert [row.flags for row in ladders[0]] == ["S", "S.", ".", "P.", "F.", "F.", "."]
    assert [row.flags for row in ladders[1]] == ["S", "S.", ".", "R."]
    assert [row.flags for row in ladders[2]] == ["S", "S.", ".", "R."]
    assert ladders[2][0].frame == 12 and ladders[0][-1].frame == 11


def test_stream_ladder_can_be_cancelled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "STEP", 4)
    d = Dialog().handshake()
    for _ in range(10):
        d.data("c", 10)
    path = tmp_path / "long.pcap"
    write_pcap(path, d.packets)
    _, results = _results(str(path))
    seen = []

    def stop(n: int) -> None:
        seen.append(n)
        raise Cancelled

    with pytest.raises(Cancelled):
        stream_ladder([str(path)], Settings(), results[0], stop)
    assert seen == [4]


# -- the model ----------------------------------------------------------------------------

def test_model_filter_keeps_what_the_filter_language_accepts() -> None:
    _, results = _results(MIXED)
    model = Model(results)
    assert model.caption() == "%d connections" % len(results)
    assert model.set_filter("tcp.port == 443") is None
    want = [r.id for r in results if 443 in (r.orig.port, r.resp.port)]
    assert [model.row(i).id for i in range(len(model.view))] == want
    assert model.caption() == "%d of %d connections shown" % (len(want), len(results))
    error = model.set_filter("tcp.port == 443 and hanshake == complete")
    assert error is not None and "hanshake" in error.message
    assert error.position == len("tcp.port == 443 and ")
    assert [model.row(i).id for i in range(len(model.view))] == want     # unchanged
    assert model.set_filter("  ") is None and len(model.view) == len(results)


@pytest.mark.parametrize("column", range(len(COLUMNS)), ids=[c.title for c in COLUMNS])
def test_model_sort_orders_by_the_column_and_keeps_stream_order_within_ties(column: int) -> None:
    _, results = _results(MIXED)
    model = Model(results)
    key = COLUMNS[column].key
    for descending in (False, True):
        model.sort(column, descending)
        rows = [model.row(i) for i in range(len(model.view))]
        keys = [key(r) for r in rows]
        assert keys == sorted(keys, reverse=descending)
        for a, b in zip(rows, rows[1:]):
            if key(a) == key(b):
                assert a.id < b.id
    model.sort(column)                  # the same column again flips the order
    assert model.descending is False if column else True


def test_model_columns_fit_their_widest_cell() -> None:
    _, results = _results(str(REPO / "samples" / "ipv6.pcap"))
    model = Model(results)
    for r in results:
        for cell, width in zip(model.cells(r), model.widths):
            assert len(cell) <= width
    assert any("[" in cell for r in results for cell in model.cells(r))


def test_wireshark_filters() -> None:
    _, results = _results(MIXED)
    r = results[10]
    assert display_filter(r) == "tcp.stream eq 10"
    assert address_filter(r).startswith("ipv6.addr eq 2001:db8:1::23 and tcp.port eq 50120")
    assert address_filter(results[1]) == ("ip.addr eq 192.168.1.23 and tcp.port eq 51730 and "
                                         "ip.addr eq 203.0.113.10 and tcp.port eq 443")


# -- the export ---------------------------------------------------------------------------

def test_export_of_everything_is_the_json_report(tmp_path: Path) -> None:
    report, results = _results(MIXED)
    out = tmp_path / "all.json"
    export_json(str(out), report, results, [MIXED])
    proc = run_cli("-f", "json", MIXED)
    assert out.read_bytes() == proc.stdout


@pytest.mark.parametrize("text", ["severity >= warning", "ip.addr == 192.168.1.0/24 and "
                                  "not close", "tcp.stream > 99"])
def test_export_of_a_filtered_set_is_the_filtered_json_report(tmp_path: Path, text: str) -> None:
    report, results = _results(MIXED)
    model = Model(results)
    model.set_filter(text)
    model.sort(9, True)                     # the export stays in stream order
    out = tmp_path / "some.json"
    export_json(str(out), report, model.results, [MIXED], model.filter)
    assert out.read_bytes() == run_cli("-f", "json", "--filter", text, MIXED).stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [c["id"] for c in doc["connections"]] == [r.id for r in model.shown()]
    assert doc["selection"]["shown"] == len(model.view)


def test_export_never_overwrites_a_capture_or_leaves_half_a_file(tmp_path: Path) -> None:
    report, results = _results(MIXED)
    capture = tmp_path / "c.pcap"
    capture.write_bytes(Path(MIXED).read_bytes())
    with pytest.raises(ExportError, match="capture being browsed"):
        export_json(str(capture), report, results, [str(capture)])
    assert capture.read_bytes() == Path(MIXED).read_bytes()
    with pytest.raises(ExportError, match="cannot write"):
        export_json(str(tmp_path / "missing" / "x.json"), report, results, [])
    with pytest.raises(ExportError, match="directory"):
        export_json(str(tmp_path), report, results, [])
    assert sorted(os.listdir(tmp_path)) == ["c.pcap"]


# -- starting it --------------------------------------------------------------------------

def test_browse_without_textual_says_what_to_install() -> None:
    proc = run_python("import sys; sys.modules['textual'] = None; "
                      "from analyzer.cli import main; main()", "--browse", MIXED)
    assert proc.returncode == 2
    assert proc.stderr == (b"tcpflow-check: --browse needs Textual, which is not installed: "
                           b"pip install 'tcpflow-check[browse]'\n")
    assert proc.stdout == b""


def test_browse_refuses_stdin_and_report_options() -> None:
    proc = run_cli("--browse", "-", stdin=Path(MIXED).read_bytes())
    assert proc.returncode == 2 and b"not stdin" in proc.stderr
    proc = run_cli("--browse", "-f", "json", "-o", "x.json", MIXED)
    assert proc.returncode == 2
    assert b"--format, --output make no sense with it" in proc.stderr
    assert not (REPO / "x.json").exists()
    proc = run_cli("--browse", "--group-by", "server", "--sort", "-duration", MIXED)
    assert proc.returncode == 2
    assert b"--sort, --group-by make no sense with it" in proc.stderr
    proc = run_cli("--browse", "--filter", "tcp.port == 44x", MIXED)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "tcpflow-check: --filter: tcp.port takes an integer, not '44x'",
        "  tcp.port == 44x", "              ^^^"]


def test_textual_is_imported_only_for_browse() -> None:
    proc = run_python("import sys; from analyzer.cli import main\n"
                      "try:\n    main(['-f', 'json', %r])\nexcept SystemExit:\n    pass\n"
                      "print('textual' in sys.modules, file=sys.stderr)" % MIXED)
    assert proc.stderr.strip().endswith(b"False")


def test_ladder_in_a_child_process_is_the_same_and_stops_when_cancelled(tmp_path: Path) -> None:
    _, results = _results(MIXED)
    for r in results[:3]:
        assert ladder_in_process([MIXED], Settings(), r) == stream_ladder([MIXED], Settings(), r)
    with pytest.raises(Cancelled):
        ladder_in_process([MIXED], Settings(), results[0], cancelled=lambda: True)
    gone = tmp_path / "gone.pcap"
    gone.write_bytes(Path(MIXED).read_bytes())
    _, results = _results(str(gone))
    gone.unlink()                                   # the capture went away since the analysis
    with pytest.raises(LadderError, match="gone.pcap"):
        ladder_in_process([str(gone)], Settings(), results[0])
