"""Plain-text tables and wrapped lines that never lose a character, written straight to a stream.

The rule of every text layout: a cell is never cut. A table is laid out only if its
unwrappable columns fit the width (the last column may wrap, between words); when they do not,
`fits()` says so and the caller stacks the same facts in blocks instead. A word longer than
the whole width is written whole on a line of its own (the terminal folds it; nothing is
dropped). Colour is an SGR prefix and suffix per style, made once with rich's `Style` and
reused: a row costs string formatting, not a renderable (100 k rows in well under a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, List, NamedTuple, Optional, Sequence, TextIO, \
    Tuple, Union

if TYPE_CHECKING:
    from rich.color import ColorSystem

#: A cell: plain text, or (text, style) where the style is rich's spelling ("bold red").
Cell = Union[str, Tuple[str, str]]
#: What separates columns, and the margin before the first.
GAP = "   "
MARGIN = " "


class Column(NamedTuple):
    header: str
    right: bool = False         # right-justified (numbers)


class Painter:
    """Text with a style, as SGR codes (or as it is, without colour)."""

    def __init__(self, color_system: Optional[ColorSystem]) -> None:
        self.system = color_system
        self.codes: Dict[str, Tuple[str, str]] = {}

    def __call__(self, text: str, style: str) -> str:
        if self.system is None or not style or not text:
            return text
        codes = self.codes.get(style)
        if codes is None:
            from rich.style import Style    # (colour only: a piped report never imports rich)
            marked = Style.parse(style).render("\x00", color_system=self.system)
            before, _, after = marked.partition("\x00")
            codes = self.codes[style] = (before, after)
        return codes[0] + text + codes[1]


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def wrap(words: Sequence[str], width: int, sep: str = " ") -> List[List[str]]:
    """Words in lines of at most `width` characters (a longer word alone on its line)."""
    lines: List[List[str]] = []
    line: List[str] = []
    used = 0
    for w in words:
        need = len(w) if not line else used + len(sep) + len(w)
        if line and need > width:
            lines.append(line)
            line, used = [w], len(w)
        else:
            line.append(w)
            used = need
    if line or not lines:
        lines.append(line)
    return lines


def fits(columns: Sequence[Column], rows: Iterable[Sequence[Cell]], width: int,
         last_min: int = 0) -> Optional[List[int]]:
    """Column widths for `rows` within `width`, the last column wrapping between words (its
    cell is a list of words then); None when the fixed columns and the longest word of the
    last do not fit."""
    widths = [len(c.header) for c in columns]
    n = len(columns) - 1
    longest_word = max(last_min, len(columns[-1].header))
    natural_last = widths[-1]
    for row in rows:
        for i in range(n):
            cell = row[i]
            size = len(cell) if cell.__class__ is str else len(cell[0])
            if size > widths[i]:
                widths[i] = size
        words = row[n]
        if words.__class__ is list:
            if words:
                sizes = [len(w) if w.__class__ is str else len(w[0]) for w in words]
                total = sum(sizes) + len(sizes) - 1
                if total > natural_last:
                    natural_last = total
                longest = max(sizes)
                if longest > longest_word:
                    longest_word = longest
        else:
            size = len(_text(words))
            natural_last = max(natural_last, size)
            longest_word = max(longest_word, size)
    fixed = 2 * len(MARGIN) + sum(widths[:n]) + len(GAP) * n     # rich keeps a right edge
    if fixed + longest_word > width:
        return None
    widths[n] = min(natural_last, width - fixed)
    return widths


def write_table(out: TextIO, title: Optional[str], columns: Sequence[Column],
                rows: Iterable[Sequence[Cell]], widths: Sequence[int], paint: Painter,
                title_style: str = "") -> None:
    """The table (each row's last cell a list of words, or one cell), rich's SIMPLE_HEAD look."""
    n = len(columns) - 1
    if title is not None:
        out.write(paint(title, title_style) + "\n\n")
    header = [c.header.rjust(w) if c.right else c.header.ljust(w)
              for c, w in zip(columns, widths)]
    out.write(MARGIN + GAP.join(header).rstrip() + "\n")
    out.write(MARGIN + "─" * (sum(widths) + len(GAP) * n) + "\n")
    right = [c.right for c in columns]
    indent = " " * (len(MARGIN) + sum(widths[:n]) + len(GAP) * n)
    last_width = widths[n]
    plain = paint.system is None
    write = out.write
    for row in rows:
        cells = []
        for i in range(n):
            cell = row[i]
            if isinstance(cell, str):
                cells.append(cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i]))
                continue
            text, style = cell
            pad = " " * (widths[i] - len(text))
            cells.append(pad + paint(text, style) if right[i] else paint(text, style) + pad)
        last = row[n]
        words = last if isinstance(last, list) else [last]
        texts = [w if isinstance(w, str) else w[0] for w in words]
        head = MARGIN + GAP.join(cells) + GAP
        if len(" ".join(texts)) <= last_width:
            tail = " ".join(texts) if plain else " ".join(
                [w if isinstance(w, str) else paint(w[0], w[1]) for w in words])
            write((head + tail).rstrip() + "\n")
            continue
        styled = texts if plain else [w if isinstance(w, str) else paint(w[0], w[1])
                                      for w in words]
        k = 0
        for j, line in enumerate(wrap(texts, last_width)):
            part = " ".join(styled[k:k + len(line)])
            k += len(line)
            write(((head if not j else indent) + part).rstrip() + "\n")
    out.write("\n")


def write_wrapped(out: TextIO, parts: Sequence[Cell], width: int, paint: Painter,
                  indent: int = 4) -> None:
    """One logical line of styled parts joined by spaces, wrapped between words with a
    hanging indent where it is longer than `width`."""
    texts = [p if isinstance(p, str) else p[0] for p in parts]
    line = " ".join(texts)
    if len(line) <= width:
        if paint.system is not None:
            line = " ".join([p if isinstance(p, str) else paint(p[0], p[1]) for p in parts])
        out.write(line.rstrip() + "\n")
        return
    words: List[Tuple[str, str]] = []
    for part, text in zip(parts, texts):
        style = "" if isinstance(part, str) else part[1]
        for w in text.split(" "):
            words.append((w, style))
    lines = wrap([w for w, _ in words], max(width - indent, 1))
    k = 0
    for j, chunk_words in enumerate(lines):
        chunk = words[k:k + len(chunk_words)]
        k += len(chunk_words)
        text = " ".join([paint(w, s) for w, s in chunk])
        out.write(((" " * indent + text.strip(" ")) if j else text).rstrip() + "\n")


class Page:
    """Where a report is written: the stream, its width and its colours."""

    def __init__(self, out: TextIO, width: int, paint: Painter) -> None:
        self.out = out
        self.width = width
        self.paint = paint

    def line(self, *parts: Cell, indent: int = 4) -> None:
        write_wrapped(self.out, parts, self.width, self.paint, indent)

    def blank(self) -> None:
        self.out.write("\n")
