"""Shared ground: what every stage speaks.

Owns capture time in integer nanoseconds and its exact text (`nstime`), the findings catalogue
(`findings`: stable codes, severities, one sentence each, and the `Finding` record), the
tool's name and version (`version`), how a file name is printed (`names`), the compiled
build's machine integer (`native`), and the JSON writer's text joins (`join`, in C in the
compiled build: `_join.c`). Every other stage may import it.
May import: nothing from the package.
"""
