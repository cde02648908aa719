"""The reference documents are drawn from the code: they must match it exactly."""

from __future__ import annotations

from analyzer.anomalies import CATALOGUE
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


def test_json_contract_documents_every_connection_field():
    doc = (REPO / "docs" / "json.md").read_text(encoding="utf-8")
    for field in ("`id`", "`orig`", "`resp`", "`start`", "`end`", "`packets`", "`bytes`",
                  "`handshake`", "`close`", "`closed_first`", "`reset_by`", "`half_close`",
                  "`final_state`", "`lingering`", "`syn_retransmissions`", "`findings`",
                  "`ladder`", "`skipped`", "`truncated`"):
        assert field in doc, field
