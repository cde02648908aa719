"""Shared test helpers: write real capture bytes, run the analyzer on them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, merge, write_pcap

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_configure(config) -> None:
    """An editable install compiles the hot modules next to their sources (setup.py); Python
    then loads the compiled module, so a source edited since would go untested."""
    stale = []
    for so in (REPO / "analyzer").rglob("*.so"):
        src = so.with_name(so.name.split(".")[0] + ".py")
        if src.exists() and so.stat().st_mtime < src.stat().st_mtime:
            stale.append(src.name)
    if stale:
        raise pytest.UsageError(
            "compiled modules older than their sources (%s): rebuild with `pip install -e .`, "
            "or delete analyzer/*.so to test pure Python" % ", ".join(sorted(stale)))


def corpus_files() -> List[Path]:
    """The shared corpus's captures (MANIFEST.tsv `local_path`, read in place); none when the
    corpus is not on this machine."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as fh:
        return [CORPUS / row["local_path"] for row in csv.DictReader(fh, delimiter="\t")]


def every_capture() -> List[Path]:
    """Every sample, then every corpus capture present: what whole-output comparisons run on."""
    return sorted((REPO / "samples").rglob("*.pcap*")) + corpus_files()


@pytest.fixture(scope="session")
def pure_python(tmp_path_factory) -> Path:
    """A copy of the package's sources alone: put it first on PYTHONPATH to run the pure-Python
    analysis beside the compiled one (setup.py) and compare the two."""
    import shutil
    root = tmp_path_factory.mktemp("pure")
    shutil.copytree(REPO / "analyzer", root / "analyzer",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return root


def run_python(code: str, *args: str, path: Path = REPO) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter with `path` first on sys.path (the package under test)."""
    env = dict(os.environ, PYTHONPATH=str(path))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env,
                          timeout=600, cwd=str(path))


def report_for(tmp_path: Path, *dialogs: Dialog, msl: float = 30.0, tail: float = 0.0,
               **write_opts) -> dict:
    """Write the dialogs as one pcap (optionally with `tail` seconds of silence at the end, made
    by a final non-TCP frame) and return the analyzer's JSON-shaped report."""
    packets = merge(*dialogs)
    path = tmp_path / "capture.pcap"
    write_pcap(path, packets, **write_opts)
    if tail:
        _append_udp(path, packets[-1][0] + int(tail * 1e9))
    return analyze([str(path)], Settings(msl=msl)).to_dict()


def _append_udp(path: Path, ts_ns: int) -> None:
    """Append one UDP/IPv4 Ethernet frame at ts_ns: moves the capture's end without TCP."""
    import struct
    from analyzer.testing.synth import frame, udp_packet
    data = frame(udp_packet("10.9.9.1", "10.9.9.2", 5353, 5353, b""))
    sec, ns = divmod(ts_ns, 1_000_000_000)
    with open(path, "ab") as fh:
        fh.write(struct.pack("<IIII", sec, ns // 1000, len(data), len(data)) + data)


def conn(report: dict, i: int = 0) -> dict:
    return report["connections"][i]


def codes(c: dict) -> set:
    return {f["code"] for f in c["findings"]}


def run_cli(*args: str, stdin: bytes = None) -> subprocess.CompletedProcess:
    """Run `python -m analyzer` as a user would; stdout and stderr kept apart."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "analyzer", *args], input=stdin,
                          capture_output=True, env=env, timeout=120)


@pytest.fixture
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip("the shared corpus (../shared/corpus) is not present on this machine")
    return CORPUS
