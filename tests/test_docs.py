"""The reference documents are drawn from the code: they must match it exactly."""

from __future__ import annotations

from analyzer.common.findings import CATALOGUE
from analyzer.docgen import documents
from conftest import REPO


def test_generated_documents_are_up_to_date():
    for rel, text in documents().items():
        on_disk = (REPO / rel).read_text(encoding="utf-8")
        assert on_disk == text, "%s is stale: run `python -m analyzer.docgen`" % rel


def test_every_finding_code_is_upper_snake_with_a_sentence():
    for code, entry in CATALOGUE.items():
        assert code.isupper() and " " not in code
        assert entry.severity in ("info", "warning", "error")
        assert entry.sentence.endswith(".")


def _keys(obj, prefix=""):
    """Every key of a JSON document, recursively (lists looked into)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v)


def test_json_contract_documents_every_field_emitted():
    from analyzer.pipeline import analyze
    from analyzer.settings import Settings
    doc = (REPO / "docs" / "json.md").read_text(encoding="utf-8")
    report = analyze([str(REPO / "samples" / "mixed.pcap")], Settings(ladders=frozenset({0, 5}))).to_dict()
    keys = set(_keys(report)) - {str(n) for n in range(300)}     # linktype numbers
    dynamic = set(report["capture"]["skipped"]) | set(report["summary"]["handshakes"]) | set(
        report["summary"]["closes"]) | set(report["summary"]["findings_by_code"]) | {
        "error", "warning", "info", "CLOSE_WAIT", "TIME_WAIT", "orig", "resp"}
    missing = sorted(k for k in keys - dynamic if "`%s`" % k not in doc and '"%s"' % k not in doc)
    assert not missing, "fields emitted but not documented in docs/json.md: %s" % missing
