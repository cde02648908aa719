"""What a policy rule can count, as data: the rule keys, their limits, the capture rules.

Every rule key a policy may name is defined here, with one sentence and an example each, and
docs/ci.md's policy reference is drawn from these tables (`analyzer.docgen`), so the document
cannot drift from what the parser accepts. A key names a *subject*: a function from one
connection's result to a number (1 or 0 for "this connection has it", a count for counters),
and the base a rate (`N%`) is a share of.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Dict, Final, List, NamedTuple, Tuple

from analyzer.common.findings import CATALOGUE, SEVERITY_RANK
from analyzer.judge.result import ANALYSIS_FIELDS, ConnResult
from analyzer.judge.verdicts import CLOSES, HANDSHAKES

NS: Final = 1_000_000_000


class Subject(NamedTuple):
    """What one rule key counts."""
    key: str                                # canonical spelling, e.g. "CLOSE_WAIT > 5s"
    kind: str                               # a RuleKind name
    measure: Callable[[ConnResult], int]    # this connection's contribution
    unit: str                               # what the count counts, plural ("connections")
    rate_of: str                            # "connections", "packets", or "" (no rate)


class RuleKind(NamedTuple):
    """One family of rule keys, for the parser and the reference document."""
    name: str
    syntax: str
    example: str
    sentence: str
    rate_of: str


RULE_KINDS: Final = [
    RuleKind("finding", "`CODE`", 'CONNECTION_RESET = 0',
             "Connections with this finding (any code of docs/findings.md). Capture-wide "
             "findings (`HALF_OPEN_FLOOD`) count once each in rules without a scope.",
             "connections"),
    RuleKind("severity", "`severity.LEVEL`", 'severity.error = 0',
             "Connections whose worst finding is LEVEL (`info`, `warning`, `error`) or worse, "
             "as `--fail-on LEVEL` counts them.", "connections"),
    RuleKind("handshake", "`handshake.VALUE`", 'handshake.refused = 0',
             "Connections whose `handshake` verdict is VALUE (docs/verdicts.md).",
             "connections"),
    RuleKind("close", "`close.VALUE`", 'close.reset = "<= 2"',
             "Connections whose `close` verdict is VALUE (docs/verdicts.md).", "connections"),
    RuleKind("reset_by", "`reset_by.SIDE`", 'reset_by.resp = 0',
             "Connections ended (or refused) by a RST from SIDE (`orig` or `resp`).",
             "connections"),
    RuleKind("lingering", "`STATE` or `\"STATE > DURATION\"`", '"CLOSE_WAIT > 5s" = 0',
             "Connections with an endpoint left in STATE (`CLOSE_WAIT`, `TIME_WAIT`) at the "
             "end of the capture, for longer than DURATION when one is given (`500ms`, `5s`, "
             "`2m`).", "connections"),
    RuleKind("connections", "`connections`", 'connections = ">= 1"',
             "Connections in scope: with `>=`, proof that the traffic under test was "
             "recorded at all.", ""),
    RuleKind("syn_retransmissions", "`syn_retransmissions`", 'syn_retransmissions = "<= 2"',
             "SYN retransmissions summed over the connections in scope (a count, no rate).",
             ""),
    RuleKind("analysis", "`analysis.COUNTER`", 'analysis.retransmissions = "<= 0.5%"',
             "A sequence-analysis counter summed over both sides of the connections in scope "
             "(%s); a rate is a share of their packets." % ", ".join(
                 "`%s`" % f for f in ANALYSIS_FIELDS), "packets"),
]

#: Endpoint states a connection can be left in at the end of the capture (`lingering`).
LINGERING_STATES: Final = ("CLOSE_WAIT", "TIME_WAIT")
SIDES: Final = ("orig", "resp")

_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_NS: Final = {"ms": NS // 1000, "s": NS, "m": 60 * NS, "h": 3600 * NS}
_LINGERING: Final = re.compile(r"\s*(\w+)\s*(?:>\s*(.*?))?\s*$")


class RuleError(ValueError):
    """A rule key that names nothing (the message says what was meant, where it can)."""


def subject(key: str) -> Subject:
    """The subject a rule key names; `RuleError` with a suggestion when it names none."""
    if key in CATALOGUE:
        return Subject(key, "finding", _has_code(key), "connections", "connections")
    head, _, tail = key.partition(".")
    if tail:
        if head == "severity" and tail in SEVERITY_RANK:
            rank = SEVERITY_RANK[tail]
            return Subject(key, "severity", lambda r: 1 if r.worst() >= rank else 0,
                           "connections", "connections")
        if head == "handshake" and tail in HANDSHAKES:
            return Subject(key, "handshake", lambda r: 1 if r.handshake == tail else 0,
                           "connections", "connections")
        if head == "close" and tail in CLOSES:
            return Subject(key, "close", lambda r: 1 if r.close == tail else 0,
                           "connections", "connections")
        if head == "reset_by" and tail in SIDES:
            return Subject(key, "reset_by", lambda r: 1 if r.reset_by == tail else 0,
                           "connections", "connections")
        if head == "analysis" and tail in ANALYSIS_FIELDS:
            i = ANALYSIS_FIELDS.index(tail)
            return Subject(key, "analysis", lambda r: r.analysis[0][i] + r.analysis[1][i],
                           tail.replace("_", " "), "packets")
        vocab = _VOCABULARIES.get(head)
        if vocab is not None:
            raise RuleError("unknown %s value %r in %r (one of: %s)"
                            % (head, tail, key, ", ".join(vocab)))
    if key == "connections":
        return Subject(key, "connections", lambda r: 1, "connections", "")
    if key == "syn_retransmissions":
        return Subject(key, "syn_retransmissions", lambda r: r.syn_retransmissions,
                       "SYN retransmissions", "")
    m = _LINGERING.match(key)
    if m and m.group(1) in LINGERING_STATES:
        state, text = m.group(1), m.group(2)
        over = 0 if text is None else duration_ns(text, key)
        canonical = state if text is None else "%s > %s" % (state, text.strip())
        return Subject(canonical, "lingering", _lingers(state, over), "connections",
                       "connections")
    raise RuleError("unknown rule %r%s" % (key, _suggest(key)))


def duration_ns(text: str, key: str = "") -> int:
    """`500ms`, `5s`, `1.5m`, `2h` in nanoseconds."""
    m = _DURATION.match(text)
    if m is None:
        raise RuleError("bad duration %r in %r: write a number and a unit (ms, s, m, h), "
                        "e.g. \"CLOSE_WAIT > 5s\"" % (text, key or text))
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def _has_code(code: str) -> Callable[[ConnResult], int]:
    def measure(r: ConnResult) -> int:
        for f in r.findings:
            if f.code == code:
                return 1
        return 0
    return measure


def _lingers(state: str, over_ns: int) -> Callable[[ConnResult], int]:
    def measure(r: ConnResult) -> int:
        for lg in r.lingering:
            if lg.state == state and lg.seconds > over_ns:
                return 1
        return 0
    return measure


_VOCABULARIES: Final[Dict[str, Tuple[str, ...]]] = {
    "severity": tuple(SEVERITY_RANK), "handshake": tuple(HANDSHAKES), "close": tuple(CLOSES),
    "reset_by": SIDES, "analysis": tuple(ANALYSIS_FIELDS),
}


def every_key() -> List[str]:
    """Every rule key without a duration (for suggestions and the reference)."""
    keys = list(CATALOGUE)
    for head, values in _VOCABULARIES.items():
        keys += ["%s.%s" % (head, v) for v in values]
    return keys + list(LINGERING_STATES) + ["connections", "syn_retransmissions"]


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, every_key(), n=1, cutoff=0.7)
    return " (did you mean %s?)" % close[0] if close else ""


def is_prefix(path: str) -> bool:
    """Whether `path` begins a dotted rule key (`handshake` of `handshake.refused`): a TOML
    dotted key arrives as a nested table."""
    return path in _VOCABULARIES


# -- Limits ------------------------------------------------------------------------------

_LIMIT: Final = re.compile(r"\s*(<=|<|>=|>|==)?\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


class Limit(NamedTuple):
    """A bound on a rule's count, or on its rate (a share of the rule's base, in percent)."""
    op: str
    value: float
    rate: bool
    text: str

    def holds(self, count: int, base: int) -> bool:
        x = (100.0 * count / base if base else 0.0) if self.rate else float(count)
        return _OPS[self.op](x, self.value)


_OPS: Final[Dict[str, Callable[[float, float], bool]]] = {
    "<=": lambda x, v: x <= v, "<": lambda x, v: x < v, ">=": lambda x, v: x >= v,
    ">": lambda x, v: x > v, "==": lambda x, v: x == v,
}


def limit(value: object, rate_of: str, key: str) -> Limit:
    """A limit as a policy writes it: `0` (at most none), `"<= 1%"`, `">= 1"`, `"< 3"`."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        hint = ' (write a rate as a string: "%s%%")' % value if isinstance(value, float) else ""
        raise RuleError("the limit of %r must be a count or a string such as \"<= 1%%\", "
                        "not %r%s" % (key, value, hint))
    if isinstance(value, int):
        if value < 0:
            raise RuleError("the limit of %r is negative (%d)" % (key, value))
        return Limit("<=", float(value), False, "<= %d" % value)
    m = _LIMIT.match(value)
    if m is None:
        raise RuleError("bad limit %r for %r: write a count (0, \"<= 2\", \">= 1\") or a "
                        "rate (\"<= 1%%\")" % (value, key))
    op, number, pct = m.group(1) or "<=", float(m.group(2)), m.group(3) == "%"
    if pct and not rate_of:
        raise RuleError("%r takes a count, not a rate (%r)" % (key, value))
    if pct and number > 100:
        raise RuleError("the rate %r of %r is over 100%%" % (value, key))
    if not pct and number != int(number):
        raise RuleError("the count %r of %r is not a whole number" % (value, key))
    shown = ("%g%%" % number) if pct else "%d" % number
    return Limit(op, number, pct, "%s %s" % (op, shown))


