"""What a run's outputs read, so that the analysis computes nothing no output shows.

Today one thing: Zeek's view of each connection (`conn_state`, `history`;
`Settings.zeek_view`), a quarter of the state machine's work. The JSON report and conn.log
print it, the filter fields of the same names read it, and a CI policy or baseline may; the
terminal, HTML, SVG and JUnit reports do not. When in doubt it is on: an output that finds
it missing would be wrong, a view computed for nothing only slow.
"""

from __future__ import annotations

from typing import Any, Dict, Final, Tuple

#: The formats whose reports print the Zeek view.
ZEEK_FORMATS: Final = frozenset({"json", "zeek"})
#: The triage fields (analyzer.triage.fields) that read it.
ZEEK_FIELDS: Final = frozenset({"conn_state", "history"})


def zeek_view_needed(fmt: str, reports: Tuple[Tuple[str, str], ...], triage: Dict[str, Any],
                     gated: bool) -> bool:
    """Whether any output of the run reads the Zeek view: the report's format `fmt`, the
    --report files' formats, the --filter and --sort fields (`triage`, as check_triage
    returns it), or a policy or baseline (`gated`)."""
    if gated or fmt in ZEEK_FORMATS or any(f in ZEEK_FORMATS for f, _ in reports):
        return True
    flt = triage.get("filter")
    if flt is not None and flt.fields() & ZEEK_FIELDS:
        return True
    sort = triage.get("sort")
    return isinstance(sort, str) and sort.lstrip("-") in ZEEK_FIELDS
