"""The gate from the command line: exit codes, one line per violation, several outputs from
one analysis, GitHub annotations and summaries, the policy found by itself."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from xml.etree import ElementTree as ET

import pytest

from conftest import REPO
from gate_captures import HEALTH, clean, close_wait, reset, write


def _cli(*args, cwd=None, env=None):
    full = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    full.pop("GITHUB_ACTIONS", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "analyzer", *map(str, args)],
                          capture_output=True, env=full, timeout=120, cwd=cwd)


@pytest.fixture
def capture(tmp_path):
    return write(tmp_path / "c.pcap", [clean(1), reset(2, t=1), reset(3, HEALTH, t=2),
                                       close_wait(4, t=3)], end=10)


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('examples = 3\n'
                    'CONNECTION_RESET = 0\n'
                    '"CLOSE_WAIT > 5s" = 0\n'
                    'handshake.refused = 0\n'
                    '[[allow]]\nmatch = "port 8080"\nreason = "health checks"\n')
    return path


def test_violations_exit_1_with_one_line_each(capture, policy):
    res = _cli(capture, "--policy", policy, "-f", "json")
    assert res.returncode == 1
    json.loads(res.stdout)                       # the report is untouched on stdout
    lines = res.stderr.decode().splitlines()
    assert lines == [
        "tcpflow-check: policy: %s:2: CONNECTION_RESET: 1 connection, limit <= 0; stream 1"
        % policy,
        "tcpflow-check: policy: %s:3: CLOSE_WAIT > 5s: 1 connection, limit <= 0; stream 3"
        % policy]


def test_a_passing_policy_exits_0_and_prints_nothing(capture, tmp_path):
    ok = tmp_path / "ok.toml"
    ok.write_text('CONNECTION_RESET = "<= 2"\n"CLOSE_WAIT > 9s" = 0\n')
    res = _cli(capture, "--policy", ok, "-f", "json")
    assert (res.returncode, res.stderr) == (0, b"")


def test_a_bad_policy_exits_2_with_its_line_before_reading(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('CONNECTION_RESET = 0\n\n[scope."port 5432"]\nCONECTION_RESET = 0\n')
    res = _cli(tmp_path / "missing.pcap", "--policy", bad)
    assert res.returncode == 2 and res.stdout == b""
    assert res.stderr.decode() == ("tcpflow-check: %s:4: unknown rule 'CONECTION_RESET' "
                                   "(did you mean CONNECTION_RESET?)\n" % bad)


def test_a_bad_baseline_exits_2(capture, tmp_path):
    (tmp_path / "b.json").write_text("[]")
    res = _cli(capture, "--baseline", tmp_path / "b.json")
    assert res.returncode == 2 and "neither a baseline" in res.stderr.decode()


def test_fail_on_and_policy_both_apply(capture, tmp_path):
    ok = tmp_path / "ok.toml"
    ok.write_text('CONNECTION_RESET = "<= 5"\n')
    assert _cli(capture, "--policy", ok, "-q").returncode == 0
    assert _cli(capture, "--policy", ok, "--fail-on", "warning").returncode == 1


def test_a_truncated_capture_fails_under_a_policy(tmp_path):
    path = write(tmp_path / "cut.pcap", [clean(1)])
    path.write_bytes(path.read_bytes()[:-5])
    empty = tmp_path / "p.toml"
    empty.write_text("")
    assert _cli(path, "--fail-on", "error", "-f", "json").returncode == 0    # as before
    res = _cli(path, "--policy", empty, "-f", "json")
    assert res.returncode == 1
    assert "capture truncated" in res.stderr.decode()


def test_the_policy_is_found_in_the_working_directory(capture, tmp_path, policy):
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    (work / "pyproject.toml").write_text("[tool.tcpflow-check]\nCONNECTION_RESET = 0\n")
    res = _cli(capture, "-f", "json", cwd=work)
    assert res.returncode == 1
    err = res.stderr.decode().splitlines()
    assert err[0] == "tcpflow-check: using the policy in pyproject.toml"
    assert err[1].startswith("tcpflow-check: policy: pyproject.toml:2: CONNECTION_RESET: "
                             "2 connections")
    deeper = work / "traffic"
    deeper.mkdir()
    err = _cli(capture, "-f", "json", cwd=deeper).stderr.decode().splitlines()
    assert err[0] == "tcpflow-check: using the policy in ../pyproject.toml"
    assert _cli(capture, "-f", "json", "--no-policy", cwd=work).returncode == 0


def test_several_outputs_from_one_analysis(capture, policy, tmp_path):
    junit, js, md = tmp_path / "r.xml", tmp_path / "r.json", tmp_path / "s.md"
    res = _cli(capture, "--policy", policy, "--report", "junit=%s" % junit,
               "--report", "json=%s" % js, "--summary-md", md)
    assert res.returncode == 1
    assert "Connections" in res.stdout.decode()          # the text report on stdout
    doc = json.loads(js.read_text())
    assert len(doc["connections"]) == 4
    suite = ET.fromstring(junit.read_text()).find("testsuite")
    assert suite.get("failures") == "2"
    summary = md.read_text()
    assert summary.startswith("## tcpflow-check: ❌ failed — 2 of 7 rules violated")
    assert "| ❌ | `CONNECTION_RESET <= 0` | 1 | <= 0 |" in summary
    assert "- `port 8080`: 1 connection — health checks" in summary
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_several_outputs_analyse_once(capture, policy, tmp_path, monkeypatch):
    from click.testing import CliRunner
    import analyzer.cli.command as cli
    calls = []
    real = cli.analyze

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(cli, "analyze", counting)
    try:
        result = CliRunner().invoke(cli.main, [
            str(capture), "--policy", str(policy), "-f", "json",
            "--report", "junit=%s" % (tmp_path / "j.xml"),
            "--report", "text=%s" % (tmp_path / "t.txt")])
    finally:
        gc.enable()                     # the command turns the cyclic collector off for good
    assert result.exit_code == 1, result.output
    assert len(calls) == 1
    # the main report keeps what its renderer wants (JSON: each connection's line), the
    # --report files theirs, and the gate counts: four sinks fed by one pass
    fanout = calls[0][1]["sink"]
    main_sink, junit_sink, text_sink, gate_sink = fanout.sinks
    assert main_sink.encode is not None and main_sink.keep is None
    assert junit_sink.keep is not None and text_sink.keep is not None
    assert type(gate_sink).__name__ == "Evaluation"
    assert (tmp_path / "j.xml").exists() and "CONNECTION_RESET" in (tmp_path / "t.txt").read_text()


def test_bad_report_options_are_usage_errors(capture):
    for bad in ("junit", "xml=x.xml", "junit="):
        res = _cli(capture, "--report", bad)
        assert res.returncode == 2 and b"--report" in res.stderr


def test_github_annotations_and_step_summary(capture, policy, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    res = _cli(capture, "--policy", policy, "-f", "json",
               env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
                    "GITHUB_WORKSPACE": str(tmp_path)})
    assert res.returncode == 1
    err = res.stderr.decode().splitlines()
    annotations = [line for line in err if line.startswith("::")]
    assert annotations == [
        "::error file=policy.toml,line=2,title=tcpflow-check%3A CONNECTION_RESET <= 0::"
        "policy: {}:2: CONNECTION_RESET: 1 connection, limit <= 0; stream 1".format(policy),
        "::error file=policy.toml,line=3,title=tcpflow-check%3A CLOSE_WAIT > 5s <= 0::"
        "policy: {}:3: CLOSE_WAIT > 5s: 1 connection, limit <= 0; stream 3".format(policy)]
    text = summary.read_text()
    assert text.startswith("earlier step\n## tcpflow-check: ❌ failed")


def test_annotation_escaping():
    from analyzer.gate.github import annotation
    assert annotation("error", "50% of\nconnections", "a: b, c", "x,y.toml", 3) == \
        "::error file=x%2Cy.toml,line=3,title=a%3A b%2C c::50%25 of%0Aconnections"


def test_write_baseline_then_compare(capture, tmp_path):
    baseline = tmp_path / "base.json"
    res = _cli(capture, "-f", "json", "--write-baseline", baseline)
    assert res.returncode == 0 and json.loads(baseline.read_text())["servers"]
    assert _cli(capture, "-f", "json", "--baseline", baseline).returncode == 0
    worse = write(tmp_path / "worse.pcap", [clean(1), reset(2, t=1), reset(3, HEALTH, t=2),
                                            reset(5, t=2.5), close_wait(4, t=3)], end=10)
    res = _cli(worse, "-f", "json", "--baseline", baseline)
    assert res.returncode == 1
    assert "baseline: CONNECTION_RESET on 10.0.0.5:5432: 2 connections, 1 in" in res.stderr.decode()


def test_output_files_are_checked_before_the_analysis(capture, tmp_path):
    res = _cli(capture, "--report", "json=%s" % (tmp_path / "no" / "such" / "r.json"))
    assert res.returncode == 2 and b"no directory" in res.stderr and res.stdout == b""
    before = capture.read_bytes()
    for option in (("--report", "json=%s" % capture), ("--summary-md", capture),
                   ("--write-baseline", capture)):
        res = _cli(capture, *option)
        assert res.returncode == 2 and b"is an input of this run" in res.stderr
    assert capture.read_bytes() == before


def test_a_report_file_is_replaced_whole(capture, tmp_path):
    target = tmp_path / "r.json"
    target.write_text("an older report\n")
    assert _cli(capture, "-f", "text", "--report", "json=%s" % target).returncode == 0
    assert json.loads(target.read_text())["connections"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pcap", "r.json"]


def test_no_step_summary_without_a_gate(capture, tmp_path):
    summary = tmp_path / "summary.md"
    res = _cli(capture, "-f", "json", "--no-policy",
               env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.returncode == 0 and res.stderr == b"" and not summary.exists()


def test_the_introduction_of_docs_ci_shows_what_the_command_prints(tmp_path):
    """docs/ci.md opens with a policy and the lines it gives: the same policy on traffic with
    two resets and a stuck CLOSE_WAIT gives those lines (stream numbers aside)."""
    import re
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    policy = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    console = re.search(r"```console\n(.*?)```", text, re.S).group(1)
    shown = [line for line in console.splitlines() if line.startswith("tcpflow-check: ")
             and not line.startswith("tcpflow-check: using")]
    (tmp_path / "tcpflow-check.toml").write_text(policy)
    (tmp_path / ".git").mkdir()
    capture = write(tmp_path / "traffic.pcap", [clean(1), reset(2, t=1), reset(3, t=2),
                                                close_wait(4, t=3)], end=10)
    res = _cli(capture, "-f", "json", cwd=tmp_path)
    assert res.returncode == 1
    printed = res.stderr.decode().splitlines()
    assert printed[0] == "tcpflow-check: using the policy in tcpflow-check.toml"
    assert "tcpflow-check: using the policy in tcpflow-check.toml" in console
    numbers = re.compile(r"stream(s?) [\d, ]+$")
    assert [numbers.sub("", line) for line in printed[1:]] == [numbers.sub("", line) for line in shown]


def test_the_gate_counts_every_connection_whatever_the_filter_shows(capture, policy, tmp_path):
    """--filter shapes the main report; the policy and every --report file see the capture."""
    js = tmp_path / "all.json"
    res = _cli(capture, "--policy", policy, "-f", "json", "--filter", "tcp.dstport == 8080",
               "--report", "json=%s" % js)
    assert res.returncode == 1
    shown = json.loads(res.stdout)["connections"]
    assert [c["resp"]["port"] for c in shown] == [8080]
    assert len(json.loads(js.read_text())["connections"]) == 4
    assert "CONNECTION_RESET: 1 connection, limit <= 0; stream 1" in res.stderr.decode()
