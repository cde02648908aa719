"""tcpflow-check: per-connection TCP handshake, teardown and lingering-state verdicts.

(The public face is written below, once the stage packages are in place.)
"""

from analyzer.common.version import TOOL_NAME, __version__


def build() -> str:
    """How this installation runs the analysis: "compiled" (the mypyc build setup.py makes
    when it can) or "pure Python" (same results, about five times slower)."""
    from analyzer.tcp import conn
    return "pure Python" if conn.__file__.endswith(".py") else "compiled"
