"""Renderers: each takes a finished `Report` and a text stream. They never compute verdicts.

`RENDERERS` maps a `--format` name to its function; the CLI picks one here and nowhere else.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, TextIO

from analyzer.report import Report

Renderer = Callable[..., None]

#: `--format` name -> the module whose `render(report, out, **options)` writes it. Imported
#: when used: the terminal renderer pulls in rich, which a JSON run in CI does not need.
RENDERERS: Dict[str, str] = {
    "text": "terminal",
    "json": "json_out",
    "zeek": "zeek_out",
}


def renderer(fmt: str) -> Renderer:
    module = importlib.import_module("analyzer.render." + RENDERERS[fmt])
    return module.render


def render(fmt: str, report: Report, out: TextIO, **options) -> None:
    renderer(fmt)(report, out, **options)
