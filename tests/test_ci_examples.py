"""The CI examples in examples/ are valid: the YAML parses, every tcpflow-check command in it
is one the command accepts, the files it hands to CI are the ones it writes, and the example
policy parses."""

from __future__ import annotations

import shlex
from typing import List

import pytest

from analyzer.cli import main
from analyzer.gate.policy import load_policy
from conftest import REPO

EXAMPLES = REPO / "examples"
yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra) reads the CI examples")


def _commands(script: str) -> List[List[str]]:
    """The tcpflow-check command lines of a shell script (a YAML `run` or `script` entry)."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "tcpflow-check":
            out.append(words[1:])
    return out


def _parses(args: List[str]) -> dict:
    """The options the command takes from `args` (click raises on anything it refuses)."""
    ctx = main.make_context("tcpflow-check", list(args))
    return ctx.params


def _report_files(params: dict) -> dict:
    return dict(params["reports"])            # ((format, file), ...) as the option parses


def test_github_actions_workflow():
    doc = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    on = doc.get("on", doc.get(True))                 # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on and doc["jobs"]
    [job] = doc["jobs"].values()
    assert job["runs-on"]
    commands = [c for step in job["steps"] for c in _commands(step.get("run", ""))]
    assert len(commands) == 1
    params = _parses(commands[0])
    assert params["policy"] == "tcpflow-check.toml" and params["baseline"]
    uploaded = next(s for s in job["steps"] if s.get("uses", "").startswith(
        "actions/upload-artifact"))["with"]["path"].split()
    assert set(_report_files(params).values()) <= set(uploaded)
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step)


def test_gitlab_ci_pipeline():
    doc = yaml.safe_load((EXAMPLES / ".gitlab-ci.yml").read_text())
    job = doc["recorded-traffic"]
    assert job["stage"] in doc["stages"]
    commands = [c for line in job["script"] for c in _commands(line)]
    assert len(commands) == 1
    params = _parses(commands[0])
    assert _report_files(params)["junit"] == job["artifacts"]["reports"]["junit"]
    assert params["summary_md"] in job["artifacts"]["paths"]


def test_the_example_policy_parses():
    policy = load_policy(str(EXAMPLES / "tcpflow-check.toml"))
    assert len(policy.rules) >= 8 and policy.allows and policy.allows[0].reason


def test_a_refused_command_line_is_noticed():
    import click
    with pytest.raises(click.UsageError):
        _parses(["traffic.pcap", "--polcy", "x.toml"])


@pytest.mark.parametrize("doc", ["docs/ci.md", "README.md"])
def test_the_policies_shown_in_the_documentation_parse(doc):
    import re
    from analyzer.gate.discover import toml
    from analyzer.gate.policy import parse_policy
    tomllib = toml()
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / doc).read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        assert parse_policy(tomllib.loads(block), doc).rules
