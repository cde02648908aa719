"""A policy applied to a run: counts per rule as results stream past, then pass or fail.

`Evaluation.add` sees every connection's result once, as the analysis finishes it (the
results need not be kept), and keeps per rule a count, the base a rate is a share of and the
first example streams; `finish` adds what only the whole report knows (capture-wide findings,
the capture rules) and returns a `GateResult`. Every outcome carries its one-line message:
the rule's place in the policy, the rule, the count against the limit, example streams.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from analyzer.common.findings import SEVERITY_RANK
from analyzer.gate.baseline import Signatures, keep_lowest
from analyzer.gate.policy import Allow, CaptureCheck, Policy, Rule
from analyzer.gate.rules import NOT_TCP
from analyzer.gate.scope import Scope
from analyzer.judge.result import ConnResult
from analyzer.report.model import Report


class Outcome(NamedTuple):
    """One rule's result."""
    rule: Union[Rule, CaptureCheck]
    name: str                   # "CONNECTION_RESET <= 0 [port 443]", "capture truncated"
    counted: int                # what the rule counts (connections, SYN retransmissions, ...)
    base: int                   # what a rate is a share of
    passed: bool
    action: str                 # "fail", "warn" (what a violation does), "ignore"
    examples: Tuple[int, ...]   # stream ids
    message: str                # the line printed when it did not pass
    details: Tuple[str, ...] = ()   # one line per example stream: its ends and verdicts

    @property
    def where(self) -> str:
        return self.rule.where

    @property
    def line(self) -> Optional[int]:
        return self.rule.line


class AllowUse(NamedTuple):
    allow: Allow
    connections: int
    examples: Tuple[int, ...]


class GateResult(NamedTuple):
    outcomes: List[Outcome]
    allowed: List[AllowUse]

    @property
    def violations(self) -> List[Outcome]:
        return [o for o in self.outcomes if not o.passed and o.action == "fail"]

    @property
    def warnings(self) -> List[Outcome]:
        return [o for o in self.outcomes if not o.passed and o.action == "warn"]

    @property
    def failed(self) -> bool:
        return bool(self.violations)


class _Tally:
    __slots__ = ("rule", "measure", "packets", "key", "count", "base", "hits", "examples",
                 "wide")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.measure = rule.subject.measure
        self.packets = rule.subject.rate_of == "packets"
        self.key = rule.subject.key
        self.count = 0
        self.base = 0
        self.hits = 0
        self.examples: List[int] = []
        self.wide: List[str] = []           # messages of the capture-wide findings counted


class Evaluation:
    """The policy's counters; `add` each result, then `finish` with the report."""

    def __init__(self, policy: Policy, signatures: Optional[Signatures] = None) -> None:
        self.policy = policy
        #: The baseline signatures, counted from the same results (not exempt ones).
        self.signatures = signatures
        self.count = 0
        self.limit = policy.examples
        groups: Dict[Optional[str], Tuple[Optional[Scope], List[_Tally]]] = {}
        self.tallies: List[_Tally] = []
        for rule in policy.rules:
            text = None if rule.scope is None else rule.scope.text
            tally = _Tally(rule)
            groups.setdefault(text, (rule.scope, []))[1].append(tally)
            self.tallies.append(tally)
        self.groups = list(groups.values())
        self.allow_counts = [0] * len(policy.allows)
        self.allow_examples: List[List[int]] = [[] for _ in policy.allows]
        #: stream id -> one line about it, for the example streams (pruned as they change).
        self.described: Dict[int, str] = {}
        self.prune_at = 4 * (len(self.tallies) + 1) * max(self.limit, 1)

    def add(self, r: ConnResult) -> None:
        self.count += 1
        exempt: frozenset = frozenset()
        for i, allow in enumerate(self.policy.allows):
            if allow.scope.accepts(r):
                self.allow_counts[i] += 1
                keep_lowest(self.allow_examples[i], r.id, self.limit)
                if allow.keys is None:
                    return
                exempt = exempt | allow.keys
        if self.signatures is not None:
            self.signatures.add(r, exempt)
        packets = r.packets[0] + r.packets[1]
        for scope, tallies in self.groups:
            if scope is not None and not scope.accepts(r):
                continue
            for t in tallies:
                if exempt and t.key in exempt:
                    continue
                t.base += packets if t.packets else 1
                n = t.measure(r)
                if n:
                    t.count += n
                    t.hits += 1
                    if keep_lowest(t.examples, r.id, self.limit) and r.id not in self.described:
                        self.described[r.id] = describe(r)
                        if len(self.described) > self.prune_at:
                            self._prune()

    def _prune(self) -> None:
        """Forget the descriptions of streams no longer among any rule's examples."""
        wanted = {i for t in self.tallies for i in t.examples}
        self.described = {i: d for i, d in self.described.items() if i in wanted}

    def __iter__(self) -> Iterator[ConnResult]:       # a sink that keeps no result
        return iter(())

    def __len__(self) -> int:
        return self.count

    def finish(self, report: Report) -> GateResult:
        for f in report.findings:                  # capture-wide: about no one connection
            for t in self.tallies:
                if t.rule.scope is None and _counts_finding(t, f.code, f.severity):
                    t.count += 1
                    t.wide.append(f.message)
        outcomes = [_rule_outcome(t)._replace(details=tuple(
            self.described[i] for i in t.examples if i in self.described))
            for t in self.tallies]
        outcomes += [_capture_outcome(c, report) for c in self.policy.capture
                     if c.action != "ignore"]
        allowed = [AllowUse(a, n, tuple(ex)) for a, n, ex in
                   zip(self.policy.allows, self.allow_counts, self.allow_examples)]
        return GateResult(outcomes, allowed)


