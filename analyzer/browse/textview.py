"""A lazy, scrollable view of rich text: the detail pane.

Textual lays a `Static` out whole, so a ladder of thousands of rows in one would be rendered
in full on every selection. This view draws only the lines on screen (the Line API, like the
connection table): its blocks are wrapped to the pane's width once (prose) or kept as they
are (the ladder, which scrolls sideways instead of being cut), and each visible line is
rendered when first shown.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

#: (text, wrap): prose wraps to the view's width; a table does not.
Block = Tuple[Text, bool]


class TextView(ScrollView, can_focus=True):
    """Shows `blocks`, one screenful of lines rendered at a time."""

    DEFAULT_CSS = """
    TextView { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks: List[Block] = []
        self.lines: List[Text] = []
        self._strips: Dict[int, Strip] = {}
        self._width = 0

    def show(self, blocks: Sequence[Block]) -> None:
        self.blocks = list(blocks)
        self._reflow()
        self.scroll_to(0, 0, animate=False)

    def text(self) -> str:
        """What the view shows, as plain lines (for tests and a copy)."""
        return "\n".join(line.plain for line in self.lines)

    def _reflow(self) -> None:
        # The vertical scrollbar sits over the last columns: prose wraps before it.
        width = max(self.size.width - self.styles.scrollbar_size_vertical - 1, 20)
        self._width = width
        console = self.app.console
        lines: List[Text] = []
        for text, wrap in self.blocks:
            if wrap:
                lines.extend(text.wrap(console, width))
            else:
                lines.extend(text.split("\n", allow_blank=True))
            if lines and not lines[-1].plain:
                lines.pop()
        self.lines = lines
        self._strips.clear()
        widest = max((line.cell_len for line in lines), default=0)
        self.virtual_size = Size(widest, len(lines))
        self.refresh()

    def on_resize(self) -> None:
        if self.size.width - self.styles.scrollbar_size_vertical - 1 != self._width:
            self._reflow()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        index = scroll_y + y
        if index >= len(self.lines):
            return Strip.blank(width, base)
        strip = self._strips.get(index)
        if strip is None:
            line = self.lines[index]
            strip = Strip(list(line.render(self.app.console, end=""))).apply_style(base)
            self._strips[index] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, base)
