"""The text report loses nothing: at every width from 40 to 250, piped or not, every code,
number and address of every connection is printed whole (samples and corpus); colour follows
the terminal, NO_COLOR and FORCE_COLOR (checked under a pseudo-terminal)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from collections import Counter

import pytest

from analyzer.pipeline import analyze
from analyzer.render.terminal import render, use_color
from analyzer.settings import Settings
from conftest import REPO, every_capture

WIDTHS = sorted(set(range(40, 251, 15)) | {40, 79, 80, 120, 149, 150, 160, 250})


def _endpoint(e: dict) -> str:
    return ("[%s]:%d" if ":" in e["addr"] else "%s:%d") % (e["addr"], e["port"])


def _tokens(report) -> Counter:
    """What must appear whole, with how many times at least: each connection's endpoints,
    verdicts, final states, packet counts and finding codes."""
    need: Counter = Counter()
    for c in report.connections:
        d = c.to_dict()
        need[_endpoint(d["orig"])] += 1
        need[_endpoint(d["resp"])] += 1
        need["%d/%d" % (d["packets"]["orig"], d["packets"]["resp"])] += 1
        need[d["final_state"]["orig"]] += 1
        need[d["final_state"]["resp"]] += 1
        for f in d["findings"]:
            need[f["code"]] += 1
    return need


def _text(report, width: int, **options) -> str:
    out = io.StringIO()
    render(report, out, show_all=True, color=False, width=width, **options)
    return out.getvalue()


#: Endpoints, upper-case words (codes, states) and packet counts, as printed.
_PRINTED = re.compile(r"\[[0-9a-f:.]+\]:\d+|\b\d+\.\d+\.\d+\.\d+:\d+\b|\b[A-Z][A-Z0-9_]{2,}\b"
                      r"|\b\d+/\d+\b")


def _check(text: str, need: Counter, width: int, where: str) -> None:
    printed = Counter(_PRINTED.findall(text))
    for token, n in need.items():
        assert printed[token] >= n, "%s at width %d: %r printed %d times, not %d" % (
            where, width, token, printed[token], n)
    for line in text.splitlines():
        # Longer than the width only when a single word is: words are never cut.
        if len(line) > width:
            assert len(line.split()) == 1, \
                "%s at width %d: a line of %d characters\n%s" % (where, width, len(line), line)


@pytest.mark.parametrize("path", every_capture(), ids=lambda p: p.name)
def test_no_width_crops_a_code_number_or_address(path):
    report = analyze([str(path)])
    report.connections = list(report.connections)
    need = _tokens(report)
    # The few captures of thousands of connections (floods, scans) at the edges of each
    # layout; every other capture at every width of the sweep.
    widths = WIDTHS if len(report.connections) < 2000 else (40, 150, 250)
    for width in widths:
        _check(_text(report, width), need, width, path.name)


def test_the_ladder_keeps_every_number_at_every_width():
    path = REPO / "samples" / "loopback_keepalive.pcap"
    report = analyze([str(path)], Settings(ladders=frozenset({0})))
    rows = report.ladders[0]
    for width in WIDTHS:
        text = _text(report, width)
        for row in rows:
            assert "TSval=%d" % dict(row.options)["timestamps"][0] in text
        assert text.count("keep-alive") >= 2
        assert "end of capture" in text


def test_a_pipe_gets_the_same_facts_as_a_file(tmp_path):
    from conftest import run_cli
    mixed = str(REPO / "samples" / "mixed.pcap")
    piped = run_cli(mixed, "-a").stdout.decode()
    out = tmp_path / "r.txt"
    run_cli(mixed, "-a", "-o", str(out))
    assert out.read_text() == piped
    for word in ("CONNECTION_REFUSED", "CLOSE_WAIT_LINGERING", "[2001:db8:1::23]:50120"):
        assert word in piped


# -- colour ----------------------------------------------------------------------------------

@pytest.mark.parametrize("color, tty, env, want", [
    (None, True, {}, True), (None, False, {}, False), (None, True, {"NO_COLOR": "1"}, False),
    (None, False, {"FORCE_COLOR": "1"}, True), (True, False, {"NO_COLOR": "1"}, True),
    (False, True, {"FORCE_COLOR": "1"}, False), (None, True, {"NO_COLOR": ""}, True),
])
def test_colour_decision(color, tty, env, want):
    assert use_color(color, tty, env) is want


def _under_pty(*args: str, env_extra: dict) -> bytes:
    """Run the CLI with stdout on a pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color", **env_extra)
    proc = subprocess.Popen([sys.executable, "-m", "analyzer", *args], stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:             # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks)


def test_colour_is_on_under_a_terminal_and_off_with_no_color():
    mixed = str(REPO / "samples" / "mixed.pcap")
    coloured = _under_pty(mixed, env_extra={})
    assert b"\x1b[" in coloured and b"CONNECTION_REFUSED" in coloured
    plain = _under_pty(mixed, env_extra={"NO_COLOR": "1"})
    assert b"\x1b[" not in plain and b"CONNECTION_REFUSED" in plain
    forced_plain = _under_pty(mixed, "--no-color", env_extra={"FORCE_COLOR": "1"})
    assert b"\x1b[" not in forced_plain


def test_force_color_colours_a_pipe():
    env = dict(os.environ, PYTHONPATH=str(REPO), FORCE_COLOR="1")
    env.pop("NO_COLOR", None)
    res = subprocess.run([sys.executable, "-m", "analyzer", str(REPO / "samples" / "mixed.pcap")],
                         capture_output=True, env=env, timeout=120)
    assert b"\x1b[" in res.stdout
    env.pop("FORCE_COLOR")
    res = subprocess.run([sys.executable, "-m", "analyzer", str(REPO / "samples" / "mixed.pcap")],
                         capture_output=True, env=env, timeout=120)
    assert b"\x1b[" not in res.stdout


@pytest.mark.parametrize("name", ["mixed.pcap", "ipv6.pcap"])
def test_every_width_from_40_to_250(name):
    """The two samples with the widest rows (IPv6 endpoints, long finding lists), at every
    single width of the range; and the ladder of their first stream, every number whole."""
    path = str(REPO / "samples" / name)
    report = analyze([path])
    report.connections = list(report.connections)
    need = _tokens(report)
    traced = analyze([path], Settings(ladders=frozenset({0})))
    traced.connections = [r for r in traced.connections if r.id == 0]
    rows = traced.ladders[0]
    for width in range(40, 251):
        _check(_text(report, width), need, width, name)
        words = Counter(_text(traced, width).split())
        for row in rows:
            assert words[str(row.frame)] >= 1 and words[str(row.seq)] >= 1, (width, row)
            assert row.ack is None or words[str(row.ack)] >= 1, (width, row)
