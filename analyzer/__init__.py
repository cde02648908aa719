"""tcpflow-check: per-connection TCP handshake, teardown and lingering-state verdicts."""

__version__ = "0.1.0"
TOOL_NAME = "tcpflow-check"
