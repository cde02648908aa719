"""Stage 6, rendering: a finished `Report` -> text on a stream. Renderers never compute verdicts.

`RENDERERS` maps a `--format` name to its module; the CLI picks one here and nowhere else. A
module has `render(report, out, **options)` and may have `make_sink(settings, **options)`:
the result sink it wants `analyze()` to fill (what it keeps of each connection), or None for
the default store of every result. The CLI also passes `captures` and `settings`: the HTML
and SVG writers read the capture a second time for their diagrams' packets (packets.py).
`outputs` writes several formats from one analysis (`--report FORMAT=FILE`), each file whole
or not at all.
May import: every stage below, `analyzer.settings`, `analyzer.pipeline`, and beside it
`analyzer.gate` (JUnit shows a policy's outcomes) and `analyzer.triage`; rich and click only
here and in the CLI.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Optional, TextIO

from analyzer.report.model import Report
from analyzer.report.store import ResultSink
from analyzer.settings import Settings

Renderer = Callable[..., None]

#: `--format` name -> the module whose `render(report, out, **options)` writes it. Imported
#: when used: the terminal renderer pulls in rich, which a JSON run in CI does not need.
RENDERERS: Dict[str, str] = {
    "text": "terminal",
    "json": "json_out",
    "zeek": "zeek_out",
    "html": "html",
    "svg": "svg",
    "junit": "junit",
}


def renderer(fmt: str) -> Renderer:
    module = importlib.import_module("analyzer.render." + RENDERERS[fmt])
    return module.render


def make_sink(fmt: str, settings: Settings, **options) -> Optional[ResultSink]:
    """The sink the `fmt` renderer wants `analyze()` to fill (None: every result)."""
    module = importlib.import_module("analyzer.render." + RENDERERS[fmt])
    maker = getattr(module, "make_sink", None)
    return None if maker is None else maker(settings, **options)


def render(fmt: str, report: Report, out: TextIO, **options) -> None:
    renderer(fmt)(report, out, **options)
