"""Policies as written: every rule key, limit, scope and section parses; every mistake is one
line naming the file and the line of the mistake."""

from __future__ import annotations

import textwrap

import pytest

from analyzer.gate.discover import find_policy
from analyzer.gate.policy import PolicyError, load_policy, parse_policy
from analyzer.gate.rules import RULE_KINDS, every_key
from analyzer.gate.scope import ScopeError, compile_scope


def _load(tmp_path, text: str, name: str = "tcpflow-check.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_policy(str(path))


def _error(tmp_path, text: str, name: str = "tcpflow-check.toml") -> str:
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, text, name)
    return str(info.value)


def test_every_rule_kind_parses_with_its_documented_example(tmp_path):
    for kind in RULE_KINDS:
        policy = _load(tmp_path, kind.example + "\n")
        assert len(policy.rules) == 1
        assert policy.rules[0].subject.kind == kind.name, kind
        assert policy.rules[0].line == 1


def test_every_key_parses_and_keeps_its_spelling():
    policy = parse_policy({key: 0 for key in every_key()})
    assert [r.subject.key for r in policy.rules] == every_key()


def test_dotted_and_quoted_keys_are_the_same_rule(tmp_path):
    a = _load(tmp_path, 'handshake.refused = 0\nseverity.error = "<= 1"\n')
    b = _load(tmp_path, '"handshake.refused" = 0\n"severity.error" = "<= 1"\n')
    assert [r.name for r in a.rules] == [r.name for r in b.rules] == [
        "handshake.refused <= 0", "severity.error <= 1"]
    assert [r.line for r in a.rules] == [1, 2]


def test_limits_counts_rates_and_bounds(tmp_path):
    policy = _load(tmp_path, """\
        CONNECTION_RESET = 0
        SYN_RETRANSMITTED = "<= 1%"
        CONNECTION_REFUSED = "2.5%"
        connections = ">= 1"
        syn_retransmissions = "< 3"
        "CLOSE_WAIT > 5s" = "== 0"
        analysis.retransmissions = "> 0.5%"
    """)
    got = [(r.subject.key, r.limit.op, r.limit.value, r.limit.rate) for r in policy.rules]
    assert got == [("CONNECTION_RESET", "<=", 0, False), ("SYN_RETRANSMITTED", "<=", 1, True),
                   ("CONNECTION_REFUSED", "<=", 2.5, True), ("connections", ">=", 1, False),
                   ("syn_retransmissions", "<", 3, False), ("CLOSE_WAIT > 5s", "==", 0, False),
                   ("analysis.retransmissions", ">", 0.5, True)]
    r = policy.rules[1]
    assert r.limit.holds(1, 100) and not r.limit.holds(2, 100) and r.limit.holds(0, 0)


def test_rule_tables_set_action_and_reason(tmp_path):
    policy = _load(tmp_path, """\
        CONNECTION_RESET = { limit = 0, action = "warn", reason = "known flaky" }
    """)
    rule = policy.rules[0]
    assert (rule.action, rule.reason, rule.limit.text) == ("warn", "known flaky", "<= 0")


def test_scopes_allow_capture_and_baseline_sections(tmp_path):
    policy = _load(tmp_path, """\
        examples = 2
        CONNECTION_RESET = 0

        [scope."10.0.0.5:5432"]
        "CLOSE_WAIT > 1s" = 0
        close.reset = 0

        [scope."port 443"]
        connections = ">= 1"

        [[allow]]
        match = "port 8080"
        rules = ["CONNECTION_RESET"]
        reason = "health checks close with RST"

        [[allow]]
        match = "10.0.0.99"
        reason = "the test's own probe"

        [capture]
        truncated = "warn"
        skipped = { limit = "1%", action = "warn" }

        [baseline]
        severity = "error"
        tolerance = "10%"
        [baseline.tolerances]
        CONNECTION_RESET = 2
    """)
    assert policy.examples == 2
    assert [(r.name, r.line) for r in policy.rules] == [
        ("CONNECTION_RESET <= 0", 2), ("CLOSE_WAIT > 1s <= 0 [10.0.0.5:5432]", 5),
        ("close.reset <= 0 [10.0.0.5:5432]", 6), ("connections >= 1 [port 443]", 9)]
    assert [(a.scope.text, a.keys, a.line) for a in policy.allows] == [
        ("port 8080", frozenset({"CONNECTION_RESET"}), 11), ("10.0.0.99", None, 16)]
    capture = {c.key: (c.action, c.limit and c.limit.text) for c in policy.capture}
    assert capture == {"truncated": ("warn", None), "unreadable": ("fail", None),
                       "empty": ("fail", None), "evicted": ("warn", None),
                       "skipped": ("warn", "<= 1%")}
    b = policy.baseline
    assert b.severity == "error" and b.tolerance.allows(10, 11) and not b.tolerance.allows(10, 12)
    assert b.tolerance_for("CONNECTION_RESET").allows(0, 2)


