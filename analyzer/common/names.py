"""Names as they are printed: one escaping for every file name in every message and report.

A name comes from the command line or the file system and may hold anything: bytes that are
not UTF-8 (Python keeps them as surrogate escapes, PEP 383), newlines, terminal escape
sequences. Printed raw, the first break the JSON report (a surrogate cannot be encoded) and
the others split a one-line warning or recolour the terminal. `printable` writes every such
character as a backslash escape — a non-UTF-8 byte as ``\\xNN``, a control character as
``\\n``, ``\\t``, ``\\r`` or ``\\xNN``, any other unprintable character as ``\\uNNNN`` — and
leaves every printable character (any script, spaces, backslashes) as it is.
"""

from __future__ import annotations

from typing import Dict, Final

_NAMED: Final[Dict[str, str]] = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(name: str) -> str:
    """`name` with every unprintable character escaped (rules above)."""
    if name.isprintable():
        return name
    out = []
    for ch in name:
        if ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:              # a byte that was not UTF-8 (surrogateescape)
            out.append("\\x%02x" % (code - 0xDC00))
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif code < 0x100:
            out.append("\\x%02x" % code)
        elif code < 0x10000:
            out.append("\\u%04x" % code)
        else:
            out.append("\\U%08x" % code)
    return "".join(out)
