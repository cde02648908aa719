"""Line numbers for the keys of a TOML document, so that a policy error can name its line.

`tomllib` says where the text is not TOML, but once parsed, a table is a plain dict without
positions. `KeyLines` scans the source for table headers (`[a."b c"]`, `[[a]]`) and key
lines (`key = ...`, dotted and quoted keys included) and maps each key path to the line that
defines it; a path it cannot place (a key inside a multi-line inline table) takes the line of
the nearest enclosing key it can.
"""

from __future__ import annotations

import re
from typing import Dict, Final, List, Optional, Tuple, Union

Path = Tuple[Union[str, int], ...]

_BARE: Final = re.compile(r"[A-Za-z0-9_-]+")
_INLINE_KEY: Final = re.compile(r"""(?:^|[{,])\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
                                r"""(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*=""")


def _key_parts(text: str, i: int = 0) -> Tuple[List[str], int]:
    """The parts of a (dotted) TOML key starting at `text[i]`, and where it ends."""
    parts: List[str] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(text[j + 1],
                                                                                text[j + 1]))
                    j += 2
                else:
                    buf.append(text[j])
                    j += 1
            parts.append("".join(buf))
            i = j + 1
        elif i < n and text[i] == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return parts, n
            parts.append(text[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if m is None:
                return parts, i
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


class KeyLines:
    """Key path -> 1-based line of a TOML source."""

    def __init__(self, text: str) -> None:
        self.lines: Dict[Path, int] = {}
        arrays: Dict[Path, int] = {}         # array-of-tables path -> elements seen
        table: Path = ()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[["):
                parts, _ = _key_parts(line, 2)
                path: Path = tuple(parts)
                index = arrays.get(path, -1) + 1
                arrays[path] = index
                table = path + (index,)
                self._put(path, number)
                self._put(table, number)
            elif line.startswith("["):
                parts, _ = _key_parts(line, 1)
                table = self._resolve(tuple(parts), arrays)
                self._put(table, number)
            else:
                parts, end = _key_parts(line)
                if parts and line[end:end + 1] == "=":
                    key = table + tuple(parts)
                    self._put(key, number)
                    rest = line[end + 1:]
                    if "{" in rest:
                        self._inline(key, rest, number)

    def _resolve(self, path: Path, arrays: Dict[Path, int]) -> Path:
        """`[a.b]` after `[[a]]` is b of the last element of a."""
        out: Path = ()
        for part in path:
            out += (part,)
            if out in arrays:
                out += (arrays[out],)
        return out

    def _inline(self, key: Path, rest: str, number: int) -> None:
        """Keys of an inline table on the same line: `{ CONNECTION_RESET = 0, ... }`."""
        for m in _INLINE_KEY.finditer(rest):
            parts, _ = _key_parts(m.group(1))
            self._put(key + tuple(parts), number)

    def _put(self, path: Path, number: int) -> None:
        self.lines.setdefault(path, number)

    def line(self, path: Path) -> Optional[int]:
        """The line of `path`, or of its nearest enclosing key with a known line."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None
