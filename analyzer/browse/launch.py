"""`tcpflow-check --browse`: start the browser if Textual is installed, else say what to install.

Textual is an extra (`pip install 'tcpflow-check[browse]'`): the report, JSON and conn.log
never need it, and it is imported here only when `--browse` is asked for. Returns the exit
code: 0, 2 (Textual missing, or stdin as the capture: the browser reads keys from the
terminal, and a ladder needs the capture read again), 3 (a capture could not be read).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Callable, Sequence

from analyzer.settings import Settings

INSTALL = "pip install 'tcpflow-check[browse]'"


def missing() -> bool:
    """Whether Textual cannot be imported."""
    try:
        return importlib.util.find_spec("textual") is None
    except (ImportError, ValueError):
        return True


def browse(captures: Sequence[str], settings: Settings, warn: Callable[[str], None],
           filter_text: str = "") -> int:
    """Run the browser on `captures` (`filter_text`: the filter it starts with)."""
    if "-" in captures:
        warn("--browse reads a capture from a file, not stdin ('-'): the browser reads keys "
             "from the terminal and reads the file again for each ladder")
        return 2
    if missing():
        warn("--browse needs Textual, which is not installed: %s" % INSTALL)
        return 2
    from analyzer.browse.app import BrowseApp
    app = BrowseApp(captures, settings, filter_text)
    app.run()
    for message in app.messages:
        warn(message)
    for text in app.printed:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return app.exit_code