def test_pyproject_table_with_its_own_line_numbers(tmp_path):
    policy = _load(tmp_path, """\
        [project]
        name = "service"

        [tool.tcpflow-check]
        CONNECTION_RESET = 0

        [tool.tcpflow-check.scope."port 5432"]
        handshake.refused = 0
    """, name="pyproject.toml")
    assert [(r.name, r.where) for r in policy.rules] == [
        ("CONNECTION_RESET <= 0", "%s:5" % (tmp_path / "pyproject.toml")),
        ("handshake.refused <= 0 [port 5432]", "%s:8" % (tmp_path / "pyproject.toml"))]


BAD = [
    # (policy text, line, what the message says)
    ('CONECTION_RESET = 0\n', 1, "unknown rule 'CONECTION_RESET' (did you mean CONNECTION_RESET?)"),
    ('\n\nhandshake.refussed = 0\n', 3, "unknown handshake value 'refussed'"),
    ('severity.fatal = 0\n', 1, "unknown severity value 'fatal'"),
    ('"CLOSE_WAIT > 5 parsecs" = 0\n', 1, "bad duration '5 parsecs'"),
    ('"FIN_WAIT_2 > 5s" = 0\n', 1, "unknown rule 'FIN_WAIT_2 > 5s'"),
    ('CONNECTION_RESET = -1\n', 1, "negative"),
    ('CONNECTION_RESET = 0.5\n', 1, 'write a rate as a string: "0.5%"'),
    ('CONNECTION_RESET = "about 3"\n', 1, "bad limit 'about 3'"),
    ('CONNECTION_RESET = "150%"\n', 1, "over 100%"),
    ('CONNECTION_RESET = "2.5"\n', 1, "not a whole number"),
    ('syn_retransmissions = "1%"\n', 1, "takes a count, not a rate"),
    ('CONNECTION_RESET = { limit = 0, action = "explode" }\n', 1, "action must be one of fail, warn"),
    ('CONNECTION_RESET = { action = "warn" }\n', 1, "a rule table needs a limit"),
    ('CONNECTION_RESET = { limit = 0, color = "red" }\n', 1, "unknown field 'color'"),
    ('[capture]\ntruncated = "maybe"\n', 2, "truncated takes one of fail, warn, ignore"),
    ('[capture]\ncorrupt = "fail"\n', 2, "unknown capture rule 'corrupt'"),
    ('[capture]\nskipped = "lots"\n', 2, "bad limit 'lots'"),
    ('[scope."port 99999"]\nCONNECTION_RESET = 0\n', 1, "port 99999 is out of range"),
    ('[scope."10.0.0.300:80"]\nCONNECTION_RESET = 0\n', 1, "'10.0.0.300' is not an IP address"),
    ('[scope."host 10.0.0.0/8"]\nCONNECTION_RESET = 0\n', 1, 'is a network: write "net 10.0.0.0/8"'),
    ('[scope."port 443"]\n', 1, "needs a table of rules"),
    ('[scope."port 443"]\nCONECTION_RESET = 0\n', 2, "unknown rule 'CONECTION_RESET'"),
    ('[[allow]]\nmatch = "port 8080"\n', 1, "an allow entry needs a reason"),
    ('[[allow]]\nreason = "x"\n', 1, "an allow entry needs match"),
    ('[[allow]]\nmatch = "port 8080"\nreason = "x"\nrules = ["RESET"]\n', 4, "unknown rule 'RESET'"),
    ('[[allow]]\nmatch = "port 8080"\nreason = "x"\nscope = 1\n', 4, "unknown field 'scope'"),
    ('[baseline]\nseverity = "fatal"\n', 2, "severity must be info, warning or error"),
    ('[baseline]\ntolerance = "a lot"\n', 2, "a tolerance is a count"),
    ('[baseline.tolerances]\nRESETS = 1\n', 2, "unknown rule 'RESETS'"),
    ('examples = -1\n', 1, "examples must be a count"),
    ('CONNECTION_RESET = 0\nCONNECTION_RESET = 1\n', 2, "not valid TOML"),
    ('CONNECTION_RESET = \n', 1, "not valid TOML"),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_each_bad_policy_names_its_line(tmp_path, text, line, message):
    error = _error(tmp_path, text)
    assert error.startswith("%s:%d: " % (tmp_path / "tcpflow-check.toml", line)), error
    assert message in error
    assert "\n" not in error


def test_not_utf8_and_missing_files_and_tables(tmp_path):
    (tmp_path / "tcpflow-check.toml").write_bytes(b"CONNECTION_RESET = 0 # \xff\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(str(tmp_path / "tcpflow-check.toml"))
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load_policy(str(tmp_path / "missing.toml"))
    assert "no [tool.tcpflow-check] table" in _error(tmp_path, "[project]\nname='x'\n",
                                                     "pyproject.toml")


def test_a_dict_policy_names_the_key_path():
    with pytest.raises(PolicyError) as info:
        parse_policy({"scope": {"port 443": {"handshake": {"refussed": 0}}}})
    assert str(info.value).startswith("policy[scope.port 443.handshake.refussed]: ")


def test_policy_is_found_in_the_directory_or_above_up_to_the_repository(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    deep = repo / "services" / "db"
    deep.mkdir(parents=True)
    assert find_policy(str(deep)) is None
    (tmp_path / "tcpflow-check.toml").write_text("CONNECTION_RESET = 0\n")   # above the repo
    assert find_policy(str(deep)) is None
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_policy(str(deep)) is None
    (repo / "pyproject.toml").write_text("[tool.tcpflow-check]\nCONNECTION_RESET = 0\n")
    assert find_policy(str(deep)) == str(repo / "pyproject.toml")
    (deep / "tcpflow-check.toml").write_text("CONNECTION_RESET = 0\n")
    assert find_policy(str(deep)) == str(deep / "tcpflow-check.toml")


@pytest.mark.parametrize("text,expression", [
    ("10.0.0.5:5432", "ip.src == 10.0.0.5 and tcp.srcport == 5432 or "
                      "ip.dst == 10.0.0.5 and tcp.dstport == 5432"),
    ("[2001:db8::5]:443", "ip.src == 2001:db8::5 and tcp.srcport == 443 or "
                          "ip.dst == 2001:db8::5 and tcp.dstport == 443"),
    ("port 443", "tcp.port == 443"),
    (" port  443 ", "tcp.port == 443"),
    ("10.0.0.9", "ip.addr == 10.0.0.9"),
    ("host 10.0.0.9", "ip.addr == 10.0.0.9"),
    ("10.0.0.0/8", "ip.addr == 10.0.0.0/8"),
    ("net 2001:db8::/32", "ip.addr == 2001:db8::/32"),
    ("tcp.dstport == 5432 and not ip.addr == 10.0.0.9",
     "tcp.dstport == 5432 and not ip.addr == 10.0.0.9"),
])
def test_scopes_are_filter_expressions_shorthands_included(text, expression):
    """Shorthands are written out in the filter language; one parser compiles every scope."""
    scope = compile_scope(text)
    assert (scope.text, scope.expression) == (text, expression)


@pytest.mark.parametrize("text,column,message", [
    ("port 70000", 5, "port 70000 is out of range"),
    ("host banana", 5, "'banana' is not an address"),
    ("", None, "a scope is a non-empty string"),
    ("tcp.dstport == 5432 and hanshake == refused", 24, "unknown field 'hanshake'"),
    ("handshake == refussed", 13, "refussed"),
])
def test_bad_scopes_point_at_the_fault(text, column, message):
    with pytest.raises(ScopeError) as info:
        compile_scope(text)
    assert info.value.column == column and message in str(info.value)


def test_a_bad_filter_scope_in_a_policy_names_line_and_column(tmp_path):
    error = _error(tmp_path, '[scope."port 5432"]\nCONNECTION_RESET = 0\n'
                             '[scope."tcp.dstport == 80 and hanshake == refused"]\n'
                             'CONNECTION_RESET = 0\n')
    assert error == ("%s:3: unknown field 'hanshake' (did you mean 'handshake'?) (at column 23 "
                     "of the scope)" % (tmp_path / "tcpflow-check.toml"))
