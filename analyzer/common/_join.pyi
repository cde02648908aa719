"""Types of the compiled build's C module analyzer/common/_join.c (common/join.py in Python)."""

from typing import List, Optional


def concat(*pieces: str) -> str: ...


def ascii_join(sep: str, lines: List[str]) -> Optional[bytes]: ...
