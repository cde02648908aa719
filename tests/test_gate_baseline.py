"""Baselines: the same traffic passes, one new reset fails naming it, whatever the stream
numbers and ephemeral ports of the new recording."""

from __future__ import annotations

import io
import json

import pytest

from analyzer.gate.baseline import BaselineError, Signatures, load_baseline, write_baseline
from analyzer.gate.check import PolicyViolation, assert_capture, check_capture
from analyzer.pipeline import analyze
from analyzer.render import render
from gate_captures import DB, WEB, clean, close_wait, reset, write


def _good(tmp_path, name="good.pcap", shift=0):
    """Clean traffic to two servers and one CLOSE_WAIT-free reset to the web server; `shift`
    moves every client port (a new recording's ephemeral ports)."""
    dialogs = [clean(i + shift, t=i) for i in range(4)] + [
        clean(10 + shift, WEB, t=5), reset(11 + shift, WEB, t=6)]
    return write(tmp_path / name, dialogs)


def _baseline(tmp_path, capture) -> str:
    sig = Signatures()
    report = analyze([str(capture)], sink=_Adder(sig))
    out = io.StringIO()
    write_baseline(sig.finish(report).document(report), out)
    path = tmp_path / "baseline.json"
    path.write_text(out.getvalue())
    return str(path)


class _Adder:
    def __init__(self, sig):
        self.sig, self.n = sig, 0

    def add(self, r):
        self.n += 1
        self.sig.add(r)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return self.n


def test_the_baseline_file_is_one_server_a_line(tmp_path):
    path = _baseline(tmp_path, _good(tmp_path))
    lines = open(path).read().splitlines()
    assert lines[0].startswith('{"baseline": {"format": 1')
    assert lines[3] == ('  "10.0.0.5:5432": {"TIME_WAIT": 4, "TIME_WAIT_AT_END": 4, '
                        '"close.three_segment": 4, "connections": 4, "handshake.complete": 4},')
    assert lines[4] == ('  "10.0.1.7:443": {"CONNECTION_RESET": 1, "TIME_WAIT": 1, '
                        '"TIME_WAIT_AT_END": 1, "close.reset": 1, "close.three_segment": 1, '
                        '"connections": 2, "handshake.complete": 2}')
    assert lines[5:] == [" }", "}"]
    assert json.loads(open(path).read())["servers"]["10.0.0.5:5432"]["connections"] == 4


def test_the_same_traffic_recorded_again_passes(tmp_path):
    baseline = _baseline(tmp_path, _good(tmp_path))
    again = _good(tmp_path, "again.pcap", shift=100)       # other ports, same signature
    result = assert_capture(again, baseline=baseline)
    assert result.changes == []


def test_one_new_reset_fails_naming_server_code_and_stream(tmp_path):
    baseline = _baseline(tmp_path, _good(tmp_path))
    dialogs = [clean(i + 50, t=i) for i in range(3)] + [
        reset(60, DB, t=3.5), clean(70, WEB, t=5), reset(71, WEB, t=6)]
    worse = write(tmp_path / "worse.pcap", dialogs)
    with pytest.raises(PolicyViolation) as info:
        assert_capture(worse, baseline=baseline)
    result = info.value.result
    [regression] = [c for c in result.changes if c.regression]
    stream = next(c.id for c in analyze([str(worse)]).connections if c.resp[1] == 5432
                  and c.close == "reset")
    assert regression.message == (
        "baseline: CONNECTION_RESET on 10.0.0.5:5432: 1 connection, 0 in %s (new, tolerance "
        "+0); stream %d" % (baseline, stream))
    assert str(info.value) == regression.message


def test_growth_within_the_tolerance_passes_and_beyond_fails(tmp_path):
    baseline = _baseline(tmp_path, _good(tmp_path))
    dialogs = [clean(i, t=i) for i in range(2)] + [
        clean(10, WEB, t=5), reset(11, WEB, t=6), reset(12, WEB, t=6.5), reset(13, WEB, t=7)]
    worse = write(tmp_path / "worse.pcap", dialogs)
    grown = check_capture(worse, baseline=baseline)
    [c] = [c for c in grown.changes if c.regression]
    assert (c.key, c.before, c.now, c.kind) == ("CONNECTION_RESET", 1, 3, "grown")
    assert not check_capture(worse, baseline=baseline,
                             policy={"baseline": {"tolerance": 2}}).failed
    assert not check_capture(worse, baseline=baseline,
                             policy={"baseline": {"tolerances": {"CONNECTION_RESET": "200%"}}}
                             ).failed
    assert check_capture(worse, baseline=baseline,
                         policy={"baseline": {"tolerance": "100%"}}).failed


def test_what_went_away_is_a_note_not_a_failure(tmp_path):
    baseline = _baseline(tmp_path, _good(tmp_path))
    better = write(tmp_path / "better.pcap", [clean(i, t=i) for i in range(4)] +
                   [clean(10, WEB, t=5)])
    result = assert_capture(better, baseline=baseline)
    [c] = result.changes
    assert (c.kind, c.regression, c.key, c.server) == ("gone", False, "CONNECTION_RESET",
                                                       "10.0.1.7:443")
    assert c.message.startswith("baseline note: ")


def test_close_wait_is_watched_and_allow_lists_apply(tmp_path):
    baseline = _baseline(tmp_path, _good(tmp_path))
    leaky = write(tmp_path / "leaky.pcap", [clean(i, t=i) for i in range(4)] + [
        clean(10, WEB, t=5), reset(11, WEB, t=6), close_wait(12, DB, t=7)], end=20)
    result = check_capture(leaky, baseline=baseline)
    assert [(c.key, c.kind) for c in result.changes if c.regression] == [
        ("CLOSE_WAIT_LINGERING", "new")]
    allowed = check_capture(leaky, baseline=baseline, policy={
        "allow": [{"match": "port 5432", "rules": ["CLOSE_WAIT_LINGERING"],
                   "reason": "the pool keeps one idle connection"}]})
    assert not allowed.failed


def test_a_saved_json_report_works_as_a_baseline(tmp_path):
    good = _good(tmp_path)
    report_path = tmp_path / "good.json"
    with open(report_path, "w") as out:
        render("json", analyze([str(good)]), out)
    from_report = load_baseline(str(report_path))
    assert from_report == load_baseline(_baseline(tmp_path, good))
    # a report re-indented by another tool is read whole
    doc = json.loads(report_path.read_text())
    (tmp_path / "pretty.json").write_text(json.dumps(doc, indent=4))
    assert load_baseline(str(tmp_path / "pretty.json")) == from_report


@pytest.mark.parametrize("content,message", [
    ("not json", "is not JSON"),
    ('{"servers": {"a": {"connections": "many"}}}', "neither a baseline"),
    ('[1, 2]', "neither a baseline"),
])
def test_a_bad_baseline_is_one_line(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(str(path))
    with pytest.raises(BaselineError, match="cannot read the baseline"):
        load_baseline(str(tmp_path / "missing.json"))


def test_a_json_report_and_the_run_itself_give_the_same_signatures(tmp_path):
    """Every sample: the signatures read back from its JSON report (one connection a line)
    are those counted from the results as they stream past."""
    from conftest import REPO
    samples = sorted((REPO / "samples").rglob("*.pcap*"))
    assert len(samples) >= 30
    for sample in samples:
        report_path = tmp_path / "r.json"
        with open(report_path, "w") as out:
            render("json", analyze([str(sample)]), out)
        sig = Signatures()
        report = analyze([str(sample)], sink=_Adder(sig))
        assert load_baseline(str(report_path)) == sig.finish(report).counts, sample
