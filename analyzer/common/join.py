"""`concat(*pieces)` (`"".join(pieces)`) and `ascii_join(sep, lines)` (the lines joined as
ASCII bytes, or None when they are not all ASCII), in Python: what the pure-Python build runs.
The compiled build has them in C (analyzer/common/_join.c, where the reasons are; both give
the same results: tests/test_json_out.py); render/json_line.py and report/runs.py take the C
ones when there are."""

from __future__ import annotations

from typing import List, Optional


def concat(*pieces: str) -> str:
    return "".join(pieces)


def ascii_join(sep: str, lines: List[str]) -> Optional[bytes]:
    if not sep.isascii() or not all(line.isascii() for line in lines):
        return None
    return sep.join(lines).encode("ascii")
