"""`concat(*pieces)` (`"".join(pieces)`), `plain(s)` (ASCII text JSON does not escape),
`text_block(sep, keys, lines)` (a block of lines as report/runs.py spills it: keys, ends and
ASCII text, or None), `merge_lines(sources, steps, first[, between])` (a parallel run's JSON lines,
merged by key and numbered; with `between`, lines merged as they are, it between two) and `subtuple(cls, *items)` (`tuple.__new__(cls, items)`: a
NamedTuple made), in Python: what the pure-Python build runs. The compiled build has them in
C (analyzer/common/_join.c, where the reasons are; both give the same results:
tests/test_json_out.py); render/json_line.py, report/runs.py, render/json_out.py and
judge/result.py take the C ones when there are."""

from __future__ import annotations

import re
import struct
from typing import Any, Final, List, Optional, Tuple, Type, TypeVar

_T = TypeVar("_T", bound=tuple)

#: What the json module's encoder escapes in a string (ensure_ascii=False).
_ESCAPED: Final = re.compile(r'[\x00-\x1f"\\]')


def concat(*pieces: str) -> str:
    return "".join(pieces)


def subtuple(cls: Type[_T], *items: Any) -> _T:
    return tuple.__new__(cls, items)


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


#: Bytes of lines `merge_lines` makes at most (a line more if one passes it).
MERGE_BYTES: Final = 1 << 16
_FIRST_ID: Final = b'\n  {"id": '
_NEXT_ID: Final = b',\n  {"id": '


def merge_lines(sources: List[List[Any]], steps: List[List[Any]],
                first: bool, between: Optional[bytes] = None) -> Tuple[bytes, int]:
    pieces: List[Any] = []
    size = 0
    done = -1
    while sources and done < 0 and size < MERGE_BYTES:
        best = 0
        low = sources[0][0][sources[0][4]]
        bound = low
        alone = True
        for s in range(1, len(sources)):
            key = sources[s][0][sources[s][4]]
            if key < low:
                bound, low, best = low, key, s
            elif alone or key < bound:
                bound = key
            alone = False
        keys, ends, data, sep, i = sources[best]
        key = low
        while True:
            start = 0 if i == 0 else ends[i - 1] + sep
            stop = ends[i]
            if start < 0 or stop < start or stop > len(data):
                raise ValueError("merge_lines: a line beyond its block's data")
            if between is not None:         # as they are, `between` between two
                head = b"" if first else between
                first = False
                pieces += (head, data[start:stop])
                size += len(head) + stop - start
            else:
                n = 0
                for step in steps:
                    numbers, j = step
                    if j > 0 and numbers[j - 1] >= key:
                        j = 0               # (keys not ascending: counted again)
                    while j < len(numbers) and numbers[j] < key:
                        j += 1
                    step[1] = j
                    n += j
                head = _FIRST_ID if first else _NEXT_ID
                first = False
                number = b"%d" % n
                pieces += (head, number, data[start:stop])
                size += len(head) + len(number) + stop - start
            i += 1
            if i >= len(keys):
                done = best
                break
            key = keys[i]
            if (not alone and key > bound) or size >= MERGE_BYTES:
                break
        sources[best][4] = i
    return b"".join(pieces), done
