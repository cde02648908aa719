"""tcpflow-check's pytest plugin (entry point `pytest11`): the `tcpflow_check` fixture.

pytest imports this module in every run of anyone who has tcpflow-check installed, so it
sits outside the `analyzer` package (whose `__init__` imports the whole analysis) and does
nothing when imported: no analysis module, no hook with an effect. The gate is imported only
when a test asks for the fixture.

    def test_failover_leaves_no_broken_connections(tcpflow_check):
        tcpflow_check.assert_capture("tests/recorded/failover.pcap",
                                     policy={"CONNECTION_RESET": 0, "CLOSE_WAIT > 1s": 0})

A broken rule fails the test with the lines the command prints (docs/ci.md); the same
functions are `analyzer.gate.check.assert_capture` and `check_capture` outside pytest.
"""

from __future__ import annotations

import pytest


class CaptureChecker:
    """What the fixture gives a test: `assert_capture`, `check_capture` and `analyze`."""

    def __init__(self) -> None:
        from analyzer import analyze
        from analyzer.gate import check
        self.assert_capture = check.assert_capture
        self.check_capture = check.check_capture
        self.analyze = analyze


@pytest.fixture
def tcpflow_check() -> CaptureChecker:
    """Check recorded captures against a policy: `tcpflow_check.assert_capture(path, policy)`."""
    return CaptureChecker()
