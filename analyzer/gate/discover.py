"""Where a run's policy is, when none is named: found before anything else of the gate is
loaded, so that a run with no policy (most runs) pays for a directory walk and no more.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Final, Optional

class GateError(ValueError):
    """A policy or a baseline that cannot be used (one line, exit 2): the base of
    `PolicyError` and `BaselineError`, so that a caller can catch both without loading them."""


#: The policy file names looked for, nearest directory first (`find_policy`).
POLICY_FILE: Final = "tcpflow-check.toml"


def find_policy(start: str) -> Optional[str]:
    """The policy nearest `start`: a tcpflow-check.toml, or a pyproject.toml with a
    [tool.tcpflow-check] table, in `start` or a directory above it, up to the repository's
    root (the directory holding `.git`)."""
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, POLICY_FILE)
        if os.path.isfile(candidate):
            return candidate
        pyproject = os.path.join(here, "pyproject.toml")
        if os.path.isfile(pyproject) and _has_table(pyproject):
            return pyproject
        parent = os.path.dirname(here)
        if parent == here or os.path.exists(os.path.join(here, ".git")):
            return None
        here = parent


def toml() -> ModuleType:
    """The TOML reader (`tomllib`, or `tomli` before Python 3.11), imported when a policy
    file is read: a run without one never imports it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:                                               # pragma: no cover - Python 3.9, 3.10
        import tomli as tomllib
    return tomllib


def _has_table(pyproject: str) -> bool:
    try:
        with open(pyproject, "rb") as fh:
            return "tcpflow-check" in toml().load(fh).get("tool", {})
    except (OSError, ValueError):
        return True     # unreadable or broken: load_policy says what is wrong with it


__all__ = ["GateError", "POLICY_FILE", "find_policy", "toml"]
