"""Triage: asking questions of a report — which connections, in what order, grouped how, and why.

Owns the filter language (`filter`: Wireshark-like expressions parsed to a tree and a predicate
over `ConnResult`s, printed back canonically) and its field table (`fields`, from which
docs/filters.md is drawn), the selection that filters, counts and groups results in front of a
renderer's sink (`select`), and the plain-words explanation of a connection's handshake and
close from its ladder (`explain`). Nothing here writes to a screen.
May import: every stage below (`common` .. `pipeline`, `settings`); sits beside `render`.
"""
