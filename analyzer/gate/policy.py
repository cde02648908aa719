"""A CI policy: what recorded traffic must look like, read from TOML or a dict.

The policy is a table (a `tcpflow-check.toml` file, `[tool.tcpflow-check]` in pyproject.toml,
or the dict a Python caller passes): rule keys at its top level limit the whole capture,
`[scope."…"]` tables hold rules for the connections a scope accepts, `[[allow]]` entries
exempt connections (with a reason), `[capture]` holds the rules about the capture itself and
`[baseline]` the tolerances of a baseline comparison. Rule keys and capture rules are defined
in `rules.py`. Anything the parser does not understand is a `PolicyError` naming its line.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Final, List, NamedTuple, Optional, Tuple

from analyzer.gate.discover import GateError, toml
from analyzer.gate.locate import KeyLines, Path
from analyzer.gate.rules import (ACTIONS, CAPTURE, RuleError, Limit, Subject, is_prefix, limit,
                                 subject)
from analyzer.gate.scope import Scope, ScopeError, compile_scope

PYPROJECT_TABLE: Final = ("tool", "tcpflow-check")
DEFAULT_EXAMPLES: Final = 5
#: Table names of a policy; every other top-level key is a rule key.
SECTIONS: Final = ("capture", "scope", "allow", "baseline", "examples")


class PolicyError(GateError):
    """A policy that cannot be used: `str()` is `FILE:LINE: message`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__("%s: %s" % (where, message))
        self.where = where
        self.message = message


class Rule(NamedTuple):
    """One limit on the connections in a scope (all of them when `scope` is None)."""
    subject: Subject
    limit: Limit
    action: str                  # "fail" or "warn"
    scope: Optional[Scope]
    where: str                   # "tcpflow-check.toml:7", or "policy[scope.port 443.X]"
    line: Optional[int]
    reason: str

    @property
    def name(self) -> str:
        """The rule as a reader recognises it: `CONNECTION_RESET <= 0 [port 443]`."""
        text = "%s %s" % (self.subject.key, self.limit.text)
        return text if self.scope is None else "%s [%s]" % (text, self.scope.text)


class CaptureCheck(NamedTuple):
    """A capture rule as the policy sets it (or its default)."""
    key: str
    action: str
    limit: Optional[Limit]
    where: str
    line: Optional[int]
    reason: str


class Allow(NamedTuple):
    """Connections a scope accepts, exempt from some rules (all when `keys` is None)."""
    scope: Scope
    keys: Optional[frozenset]
    reason: str
    where: str
    line: Optional[int]


