"""Types of the compiled build's C module analyzer/common/_join.c (common/join.py in Python)."""

from typing import Any, List, Optional, Tuple, Type, TypeVar

_T = TypeVar("_T", bound=tuple)


def concat(*pieces: str) -> str: ...


def plain(s: str) -> bool: ...


def text_block(sep: str, keys: List[int],
               lines: List[str]) -> Optional[Tuple[bytes, bytes, bytes]]: ...


def merge_lines(sources: List[List[Any]], steps: List[List[Any]],
                first: bool, between: Optional[bytes] = None) -> Tuple[bytes, int]: ...


def subtuple(cls: Type[_T], *items: Any) -> _T: ...
