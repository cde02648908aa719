"""The fuzz harness (tools/fuzz) in CI: a short seeded campaign, and every input that ever
failed kept as a regression capture (tests/regressions/) and checked again."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import REPO
from tools.fuzz import campaign
from tools.fuzz.harness import check, decoders_agree, read_frames, seeds
from tools.fuzz.mutators import gzip_mutate, mutate, pcap_mutate, pcapng_mutate

REGRESSIONS = sorted((REPO / "tests" / "regressions").glob("*.cap"))


def test_a_short_seeded_campaign_finds_nothing():
    """Thousands of mutated captures through the readers, the truncation property, both
    decoder paths, the analysis, the renderers, and every 50th through the CLI in process."""
    result = campaign.run(3000, seed=12, cli_every=50, text_every=300)
    assert result["failures"] == [], result["failures"][:5]
    outcomes = result["outcomes"]
    # The mutators reach all three outcomes, and the CLI both exit codes for captures.
    assert outcomes.get("clean", 0) > 300 and outcomes.get("damaged", 0) > 300
    assert outcomes.get("not_capture", 0) > 30
    assert set(result["exits"]) >= {0, 3}


def test_the_mutators_keep_the_structure(tmp_path):
    """Most mutants still open as captures: the mutators break one thing, not everything."""
    rng = random.Random(5)
    path = str(tmp_path / "m.cap")
    opened = 0
    for seed in seeds():
        for mutator in (pcap_mutate if seed[:4] != b"\x0a\x0d\x0d\x0a" else pcapng_mutate,
                        gzip_mutate, mutate):
            for _ in range(20):
                Path(path).write_bytes(mutator(seed, rng))
                opened += read_frames(path) is not None
    assert opened > 0.6 * len(seeds()) * 60


def test_the_differential_check_catches_a_decoder_that_differs(monkeypatch):
    """The check is not vacuous: a fast path that misreads one field is caught."""
    from tools.fuzz import harness
    frames = read_frames_of(seeds()[0])
    real = harness.decode_at

    def off_by_one(linktype, buf, start, end):
        seg = real(linktype, buf, start, end)
        if seg is not None:
            seg.win += 1
        return seg

    monkeypatch.setattr(harness, "decode_at", off_by_one)
    assert not all(decoders_agree(lt, f) for _, lt, f in frames)


def read_frames_of(data: bytes):
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".cap") as fh:
        fh.write(data)
        fh.flush()
        return read_frames(fh.name)


@pytest.mark.skipif(not REGRESSIONS, reason="no regression captures kept yet")
@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_every_input_that_ever_failed(tmp_path, path):
    check(path.read_bytes(), str(tmp_path / "input.cap"), random.Random(0), cli=True,
          text=True)
