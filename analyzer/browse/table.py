"""The connection table: a lazy Textual widget over `Model.view`.

It draws only the lines on screen (the Line API: `render_line` asks the model for the cells
of one row), so a view of 100,000 connections costs what 50 do: a filter or a sort gives it a
new list of indices and it redraws the screenful. The header stays on the first line; columns
are as wide as their widest cell (the model measures them once) and the table scrolls
sideways rather than cut a cell. A row's colour is its worst finding's severity.
"""

from __future__ import annotations

from typing import List, Optional

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from analyzer.browse.model import COLUMNS, Model

ROW_STYLE = {"error": Style(color="red", bold=True), "warning": Style(color="yellow"),
             "info": Style(color="cyan")}
GAP = 2                 # spaces between columns


class ConnTable(ScrollView, can_focus=True):
    """Rows of `model.view`; the cursor is an index into it."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
    ]

    DEFAULT_CSS = """
    ConnTable { height: 1fr; }
    """

    class Moved(Message):
        """The cursor is on another row (or the view changed under it)."""

        def __init__(self, index: Optional[int]) -> None:
            super().__init__()
            self.index = index

    class Sort(Message):
        """A column title was clicked."""

        def __init__(self, column: int) -> None:
            super().__init__()
            self.column = column

    def __init__(self, model: Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.cursor = 0
        self._size_to_model()

    def _size_to_model(self) -> None:
        width = sum(self.model.widths) + GAP * (len(COLUMNS) - 1) + 2
        self.virtual_size = Size(width, len(self.model.view) + 1)

    def reload(self) -> None:
        """The model's view changed: keep the cursor on the same connection when it is still
        shown, else on the first row."""
        view = self.model.view
        self._size_to_model()
        self.cursor = min(self.cursor, max(len(view) - 1, 0))
        self.refresh()
        self.move_to(self.cursor, force=True)

    def reselect(self, index: Optional[int]) -> None:
        self.cursor = 0 if index is None else index
        self.reload()

    def _text(self, cells: List[str]) -> str:
        parts = []
        for column, cell, width in zip(COLUMNS, cells, self.model.widths):
            parts.append(cell.rjust(width) if column.right else cell.ljust(width))
        return " " + (" " * GAP).join(parts) + " "

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        model = self.model
        if y == 0:
            titles = [c.title for c in COLUMNS]
            arrow = " ▼" if model.descending else " ▲"
            titles[model.sort_column] += arrow          # the model leaves room for it
            text = self._text(titles)
            style = base + Style(bold=True, underline=True)
            strip = Strip([Segment(text, style)])
        else:
            i = scroll_y + y - 1
            if i >= len(model.view):
                return Strip.blank(width, base)
            r = model.row(i)
            severity = model.severity(r)
            style = base + ROW_STYLE[severity] if severity else base
            if i == self.cursor:
                style += Style(reverse=True)
            strip = Strip([Segment(self._text(list(model.cells(r))), style)])
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _follow(self) -> None:
        # Rows under the header, above the horizontal scrollbar when there is one.
        rows = max(self.scrollable_content_region.height - 1, 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False)

    def move_to(self, index: int, force: bool = False) -> None:
        view = self.model.view
        if not view:
            self.post_message(self.Moved(None))
            return
        index = max(0, min(index, len(view) - 1))
        moved = index != self.cursor
        self.cursor = index
        self.refresh()
        self._follow()
        if moved or force:
            self.post_message(self.Moved(index))

    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, delta: int) -> None:
        self.move_to(self.cursor + delta * max(self.scrollable_content_region.height - 2, 1))

    def action_jump(self, where: int) -> None:
        self.move_to(where if where >= 0 else len(self.model.view) - 1)

    def on_click(self, event: events.Click) -> None:
        scroll_x, scroll_y = self.scroll_offset
        if event.y == 0:
            x = event.x + scroll_x - 1
            for column, width in enumerate(self.model.widths):
                if x < width + GAP:
                    self.post_message(self.Sort(column))
                    return
                x -= width + GAP
        else:
            self.move_to(scroll_y + event.y - 1)