# -- Capture rules -----------------------------------------------------------------------

class CaptureRule(NamedTuple):
    """A rule about the capture itself, not its connections (the `[capture]` table)."""
    key: str
    default: str             # the action when the policy does not name it ("fail", "warn", "ignore")
    takes_limit: bool        # True: a limit on a share of frames; False: a condition
    sentence: str
    example: str


CAPTURE_RULES: Final = [
    CaptureRule("truncated", "fail", False,
                "A file ended inside a record, or a record was corrupt: everything after the "
                "damage is missing from the analysis.", 'truncated = "warn"'),
    CaptureRule("unreadable", "fail", False,
                "A file could not be read at all (the run also exits 3).",
                'unreadable = "fail"'),
    CaptureRule("empty", "fail", False,
                "The capture holds no TCP connection: the recording missed the traffic.",
                'empty = "ignore"'),
    CaptureRule("evicted", "warn", False,
                "Connections were finalized before they ended (`--idle-timeout`, or a bound on "
                "memory: finding MEMORY_BOUND): their verdicts are as of that moment.",
                'evicted = "fail"'),
    CaptureRule("skipped", "ignore", True,
                "Frames that may have carried TCP but could not be analysed (cut short by the "
                "snap length, fragments, bad headers, undecoded tunnels: every reason of "
                "docs/skipped.md but `not_ip`, `not_tcp` and `icmp_quoted_tcp`), as a count "
                "or a share of all frames.", 'skipped = "<= 1%"'),
]

#: Skip reasons that say a frame is not a TCP segment, not that one was lost.
NOT_TCP: Final = frozenset({"not_ip", "not_tcp", "icmp_quoted_tcp"})

CAPTURE: Final = {c.key: c for c in CAPTURE_RULES}
ACTIONS: Final = ("fail", "warn", "ignore")