def describe(r: ConnResult) -> str:
    """One line about a connection: `stream 4: 10.0.0.1:40010 -> 10.0.0.5:5432, handshake
    complete, close reset by resp; CONNECTION_RESET`."""
    close = "no close" if r.close is None else "close " + r.close
    if r.reset_by:
        close += " by " + r.reset_by
    codes = ", ".join(f.code for f in r.findings)
    return "stream %d: %s -> %s, handshake %s, %s%s" % (
        r.id, r.orig, r.resp, r.handshake, close, "; " + codes if codes else "")


def _counts_finding(t: _Tally, code: str, severity: str) -> bool:
    kind = t.rule.subject.kind
    if kind == "finding":
        return t.key == code
    if kind == "severity":
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[t.key.split(".", 1)[1]]
    return False


def _plural(n: int, unit: str) -> str:
    if n == 1 and unit.endswith("s"):
        unit = unit[:-1]
    return "%d %s" % (n, unit)


def _streams(examples: List[int], hits: int) -> str:
    if not examples:
        return ""
    more = hits - len(examples)
    text = "stream%s %s" % ("s" if len(examples) > 1 else "", ", ".join(map(str, examples)))
    return "; %s%s" % (text, " and %d more" % more if more > 0 else "")


def _prefix(action: str) -> str:
    return "policy: " if action == "fail" else "policy warning: "


def _rule_outcome(t: _Tally) -> Outcome:
    rule, subj, lim = t.rule, t.rule.subject, t.rule.limit
    passed = lim.holds(t.count, t.base)
    if lim.rate:
        amount = "%d of %s (%.3g%%)" % (t.count, _plural(t.base, subj.rate_of),
                                        100.0 * t.count / t.base if t.base else 0.0)
    elif t.wide:
        amount = "%s and %d capture-wide" % (_plural(t.count - len(t.wide), subj.unit),
                                             len(t.wide))
    else:
        amount = _plural(t.count, subj.unit)
    scope = "" if rule.scope is None else " [%s]" % rule.scope.text
    wide = "; " + "; ".join(t.wide[:1]) if t.wide else ""    # the first names its server
    message = "%s%s: %s%s: %s, limit %s%s%s%s" % (
        _prefix(rule.action), rule.where, subj.key, scope, amount, lim.text,
        _streams(t.examples, t.hits), wide, " (%s)" % rule.reason if rule.reason else "")
    return Outcome(rule, rule.name, t.count, t.base, passed, rule.action, tuple(t.examples),
                   message)


def _capture_outcome(c: CaptureCheck, report: Report) -> Outcome:
    cap = report.capture
    base = cap.packets
    if c.key == "truncated":
        count, what = int(cap.truncated), "a file ends inside a record or has a corrupt record"
    elif c.key == "unreadable":
        count = len(cap.errors)
        what = "%s could not be read" % _plural(count, "files")
    elif c.key == "empty":
        count = int(report.summary.connections == 0)
        what = "no TCP connection in %s" % _plural(cap.packets, "frames")
    elif c.key == "evicted":
        count = cap.evicted_early
        what = "%s finalized before they ended" % _plural(count, "connections")
    else:                                           # skipped
        count = sum(n for reason, n in cap.skipped.items() if reason not in NOT_TCP)
        reasons = ", ".join("%s %d" % kv for kv in sorted(cap.skipped.items())
                            if kv[0] not in NOT_TCP)
        what = "%d of %s skipped (%.3g%%)%s" % (count, _plural(base, "frames"),
                                                100.0 * count / base if base else 0.0,
                                                ": " + reasons if reasons else "")
    if c.limit is not None:
        passed = c.limit.holds(count, base)
        what += ", limit %s" % c.limit.text
    else:
        passed = count == 0
    message = "%s%s: capture %s: %s%s" % (_prefix(c.action), c.where, c.key, what,
                                          " (%s)" % c.reason if c.reason else "")
    name = "capture %s" % c.key + ("" if c.limit is None else " %s" % c.limit.text)
    return Outcome(c, name, count, base, passed, c.action, (), message)
