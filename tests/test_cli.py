"""The command as a user runs it: exit codes, stdout for the report only, stderr for the rest."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from analyzer.decode.segment import ACK, RST
from analyzer.testing.synth import Dialog, write_pcap
from conftest import REPO, run_cli


def _capture(tmp_path, dialog: Dialog, name: str = "c.pcap"):
    path = tmp_path / name
    write_pcap(path, dialog.packets)
    return path


def _clean(tmp_path):
    return _capture(tmp_path, Dialog().handshake().data("c", 10).fin("c").fin("s").ack("c"))


def test_json_on_stdout_nothing_on_stderr(tmp_path):
    res = run_cli(str(_clean(tmp_path)), "--format", "json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    doc = json.loads(res.stdout)
    assert doc["tool"]["name"] == "tcpflow-check"
    assert set(doc) == {"tool", "settings", "capture", "summary", "findings", "connections"}
    c = doc["connections"][0]
    for field in ("id", "orig", "resp", "start", "end", "packets", "bytes", "handshake", "close",
                  "closed_first", "reset_by", "half_close", "final_state", "lingering",
                  "syn_retransmissions", "findings"):
        assert field in c
    assert doc["capture"]["packets"] == 7 and doc["capture"]["truncated"] is False


def test_text_report_reads_without_colour_when_piped(tmp_path):
    d = Dialog().syn().send("s", RST | ACK, seq=0)
    res = run_cli(str(_capture(tmp_path, d)))
    assert res.returncode == 0
    out = res.stdout.decode()
    assert "\x1b[" not in out                  # no escape codes in a pipe
    assert "Connections" in out and "refused" in out and "CONNECTION_REFUSED" in out


#: Imported only for the feature that needs them: colour or a terminal (rich), a file to write
#: (tempfile), a policy file (tomllib), a --filter (the filter's parser).
_ON_DEMAND = ("rich", "tempfile", "tomllib", "analyzer.triage.filter")


def _run_and_list_modules(tmp_path, *args: str):
    """The command run in a new interpreter from `tmp_path` (no policy file above it) with
    `args`, stdout a pipe; its stdout and which of `_ON_DEMAND` it imported."""
    code = ("import sys\nfrom analyzer.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nprint(sorted({m.split('.')[0] if m.startswith(('rich', "
            "'tomllib')) else m for m in sys.modules if m.startswith(%r)}), file=sys.stderr)"
            % (_ON_DEMAND,))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FORCE_COLOR", None)
    env.pop("NO_COLOR", None)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env,
                          cwd=str(tmp_path), timeout=120)
    return proc.stdout.decode(), proc.stderr.decode().strip().splitlines()[-1]


def test_a_piped_report_imports_only_what_it_uses(tmp_path):
    """A CI run (a report on a pipe, no colour, no policy, no filter) does not pay for rich,
    tempfile, tomllib or the filter's parser; each is there when its feature is asked for."""
    d = Dialog().syn().send("s", RST | ACK, seq=0)
    cap = str(_capture(tmp_path, d))
    for fmt in ("text", "json", "zeek"):
        out, modules = _run_and_list_modules(tmp_path, "-f", fmt, cap)
        assert "refused" in out or "REJ" in out
        assert modules == "[]", (fmt, modules)
    out, modules = _run_and_list_modules(tmp_path, "--color", cap)
    assert "\x1b[" in out and "refused" in out and modules == "['rich']"
    out, modules = _run_and_list_modules(tmp_path, "--filter", "tcp.port == 80", cap)
    assert "refused" in out and modules == "['analyzer.triage.filter']"
    out, modules = _run_and_list_modules(tmp_path, "-o", str(tmp_path / "r.txt"), cap)
    assert out == "" and "refused" in (tmp_path / "r.txt").read_text()
    assert modules == "['tempfile']"
    (tmp_path / "tcpflow-check.toml").write_text("")
    out, modules = _run_and_list_modules(tmp_path, cap)
    assert "refused" in out and "'tomllib'" in modules     # (and the policy's own modules)


def test_fail_on_gates_ci(tmp_path):
    d = Dialog().syn().send("s", RST | ACK, seq=0)           # a warning finding
    path = _capture(tmp_path, d)
    assert run_cli(str(path), "--fail-on", "warning").returncode == 1
    assert run_cli(str(path), "--fail-on", "error").returncode == 0
    assert run_cli(str(_clean(tmp_path)), "--fail-on", "warning").returncode == 0


def test_usage_errors_exit_2(tmp_path):
    assert run_cli().returncode == 2
    assert run_cli("--format", "xml", str(_clean(tmp_path))).returncode == 2
    assert run_cli("--msl", "-1", str(_clean(tmp_path))).returncode == 2


