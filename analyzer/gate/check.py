"""The gate from Python: check a recorded capture against a policy, in a test or a notebook.

`check_capture()` analyses the capture once, applies the policy (a dict as the TOML would
parse, a policy file's path, or a `Policy`) and optionally compares with a baseline;
`assert_capture()` does the same and raises `PolicyViolation` — an `AssertionError`, so pytest
shows it as a failed assertion — whose message is the violation lines the command prints.
The pytest plugin's `tcpflow_check` fixture hands these to a test.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from analyzer.gate.baseline import Change, Signatures, compare, load_baseline
from analyzer.gate.evaluate import Evaluation, GateResult
from analyzer.gate.policy import Policy, empty_policy, load_policy, parse_policy
from analyzer.pipeline import analyze
from analyzer.report.fanout import Fanout
from analyzer.report.model import Report
from analyzer.report.store import ResultStore
from analyzer.settings import Settings

PolicyLike = Union[None, Dict[str, Any], str, "os.PathLike[str]", Policy]


class CheckResult(NamedTuple):
    """A capture checked: the report, the policy's outcomes and the baseline's changes."""
    report: Report
    gate: GateResult
    changes: List[Change]

    @property
    def failed(self) -> bool:
        return self.gate.failed or any(c.regression for c in self.changes)

    def lines(self) -> List[str]:
        """What the command prints on stderr: violations, regressions, then warnings."""
        return ([o.message for o in self.gate.violations]
                + [c.message for c in self.changes if c.regression]
                + [o.message for o in self.gate.warnings])


class PolicyViolation(AssertionError):
    """A capture broke its policy; `result` holds everything that was found."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__("\n".join(line for line in result.lines()
                                   if not line.startswith(("policy warning", "baseline note"))))
        self.result = result


def as_policy(policy: PolicyLike) -> Policy:
    if policy is None:
        return empty_policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return parse_policy(policy, "policy")
    return load_policy(os.fspath(policy))


def check_capture(paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                  policy: PolicyLike = None, baseline: Optional[str] = None,
                  settings: Optional[Settings] = None) -> CheckResult:
    """Analyse `paths` (one capture, or several files as one) and apply `policy`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [os.fspath(p) for p in paths]
    rules = as_policy(policy)
    source = None if baseline is None else os.fspath(baseline)
    before = None if source is None else load_baseline(source)
    evaluation = Evaluation(rules, Signatures(rules.examples) if before is not None else None)
    settings = settings or Settings()
    store = ResultStore(settings.result_budget)          # the results, for the caller
    report = analyze(files, settings, sink=Fanout([store, evaluation]))
    report.connections = store
    gate = evaluation.finish(report)
    changes: List[Change] = []
    if before is not None and source is not None and evaluation.signatures is not None:
        changes = compare(before, evaluation.signatures.finish(report), rules.baseline, source)
    return CheckResult(report, gate, changes)


def assert_capture(paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                   policy: PolicyLike = None, baseline: Optional[str] = None,
                   settings: Optional[Settings] = None) -> CheckResult:
    """`check_capture`, raising `PolicyViolation` (an AssertionError) when the capture broke
    the policy or regressed from the baseline; the result otherwise."""
    __tracebackhide__ = True         # pytest: the failure points at the caller's line
    result = check_capture(paths, policy, baseline, settings)
    if result.failed:
        raise PolicyViolation(result)
    return result
