"""Triage from the command line: --filter, --sort, --group-by in every format, --explain, and
options that make no sense together, each said so."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_cli

MIXED = str(REPO / "samples" / "mixed.pcap")


def _json(*args: str) -> dict:
    res = run_cli(MIXED, "-f", "json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_filter_keeps_wireshark_stream_numbers_in_every_format():
    everything = _json()["connections"]
    want = [c["id"] for c in everything
            if "192.168.1.40" in (c["orig"]["addr"], c["resp"]["addr"])]
    assert want == [2, 5, 13, 14]
    doc = _json("--filter", "ip.addr == 192.168.1.40")
    assert [c["id"] for c in doc["connections"]] == want
    assert doc["selection"] == {"filter": "ip.addr == 192.168.1.40", "shown": 4,
                                "connections": 16, "sort": None}
    # the summary still describes the whole capture
    assert doc["summary"]["connections"] == 16
    zeek = run_cli(MIXED, "-f", "zeek", "--filter", "ip.addr == 192.168.1.40").stdout.decode()
    assert len([line for line in zeek.splitlines() if not line.startswith("#")]) == 4
    text = run_cli(MIXED, "-a", "--filter", "ip.addr == 192.168.1.40").stdout.decode()
    assert "4 of 16 connections shown (filter: ip.addr == 192.168.1.40)" in text
    assert "All 4 connections" in text
    for n in want:
        assert "\n     %2d   " % n in text or "stream %d " % n in text


def test_filter_applies_before_the_json_lines_are_made():
    doc = _json("--filter", "lingering == CLOSE_WAIT or handshake == refused")
    assert [c["id"] for c in doc["connections"]] == [2, 5]


def test_a_bad_filter_points_at_its_fault_and_exits_2():
    res = run_cli(MIXED, "--filter", "tcp.port == 80 and hanshake == complete")
    assert res.returncode == 2 and not res.stdout
    lines = res.stderr.decode().splitlines()
    assert "unknown field 'hanshake' (did you mean 'handshake'?)" in lines[0]
    assert lines[1] == "  tcp.port == 80 and hanshake == complete"
    assert lines[2] == "  " + " " * 19 + "^" * 8


def test_sort_orders_every_format_and_breaks_ties_by_stream():
    doc = _json("--sort", "-duration")
    durations = [c["duration"] for c in doc["connections"]]
    assert durations == sorted(durations, reverse=True)
    ids = [c["id"] for c in doc["connections"]]
    for a, b in zip(doc["connections"], doc["connections"][1:]):
        if a["duration"] == b["duration"]:
            assert a["id"] < b["id"]
    assert sorted(ids) == list(range(16))
    up = [c["id"] for c in _json("--sort", "packets")["connections"]]
    totals = {c["id"]: c["packets"]["orig"] + c["packets"]["resp"] for c in doc["connections"]}
    assert [totals[i] for i in up] == sorted(totals.values())
    res = run_cli(MIXED, "--sort", "nosuchfield")
    assert res.returncode == 2 and b"cannot sort by 'nosuchfield'" in res.stderr


def test_group_by_server_answers_which_server_leaks_close_wait():
    doc = _json("--group-by", "server")
    groups = {g["key"]: g for g in doc["selection"]["groups"]}
    assert doc["selection"]["by"] == "server"
    assert groups["192.168.1.40"]["close_wait"] == 1 and groups["192.168.1.40"]["connections"] == 4
    assert sum(g["connections"] for g in groups.values()) == 16
    assert sum(g["close_wait"] for g in groups.values()) == 1
    text = run_cli(MIXED, "--group-by", "server").stdout.decode()
    row = next(line for line in text.splitlines() if line.startswith(" 192.168.1.40 "))
    assert row.split() == ["192.168.1.40", "4", "1", "0", "0", "1", "1", "0", "2", "3"]


def test_group_by_finding_is_an_expert_summary_and_follows_the_filter():
    doc = _json("--group-by", "finding", "--filter", "severity >= warning")
    groups = doc["selection"]["groups"]
    assert [g["severity"] for g in groups] == sorted(
        (g["severity"] for g in groups), key=["error", "warning", "info"].index)
    by = {g["key"]: g for g in groups}
    assert by["SYN_RETRANSMITTED"]["connections"] == 2 and by["SYN_RETRANSMITTED"]["occurrences"] == 6
    text = run_cli(MIXED, "--group-by", "finding").stdout.decode()
    assert "Connections by finding" in text and "SYNACK_BAD_ACK" in text


def test_explain_narrates_and_the_ladder_stays_optional():
    res = run_cli(MIXED, "--explain", "5")
    out = res.stdout.decode()
    assert res.returncode == 0
    assert "Stream 5 explained" in out and "ack=x+1 = 439041102 ✓" in out
    assert "Stream 5 ladder" not in out
    both = run_cli(MIXED, "--explain", "11", "--stream", "11").stdout.decode()
    assert "Stream 11 ladder" in both
    assert "ack=1294736138 ✗ (should be x+1 = 1294736139)" in " ".join(both.split())


@pytest.mark.parametrize("args, message", [
    (("--stream", "0", "-f", "zeek"), b"--stream cannot be used with -f zeek"),
    (("--explain", "0", "-f", "json"), b"--explain cannot be used with -f json"),
    (("--group-by", "port", "-f", "zeek"), b"--group-by cannot be used with -f zeek"),
    (("--group-by", "port", "--stream", "1"), b"--group-by cannot be used with --stream"),
])
def test_options_that_make_no_sense_together_say_so(args, message):
    res = run_cli(MIXED, *args)
    assert res.returncode == 2 and message in res.stderr and not res.stdout


def test_limit_and_all_with_json_are_said_to_do_nothing():
    res = run_cli(MIXED, "-f", "json", "--limit", "3")
    assert res.returncode == 0
    assert b"--limit applies to the terminal report" in res.stderr
    assert len(json.loads(res.stdout)["connections"]) == 16


def test_options_without_effect_on_the_terminal_report_are_said_so():
    res = run_cli(MIXED, "--all", "--limit", "3")
    assert res.returncode == 0 and b"--limit has no effect with --all" in res.stderr
    assert res.stdout.decode().count("\nstream ") + res.stdout.decode().count("→") >= 16
    res = run_cli(MIXED, "--group-by", "port", "--sort", "duration")
    assert res.returncode == 0 and b"lists groups, not connections" in res.stderr
    assert run_cli(MIXED, "--sort", "duration").stderr == b""


def test_a_traced_stream_the_filter_leaves_out_is_named():
    out = run_cli(MIXED, "--stream", "5", "--stream", "3", "--filter", "tcp.port == 443")
    text = out.stdout.decode()
    assert out.returncode == 0
    assert text.startswith("The filter leaves out stream 5 (tcp.port == 443).")
    assert "Stream 3 ladder" in text and "Stream 5 ladder" not in text
    alone = run_cli(MIXED, "--stream", "5", "--filter", "tcp.port == 443").stdout.decode()
    assert alone == "The filter leaves out stream 5 (tcp.port == 443).\n"


def test_a_stream_that_is_not_in_the_capture_exits_2():
    res = run_cli(MIXED, "--stream", "99")
    assert res.returncode == 2 and not res.stdout
    assert b"no stream 99 in the capture (16 connections" in res.stderr
    res = run_cli(MIXED, "--explain", "5", "--explain", "42")
    assert res.returncode == 2 and not res.stdout
    assert b"no stream 42 in the capture" in res.stderr
def test_cli_ladder_marks_the_finding_frame_and_ends_with_the_capture():
    res = run_cli(str(REPO / "samples" / "mixed.pcap"), "--stream", "5")
    out = res.stdout.decode()
    assert res.returncode == 0
    line41 = next(line for line in out.splitlines() if line.lstrip().startswith("41 "))
    assert "⚑CLOSE_WAIT_LINGERING" in line41 and "⚑FIN_WAIT_2_LINGERING" in line41
    end = out[out.index("\n   end "):]
    assert "+71.3 s" in end and "resp still in CLOSE_WAIT (71.3 s)" in " ".join(end.split())
    assert "MSS=1460 SACK_PERM WS=128" in out
    assert "win" in out.splitlines()[out.splitlines().index(
        next(line for line in out.splitlines() if "Stream 5 ladder" in line)) + 2]




def test_group_rows_stack_on_a_narrow_terminal():
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="60")
    out = subprocess.run([sys.executable, "-m", "analyzer", MIXED, "--group-by", "server"],
                         capture_output=True, env=env, timeout=120).stdout.decode()
    assert "192.168.1.40 · 4 connections: refused 1, CLOSE_WAIT 1, TIME_WAIT 1, warning 2," \
        in " ".join(out.split())
    assert all(len(line) <= 60 for line in out.splitlines() if len(line.split()) > 1)


def test_a_scan_is_one_group_of_its_source(tmp_path):
    from analyzer.decode.segment import ACK, RST
    from analyzer.testing.synth import Dialog, merge, write_pcap
    scanner = [Dialog(client=("10.0.0.9", 50000 + p), server=("10.0.0.2", 1000 + p),
                      t0=1_700_000_000.0 + p).syn().send("s", RST | ACK, seq=0)
               for p in range(12)]
    few = [Dialog(client=("10.0.0.7", 40000 + p), server=("10.0.0.2", 2000 + p),
                  t0=1_700_000_000.5 + p).syn().send("s", RST | ACK, seq=0) for p in range(3)]
    web = [Dialog(client=("10.0.0.%d" % (20 + i), 41000), t0=1_700_000_001.0 + i).handshake()
           for i in range(2)]
    path = tmp_path / "scan.pcap"
    write_pcap(path, merge(*scanner, *few, *web))
    doc = json.loads(run_cli(str(path), "-f", "json", "--group-by", "port").stdout)
    groups = {g["key"]: g for g in doc["selection"]["groups"]}
    assert groups["scan from 10.0.0.9"]["connections"] == 12
    assert groups["scan from 10.0.0.9"]["refused"] == 12
    assert groups["80"]["connections"] == 2
    assert all(groups[str(2000 + p)]["refused"] == 1 for p in range(3))
    assert len(groups) == 1 + 1 + 3
    by_server = json.loads(run_cli(str(path), "-f", "json", "--group-by", "server").stdout)
    keys = [g["key"] for g in by_server["selection"]["groups"]]
    assert keys == ["scan from 10.0.0.9", "10.0.0.2"]        # a port scan of one host too
    assert by_server["selection"]["groups"][1]["connections"] == 5
