"""The interactive browser (`tcpflow-check --browse`): the connections of an analysis in a
full-screen Textual app — a lazy table, a filter bar, a detail pane with the ladder and the
explanation, the Wireshark filter of a connection, and a JSON export of what is shown.

May import: every stage below (`common` .. `pipeline`, `render`, `triage`) and Textual; it
sits beside the command line, and nothing imports it but the CLI, only when `--browse` is
asked for. Textual is imported by `app` and `table` alone, and those are
imported only once `launch` has found Textual installed (the `browse` extra). `model`,
`stream` and `export` are plain Python: they are what the tests check without a screen.
"""
