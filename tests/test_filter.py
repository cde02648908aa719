"""The filter language (analyzer/triage/filter.py): grammar properties, every field against
an oracle read from the JSON contract, and an error with a caret for every bad input."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings, strategies as st

from analyzer.pipeline import analyze
from analyzer.triage.fields import (ADDR, FIELDS, INT, NUMBER, SEVERITY, TEXT, WORD,
                                    filters_markdown)
from analyzer.triage.filter import FilterError, parse
from conftest import REPO

SAMPLES = ["mixed.pcap", "ipv6.pcap", "time_wait_at_end.pcap", "reset_mid_transfer.pcap",
           "lingering_close_wait.pcap", "mid_connection_start.pcap"]


@pytest.fixture(scope="module")
def results():
    """(result, its JSON object) for every connection of a few samples."""
    out = []
    for name in SAMPLES:
        for r in analyze([str(REPO / "samples" / name)]).connections:
            out.append((r, r.to_dict()))
    return out


# -- an oracle: each field's values read from the JSON contract, not from the field table ----

_SEV = {"info": 0, "warning": 1, "error": 2}


def oracle(d: dict, name: str) -> tuple:
    ends = (d["orig"], d["resp"])
    return {
        "ip.addr": tuple(ipaddress.ip_address(e["addr"]) for e in ends),
        "ip.src": (ipaddress.ip_address(d["orig"]["addr"]),),
        "ip.dst": (ipaddress.ip_address(d["resp"]["addr"]),),
        "tcp.port": tuple(e["port"] for e in ends),
        "tcp.srcport": (d["orig"]["port"],),
        "tcp.dstport": (d["resp"]["port"],),
        "tcp.stream": (d["id"],),
        "handshake": (d["handshake"],),
        "close": tuple(v for v in (d["close"],) if v is not None),
        "closed_first": tuple(v for v in (d["closed_first"],) if v is not None),
        "reset_by": tuple(v for v in (d["reset_by"],) if v is not None),
        "state": (d["final_state"]["orig"], d["final_state"]["resp"]),
        "lingering": tuple(lg["state"] for lg in d["lingering"]),
        "finding": tuple(f["code"] for f in d["findings"]),
        "severity": tuple([max(_SEV[f["severity"]] for f in d["findings"])]
                          if d["findings"] else []),
        "duration": (d["duration"],),
        "packets": (d["packets"]["orig"] + d["packets"]["resp"],),
        "bytes": (d["bytes"]["orig"] + d["bytes"]["resp"],),
        "conn_state": (d["conn_state"],),
        "history": (d["history"],),
    }[name]


def literal(name: str, v) -> str:
    kind = FIELDS[name].kind
    if kind == SEVERITY:
        return ("info", "warning", "error")[v]
    if kind == TEXT:
        return '"%s"' % v
    return str(v)


def test_the_oracle_covers_every_field(results):
    for name in FIELDS:
        oracle(results[0][1], name)


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_equality_and_presence(results, name):
    """`f == v` keeps exactly the connections with value v; `f != v` the others; the bare
    field those with any value."""
    seen = set()
    for _, d in results:
        seen.update(oracle(d, name))
    assert seen or name in ("lingering",), "no sample has a value for %s" % name
    bare = parse(name)
    for r, d in results:
        assert bare.matches(r) == bool(oracle(d, name)), (name, d["id"])
    for v in sorted(seen, key=str)[:6]:
        if isinstance(v, float):
            continue                    # durations: compared with < and > below
        eq, ne = parse("%s == %s" % (name, literal(name, v))), parse(
            "%s != %s" % (name, literal(name, v)))
        for r, d in results:
            assert eq.matches(r) == (v in oracle(d, name)), (name, v, d["id"])
            assert ne.matches(r) == (v not in oracle(d, name)), (name, v, d["id"])


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items() if f.kind in (INT, NUMBER)])
def test_every_numeric_field_orders(results, name):
    values = sorted({v for _, d in results for v in oracle(d, name)})
    pivot = values[len(values) // 2]
    text = repr(pivot) if isinstance(pivot, float) else str(pivot)
    for op, test in (("<", lambda x: x < pivot), ("<=", lambda x: x <= pivot),
                     (">", lambda x: x > pivot), (">=", lambda x: x >= pivot)):
        f = parse("%s %s %s" % (name, op, text))
        for r, d in results:
            assert f.matches(r) == any(test(x) for x in oracle(d, name)), (name, op, d["id"])


def test_severity_orders_by_rank(results):
    f = parse("severity >= warning")
    for r, _ in results:
        assert f.matches(r) == r.needs_attention()


def test_cidr_and_sets(results):
    cases = {
        "ip.addr == 192.168.1.0/24": lambda d: any(a in ipaddress.ip_network("192.168.1.0/24")
                                                   for a in oracle(d, "ip.addr")
                                                   if a.version == 4),
        "ip.addr == 2001:db8::/32": lambda d: any(a in ipaddress.ip_network("2001:db8::/32")
                                                  for a in oracle(d, "ip.addr")
                                                  if a.version == 6),
        "tcp.dstport in {22 443 5000..9000}": lambda d: d["resp"]["port"] in (22, 443) or
        5000 <= d["resp"]["port"] <= 9000,
        "state in {CLOSE_WAIT, time_wait}": lambda d: bool(
            {"CLOSE_WAIT", "TIME_WAIT"} & set(oracle(d, "state"))),
        "finding contains RETRANSMITTED": lambda d: any("RETRANSMITTED" in c
                                                        for c in oracle(d, "finding")),
        'history contains "F"': lambda d: "F" in d["history"],
        "duration > 1s and not (handshake == complete || close)": lambda d: d["duration"] > 1
        and not (d["handshake"] == "complete" or d["close"] is not None),
    }
    for text, want in cases.items():
        f = parse(text)
        hits = 0
        for r, d in results:
            assert f.matches(r) == want(d), (text, d["id"])
            hits += want(d)
        assert hits, "no sample connection matches %r: the case tests nothing" % text


def test_wireshark_spellings_print_canonically():
    assert str(parse("ip.addr eq 10.0.0.1 && !tcp.port ne 80 || ipv6.src==::1")) == \
        "ip.addr == 10.0.0.1 and not tcp.port != 80 or ip.src == ::1"
    assert str(parse("((a_b_c))".replace("a_b_c", "handshake")))== "handshake"
    assert str(parse("ip.addr == 10.1.2.3/8")) == "ip.addr == 10.0.0.0/8"
    assert str(parse("(close or reset_by) and severity")) == "(close or reset_by) and severity"


# -- grammar properties ------------------------------------------------------------------

def _values(name: str):
    f = FIELDS[name]
    if f.kind == ADDR:
        v4 = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
            lambda t: str(ipaddress.ip_network((t[0], t[1]), strict=False)))
        v6 = st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
            lambda t: str(ipaddress.ip_network((t[0], t[1]), strict=False)))
        return st.one_of(v4, v6)
    if f.kind == INT:
        return st.integers(0, 2**32).map(str)
    if f.kind == NUMBER:
        return st.one_of(st.integers(0, 10**6).map(str),
                         st.floats(0, 1e6, allow_nan=False).map(repr),
                         st.tuples(st.integers(0, 999), st.sampled_from(["ms", "s", "min", "h"]))
                         .map(lambda t: "%d%s" % t))
    if f.kind == TEXT:
        return st.text(alphabet='SDFARshdfar"\\ x', max_size=5).map(
            lambda s: '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"'))
    return st.sampled_from(f.values).flatmap(
        lambda v: st.sampled_from([v, v.lower(), '"%s"' % v]))


@st.composite
def single_tests(draw):
    name = draw(st.sampled_from(list(FIELDS)))
    kind = FIELDS[name].kind
    ops = ["==", "!=", "eq", "ne", None, "in"]
    if kind in (INT, NUMBER, SEVERITY):
        ops += ["<", "<=", ">", ">=", "lt", "ge"]
    if kind in (WORD, TEXT):
        ops.append("contains")
    op = draw(st.sampled_from(ops))
    if op is None:
        return name
    if op == "contains":
        return "%s contains %s" % (name, draw(st.sampled_from(['"A"', "RE", '"x y"'])))
    values = _values(name)
    if op == "in":
        items = draw(st.lists(values, min_size=1, max_size=3))
        if kind in (INT, NUMBER) and draw(st.booleans()):
            lo = draw(st.integers(0, 100))
            items.append("%d..%d" % (lo, lo + draw(st.integers(0, 100))))
        sep = draw(st.sampled_from([" ", ", ", ","]))
        return "%s in {%s}" % (name, sep.join(items))
    return "%s%s%s" % (name, draw(st.sampled_from([" ", ""])) if op[0] in "=!<>" else " ", op) \
        + " " + draw(values)


expressions = st.recursive(
    single_tests(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" and ", " or ", " && ", " || "]), inner).map("".join),
        inner.map(lambda e: "not " + e), inner.map(lambda e: "!" + e),
        inner.map(lambda e: "(%s)" % e)),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_parse_print_round_trip(text):
    f = parse(text)
    again = parse(str(f))
    assert again.tree == f.tree
    assert str(again) == str(f)


@settings(max_examples=300, deadline=None)
@given(expressions, st.data())
def test_every_bad_input_has_an_error_with_a_caret(text, data):
    """Mutate a good filter (cut, insert, replace a character): it parses, or the error says
    where, inside the text or just past its end, and the caret line points there."""
    i = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(list("=!<>(){},\"&|~ .x9:/")))
    mutated = data.draw(st.sampled_from([text[:i] + text[i + 1:], text[:i] + junk + text[i:],
                                         text[:i] + junk + text[i + 1:], text[:i]]))
    _parses_or_points(mutated)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_points_at_its_fault(text):
    _parses_or_points(text)


def _parses_or_points(text: str) -> None:
    try:
        f = parse(text)
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
        assert exc.message and "\n" not in exc.message
        line, caret = exc.caret(text).split("\n")[-2:] if "\n" not in text else (None, None)
        if caret is not None:
            assert caret.index("^") == exc.position + 2
        return
    assert parse(str(f)).tree == f.tree


@pytest.mark.parametrize("text, message, column", [
    ("", "empty filter", 0),
    ("hanshake == complete", "did you mean 'handshake'", 0),
    ("handshake == compete", "did you mean 'complete'", 13),
    ("handshake = complete", "comparison is '=='", 10),
    ("tcp.port == http", "takes an integer", 12),
    ("state < CLOSED", "not <", 6),
    ("ip.addr == 10.0.0.300", "not an IP address", 11),
    ("(tcp.port == 1", "missing ')'", 14),
    ("tcp.port in {1 2", "missing '}'", 16),
    ("tcp.port in {}", "empty set", 13),
    ("tcp.port in {9..1}", "empty range", 13),
    ("handshake complete", "expected an operator", 10),
    ("handshake == complete)", "')' without '('", 21),
    ('history contains "R', "unterminated string", 17),
    ("tcp.port == 1 and", "expected a field name, found the end", 17),
    ("duration > nan", "finite", 11),
])
def test_errors_name_the_fault_and_point_at_it(text, message, column):
    with pytest.raises(FilterError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.position == column
    assert info.value.caret(text).split("\n")[1].index("^") == column + 2


def test_filters_document_lists_every_field_and_value():
    doc = filters_markdown()
    for name, f in FIELDS.items():
        assert "`%s`" % name in doc
        for v in f.values or ():
            assert re.search(r"\b%s\b" % re.escape(v), doc), v
