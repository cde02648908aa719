"""Stage 5, reporting: results -> one report: counters, capture summary, exit code, storage.

Owns the report model (`model`: `Report`, `Summary`, `CaptureSummary`, the exit codes) and the
result store that keeps results in bounded memory (`store`), spilling them to disk as sorted
runs that it merges when read (`runs`), and the fan-out
that gives every result of one analysis to several sinks (`fanout`). Nothing here formats for
a screen or a file.
May import: every stage below (`common`, `capture`, `decode`, `tcp`, `judge`).
"""
