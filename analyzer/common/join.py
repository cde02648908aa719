"""`concat(*pieces)` (`"".join(pieces)`), `plain(s)` (ASCII text JSON does not escape) and
`text_block(sep, keys, lines)` (a block of lines as report/runs.py spills it: keys, ends and
ASCII text, or None), in Python: what the
pure-Python build runs. The compiled build has them in C (analyzer/common/_join.c, where the
reasons are; both give the same results: tests/test_json_out.py); render/json_line.py and
report/runs.py take the C ones when there are."""

from __future__ import annotations

import re
import struct
from typing import Final, List, Optional, Tuple

#: What the json module's encoder escapes in a string (ensure_ascii=False).
_ESCAPED: Final = re.compile(r'[\x00-\x1f"\\]')


def concat(*pieces: str) -> str:
    return "".join(pieces)


def plain(s: str) -> bool:
    return s.isascii() and _ESCAPED.search(s) is None


def text_block(sep: str, keys: List[int],
               lines: List[str]) -> Optional[Tuple[bytes, bytes, bytes]]:
    if len(keys) != len(lines):
        raise ValueError("text_block: as many keys as lines")
    if not sep.isascii() or not all(line.isascii() for line in lines):
        return None
    try:
        packed = struct.pack("=%dq" % len(keys), *keys)
    except struct.error:                # keys beyond 64 bits
        return None
    ends = []
    at = -len(sep)
    for line in lines:
        at += len(sep) + len(line)
        ends.append(at)
    return packed, struct.pack("=%dq" % len(ends), *ends), sep.join(lines).encode("ascii")
