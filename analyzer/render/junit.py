"""`--format junit`: the run as JUnit XML, the test report Jenkins and GitLab read.

One `<testsuite>` per capture (several files analysed as one capture make one suite), inside
`<testsuites>`. With a policy, a `<testcase>` per rule — the capture rules included — and one
per baseline regression; a broken rule is a `<failure>` whose message is the violation line and
whose text lists the example streams; a rule whose action is `warn` passes and says why in
`<system-out>`. Without a policy, a `<testcase>` per connection needing attention, failing at
`--fail-on`'s severity (warning by default). The document keeps to the attributes of the JUnit
schema Jenkins validates against (tests/test_junit.py checks it); no times, so that the same
capture always gives the same file.
"""

from __future__ import annotations

import re
from typing import Any, Final, Iterable, List, Optional, TextIO
from xml.etree import ElementTree as ET

from analyzer.common.version import TOOL_NAME
from analyzer.common.findings import SEVERITY_RANK
from analyzer.gate.baseline import Change
from analyzer.gate.evaluate import GateResult, Outcome
from analyzer.judge.result import ConnResult
from analyzer.report.model import Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

#: Characters XML 1.0 cannot carry, even escaped (C0 controls but tab, newline, return).
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(s: str) -> str:
    return _NOT_XML.sub(lambda m: "\\x%02x" % ord(m.group(0)) if ord(m.group(0)) < 0x100
                        else "\\u%04x" % ord(m.group(0)), s)


def render(report: Report, out: TextIO, gate: Optional[GateResult] = None,
           changes: Iterable[Change] = (), fail_on: Optional[str] = None, **_options: Any) -> None:
    suites = ET.Element("testsuites", name=TOOL_NAME)
    suite = ET.SubElement(suites, "testsuite", name=_text("capture " + " ".join(report.capture.files)))
    props = ET.SubElement(suite, "properties")
    cap = report.capture
    for name, value in (("files", " ".join(cap.files)), ("packets", str(cap.packets)),
                        ("connections", str(report.summary.connections)),
                        ("needing_attention", str(report.summary.attention)),
                        ("truncated", str(cap.truncated).lower())):
        ET.SubElement(props, "property", name=name, value=_text(value))
    cases: List[ET.Element] = []
    if gate is not None:
        for o in gate.outcomes:
            cases.append(_rule_case(suite, o))
        for use in gate.allowed:
            ET.SubElement(props, "property", name="allowed " + _text(use.allow.scope.text),
                          value=_text("%d connection%s: %s" % (
                              use.connections, "" if use.connections == 1 else "s",
                              use.allow.reason)))
    changes = list(changes)
    for c in changes:
        if c.regression:
            case = ET.SubElement(suite, "testcase", classname=TOOL_NAME + ".baseline",
                                 name=_text("%s %s on %s" % (c.kind, c.key, c.server)))
            failure = ET.SubElement(case, "failure", type="baseline", message=_text(c.message))
            failure.text = _text(c.message)
            cases.append(case)
    if gate is None:
        cases += _connection_cases(suite, report, fail_on or "warning")
    failures = sum(1 for case in cases if case.find("failure") is not None)
    for element in (suites, suite):
        element.set("tests", str(len(cases)))
        element.set("failures", str(failures))
        element.set("errors", "0")
    suite.set("skipped", "0")
    ET.indent(suites)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(suites, encoding="unicode"))
    out.write("\n")


def make_sink(settings: Settings, policy: bool = False, **_options: Any) -> ResultSink:
    """With a policy the testcases are its rules: no connection is kept. Without one, the
    connections needing attention are."""
    return ResultStore(settings.result_budget,
                       keep=_nothing if policy else ConnResult.needs_attention)


def _nothing(r: ConnResult) -> bool:
    return False


def _rule_case(suite: ET.Element, o: Outcome) -> ET.Element:
    case = ET.SubElement(suite, "testcase", classname=TOOL_NAME + ".policy", name=_text(o.name))
    if o.passed:
        return case
    details = _text(o.message)
    if o.examples:
        details += "\nexample streams (Wireshark: tcp.stream in {%s}):" % " ".join(
            map(str, o.examples))
        details += "".join("\n  " + _text(line) for line in o.details)
    if o.action == "fail":
        failure = ET.SubElement(case, "failure", type=_kind(o), message=_text(o.message))
        failure.text = details
    else:
        out = ET.SubElement(case, "system-out")
        out.text = details
    return case


def _kind(o: Outcome) -> str:
    subject = getattr(o.rule, "subject", None)
    return "capture" if subject is None else subject.kind


def _connection_cases(suite: ET.Element, report: Report, fail_on: str) -> List[ET.Element]:
    floor = SEVERITY_RANK[fail_on]
    cases = []
    for r in report.connections:
        if not isinstance(r, ConnResult) or not r.needs_attention():
            continue
        case = ET.SubElement(suite, "testcase", classname=TOOL_NAME + ".connection",
                             name="stream %d %s -> %s" % (r.id, r.orig, r.resp))
        lines = ["%s %s: %s" % (f.severity, f.code, f.message) for f in r.findings]
        text = _text("\n".join(lines))
        codes = ", ".join(f.code for f in r.findings if SEVERITY_RANK[f.severity] >= 1)
        if r.worst() >= floor:
            failure = ET.SubElement(case, "failure", type=_worst_name(r),
                                    message=_text("stream %d: %s" % (r.id, codes)))
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = text
        cases.append(case)
    if not cases:
        cases.append(ET.SubElement(suite, "testcase", classname=TOOL_NAME + ".connection",
                                   name="%d connection%s, none needing attention" % (
                                       report.summary.connections,
                                       "" if report.summary.connections == 1 else "s")))
    return cases


def _worst_name(r: ConnResult) -> str:
    rank = r.worst()
    return next(name for name, value in SEVERITY_RANK.items() if value == rank)
