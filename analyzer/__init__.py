"""tcpflow-check: per-connection TCP handshake, teardown and lingering-state verdicts."""

__version__ = "0.1.0"
TOOL_NAME = "tcpflow-check"


def build() -> str:
    """How this installation runs the analysis: "compiled" (the mypyc build setup.py makes
    when it can) or "pure Python" (same results, about five times slower)."""
    from analyzer import conn
    return "pure Python" if conn.__file__.endswith(".py") else "compiled"
