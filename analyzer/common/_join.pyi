"""Types of the compiled build's C module analyzer/common/_join.c (common/join.py in Python)."""

from typing import Any, List, Optional, Tuple


def concat(*pieces: str) -> str: ...


def plain(s: str) -> bool: ...


def text_block(sep: str, keys: List[int],
               lines: List[str]) -> Optional[Tuple[bytes, bytes, bytes]]: ...


def merge_lines(sources: List[List[Any]], steps: List[List[Any]],
                first: bool) -> Tuple[bytes, int]: ...
