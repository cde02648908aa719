"""A progress line on stderr for captures that take more than a moment (rich).

Shown only when stderr is a terminal and `--quiet` is not given; it disappears when the
analysis ends, so nothing of it stays in a scrollback or a log.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional



@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[Optional[Callable[[int], None]]]:
    """Yields an `on_frame(frames_read)` callback for `analyze()`, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console        # only on a terminal: not imported by CI runs
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    console = Console(file=sys.stderr)
    columns = (SpinnerColumn(), TextColumn("reading: {task.completed:,.0f} packets"),
               TextColumn("({task.fields[rate]:,.0f}/s)"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("read", total=None, rate=0.0)

        def on_frame(n: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(task, completed=n, rate=n / elapsed if elapsed else 0.0)

        yield on_frame
