"""Renderers: each takes a finished `Report` and a text stream. They never compute verdicts.

`RENDERERS` maps a `--format` name to its function; the CLI picks one here and nowhere else.
"""

from __future__ import annotations

from typing import Callable, Dict, TextIO

from analyzer.render import json_out, terminal, zeek_out
from analyzer.report import Report

Renderer = Callable[..., None]

RENDERERS: Dict[str, Renderer] = {
    "text": terminal.render,
    "json": json_out.render,
    "zeek": zeek_out.render,
}


def render(fmt: str, report: Report, out: TextIO, **options) -> None:
    RENDERERS[fmt](report, out, **options)
