"""One line on stderr, the command's voice for warnings and errors."""

from __future__ import annotations

from typing import Any

import click

from analyzer.common.version import TOOL_NAME


def warn(message: str) -> None:
    """`tcpflow-check: MESSAGE` on stderr: one line (names in it are escaped by the caller)."""
    click.echo("%s: %s" % (TOOL_NAME, message), err=True)


def read_out(report: Any, sink: Any, inputs: int) -> bool:
    """The run's results into its report (`sink`, when the renderer kept its own), its
    warnings and errors said on stderr; True when none of the `inputs` could be read."""
    if sink is not None:
        report.connections = sink
    for message in report.capture.warnings:
        warn("warning: " + message)
    for message in report.capture.errors:
        warn("error: " + message)
    return bool(report.capture.errors) and len(report.capture.errors) == inputs
