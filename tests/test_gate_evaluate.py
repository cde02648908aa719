"""Policies applied to real captures: every rule kind, every scope kind, allow-lists, capture
rules, rates and the violation lines."""

from __future__ import annotations

import pytest

from analyzer.gate.check import PolicyViolation, assert_capture, check_capture
from gate_captures import (DB, HEALTH, WEB, clean, close_wait, refused, reset, syn_retried,
                           write)


def _outcome(result, name):
    return next(o for o in result.gate.outcomes if o.name == name)


@pytest.fixture
def mixed(tmp_path):
    """To the database: 3 clean, 1 reset, 1 refused, 1 SYN retried twice, 1 CLOSE_WAIT
    (8 s at the end); to the web server: 2 clean; to the health check: 2 resets."""
    dialogs = [clean(i, t=i) for i in range(3)] + [
        reset(10, t=3.5), refused(11, t=4), syn_retried(12, t=5, retries=2),
        close_wait(13, t=2), clean(20, WEB, t=6), clean(21, WEB, t=6.5),
        reset(30, HEALTH, t=7), reset(31, HEALTH, t=7.5)]
    return write(tmp_path / "mixed.pcap", dialogs, end=10.0)


def test_the_capture_is_what_the_rules_are_tested_on(mixed):
    result = check_capture(mixed)
    s = result.report.summary
    assert s.connections == 11
    assert s.codes["CONNECTION_RESET"] == 3 and s.codes["CONNECTION_REFUSED"] == 1
    assert s.codes["SYN_RETRANSMITTED"] == 1 and s.syn_retransmissions == 2
    assert s.lingering["CLOSE_WAIT"] == 1
    assert not result.failed             # no rules: the capture rules at their defaults pass


@pytest.mark.parametrize("key,limit,count,passed", [
    ("CONNECTION_RESET", 0, 3, False),
    ("CONNECTION_RESET", "<= 3", 3, True),
    ("CONNECTION_REFUSED", 0, 1, False),
    ("SYN_RETRANSMITTED", "<= 10%", 1, True),
    ("SYN_RETRANSMITTED", "<= 5%", 1, False),        # 1 of 11 = 9.1 %
    ("severity.warning", "<= 4", 5, False),          # 3 resets, the refusal, the CLOSE_WAIT
    ("severity.error", 0, 0, True),
    ("handshake.refused", 0, 1, False),
    ("handshake.complete", ">= 10", 10, True),
    ("close.reset", "<= 2", 3, False),
    ("reset_by.resp", "== 4", 4, True),              # 3 resets and the refusal
    ("CLOSE_WAIT", 0, 1, False),
    ("CLOSE_WAIT > 5s", 0, 1, False),                # stuck from t=2 to the end at t=10
    ("CLOSE_WAIT > 9s", 0, 0, True),
    ("TIME_WAIT", ">= 1", 6, True),                  # the clean closes (the client's end)
    ("connections", ">= 12", 11, False),
    ("syn_retransmissions", "<= 1", 2, False),
    ("analysis.retransmissions", 0, 0, True),
])
def test_every_rule_kind_counts_what_it_says(mixed, key, limit, count, passed):
    result = check_capture(mixed, policy={key: limit})
    o = result.gate.outcomes[0]
    assert (o.counted, o.passed) == (count, passed), o.message
    assert result.failed is not passed


def test_a_violation_is_one_line_with_rule_count_limit_and_streams(mixed):
    result = check_capture(mixed, policy={"CONNECTION_RESET": 0, "examples": 2})
    o = result.gate.outcomes[0]
    streams = [c.id for c in result.report.connections if c.close == "reset"]
    assert len(streams) == 3
    assert o.message == ("policy: policy[CONNECTION_RESET]: CONNECTION_RESET: 3 connections, "
                         "limit <= 0; streams %d, %d and 1 more" % tuple(streams[:2]))
    with pytest.raises(PolicyViolation) as info:
        assert_capture(mixed, policy={"CONNECTION_RESET": 0, "examples": 2})
    assert str(info.value) == o.message


def test_a_rate_line_shows_the_share(mixed):
    o = check_capture(mixed, policy={"SYN_RETRANSMITTED": "1%"}).gate.outcomes[0]
    assert "SYN_RETRANSMITTED: 1 of 11 connections (9.09%), limit <= 1%" in o.message