def test_not_a_capture_exits_3_with_one_line(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello, this is not a capture\n" * 10)
    res = run_cli(str(txt))
    assert res.returncode == 3
    assert res.stdout == b""
    err = res.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "Traceback" not in err[0]
    res = run_cli(str(tmp_path / "missing.pcap"))
    assert res.returncode == 3 and len(res.stderr.decode().strip().splitlines()) == 1


def test_one_bad_file_among_good_ones_still_reports_the_good(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 64)
    res = run_cli(str(_clean(tmp_path)), str(bad), "-f", "json")
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert len(doc["connections"]) == 1 and len(doc["capture"]["errors"]) == 1


def test_truncated_capture_is_reported_and_analysed(tmp_path):
    path = _clean(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-20])                  # cut inside the last record
    res = run_cli(str(path), "-f", "json")
    assert res.returncode == 0
    assert "cut short" in res.stderr.decode() or "truncat" in res.stderr.decode()
    assert len(res.stderr.decode().strip().splitlines()) == 1
    doc = json.loads(res.stdout)
    assert doc["capture"]["truncated"] is True
    assert doc["capture"]["packets"] == 6
    # The final ACK was cut: nothing shows the client processed the server FIN.
    assert doc["connections"][0]["final_state"] == {"orig": "FIN_WAIT_2", "resp": "LAST_ACK"}


def test_stdin_and_gzip(tmp_path):
    raw = _clean(tmp_path).read_bytes()
    res = run_cli("-", "-f", "json", stdin=gzip.compress(raw))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["connections"][0]["close"] == "three_segment"


def test_rotated_files_are_one_capture(tmp_path):
    d = Dialog().handshake().data("c", 100).data("s", 100).fin("c").fin("s").ack("c")
    write_pcap(tmp_path / "part2.pcap", d.packets[4:])
    write_pcap(tmp_path / "part1.pcap", d.packets[:4])
    res = run_cli(str(tmp_path / "part2.pcap"), str(tmp_path / "part1.pcap"), "-f", "json")
    doc = json.loads(res.stdout)
    (c,) = doc["connections"]
    assert (c["handshake"], c["close"], c["first_frame"]) == ("complete", "three_segment", 1)


def test_msl_option_changes_time_wait(tmp_path):
    path = _clean(tmp_path)
    doc = json.loads(run_cli(str(path), "-f", "json", "--msl", "120").stdout)
    assert doc["settings"]["time_wait"] == 240
    assert doc["connections"][0]["lingering"][0]["remaining"] > 239


def test_version_and_help():
    from analyzer import __version__, build
    assert run_cli("--version").stdout.decode() == "tcpflow-check %s (%s)\n" % (__version__,
                                                                                 build())
    assert b"CAPTURE" in run_cli("--help").stdout


def test_stream_option_shows_the_ladder_with_states(tmp_path):
    path = _clean(tmp_path)
    res = run_cli(str(path), "--stream", "0")
    out = res.stdout.decode()
    assert res.returncode == 0
    assert "tcp.stream eq 0" in out
    lines = [line for line in out.splitlines() if "───▶" in line or "◀───" in line]
    assert len(lines) == 7
    assert "FIN_WAIT_1" in lines[4] and "TIME_WAIT" in lines[-1]
    doc = json.loads(run_cli(str(path), "--stream", "0", "-f", "json").stdout)
    ladder = doc["connections"][0]["ladder"]
    assert [r["flags"] for r in ladder] == ["S", "S.", ".", "P.", "F.", "F.", "."]
    assert (ladder[0]["seq"], ladder[2]["seq"], ladder[2]["ack"]) == (0, 1, 1)
    assert ladder[-1]["state_orig"] == "TIME_WAIT" and ladder[-1]["state_resp"] == "CLOSED"
    res = run_cli(str(path), "--stream", "9")
    assert b"no stream 9" in res.stderr


def test_zeek_conn_log_format(tmp_path):
    from conftest import REPO
    res = run_cli(str(REPO / "samples" / "mixed.pcap"), "--format", "zeek")
    assert res.returncode == 0 and res.stderr == b""
    lines = res.stdout.decode().splitlines()
    fields = next(l for l in lines if l.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(fields, l.split("\t"))) for l in lines if not l.startswith("#")]
    assert len(rows) == 16 and lines[-1].startswith("#close")
    states = {r["conn_state"] for r in rows}
    assert {"SF", "REJ", "S0", "RSTR", "OTH"} <= states
    refused = next(r for r in rows if r["conn_state"] == "REJ")
    assert refused["history"] == "Sr" and refused["id.resp_p"] == "5432"


@pytest.mark.parametrize("fmt", ["text", "json", "zeek"])
def test_a_reader_that_goes_away_is_a_normal_end(tmp_path, fmt):
    """`tcpflow-check capture | head`: the closed pipe ends the run quietly with exit 0 (not
    rich's or click's exit 1, which would read as --fail-on findings)."""
    d = Dialog().handshake()
    for i in range(200):
        d.data("c", 100).data("s", 100)
    path = _capture(tmp_path, d.fin("c").fin("s").ack("c"))
    read_end, write_end = os.pipe()
    os.close(read_end)              # the reader is gone before the first byte
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "analyzer", "--format", fmt, "--all", str(path)],
                          stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
