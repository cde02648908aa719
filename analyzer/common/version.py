"""The tool's name and version, for every stage that writes them (reports, conn.log headers)."""

__version__ = "0.1.0"
TOOL_NAME = "tcpflow-check"
