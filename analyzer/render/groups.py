"""`--group-by-file`: the reports of several capture groups in one output.

The rule: each group's part is written by the format's own renderer, exactly as a run over
that group's files alone writes it (byte for byte), and the format's wrapper only adds what
tells the groups apart, outside the parts:

* text: a line ``== group NAME: N files ==`` before each group's report, a blank line after;
* json: one document ``{"groups": [{"group": NAME, "files": [...], "report": REPORT}, ...]}``,
  each REPORT the group's whole JSON document as written alone (docs/json.md);
* zeek: each group's whole conn.log (its own header and ``#close``) after a ``#group NAME``
  line, which Zeek's tools read as a comment (docs/zeek.md).

HTML, SVG and JUnit are one document about one capture each, and are not written for groups
(`GROUPED`): the CLI says so before any capture is read (docs/scale.md).
"""

from __future__ import annotations

import json
from typing import Sequence, TextIO

from analyzer.common.names import printable

#: The formats that can hold several groups.
GROUPED = ("text", "json", "zeek")


class GroupWriter:
    """Wraps the groups' parts in `fmt` on `out`: `begin(name, files)`, the group's own
    report written to `out`, `end()`; `close()` after the last group."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        assert fmt in GROUPED
        self.fmt, self.out = fmt, out
        self.count = 0
        if fmt == "json":
            out.write('{"groups": [\n')

    def begin(self, name: str, files: Sequence[str]) -> None:
        out, fmt = self.out, self.fmt
        if fmt == "text":
            out.write("%s== group %s: %d file%s ==\n" % (
                "\n" if self.count else "", printable(name), len(files),
                "" if len(files) == 1 else "s"))
        elif fmt == "json":
            out.write('%s{"group": %s, "files": %s, "report": ' % (
                ",\n" if self.count else "", json.dumps(name),
                json.dumps([printable(f) for f in files])))
        else:
            out.write("#group\t%s\n" % printable(name).replace("\t", "\\x09"))
        self.count += 1

    def end(self) -> None:
        if self.fmt == "json":
            self.out.write("}")

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("%s]}\n" % ("\n" if self.count else ""))
