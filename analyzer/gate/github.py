"""What a CI page shows: GitHub workflow annotations and the Markdown step summary.

Under GitHub Actions (`GITHUB_ACTIONS=true`) every violation is also printed as a workflow
command, `::error file=…,line=…,title=…::message` (the runner reads them from stderr as from
stdout), pointing at the policy line that was broken, and the Markdown summary is appended to
the file `$GITHUB_STEP_SUMMARY` names; elsewhere `--summary-md FILE` writes the same Markdown.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

from analyzer.common.version import TOOL_NAME
from analyzer.gate.baseline import Change
from analyzer.gate.evaluate import GateResult, Outcome
from analyzer.report.model import Report


def in_github_actions(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    """Escaping of a workflow command's message (actions/toolkit's escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """Escaping of a workflow command's property value (escapeProperty)."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, title: str, file: Optional[str] = None,
               line: Optional[int] = None) -> str:
    """One workflow command: `::error file=x,line=3,title=t::message`."""
    props: Dict[str, str] = {}
    if file:
        props["file"] = file
        if line is not None:
            props["line"] = str(line)
    props["title"] = title
    return "::%s %s::%s" % (level, ",".join("%s=%s" % (k, _property(v)) for k, v in props.items()),
                            _data(message))


def workflow_commands(result: Optional[GateResult], changes: List[Change], policy_file: Optional[str],
                env: Mapping[str, str] = os.environ) -> List[str]:
    """The workflow commands for a run: errors for violations and regressions, warnings for
    rules whose action is `warn`. File paths are made relative to the workspace."""
    file = _relative(policy_file, env) if policy_file else None
    out = []
    if result is not None:
        for o in result.violations + result.warnings:
            out.append(annotation("error" if o.action == "fail" else "warning", o.message,
                                  "%s: %s" % (TOOL_NAME, o.name), file if o.line else None,
                                  o.line))
    for c in changes:
        if c.regression:
            out.append(annotation("error", c.message, "%s: baseline %s %s on %s"
                                  % (TOOL_NAME, c.kind, c.key, c.server)))
    return out


def _relative(path: str, env: Mapping[str, str]) -> str:
    workspace = env.get("GITHUB_WORKSPACE")
    full = os.path.abspath(path)
    if workspace and full.startswith(os.path.abspath(workspace) + os.sep):
        return os.path.relpath(full, workspace)
    return path


# -- Markdown ---------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return "`%s`" % text.replace("`", "'") if text else ""


def _row(o: Outcome) -> str:
    mark = "✅" if o.passed else ("❌" if o.action == "fail" else "⚠️")
    limit = getattr(o.rule, "limit", None)
    streams = ", ".join(map(str, o.examples))
    return "| %s | %s | %d | %s | %s | %s |" % (
        mark, _code(_cell(o.name)), o.counted, _cell(limit.text) if limit else "",
        streams, _cell(o.where))


def summary_markdown(report: Report, result: Optional[GateResult], changes: List[Change],
                     baseline_source: Optional[str] = None,
                     exit_code: Optional[int] = None) -> str:
    """The step summary: the verdict, the capture, a table of rules, allow-list use and the
    baseline comparison."""
    cap, summary = report.capture, report.summary
    violations = len(result.violations) if result else 0
    regressions = sum(1 for c in changes if c.regression)
    failed = violations or regressions
    head = "❌ failed" if failed else "✅ passed"
    parts = []
    if result is not None:
        parts.append("%d of %d rules violated" % (violations, len(result.outcomes)))
    if baseline_source is not None:
        parts.append("%d baseline regressions" % regressions)
    lines = ["## %s: %s%s" % (TOOL_NAME, head, " — " + ", ".join(parts) if parts else ""), ""]
    files = ", ".join(_code(f) for f in cap.files)
    lines.append("%s: %d packets, %d connections, %d needing attention%s." % (
        files, cap.packets, summary.connections, summary.attention,
        ", **truncated**" if cap.truncated else ""))
    if exit_code is not None:
        lines[-1] += " Exit code %d." % exit_code
    if result is not None and result.outcomes:
        lines += ["", "| | rule | count | limit | example streams | policy |",
                  "|---|---|---:|---|---|---|"]
        lines += [_row(o) for o in result.outcomes]
    if result is not None and result.allowed:
        lines += ["", "Allowed:", ""]
        for use in result.allowed:
            lines.append("- %s: %d connection%s — %s" % (
                _code(use.allow.scope.text), use.connections,
                "" if use.connections == 1 else "s", _cell(use.allow.reason)))
    if baseline_source is not None:
        lines += ["", "Baseline %s:" % _code(baseline_source), ""]
        if not changes:
            lines.append("no change in findings or CLOSE_WAIT per server.")
        else:
            lines += ["| | server | signature | baseline | now | change |",
                      "|---|---|---|---:|---:|---|"]
            for c in changes:
                lines.append("| %s | %s | %s | %d | %d | %s |" % (
                    "❌" if c.regression else "ℹ️", _code(c.server), _code(c.key), c.before,
                    c.now, c.kind))
    return "\n".join(lines) + "\n"
