"""The pytest plugin, run by pytest itself (pytester): the fixture, the failure lines, the
worked example of docs/ci.md, the entry point, and an import that costs nothing."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import REPO, run_python
from gate_captures import clean, close_wait, reset, write

pytest_plugins = ["pytester"]

PLUGIN = "pytest_tcpflow_check"
#: The plugin by module, the entry point's copy blocked: the same whether or not this
#: checkout is pip-installed.
LOAD = ("-p", "no:tcpflow-check", "-p", PLUGIN)


def _docs_example() -> str:
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    marker = "<!-- worked example: tests/test_pytest_plugin.py runs this block -->"
    block = text.split(marker, 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


@pytest.fixture
def recorded(pytester):
    """The captures the worked example checks, built as the integration test would record
    them: a failover that went well, and one with a reset."""
    (pytester.path / "recorded").mkdir()
    write(pytester.path / "recorded" / "failover.pcap", [clean(i, t=i) for i in range(3)])
    write(pytester.path / "recorded" / "reset.pcap", [clean(1), reset(2, t=1)])
    return pytester


def test_the_worked_example_of_the_documentation_runs(recorded):
    recorded.makepyfile(test_example=_docs_example())
    result = recorded.runpytest(*LOAD)
    result.assert_outcomes(passed=2)


def test_a_broken_rule_fails_the_test_with_the_violation_lines(recorded):
    recorded.makepyfile(test_broken="""
        def test_failover(tcpflow_check):
            tcpflow_check.assert_capture("recorded/reset.pcap",
                                         policy={"CONNECTION_RESET": 0, "close.reset": 0})
    """)
    result = recorded.runpytest(*LOAD)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r"E +analyzer\.gate\.check\.PolicyViolation: " + re.escape(
            "policy: policy[CONNECTION_RESET]: CONNECTION_RESET: 1 connection, limit <= 0; "
            "stream 1"),
        r"E +" + re.escape("policy: policy[close.reset]: close.reset: 1 connection, "
                           "limit <= 0; stream 1"),
    ])


def test_a_policy_file_and_a_baseline_from_a_test(recorded):
    recorded.makefile(".toml", tcpflow_check='"CLOSE_WAIT > 1s" = 0\n')
    write(recorded.path / "recorded" / "leak.pcap", [close_wait(1)], end=5)
    recorded.makepyfile(test_file="""
        import pytest

        def test_leak(tcpflow_check):
            with pytest.raises(AssertionError) as info:
                tcpflow_check.assert_capture("recorded/leak.pcap", policy="tcpflow_check.toml")
            assert "tcpflow_check.toml:1: CLOSE_WAIT > 1s: 1 connection" in str(info.value)

        def test_check_without_failing(tcpflow_check):
            result = tcpflow_check.check_capture("recorded/leak.pcap",
                                                 policy={"CLOSE_WAIT": 0})
            assert result.failed and result.report.summary.lingering["CLOSE_WAIT"] == 1
    """)
    recorded.runpytest(*LOAD).assert_outcomes(passed=2)


def test_the_entry_point_names_the_plugin_module():
    if sys.version_info >= (3, 11):
        import tomllib
    else:                                               # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"tcpflow-check": PLUGIN}


def test_importing_the_plugin_imports_no_analysis_module():
    """pytest imports the plugin in every run of everyone who installed tcpflow-check: it
    must not pull in the analysis (nor dpkt) until a test asks for the fixture."""
    res = run_python("import sys, %s as p; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('analyzer', 'dpkt', 'click', 'rich', 'tomllib', 'tomli')))" % PLUGIN)
    assert res.returncode == 0, res.stderr
    assert eval(res.stdout.decode()) == []


def test_the_installed_entry_point_loads_the_plugin():
    from importlib import metadata
    groups = metadata.entry_points()
    found = (groups.select(group="pytest11") if hasattr(groups, "select")
             else groups.get("pytest11", []))                  # Python 3.9
    ours = [ep for ep in found if ep.name == "tcpflow-check"]
    if not ours:
        pytest.skip("tcpflow-check is not pip-installed here (CI installs it)")
    assert ours[0].value == PLUGIN
    assert ours[0].load().tcpflow_check