class Tolerance(NamedTuple):
    """How much a baseline count may grow: `extra` connections or `percent` of the count."""
    extra: int
    percent: float
    text: str

    def allows(self, before: int, now: int) -> bool:
        return now <= before + max(self.extra, int(-(-before * self.percent // 100)))


class BaselineSettings(NamedTuple):
    severity: str
    tolerance: Tolerance
    tolerances: Dict[str, Tolerance]

    def tolerance_for(self, key: str) -> Tolerance:
        return self.tolerances.get(key, self.tolerance)


class Policy(NamedTuple):
    source: str
    rules: List[Rule]
    capture: List[CaptureCheck]
    allows: List[Allow]
    examples: int
    baseline: BaselineSettings


# -- Reading ----------------------------------------------------------------------------

def load_policy(path: str) -> Policy:
    """The policy in a file: a tcpflow-check.toml, or a pyproject.toml's [tool.tcpflow-check]."""
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PolicyError(name, "cannot read the policy: %s" % (exc.strerror or exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(name, "not UTF-8 text (byte %d)" % exc.start) from None
    tomllib = toml()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(name, exc) from None
    prefix: Path = ()
    if os.path.basename(name) == "pyproject.toml":
        prefix = PYPROJECT_TABLE
        doc = doc.get("tool", {}).get("tcpflow-check")
        if not isinstance(doc, dict):
            raise PolicyError(name, "no [tool.tcpflow-check] table")
    return parse_policy(doc, name, KeyLines(text), prefix)


def _syntax_error(name: str, exc: Exception) -> PolicyError:
    message = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if m:
        detail = message[:m.start()].strip()
        return PolicyError("%s:%s" % (name, m.group(1)),
                           "not valid TOML: %s (column %s)" % (detail, m.group(2)))
    return PolicyError(name, "not valid TOML: %s" % message)


# -- Parsing ----------------------------------------------------------------------------

class _Parser:
    def __init__(self, source: str, lines: Optional[KeyLines], prefix: Path) -> None:
        self.source = source
        self.lines = lines
        self.prefix = prefix

    def where(self, path: Path) -> Tuple[str, Optional[int]]:
        if self.lines is not None:
            line = self.lines.line(self.prefix + path)
            if line is not None:
                return "%s:%d" % (self.source, line), line
            return self.source, None
        return "%s[%s]" % (self.source, ".".join(str(p) for p in path)), None

    def error(self, path: Path, message: str) -> PolicyError:
        return PolicyError(self.where(path)[0], message)

    def rules(self, table: Dict[str, Any], path: Path, scope: Optional[Scope]) -> List[Rule]:
        out: List[Rule] = []
        for key, parts, value in _flatten(table):
            at = path + parts
            try:
                subj = subject(key)
                action, reason, raw = "fail", "", value
                if isinstance(value, dict):
                    action, reason, raw = self.spec(value, at, ("fail", "warn"), needs_limit=True)
                lim = limit(raw, subj.rate_of, key)
            except RuleError as exc:
                raise self.error(at, str(exc)) from None
            where, line = self.where(at)
            out.append(Rule(subj, lim, action, scope, where, line, reason))
        return out

    def spec(self, value: Dict[str, Any], at: Path, actions: Tuple[str, ...],
             needs_limit: bool) -> Tuple[str, str, Any]:
        """`{limit = ..., action = "warn", reason = "..."}`."""
        unknown = sorted(set(value) - {"limit", "action", "reason"})
        if unknown:
            raise self.error(at + (unknown[0],), "unknown field %r (a rule table has limit, "
                             "action and reason)" % unknown[0])
        action = value.get("action", "fail")
        if action not in actions:
            raise self.error(at + ("action",), "action must be one of %s, not %r"
                             % (", ".join(actions), action))
        reason = value.get("reason", "")
        if not isinstance(reason, str):
            raise self.error(at + ("reason",), "reason must be a string")
        if needs_limit and "limit" not in value:
            raise self.error(at, "a rule table needs a limit")
        return action, reason, value.get("limit")

    def capture(self, table: Any) -> List[CaptureCheck]:
        if not isinstance(table, dict):
            raise self.error(("capture",), "capture must be a table")
        for key in table:
            if key not in CAPTURE:
                raise self.error(("capture", key), "unknown capture rule %r (one of: %s)"
                                 % (key, ", ".join(CAPTURE)))
        out = []
        for rule in CAPTURE.values():
            at: Path = ("capture", rule.key)
            where, line = self.where(at if rule.key in table else ("capture",))
            value = table.get(rule.key, rule.default)
            action, reason, lim = "fail", "", None
            if isinstance(value, dict):
                action, reason, raw = self.spec(value, at, ACTIONS, needs_limit=rule.takes_limit)
                value = raw if rule.takes_limit else action
            if rule.takes_limit:
                if value == "ignore":
                    action = "ignore"
                else:
                    try:
                        lim = limit(value, "frames", rule.key)
                    except RuleError as exc:
                        raise self.error(at, str(exc)) from None
            elif value in ACTIONS:
                action = value
            else:
                raise self.error(at, "%s takes one of %s, not %r"
                                 % (rule.key, ", ".join(ACTIONS), value))
            out.append(CaptureCheck(rule.key, action, lim, where, line, reason))
        return out

    def scopes(self, table: Any) -> List[Rule]:
        if not isinstance(table, dict):
            raise self.error(("scope",), 'scope must be a table of scopes: [scope."port 443"]')
        out: List[Rule] = []
        for text, rules in table.items():
            scope = self.scope(text, ("scope", text))
            if not isinstance(rules, dict) or not rules:
                raise self.error(("scope", text), "the scope %r needs a table of rules" % text)
            out += self.rules(rules, ("scope", text), scope)
        return out

    def scope(self, text: Any, at: Path) -> Scope:
        try:
            return compile_scope(text)
        except ScopeError as exc:
            where = "" if exc.column is None else " (at column %d of the scope)" % (exc.column + 1)
            raise self.error(at, "%s%s" % (exc, where)) from None

    def allows(self, entries: Any) -> List[Allow]:
        if not isinstance(entries, list):
            raise self.error(("allow",), "allow must be an array of tables: [[allow]]")
        out = []
        for i, entry in enumerate(entries):
            at: Path = ("allow", i)
            if not isinstance(entry, dict):
                raise self.error(at, "an allow entry is a table with match and reason")
            unknown = sorted(set(entry) - {"match", "reason", "rules"})
            if unknown:
                raise self.error(at + (unknown[0],), "unknown field %r in an allow entry "
                                 "(match, reason, rules)" % unknown[0])
            if "match" not in entry:
                raise self.error(at, "an allow entry needs match (the connections it exempts)")
            reason = entry.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise self.error(at, "an allow entry needs a reason (why these connections "
                                 "may break the rules)")
            keys = None
            if "rules" in entry:
                names = entry["rules"]
                if not isinstance(names, list) or not all(isinstance(k, str) for k in names):
                    raise self.error(at + ("rules",), "rules must be a list of rule keys")
                try:
                    keys = frozenset(subject(k).key for k in names)
                except RuleError as exc:
                    raise self.error(at + ("rules",), str(exc)) from None
            where, line = self.where(at)
            out.append(Allow(self.scope(entry["match"], at + ("match",)), keys, reason.strip(),
                             where, line))
        return out

    def baseline(self, table: Any) -> BaselineSettings:
        if not isinstance(table, dict):
            raise self.error(("baseline",), "baseline must be a table")
        unknown = sorted(set(table) - {"severity", "tolerance", "tolerances"})
        if unknown:
            raise self.error(("baseline", unknown[0]), "unknown field %r in [baseline] "
                             "(severity, tolerance, tolerances)" % unknown[0])
        severity = table.get("severity", "warning")
        if severity not in ("info", "warning", "error"):
            raise self.error(("baseline", "severity"),
                             "severity must be info, warning or error, not %r" % (severity,))
        default = self.tolerance(table.get("tolerance", 0), ("baseline", "tolerance"))
        per: Dict[str, Tolerance] = {}
        extra = table.get("tolerances", {})
        if not isinstance(extra, dict):
            raise self.error(("baseline", "tolerances"), "tolerances must be a table")
        for key, value in extra.items():
            at: Path = ("baseline", "tolerances", key)
            try:
                name = subject(key).key
            except RuleError as exc:
                raise self.error(at, str(exc)) from None
            per[name] = self.tolerance(value, at)
        return BaselineSettings(severity, default, per)

    def tolerance(self, value: Any, at: Path) -> Tolerance:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return Tolerance(value, 0.0, "+%d" % value)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*\+?(\d+(?:\.\d+)?)\s*%\s*", value)
            if m:
                return Tolerance(0, float(m.group(1)), "+%s%%" % m.group(1))
        raise self.error(at, "a tolerance is a count of extra connections (2) or a share of "
                         "the baseline's count (\"10%%\"), not %r" % (value,))


def _flatten(table: Dict[str, Any], path: Path = ()):
    """Rule keys with their key paths and values: TOML's dotted keys (`handshake.refused = 0`)
    arrive nested and are joined again; a rule table (`X = {limit = 0}`) is a value."""
    for key, value in table.items():
        parts = path + (key,)
        full = ".".join(str(p) for p in parts)
        if isinstance(value, dict) and is_prefix(full):
            yield from _flatten(value, parts)
        else:
            yield full, parts, value


def parse_policy(doc: Dict[str, Any], source: str = "policy", lines: Optional[KeyLines] = None,
                 prefix: Path = ()) -> Policy:
    """The policy a parsed TOML table (or a Python dict) describes."""
    if not isinstance(doc, dict):
        raise PolicyError(source, "a policy is a table (a dict), not %s" % type(doc).__name__)
    p = _Parser(source, lines, prefix)
    examples = doc.get("examples", DEFAULT_EXAMPLES)
    if isinstance(examples, bool) or not isinstance(examples, int) or not 0 <= examples <= 1000:
        raise p.error(("examples",), "examples must be a count from 0 to 1000, not %r"
                      % (examples,))
    rules = p.rules({k: v for k, v in doc.items() if k not in SECTIONS}, (), None)
    rules += p.scopes(doc["scope"]) if "scope" in doc else []
    capture = p.capture(doc.get("capture", {}))
    allows = p.allows(doc["allow"]) if "allow" in doc else []
    baseline = p.baseline(doc.get("baseline", {}))
    return Policy(source, rules, capture, allows, examples, baseline)


def empty_policy() -> Policy:
    """No rules; the capture rules at their defaults (what `--fail-on` alone runs with)."""
    return parse_policy({}, "defaults")
