"""The `tcpflow-check` command: parse options, call the library, pick a renderer, exit.

The command (`command`), the triage options (`triage`), the CI gate's (`gate`), `--browse`
(`browse`), its one-line messages (`echo`) and what the chosen outputs need computed
(`needs`); nothing below this package imports click.

stdout carries the report and nothing else; warnings and errors go to stderr, one line each.
Exit codes: 0 analysed; 1 findings at or above --fail-on, a broken policy rule or a baseline
regression (analyzer.gate); 2 usage error (also: -o names an input, or cannot be written; a
policy or baseline that cannot be used; all found before reading); 3 an I/O error: a capture
could not be read (everything readable is still reported), or the report could not be written
(a full disk, a closed stdout); 130 or 143 interrupted by SIGINT or SIGTERM (the report of
what was read is written, marked interrupted); 70 an internal error (a bug: one line on
stderr, never a traceback). docs/robustness.md lists every case.
May import: every package below it.
"""

from analyzer.cli.command import main, run

__all__ = ["main", "run"]
