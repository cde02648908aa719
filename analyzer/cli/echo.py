"""One line on stderr, the command's voice for warnings and errors."""

from __future__ import annotations

import click

from analyzer.common.version import TOOL_NAME


def warn(message: str) -> None:
    """`tcpflow-check: MESSAGE` on stderr: one line (names in it are escaped by the caller)."""
    click.echo("%s: %s" % (TOOL_NAME, message), err=True)
