"""The compiled build (setup.py, mypyc) and the pure-Python sources give the same report.

mypyc compiles the very sources the pure package runs, but compiled code checks types at run
time and keeps native integers: a value of the wrong type, or arithmetic that behaves
differently, would show here as a differing report or an internal error. The reports of every
sample and, where present, every corpus capture are compared field for field, in both the
JSON and the Zeek renderings.
"""

from __future__ import annotations

import json

import pytest

from analyzer import build
from conftest import every_capture, run_python

_REPORTS = """
import io, json, sys
from analyzer import build
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.render import render
out = {"build": build()}
for path in sys.argv[1:]:
    report = analyze([path], Settings(checksums=True))
    doc = report.to_dict()
    zeek = io.StringIO()
    render("zeek", analyze([path]), zeek)
    lines = [l for l in zeek.getvalue().splitlines() if not l.startswith(("#open", "#close"))]
    out[path] = [doc["summary"], doc["connections"], doc["findings"], doc["capture"], lines]
print(json.dumps(out))
"""


def test_compiled_and_pure_python_reports_are_identical(pure_python):
    if build() != "compiled":
        pytest.skip("the package is not compiled here (pure-Python install, or not installed "
                    "with `pip install -e .`): nothing to compare")
    paths = [str(p) for p in every_capture()]
    compiled = run_python(_REPORTS, *paths)
    pure = run_python(_REPORTS, *paths, path=pure_python)
    assert compiled.returncode == 0, compiled.stderr.decode()[-2000:]
    assert pure.returncode == 0, pure.stderr.decode()[-2000:]
    a, b = json.loads(compiled.stdout), json.loads(pure.stdout)
    assert (a.pop("build"), b.pop("build")) == ("compiled", "pure Python")
    assert len(a) == len(paths) >= 50
    differing = [p for p in paths if a[p] != b[p]]
    assert not differing



def test_the_compiled_build_keeps_the_docstrings():
    # mypyc drops docstrings; setup.py keeps them as data and the package puts them back.
    if build() != "compiled":
        pytest.skip("the package is not compiled here: its docstrings are the sources' own")
    import inspect
    import analyzer
    from analyzer import pipeline
    from analyzer.judge import result
    assert analyzer.analyze.__doc__.startswith("Analyse one capture")
    assert "settings" in inspect.signature(analyzer.analyze).parameters
    assert pipeline.__doc__ and "analyze()" in pipeline.__doc__
    assert result.ConnResult.__doc__ and "Everything reported" in result.ConnResult.__doc__
    assert analyzer.Report.__doc__ and analyzer.Summary.__doc__
