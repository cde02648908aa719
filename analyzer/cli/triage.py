"""The triage options on the command line: --filter, --sort, --group-by and --explain,
checked together before any capture is read, and what they give the renderer after."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Tuple

import click

from analyzer.cli.echo import warn
from analyzer.render import make_sink
from analyzer.report.model import EXIT_USAGE, Report
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings
from analyzer.triage.select import Selection, sort_key, sorted_results


def check_triage(fmt: str, show_all: bool, limit: Optional[int], streams: Tuple[int, ...],
            filter_text: Optional[str], sort: Optional[str], group_by: Optional[str],
            explain: Tuple[int, ...]) -> Dict[str, Any]:
    """The triage options, checked together: a bad filter or sort key, or options that make
    no sense together, stop here with a usage error (exit 2) before any capture is read."""
    single = "--stream/--explain" if streams or explain else ""
    conflicts = [
        (bool(streams) and fmt == "zeek", "--stream", "-f zeek", "a Zeek conn.log has no ladder"),
        (bool(explain) and fmt != "text", "--explain", "-f " + fmt, "it narrates in text"),
        (bool(group_by) and fmt == "zeek", "--group-by", "-f zeek",
         "a Zeek conn.log has one line per connection"),
        (bool(group_by) and bool(single), "--group-by", single,
         "they show single connections")]
    for clash, option, other, why in conflicts:
        if clash:
            raise click.UsageError("%s cannot be used with %s: %s" % (option, other, why))
    if fmt not in ("text", "html"):
        if limit is not None:
            warn("warning: --limit applies to the terminal and HTML reports; -f %s lists "
                  "every connection" % fmt)
    elif limit is not None and show_all:
        warn("warning: --limit has no effect with --all, which lists every connection")
    elif group_by and fmt == "text" and (sort or show_all or limit is not None):
        warn("warning: the terminal report lists groups, not connections, with --group-by: "
              "--sort, --all and --limit have no effect on it")
    flt = None
    if filter_text is not None:
        from analyzer.triage.filter import FilterError, parse
        try:
            flt = parse(filter_text)
        except FilterError as exc:
            warn("--filter: %s\n%s" % (exc.message, exc.caret(filter_text)))
            sys.exit(EXIT_USAGE)
    if sort is not None:
        try:
            sort_key(sort)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--sort'")
    return {"filter": flt, "sort": sort, "group_by": group_by, "explain": explain,
            "streams": streams}


def triage_sink(fmt: str, settings: Settings, triage: Dict[str, Any],
          **options: Any) -> Optional[ResultSink]:
    """The renderer's sink, behind the triage selection when there is something to select
    (the filter decides before the renderer encodes or drops a result). Sorting needs the
    results themselves: the default store."""
    if triage["filter"] is not None or triage["group_by"] is not None:
        options = dict(options, limit=0)    # (the filter's counts read every kept result)
    inner = None if triage["sort"] else make_sink(fmt, settings, **options)
    if triage["filter"] is None and triage["group_by"] is None and not triage["sort"]:
        return inner
    if inner is None:
        inner = ResultStore(settings.result_budget)
    return Selection(inner, triage["filter"], triage["group_by"], triage["sort"])


def select(report: Report, triage: Dict[str, Any], settings: Settings) -> Dict[str, Any]:
    """What the renderer needs beyond the report: the selection, the results in --sort's
    order, and the explanations asked for."""
    options: Dict[str, Any] = {}
    if isinstance(report.connections, Selection):
        options["selection"] = report.connections
    if triage["sort"]:
        report.connections = sorted_results(report.connections, triage["sort"])
    if triage["explain"]:
        from analyzer.triage.explain import explain
        wanted = set(triage["explain"])
        options["ladders"] = bool(triage["streams"])
        options["explanations"] = {r.id: explain(r, report.ladders[r.id], settings.msl)
                                   for r in report.connections if r.id in wanted}
    return options
