"""docs/api.md's pytest example runs here, on captures built from packets: it passes on a
healthy database conversation and fails, naming the stream, on a reset and on a CLOSE_WAIT."""

from __future__ import annotations

import re

import pytest

import analyzer
from analyzer.testing.synth import Dialog, merge, write_pcap
from conftest import REPO

_DOC = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
_EXAMPLE = re.search(r"## Check recorded traffic.*?```python\n(.*?)```", _DOC, re.S).group(1)
namespace: dict = {}
exec(compile(_EXAMPLE, "docs/api.md", "exec"), namespace)
check_database_traffic = namespace["check_database_traffic"]

DB = ("10.0.0.5", 5432)


def _capture(tmp_path, *dialogs) -> str:
    path = tmp_path / "recorded.pcap"
    write_pcap(path, merge(*dialogs))
    return str(path)


def test_a_healthy_conversation_passes(tmp_path):
    ok = Dialog(client=("10.0.0.1", 40000), server=DB).handshake().data("c", 100) \
        .data("s", 300).fin("c").fin("s").ack("c")
    check_database_traffic(_capture(tmp_path, ok))


def test_a_reset_fails_naming_its_stream(tmp_path):
    ok = Dialog(client=("10.0.0.1", 40000), server=DB).handshake().fin("c").fin("s").ack("c")
    reset = Dialog(client=("10.0.0.1", 40002), server=DB, t0=1_700_000_001.0).handshake().data("c", 10) \
        .rst("s")
    with pytest.raises(AssertionError, match="stream 1 was reset by resp"):
        check_database_traffic(_capture(tmp_path, ok, reset))


def test_a_lingering_close_wait_fails(tmp_path):
    stuck = Dialog(client=("10.0.0.1", 40000), server=DB).handshake().fin("c").ack("s")
    with pytest.raises(AssertionError, match="CLOSE_WAIT"):
        check_database_traffic(_capture(tmp_path, stuck))


def test_the_public_face_is_what_docs_api_md_names():
    for name in analyzer.__all__:
        assert hasattr(analyzer, name), name
        if not name.startswith("_") and name != "TOOL_NAME":
            assert re.search(r"[`.]%s\b" % name, _DOC), "docs/api.md does not document %s" % name
    r = next(iter(analyzer.analyze([str(REPO / "samples" / "ipv6.pcap")]).connections))
    assert isinstance(r.orig.addr, str) and ":" in r.orig.addr
    assert str(r.orig).startswith("[") and isinstance(r.start_time, float)
    assert isinstance(r.start, int) and r.start_time == pytest.approx(r.start / 1e9)