@pytest.mark.parametrize("scope,count", [
    ("10.0.0.5:5432", 1),                 # the database's one reset
    ("[::1]:5432", 0),
    ("port 8080", 2),                     # the health check
    ("10.0.2.9", 2),
    ("host 10.0.1.7", 0),
    ("10.0.0.0/16", 3),                   # everything in 10.0.x.x
    ("net 10.0.2.0/24", 2),
    ("10.0.3.0/24", 0),
    ("tcp.dstport == 8080 and reset_by == resp", 2),          # a filter expression
    ("ip.dst == 10.0.0.5 and not tcp.stream == 0", 1),
])
def test_every_scope_kind_selects_its_connections(mixed, scope, count):
    result = check_capture(mixed, policy={"scope": {scope: {"CONNECTION_RESET": 0}}})
    o = result.gate.outcomes[0]
    assert o.counted == count and o.name == "CONNECTION_RESET <= 0 [%s]" % scope
    assert ("[%s]" % scope in o.message) is (count > 0) or o.passed


def test_scoped_connections_are_the_base_of_the_rate(mixed):
    o = check_capture(mixed, policy={"scope": {"port 443": {"connections": "== 2"}}}
                      ).gate.outcomes[0]
    assert o.passed and o.counted == 2
    o = check_capture(mixed, policy={"scope": {"port 5432": {"CONNECTION_RESET": "<= 10%"}}}
                      ).gate.outcomes[0]
    assert (o.counted, o.base, o.passed) == (1, 7, False)        # 1 of 7 = 14 %


def test_allow_list_exempts_named_rules_with_a_reason(mixed):
    policy = {"CONNECTION_RESET": "<= 1", "close.reset": "<= 1",
              "allow": [{"match": "port 8080", "rules": ["CONNECTION_RESET"],
                         "reason": "health checks close with RST"}]}
    result = check_capture(mixed, policy=policy)
    reset_rule, close_rule = result.gate.outcomes[:2]
    assert (reset_rule.counted, reset_rule.passed) == (1, True)      # the database's only
    assert (close_rule.counted, close_rule.passed) == (3, False)     # not exempt from this one
    use = result.gate.allowed[0]
    assert use.connections == 2 and use.allow.reason == "health checks close with RST"


def test_allow_list_without_rules_ignores_the_connections_entirely(mixed):
    policy = {"connections": "== 9", "CONNECTION_RESET": "<= 1",
              "allow": [{"match": "10.0.2.9", "reason": "the probe host"}]}
    result = check_capture(mixed, policy=policy)
    assert all(o.passed for o in result.gate.outcomes), result.lines()


def test_warn_rules_print_but_do_not_fail(mixed):
    result = check_capture(mixed, policy={
        "CONNECTION_RESET": {"limit": 0, "action": "warn", "reason": "tracked in #12"}})
    assert not result.failed
    assert result.lines() == [result.gate.outcomes[0].message]
    assert result.gate.outcomes[0].message.startswith("policy warning: ")
    assert result.gate.outcomes[0].message.endswith(" (tracked in #12)")


def test_capture_wide_findings_count_in_unscoped_rules(tmp_path):
    """A SYN flood is one finding about a server, not about a connection: unscoped rules on
    its code or severity count it; scoped rules cannot place it."""
    from analyzer.settings import Settings
    from analyzer.testing.synth import Dialog
    dialogs = [Dialog(client=("10.0.0.1", 50000 + i), server=DB, t0=1_700_000_000.0 + i * 0.01)
               .syn() for i in range(5)]
    path = write(tmp_path / "flood.pcap", dialogs)
    result = check_capture(path, settings=Settings(flood_threshold=3), policy={
        "HALF_OPEN_FLOOD": 0, "severity.error": 0,
        "scope": {"port 5432": {"HALF_OPEN_FLOOD": 0}}})
    assert [f.code for f in result.report.findings] == ["HALF_OPEN_FLOOD"]
    flood, errors, scoped = result.gate.outcomes[:3]
    assert (flood.counted, flood.passed, errors.counted, errors.passed) == (1, False, 1, False)
    assert (scoped.counted, scoped.passed) == (0, True)
    assert flood.message.endswith(
        "HALF_OPEN_FLOOD: 0 connections and 1 capture-wide, limit <= 0; 5 SYNs to 10.0.0.5:5432 "
        "never completed within 0.0 s (125 per second, from 1 source address; 5 in the whole "
        "capture)")


# -- Capture rules ----------------------------------------------------------------------

