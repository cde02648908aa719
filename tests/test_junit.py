"""`--format junit`: valid against the JUnit schema Jenkins reads, one testcase per rule,
failures carrying the violation line."""

from __future__ import annotations

import io
from xml.etree import ElementTree as ET

import pytest

from analyzer.gate.check import check_capture
from analyzer.render import render
from conftest import REPO
from gate_captures import HEALTH, clean, close_wait, reset, write

SCHEMA = REPO / "tests" / "data" / "junit.xsd"


def _junit(result, fail_on=None) -> str:
    out = io.StringIO()
    gate = result.gate if result is not None and result.gate.outcomes else None
    render("junit", result.report, out, gate=gate, changes=result.changes, fail_on=fail_on)
    return out.getvalue()


def validate(xml: str) -> ET.Element:
    """Check `xml` against tests/data/junit.xsd with xmlschema (a test dependency), and the
    structure Jenkins and GitLab read by hand as well."""
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (the test extra) validates "
                                    "JUnit against its schema")
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml)
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    for suite in root:
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
    return root


@pytest.fixture
def capture(tmp_path):
    return write(tmp_path / "c.pcap", [clean(1), reset(2, t=1), reset(3, HEALTH, t=2),
                                       close_wait(4, t=3)], end=10)


def test_a_testcase_per_rule_with_the_violation_as_failure(capture):
    result = check_capture(capture, policy={
        "CONNECTION_RESET": 0, "handshake.refused": 0,
        "scope": {"port 8080": {"CONNECTION_RESET": {"limit": 0, "action": "warn"}}}})
    root = validate(_junit(result))
    suite = root.find("testsuite")
    assert suite.get("name") == "capture %s" % capture
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["CONNECTION_RESET <= 0", "handshake.refused <= 0",
                     "CONNECTION_RESET <= 0 [port 8080]", "capture truncated",
                     "capture unreadable", "capture empty", "capture evicted"]
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    failure = cases["CONNECTION_RESET <= 0"].find("failure")
    assert failure.get("message") == result.gate.outcomes[0].message
    assert failure.get("type") == "finding"
    assert "tcp.stream in {" in failure.text
    stream = result.gate.outcomes[0].examples[0]
    assert ("\n  stream %d: 10.0.0.1:40002 -> 10.0.0.5:5432, handshake complete, close reset by "
            "resp; CONNECTION_RESET" % stream) in failure.text
    assert cases["handshake.refused <= 0"].find("failure") is None
    warned = cases["CONNECTION_RESET <= 0 [port 8080]"]
    assert warned.find("failure") is None and "policy warning" in warned.find("system-out").text
    assert (suite.get("tests"), suite.get("failures")) == ("7", "1")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["connections"] == "4" and props["truncated"] == "false"


def test_without_a_policy_a_testcase_per_connection_needing_attention(capture):
    result = check_capture(capture)
    root = validate(_junit(result._replace(gate=result.gate._replace(outcomes=[]))))
    cases = root.find("testsuite").findall("testcase")
    attention = [r for r in result.report.connections if r.needs_attention()]
    assert len(cases) == len(attention) == 3
    assert all(c.find("failure") is not None for c in cases)
    assert cases[0].get("name").startswith("stream 1 10.0.0.1:40002 -> 10.0.0.5:5432")
    # --fail-on error: warnings are listed but pass
    root = validate(_junit(result._replace(gate=result.gate._replace(outcomes=[])), "error"))
    assert root.find("testsuite").get("failures") == "0"


def test_a_clean_capture_without_a_policy_is_one_passing_testcase(tmp_path):
    path = write(tmp_path / "ok.pcap", [clean(1)])
    result = check_capture(path)
    root = validate(_junit(result._replace(gate=result.gate._replace(outcomes=[]))))
    [case] = root.find("testsuite").findall("testcase")
    assert case.get("name") == "1 connection, none needing attention"


def test_text_that_xml_cannot_carry_is_escaped(tmp_path):
    name = tmp_path / "odd\x1bname.pcap"
    write(name, [reset(1)])
    result = check_capture(name, policy={"CONNECTION_RESET": 0})
    xml = _junit(result)
    validate(xml)
    assert "\x1b" not in xml


@pytest.mark.parametrize("xml", [
    '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
    '<testcase name="x" file="f.toml"/></testsuite></testsuites>',          # no such attribute
    '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
    '<testcase classname="c"/></testsuite></testsuites>',                   # a case needs a name
    '<testsuites><testsuite name="a" tests="1" failures="0">'
    '<testcase name="x"/></testsuite></testsuites>',                        # errors= is required
    '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
    '<testcase name="x"><note/></testcase></testsuite></testsuites>',       # unknown element
])
def test_the_schema_refuses_what_jenkins_refuses(xml):
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (the test extra) validates "
                                    "JUnit against its schema")
    assert not xmlschema.XMLSchema(str(SCHEMA)).is_valid(xml)
