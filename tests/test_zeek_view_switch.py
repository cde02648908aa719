"""`Settings.zeek_view`: the Zeek view is computed only when an output reads it, and turning it
off changes nothing else in any result."""

from __future__ import annotations

import glob
import os

import pytest

from analyzer.cli.needs import zeek_view_needed
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, write_pcap
from analyzer.triage.filter import parse
from conftest import REPO, run_cli

SAMPLES = sorted(glob.glob(os.path.join(str(REPO), "samples", "*.pcap*")))


def _without_zeek(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("conn_state", "history")}


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_off_changes_only_the_zeek_fields(path):
    on = analyze([path])
    off = analyze([path], Settings(zeek_view=False))
    a, b = list(on.connections), list(off.connections)
    assert [_without_zeek(r.to_dict()) for r in a] == [_without_zeek(r.to_dict()) for r in b]
    assert all(r.conn_state is None and r.history is None and not r.zeek_flipped for r in b)
    assert all(isinstance(r.conn_state, str) for r in a)
    assert on.summary.to_dict() == off.summary.to_dict()
    fields = ("code", "severity", "ts", "frame", "side", "message", "count")
    assert [[getattr(f, k) for k in fields] for f in on.findings] == \
        [[getattr(f, k) for k in fields] for f in off.findings]


def test_the_library_default_computes_it(tmp_path):
    path = tmp_path / "c.pcap"
    write_pcap(path, Dialog().handshake().data("c", 10).fin("c").fin("s").ack("c").packets)
    (r,) = analyze([str(path)]).connections
    assert Settings().zeek_view is True
    assert r.conn_state == "SF" and r.history.startswith("ShAD")


def test_settings_check_it():
    with pytest.raises(ValueError, match="zeek_view"):
        Settings(zeek_view=1)          # type: ignore[arg-type]


@pytest.mark.parametrize("fmt, reports, flt, sort, gated, needed", [
    ("text", (), None, None, False, False),
    ("html", (), None, None, False, False),
    ("junit", (), "handshake == refused", "-duration", False, False),
    ("json", (), None, None, False, True),
    ("zeek", (), None, None, False, True),
    ("text", (("json", "r.json"),), None, None, False, True),
    ("text", (("html", "r.html"),), None, None, False, False),
    ("text", (), "conn_state == S0", None, False, True),
    ("text", (), "not history contains \"R\"", None, False, True),
    ("text", (), None, "-conn_state", False, True),
    ("text", (), None, "history", False, True),
    ("text", (), None, None, True, True),
])
def test_which_runs_need_it(fmt, reports, flt, sort, gated, needed):
    triage = {"filter": parse(flt) if flt else None, "sort": sort}
    assert zeek_view_needed(fmt, reports, triage, gated) is needed


def test_cli_filter_on_the_zeek_fields_turns_it_on(tmp_path):
    # The terminal report reads no Zeek label, so the CLI leaves the view off; a filter on
    # conn_state needs it, and matches as the labels say.
    path = tmp_path / "c.pcap"
    write_pcap(path, Dialog().handshake().data("c", 10).rst("s").packets)
    text = run_cli(str(path), "--all")
    assert text.returncode == 0, text.stderr
    assert b"10.0.0.1:40000" in text.stdout
    hit = run_cli(str(path), "--all", "--filter", "conn_state == RSTR")
    assert hit.returncode == 0, hit.stderr
    assert b"1 of 1 connections shown" in hit.stdout and b"10.0.0.1:40000" in hit.stdout
    miss = run_cli(str(path), "--all", "--sort", "history", "--filter", "conn_state == S0")
    assert miss.returncode == 0, miss.stderr
    assert b"0 of 1 connections shown" in miss.stdout


def test_shared_empty_records_stay_empty():
    # Connections share one empty findings dict and one counters object until their first
    # finding or count; a write to a shared one would leak into every other connection.
    from analyzer.tcp.endpoint import NO_COUNTS, NO_FINDINGS, QUIET
    for path in SAMPLES:
        analyze([path])
    assert NO_FINDINGS == {}
    # (equal, not the same object: the compiled build may hand a module's constant tuple to
    # Python as a copy)
    assert QUIET.counts() == NO_COUNTS and QUIET.holes is None and not QUIET.keepalive_open
    assert not QUIET.zw_since and not QUIET.resent and QUIET.resend_ack < 0 and not QUIET.isns


# -- the Zeek view waits for a connection's second packet --------------------------------------

def _direct_labels(d: Dialog):
    """conn_state and history of a ZeekView fed every packet of a one-connection dialog at
    once, as the replay did before the view waited for the second packet."""
    from analyzer.decode.frames import FrameDecoder
    from analyzer.tcp.zeek import ZeekView
    from analyzer.testing.synth import LINKTYPE_ETHERNET
    dec = FrameDecoder({})
    z = ZeekView()
    client = None
    first_from_orig = True
    for n, (ts, frame) in enumerate(d.frames(), 1):
        seg = dec.decode(LINKTYPE_ETHERNET, frame, ts, n)
        seg.ts, seg.num = ts, n
        if client is None:      # the first packet's sender, or its receiver for a SYN-ACK
            client = seg.dst if seg.flags == 0x12 else seg.src
            first_from_orig = seg.src == client
        z.segment(seg.src == client, seg)
    return z.finish(first_from_orig)


@pytest.mark.parametrize("name, dialog", [
    ("syn only", lambda: Dialog().syn()),
    ("syn, syn again", lambda: Dialog().syn().syn(seq=1000, advance=False)),
    ("syn captured twice", lambda: Dialog().syn().again()),
    ("syn, syn-ack", lambda: Dialog().syn().synack()),
    ("syn, rst", lambda: Dialog().syn().rst("s")),
    ("syn-ack first", lambda: Dialog().synack().ack().data("c", 5)),
    ("a whole connection", lambda: Dialog().handshake().data("c", 9).fin("c").fin("s").ack("c")),
    ("lone rst", lambda: Dialog().rst("c", ack=False)),
])
def test_one_packet_connections_get_their_zeek_labels_late_and_right(tmp_path, name, dialog):
    path = tmp_path / "c.pcap"
    d = dialog()
    write_pcap(path, d.packets)
    (r,) = analyze([str(path)]).connections
    assert (r.conn_state, r.history) == _direct_labels(d), name