def test_a_truncated_capture_fails_by_default(tmp_path):
    path = write(tmp_path / "cut.pcap", [clean(1)])
    data = path.read_bytes()
    path.write_bytes(data[:-7])                  # the last record cut short
    result = check_capture(path, policy={})
    assert result.report.capture.truncated
    o = _outcome(result, "capture truncated")
    assert not o.passed and result.failed
    assert "capture truncated: a file ends inside a record" in o.message
    relaxed = check_capture(path, policy={"capture": {"truncated": "warn"}})
    assert not relaxed.failed and len(relaxed.gate.warnings) == 1
    assert not check_capture(path, policy={"capture": {"truncated": "ignore"}}).gate.warnings


def test_an_empty_capture_fails_by_default(tmp_path):
    path = write(tmp_path / "empty.pcap", [], end=1.0)          # one UDP frame
    result = check_capture(path, policy={})
    o = _outcome(result, "capture empty")
    assert not o.passed and "no TCP connection in 1 frame" in o.message
    assert not check_capture(path, policy={"capture": {"empty": "ignore"}}).failed


def test_skipped_frames_above_a_share(tmp_path):
    from analyzer.testing.synth import write_pcap
    d = clean(1)
    packets = list(d.packets)
    ts, ip, side = packets[3]
    packets[3] = (ts, ip[:30], side)          # cut inside the TCP header (snaplen)
    path = tmp_path / "snap.pcap"
    write_pcap(path, packets)
    result = check_capture(path, policy={"capture": {"skipped": "<= 10%"}})
    o = _outcome(result, "capture skipped <= 10%")
    assert (o.counted, o.base, o.passed) == (1, 8, False)
    assert "1 of 8 frames skipped (12.5%): truncated_tcp 1, limit <= 10%" in o.message
    assert check_capture(path, policy={"capture": {"skipped": "<= 20%"}}).gate.outcomes[-1].passed


@pytest.mark.parametrize("text", [
    "10.0.0.5:5432", "10.0.0.1:40001", "[2001:db8::5]:443", "[2001:db8::5]:5432", "port 443",
    "port 40003", "port 1", "10.0.0.5", "host 2001:db8::5", "10.0.0.0/24", "10.0.2.0/24",
    "net 2001:db8::/32", "2001:db8::/127", "0.0.0.0/0", "::/0"])
def test_a_shorthand_answers_as_the_filter_expression_it_stands_for(tmp_path, text):
    """Shorthand scopes are tested directly on packed addresses; the filter language's own
    evaluation of the expression they are written out as must agree on every connection."""
    from analyzer import analyze
    from analyzer.gate.scope import compile_scope
    from analyzer.triage.filter import parse
    from analyzer.testing.synth import Dialog

    def v6(port: int, server: int, t: float) -> Dialog:
        return (Dialog(client=("2001:db8::1", port), server=("2001:db8::5", server),
                       t0=1_700_000_000.0 + t).handshake().rst("s"))
    dialogs = [clean(1), reset(2, HEALTH, t=1), clean(3, WEB, t=2), v6(40004, 5432, 3),
               v6(40005, 443, 4), clean(6, ("10.0.0.1", 443), t=6)]
    path = write(tmp_path / "mixed.pcap", dialogs)
    results = list(analyze([str(path)]).connections)
    assert len(results) == 6
    scope = compile_scope(text)
    general = parse(scope.expression)
    answers = [(r.id, scope.accepts(r)) for r in results]
    assert answers == [(r.id, general.matches(r)) for r in results]
    assert scope.accepts is not general.matches


def test_example_descriptions_stay_few_whatever_order_results_arrive_in(tmp_path):
    """Results arrive as connections finish; fed the other way round, every result displaces
    the lowest example, and the descriptions kept for examples must not grow with them."""
    from analyzer import analyze
    from analyzer.gate.evaluate import Evaluation
    from analyzer.gate.policy import parse_policy
    path = write(tmp_path / "resets.pcap", [reset(i, t=i * 0.01) for i in range(60)])
    results = sorted(analyze([str(path)]).connections, key=lambda r: -r.id)
    evaluation = Evaluation(parse_policy({"CONNECTION_RESET": 0, "examples": 1}))
    most = 0
    for r in results:
        evaluation.add(r)
        most = max(most, len(evaluation.described))
    assert most <= evaluation.prune_at < 60
    outcome = evaluation.finish(analyze([str(path)])).outcomes[0]
    assert outcome.examples == (0,) and outcome.details[0].startswith("stream 0: ")
