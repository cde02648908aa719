"""`--browse`: the analysis's options apply, the report's make no sense; Textual is imported
only here, when asked for (analyzer.browse)."""

from __future__ import annotations

from typing import Optional, Tuple

import click

from analyzer.cli.echo import warn
from analyzer.report.model import EXIT_USAGE
from analyzer.settings import Settings


#: Options that only shape a printed report: the browser takes none of them.
REPORT_ONLY = ("fmt", "show_all", "limit", "fail_on", "streams", "color", "output", "sort",
                "group_by", "explain")


def browse_only(captures: Tuple[str, ...], msl: float, checksums: bool, max_connections: int,
            idle_timeout: Optional[float], udp_tunnels: Tuple[Tuple[int, str], ...]) -> int:
    """`--browse`: the analysis's options apply; the report's make no sense (usage error)."""
    ctx = click.get_current_context()
    given = [p.opts[-1] for p in ctx.command.params if p.name in REPORT_ONLY
             and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise click.UsageError("--browse shows connections on the screen: %s make%s no sense "
                               "with it" % (", ".join(given), "" if len(given) > 1 else "s"))
    filter_text = ctx.params.get("filter_text")       # the filter bar starts with it
    if filter_text is not None:
        from analyzer.triage.filter import FilterError, parse
        try:
            parse(filter_text)
        except FilterError as exc:
            warn("--filter: %s\n%s" % (exc.message, exc.caret(filter_text)))
            return EXIT_USAGE
    try:
        settings = Settings(msl=msl, idle_timeout=idle_timeout, checksums=checksums,
                            max_live=max_connections, udp_tunnels=udp_tunnels)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    from analyzer.browse.launch import browse
    return browse(captures, settings, warn, filter_text or "")
