"""One command run's gate: the policy and baseline read before the analysis, the sink that
counts during it, and after it the lines, annotations, summaries and the exit code.

The CLI calls `GateSession.open()` with its options (a `PolicyError` or `BaselineError` is
exit 2, before any capture is read), passes `sink` to `analyze()` beside the renderers'
sinks, and calls `finish()` with the report. Nothing here parses options or prints: the
session returns the lines and the CLI writes them. A run with no policy and no baseline (most
runs) loads nothing of the gate but the policy search (discover.py): the policy, baseline and
evaluation modules are imported when a run is gated.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Mapping, NamedTuple, Optional

from analyzer.gate.discover import find_policy
from analyzer.report.model import EXIT_FINDINGS, Report

if TYPE_CHECKING:                       # pragma: no cover
    from analyzer.gate.baseline import Change, Counts
    from analyzer.gate.evaluate import Evaluation, GateResult
    from analyzer.gate.policy import Policy


class Finished(NamedTuple):
    """What the run's gate found, ready to print."""
    gate: Optional["GateResult"]
    changes: List["Change"]
    lines: List[str]                # one line each on stderr
    annotations: List[str]          # GitHub workflow commands (empty elsewhere)
    failed: bool


class GateSession:
    """The policy (when there is one) and the baseline (when asked) of one run."""

    def __init__(self, policy: Optional["Policy"], policy_file: Optional[str],
                 found: bool, baseline: Optional["Counts"], baseline_file: Optional[str],
                 signatures: bool) -> None:
        self.policy = policy
        self.policy_file = policy_file
        #: True when the policy was found rather than named (the CLI says which file).
        self.found = found
        self.baseline = baseline
        self.baseline_file = baseline_file
        self.evaluation: Optional["Evaluation"] = None
        if policy is not None or signatures:
            from analyzer.gate.baseline import Signatures
            from analyzer.gate.evaluate import Evaluation
            from analyzer.gate.policy import empty_policy
            rules = policy or empty_policy()
            self.evaluation = Evaluation(rules, Signatures(rules.examples) if signatures else None)

    @classmethod
    def open(cls, policy: Optional[str], no_policy: bool, baseline: Optional[str],
             write_baseline: Optional[str], cwd: str = ".") -> "GateSession":
        found = False
        if policy is None and not no_policy:
            policy = find_policy(cwd)
            found = policy is not None
            if policy is not None:          # named as a user would: tcpflow-check.toml:7
                policy = os.path.relpath(policy, cwd)
        rules = before = None
        if policy is not None:
            from analyzer.gate.policy import load_policy
            rules = load_policy(policy)
        if baseline is not None:
            from analyzer.gate.baseline import load_baseline
            before = load_baseline(baseline)
        return cls(rules, policy, found, before, baseline,
                   signatures=baseline is not None or write_baseline is not None)

    @property
    def active(self) -> bool:
        """Whether this run is gated at all: a policy, or a baseline to compare with."""
        return self.policy is not None or self.baseline is not None

    @property
    def sink(self) -> Optional["Evaluation"]:
        return self.evaluation

    def finish(self, report: Report, env: Mapping[str, str] = os.environ) -> Finished:
        if self.evaluation is None:     # not gated: nothing to say, nothing to annotate
            return Finished(None, [], [], [], False)
        from analyzer.gate import github
        from analyzer.gate.baseline import compare
        from analyzer.gate.policy import empty_policy
        gate: Optional["GateResult"] = None
        changes: List["Change"] = []
        if self.evaluation is not None:
            result = self.evaluation.finish(report)
            gate = result if self.policy is not None else None
            signatures = self.evaluation.signatures
            if signatures is not None:
                signatures.finish(report)
                if self.baseline is not None:
                    settings = (self.policy or empty_policy()).baseline
                    changes = compare(self.baseline, signatures, settings,
                                      self.baseline_file or "")
        violations = gate.violations if gate else []
        warnings = gate.warnings if gate else []
        lines = ([o.message for o in violations] + [c.message for c in changes if c.regression]
                 + [o.message for o in warnings] + [c.message for c in changes if not c.regression])
        failed = bool(violations) or any(c.regression for c in changes)
        commands = github.workflow_commands(gate, changes, self.policy_file, env) \
            if github.in_github_actions(env) else []
        return Finished(gate, changes, lines, commands, failed)

    def baseline_document(self, report: Report) -> dict:
        assert self.evaluation is not None and self.evaluation.signatures is not None
        return self.evaluation.signatures.document(report)

    def summary(self, report: Report, finished: Finished, exit_code: int) -> str:
        from analyzer.gate import github
        return github.summary_markdown(report, finished.gate, finished.changes,
                                       self.baseline_file, exit_code)


def exit_code(base: int, finished: Finished) -> int:
    """The run's exit code: the report's (0, 1 for --fail-on, 3 for an unreadable file),
    raised to 1 when the gate failed; 3 stays 3."""
    return EXIT_FINDINGS if finished.failed and base == 0 else base


__all__ = ["GateSession", "Finished", "exit_code"]
