"""The package's shape stays true: stages in the order the data flows, arrows pointing down.

Every module of `analyzer/` belongs to a stage (its subpackage, or a top-level module given a
place below). A module may import its own stage and the stages below it, never one above,
also not under TYPE_CHECKING or inside a function; and no two modules import each other,
directly or round a longer loop. Only the renderers and the command line know the screen
(rich, click, textual). A new package or top-level module must be given its place in
`STAGES` before it can land: the test fails on a module it cannot place.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from conftest import REPO

PACKAGE = REPO / "analyzer"

#: Stage -> rank, lowest first: the order the data flows. Equal ranks may import each other's
#: modules (no cycles still); `testing` (the packet builder) sits beside the analysis and
#: nothing in it is imported by the analysis (checked below).
STAGES: Dict[str, int] = {
    "common": 0,        # time, the findings catalogue, the version
    "capture": 1,       # files -> frames
    "decode": 2,        # frame -> segment
    "testing": 2,       # the packet builder (tests, samples, library users)
    "tcp": 3,           # segments -> connections through RFC 9293's machine
    "judge": 4,         # connection -> verdicts, findings, result
    "report": 5,        # results -> report, summary, exit code, storage
    "settings": 6,      # one frozen Settings
    "pipeline": 7,      # analyze(): the stages in order
    "gate": 8,          # CI policies and baselines (scopes share triage's filter language)
    "render": 8,        # report -> text, JSON, conn.log
    "parallel": 8,      # the analysis over several processes (--jobs)
    "triage": 8,        # filters, selection, explanations (beside the renderers)
    "browse": 9,        # the interactive browser (--browse), started by the CLI
    "cli": 9, "docgen": 9, "__main__": 9, "__init__": 9,
    "_docstrings": 9,   # written by the compiled build (setup.py), not in version control
}
#: Only these stages may import the screen and command-line libraries.
SCREEN_LIBS = ("rich", "click", "textual")
SCREEN_STAGES = {"render", "browse", "cli", "__main__"}


def modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str, path: Path) -> List[Tuple[str, int]]:
    """Every module `module` imports anywhere in its source (absolute names), with the line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # `from analyzer.x import y` may name a module y
            found += [(name + "." + alias.name, node.lineno) for alias in node.names]
    return found


def graph() -> Dict[str, Set[str]]:
    mods = dict(modules())
    edges: Dict[str, Set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name, _ in imports_of(m, path):
            if name in mods and name != m and name != "analyzer":
                edges[m].add(name)
    return edges


def test_every_module_has_a_stage():
    unplaced = sorted(m for m, _ in modules() if stage_of(m) not in STAGES)
    assert not unplaced, "give these a place in STAGES (tests/test_layout.py): %s" % unplaced


def test_no_module_imports_a_stage_above_its_own():
    wrong = []
    for m, path in modules():
        rank = STAGES.get(stage_of(m))
        if rank is None:
            continue
        for name, line in imports_of(m, path):
            if name.split(".")[0] != "analyzer" or name == "analyzer":
                continue
            other = STAGES.get(stage_of(name))
            if other is not None and other > rank:
                wrong.append("%s:%d imports %s" % (path.relative_to(REPO), line, name))
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_the_analysis_never_imports_the_packet_builder():
    wrong = [m for m, deps in graph().items()
             if stage_of(m) != "testing" and any(stage_of(d) == "testing" for d in deps)]
    assert not wrong


def test_no_import_cycles():
    edges = graph()
    state: Dict[str, int] = {}          # 1 on the path, 2 done
    path: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_only_renderers_and_the_cli_know_the_screen():
    wrong = []
    for m, path in modules():
        if stage_of(m) in SCREEN_STAGES:
            continue
        for name, line in imports_of(m, path):
            if name.split(".")[0] in SCREEN_LIBS:
                wrong.append("%s:%d imports %s" % (path.relative_to(REPO), line, name))
    assert not wrong


def test_every_stage_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert doc, "%s has no docstring" % init.relative_to(REPO)
        assert "May import" in doc, "%s does not say what it may import" % init.relative_to(REPO)


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    # The checker itself: an upward import and a cycle, planted in a copy, are found.
    import shutil
    copy = tmp_path / "analyzer"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    with open(copy / "decode" / "segment.py", "a") as fh:
        fh.write("\nfrom analyzer.tcp import states  # planted\n")
    with open(copy / "tcp" / "states.py", "a") as fh:
        fh.write("\nfrom analyzer.decode import segment  # planted\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    with pytest.raises(AssertionError, match="decode/segment.py:.* imports analyzer.tcp"):
        test_no_module_imports_a_stage_above_its_own()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()
