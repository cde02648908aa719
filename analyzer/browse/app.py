"""The Textual app of `--browse`: the analysis with a progress bar, then the connection table,
the filter bar and the detail pane.

Keys: `/` filter (Enter applies, Escape returns to the table), `s`/`S` sort by the next or
previous column, `r` reverse the order (or click a column title), `w` copy the selected
connection's Wireshark display filter (also printed on stdout when the browser closes),
`e` export what is shown to JSON, `tab` between the panes, `q` quit. The analysis and an export
run in worker threads, a ladder in a child interpreter (`reader`); the detail pane's part is
`pane.DetailPane`, the pieces around the app are in `parts`.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Dict, List, Optional, Sequence

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.widgets import Footer, Input, ProgressBar, Static

from analyzer.browse.model import COLUMNS, Model
from analyzer.browse.pane import DetailPane
from analyzer.browse.parts import Exporting, KeepAll, Loading, bytes_read, size_of
from analyzer.judge.result import ConnResult, LadderRow
from analyzer.pipeline import analyze
from analyzer.report.model import Report
from analyzer.settings import Settings

#: At least this wide: table and detail side by side; narrower, one above the other.
WIDE = 160


class BrowseApp(DetailPane, Exporting, App):
    """`BrowseApp(captures, settings).run()` returns the display filters copied with `w`."""

    TITLE = "tcpflow-check"
    CSS = """
    #main { height: 1fr; }
    #top { height: auto; }
    #caption { height: 1; padding: 0 1; background: $boost; }
    #filter { height: 3; }
    #filter-error { height: auto; color: $error; padding: 0 1; display: none; }
    #filter-error.shown { display: block; }
    #body { height: 1fr; }
    #body.wide { layout: horizontal; }
    #body.wide ConnTable { width: 55%; height: 1fr; }
    #body.wide #detail { width: 45%; height: 1fr; border-left: solid $accent; }
    #body.tall { layout: vertical; }
    #body.tall ConnTable { height: 45%; }
    #body.tall #detail { height: 55%; border-top: solid $accent; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("s", "sort(1)", "Sort"),
        Binding("S", "sort(-1)", "Sort back", show=False),
        Binding("r", "reverse", "Reverse"),
        Binding("w", "wireshark", "Wireshark"),
        Binding("e", "export", "Export"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self, captures: Sequence[str], settings: Settings,
                 filter_text: str = "") -> None:
        super().__init__()
        self.captures = list(captures)
        self.settings = settings
        self.filter_text = filter_text
        self.report: Any = None                # Optional[Report]
        self.model: Any = None                 # Optional[Model]: None while analysing
        self.table: Any = None                 # the ConnTable, once the analysis is done
        self.detail: Any = None                # the TextView beside it
        self.ladders: Dict[int, List[LadderRow]] = {}
        self.printed: List[str] = []
        self.messages: List[str] = []          # warnings and errors, for stderr afterwards
        self.exit_code = 0
        self.selected: Optional[ConnResult] = None
        self.ready = False                     # the table and the filter bar are on screen
        self._settle: Any = None

    # -- the analysis, with a progress bar ---------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="main"):
            yield Loading("Reading %s" % " ".join(self.captures), id="loading")
            yield ProgressBar(total=None, id="progress", show_eta=False)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._analyze)        # once the screen is up

    @work(thread=True, exclusive=True, group="analysis")
    def _analyze(self) -> None:
        sizes = sum(size_of(p) for p in self.captures)
        read0 = bytes_read()
        started = time.monotonic()

        def on_frame(n: int) -> None:
            done = bytes_read()
            fraction = None if done is None or read0 is None or not sizes else min(
                (done - read0) / sizes, 0.99)
            rate = n / max(time.monotonic() - started, 1e-9)
            self.call_from_thread(self._progress, n, rate, fraction)

        sink = KeepAll()
        report = analyze(self.captures, self.settings, sink=sink, on_frame=on_frame)
        # The results live as long as the browser and make no reference cycles: out of the
        # cyclic collector's sight, or every collection the app triggers would scan them all
        # (with 100,000 connections, a key press took seconds).
        gc.freeze()
        model = Model(sink.results)
        gc.freeze()
        self.call_from_thread(self._loaded, report, model)

    def _progress(self, frames: int, rate: float, fraction: Optional[float]) -> None:
        self.query_one("#loading", Static).update(
            "Reading %s: %s packets (%s/s)" % (" ".join(self.captures), format(frames, ","),
                                              format(int(rate), ",")))
        bar = self.query_one("#progress", ProgressBar)
        if fraction is not None:
            bar.update(total=1000, progress=int(fraction * 1000))

    def _loaded(self, report: Report, model: Model) -> None:
        self.run_worker(self._show(report, model), group="show")

    async def _show(self, report: Report, model: Model) -> None:
        for message in report.capture.warnings:
            self.messages.append("warning: " + message)
        for message in report.capture.errors:
            self.messages.append("error: " + message)
        if report.capture.errors and len(report.capture.errors) == len(self.captures):
            self.exit_code = 3
            self.exit(self.printed)
            return
        if report.capture.errors:
            self.exit_code = 3
        self.report, self.model = report, model
        from analyzer.browse.table import ConnTable
        self.table = ConnTable(model, id="table")
        main = self.query_one("#main")
        await main.remove_children()
        from analyzer.browse.textview import TextView
        self.detail = TextView(id="detail")
        body = Container(self.table, self.detail, id="body")
        await main.mount(Vertical(Static(id="caption"),
                                  Input(placeholder="filter: e.g. tcp.port == 443 and "
                                        "severity >= warning   (Enter applies)", id="filter",
                                        select_on_focus=False),
                                  Static(id="filter-error"), id="top"),
                         body)
        self._layout(self.size.width)
        if self.filter_text:                    # --filter: the view starts filtered
            self.query_one("#filter", Input).value = self.filter_text
            model.set_filter(self.filter_text)
        self._caption()
        for f in report.findings:
            self.notify("%s %s: %s" % (f.severity, f.code, f.message), timeout=8)
        for message in self.messages:
            self.notify(message, severity="warning", timeout=8)
        self.table.focus()
        self.table.reload()
        self.ready = True

    def on_resize(self, event) -> None:
        self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        for body in self.query("#body"):
            body.set_class(width >= WIDE, "wide")
            body.set_class(width < WIDE, "tall")

    def _caption(self) -> None:
        model = self.model
        if model is None:
            return
        column = COLUMNS[model.sort_column].title
        self.query_one("#caption", Static).update(Text.assemble(
            (model.caption(), "bold"), "  ·  sorted by %s%s  ·  %s" % (
                column, " (descending)" if model.descending else "",
                ", ".join(self.captures))))

    # -- filter and sort ---------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        from analyzer.triage.filter import FilterError, parse
        error = self.query_one("#filter-error", Static)
        text = event.value
        try:
            if text.strip():
                parse(text)
        except FilterError as exc:
            error.update(_caret(text, exc))
            error.add_class("shown")
            return
        if error.has_class("shown"):                # a good filter: no redraw while typing
            error.update("")
            error.remove_class("shown")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter" and self.ready:
            self._apply_filter(event.value)

    def _apply_filter(self, text: str) -> None:
        model = self.model
        assert model is not None
        keep = self.selected
        error = model.set_filter(text)
        box = self.query_one("#filter-error", Static)
        if error is not None:
            box.update(_caret(text, error))
            box.add_class("shown")
            return
        box.remove_class("shown")
        self._reselect(keep)
        self.table.focus()

    def _reselect(self, keep: Optional[ConnResult]) -> None:
        """After a filter or sort, the cursor stays on the same connection if it is shown."""
        model = self.model
        index = None
        if keep is not None:
            try:
                index = [model.results[i].id for i in model.view].index(keep.id)
            except ValueError:
                index = None
        self.table.reselect(index)
        self._caption()

    def action_sort(self, step: int) -> None:
        if self.ready:
            self._sort((self.model.sort_column + step) % len(COLUMNS), False)

    def action_reverse(self) -> None:
        if self.ready:
            self._sort(self.model.sort_column, not self.model.descending)

    def on_conn_table_sort(self, message) -> None:
        self._sort(message.column, None)

    def _sort(self, column: int, descending: Optional[bool]) -> None:
        keep = self.selected
        self.model.sort(column, descending)
        self._reselect(keep)

    def action_focus_filter(self) -> None:
        if self.ready:
            self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        if self.table is not None:
            self.table.focus()


def _caret(text: str, exc) -> Text:
    return Text("%s\n  %s" % (exc.caret(text), exc.message))
