"""The browser's detail pane: what the selected connection shows, reading its ladder, and its
Wireshark filter (`w`).

A mixin of `BrowseApp` (it uses the app's `model`, `detail`, `captures`, `settings`, `report`,
`ladders`, `selected`). The summary shows at once; the ladder and the explanation follow when
the child interpreter (`analyzer.browse.reader`) has read the connection's frames again,
started once the cursor rests (`SETTLE`) and stopped when it moves on. The last
`LADDER_CACHE` ladders are kept.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from rich.text import Text
from textual import work
from textual.worker import get_current_worker

from analyzer.browse import detail
from analyzer.browse.model import display_filter
from analyzer.browse.reader import ladder_in_process
from analyzer.browse.stream import Cancelled, LadderError
from analyzer.judge.result import ConnResult, LadderRow

#: Ladders kept for connections selected before (each at most LADDER_LIMIT rows).
LADDER_CACHE = 32
#: Wait this long after the cursor stops before reading a ladder (holding an arrow key).
SETTLE = 0.15


class DetailPane:
    """The app's handlers for the cursor's connection."""

    model: Any
    detail: Any
    captures: List[str]
    settings: Any
    report: Any
    ladders: Dict[int, List[LadderRow]]
    selected: Optional[ConnResult]
    _settle: Any
    call_from_thread: Any
    notify: Any
    copy_to_clipboard: Any
    printed: List[str]
    set_timer: Any

    def on_conn_table_moved(self, message) -> None:
        r = None if message.index is None else self.model.row(message.index)
        self.selected = r
        if r is None:
            self.detail.show([(Text("No connection matches the filter."), True)])
            return
        rows = self.ladders.get(r.id)
        if rows is not None:
            self._show_ladder(r, rows)
            return
        self.detail.show([(detail.summary(r, self.captures), True),
                          (Text("Reading the ladder…", style="dim"), True)])
        if self._settle is not None:
            self._settle.stop()
        self._settle = self.set_timer(SETTLE, lambda: self._read_ladder(r))

    @work(thread=True, exclusive=True, group="ladder")
    def _read_ladder(self, r: ConnResult) -> None:
        worker = get_current_worker()
        started = time.monotonic()

        def on_frame(n: int) -> None:
            if time.monotonic() - started > 0.5:        # a quick read shows no progress
                self.call_from_thread(self._ladder_progress, r, n)

        try:
            rows = ladder_in_process(self.captures, self.settings, r, on_frame,
                                     lambda: worker.is_cancelled)
        except Cancelled:
            return
        except LadderError as exc:
            self.call_from_thread(self.notify, "Ladder of stream %d: %s" % (r.id, exc),
                                  severity="error")
            return
        self.call_from_thread(self._ladder_read, r, rows)

    def _ladder_progress(self, r: ConnResult, frames: int) -> None:
        if self.selected is r:
            self.detail.show([(detail.summary(r, self.captures), True), (Text(
                "Reading the ladder: frame %s of %s–%s…" % (
                    format(frames, ","), format(r.first_frame, ","), format(r.last_frame, ",")),
                style="dim"), True)])

    def _ladder_read(self, r: ConnResult, rows: List[LadderRow]) -> None:
        if len(self.ladders) >= LADDER_CACHE:
            self.ladders.pop(next(iter(self.ladders)))
        self.ladders[r.id] = rows
        if self.selected is r:
            self._show_ladder(r, rows)

    def _show_ladder(self, r: ConnResult, rows: List[LadderRow]) -> None:
        self.detail.show([(detail.summary(r, self.captures), True),
                          (detail.explanation(r, rows, self.settings.msl), True),
                          (detail.ladder(r, rows, self.report.capture.last_ts), False)])

    def action_wireshark(self) -> None:
        if self.selected is None:
            return
        text = display_filter(self.selected)
        self.copy_to_clipboard(text)
        self.printed.append(text)
        self.notify("%s — copied; printed on stdout when you quit" % text)
