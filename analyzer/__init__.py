"""tcpflow-check: per-connection TCP handshake, teardown and lingering-state verdicts.

The library's face: the few names a Python user needs, listed in `__all__` and documented in
docs/api.md; everything else is private by name or by place (the stage packages below).

    from analyzer import Settings, analyze

    report = analyze(["capture.pcap"], Settings(msl=60.0))
    for r in report.connections:            # ConnResult, in Wireshark's tcp.stream order
        print(r.id, r.orig, r.resp, r.handshake, r.close, r.codes)

Addresses come as text (`r.orig.addr == "10.0.0.1"`), durations and `*_time` as float
seconds, capture times `start`/`end` as exact integer nanoseconds. The stages, in the order
the data flows: `common` (time, the findings catalogue) -> `capture` -> `decode` -> `tcp` ->
`judge` -> `report` -> `settings`/`pipeline` -> `render` -> `cli`; `testing` holds the packet
builder for tests and samples.
"""

import importlib
import sys
from typing import Callable, Optional, Sequence

from analyzer import pipeline as _pipeline
from analyzer.common.findings import CATALOGUE, SEVERITY_RANK, Finding
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.judge.result import ConnResult, LadderRow, Lingering, Peer
from analyzer.judge.verdicts import CLOSES, HANDSHAKES
from analyzer.report.model import (EXIT_FINDINGS, EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE,
                                   CaptureSummary, Report, Summary)
from analyzer.report.store import ResultSink
from analyzer.settings import Settings
from analyzer.tcp.states import State

#: Severities, least severe first.
SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__))

__all__ = [
    # run an analysis
    "analyze", "Settings",
    # what it returns
    "Report", "Summary", "CaptureSummary", "ConnResult", "Peer", "Lingering", "LadderRow",
    "Finding",
    # the vocabularies
    "HANDSHAKES", "CLOSES", "State", "CATALOGUE", "SEVERITIES",
    # exit codes (Report.return_code)
    "EXIT_OK", "EXIT_FINDINGS", "EXIT_USAGE", "EXIT_UNREADABLE",
    "__version__", "TOOL_NAME", "build",
]


def build() -> str:
    """How this installation runs the analysis: "compiled" (the mypyc build setup.py makes
    when it can) or "pure Python" (same results, about five times slower)."""
    from analyzer.tcp import conn
    return "pure Python" if conn.__file__.endswith(".py") else "compiled"


def analyze(paths: Sequence[str], settings: Settings = _pipeline.DEFAULT_SETTINGS, *,
            sink: Optional[ResultSink] = None,
            on_frame: Optional[Callable[[int], None]] = None) -> Report:
    # The pipeline's own function, called through a plain one: a compiled function has no
    # docstring and no signature to show (help(), inspect); this one has both.
    return _pipeline.analyze(paths, settings, sink=sink, on_frame=on_frame)


def _restore_docstrings() -> None:
    """mypyc drops the docstrings of what it compiles; setup.py keeps them as data
    (analyzer/_docstrings.py, written by the compiled build) and here they go back on the
    compiled modules and classes this package has loaded, and on `analyze`. (Methods and
    properties of compiled classes cannot take one: docs/api.md documents them.)"""
    if build() != "compiled":
        return
    try:
        table = importlib.import_module("analyzer._docstrings")
    except ImportError:                 # pragma: no cover - a compiled tree without the table
        return
    for name, (module_doc, members) in table.DOCS.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        module.__doc__ = module_doc
        if name == "analyzer.pipeline":
            analyze.__doc__ = members.get("analyze")
        for member, doc in members.items():
            obj = getattr(module, member, None)
            if isinstance(obj, type):
                try:
                    obj.__doc__ = doc
                except (AttributeError, TypeError):     # pragma: no cover - a static type
                    pass


analyze.__doc__ = _pipeline.analyze.__doc__
_restore_docstrings()
