"""The pieces around the browser's app: its result sink, the loading line, what the progress
bar measures (the bytes this process read, against the captures' sizes), and the export (its
dialog and the app's part of it).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from analyzer.browse.export import ExportError, export_json
from analyzer.judge.result import ConnResult


class KeepAll:
    """The browser's result sink: every result, in memory (the table needs any of them)."""

    def __init__(self) -> None:
        self.results: List[ConnResult] = []

    def add(self, r: ConnResult) -> None:
        self.results.append(r)

    def __iter__(self) -> Iterator[ConnResult]:
        return iter(sorted(self.results, key=lambda r: r.id))

    def __len__(self) -> int:
        return len(self.results)


class Loading(Static):
    """What shows while the analysis runs: a bar and the packets read so far."""

    DEFAULT_CSS = """
    Loading { height: auto; padding: 1 2; }
    """


class ExportScreen(ModalScreen):
    """Asks for the file name of an export."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 80%; height: auto; border: round $accent;
                              background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, default: str, count: int) -> None:
        super().__init__()
        self.default, self.count = default, count

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export the %d shown connections as JSON (docs/json.md) to:" % self.count)
            yield Input(self.default, id="export-path")
            yield Label("Enter writes · Escape cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def bytes_read() -> Optional[int]:
    """Bytes this process has read so far (Linux); None where that cannot be known."""
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Exporting:
    """The app's export (`e`): a file name asked for, then the JSON written in a worker.
    A mixin of `BrowseApp` (it uses the app's `model`, `report`, `captures`, `ready`)."""

    model: Any
    report: Any
    captures: List[str]
    ready: bool
    push_screen: Any
    call_from_thread: Any
    notify: Any

    def action_export(self) -> None:
        if not self.ready:
            return
        stem = os.path.basename(self.captures[0]).split(".")[0] or "capture"
        self.push_screen(ExportScreen("%s-connections.json" % stem, len(self.model.view)),
                         self._export_to)

    def _export_to(self, path: Optional[str]) -> None:
        if path:
            self._export(path, self.model.filter, len(self.model.view))

    @work(thread=True, group="export")
    def _export(self, path: str, flt, shown: int) -> None:
        try:
            export_json(path, self.report, self.model.results, self.captures, flt)
        except ExportError as exc:
            self.call_from_thread(self.notify, "Export failed: %s" % exc, severity="error")
            return
        self.call_from_thread(self.notify, "%d connections written to %s" % (shown, path))
