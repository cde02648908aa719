"""Issue 12, items 1 and 6: the report never destroys an input or an earlier report, an
unwritable output fails before the analysis, and errors of the environment (a full disk, a
closed stdout or stdin) are one line and exit 3, never "internal error"."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.testing.synth import Dialog, write_pcap
from conftest import REPO, run_cli


def _capture(path: Path) -> bytes:
    d = Dialog().handshake().data("c", 100).fin("c").ack("s").fin("s").ack("c")
    write_pcap(path, d.packets)
    return path.read_bytes()


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")


@pytest.mark.parametrize("fmt", ["text", "json", "zeek"])
def test_an_output_that_is_the_input_is_refused(tmp_path, fmt):
    cap = tmp_path / "x.pcap"
    data = _capture(cap)
    r = run_cli(str(cap), "-f", fmt, "-o", str(cap))
    assert r.returncode == 2, r.stderr
    assert b"overwrite the input" in r.stderr and cap.read_bytes() == data


def test_an_output_that_is_an_input_by_another_name_is_refused(tmp_path):
    cap = tmp_path / "x.pcap"
    data = _capture(cap)
    other = tmp_path / "other.pcap"
    _capture(other)
    link = tmp_path / "link.pcap"
    link.symlink_to(cap)
    hard = tmp_path / "hard.pcap"
    os.link(cap, hard)
    for out in (link, hard, tmp_path / "." / "x.pcap"):
        r = run_cli(str(other), str(cap), "-o", str(out))
        assert r.returncode == 2, (out, r.stderr)
        assert cap.read_bytes() == data
    # stdin read from the capture, the report asked onto the same file
    with open(cap, "rb") as fh:
        r = subprocess.run([sys.executable, "-m", "analyzer", "-", "-o", str(cap)], stdin=fh,
                           capture_output=True, env=_env(), timeout=60)
    assert r.returncode == 2 and cap.read_bytes() == data
    # stdout appended onto the capture it reads
    with open(cap, "ab") as fh:
        r = subprocess.run([sys.executable, "-m", "analyzer", str(cap)], stdout=fh,
                           stderr=subprocess.PIPE, env=_env(), timeout=60)
    assert r.returncode == 2 and cap.read_bytes() == data


def test_an_unwritable_output_fails_before_reading(tmp_path):
    """stdin stays open and empty: a check made after the analysis would wait forever."""
    cap = tmp_path / "x.pcap"
    _capture(cap)
    for out in (tmp_path / "missing" / "report.txt", tmp_path, cap / "report.txt"):
        p = subprocess.Popen([sys.executable, "-m", "analyzer", "-", "-o", str(out)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=_env())
        try:
            _, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert p.returncode == 2, err
        assert b"Invalid value for '-o'" in err


@pytest.fixture
def cyclic_gc():
    """The CLI turns the cyclic collector off for its run; in process, it is put back."""
    import gc
    yield
    gc.enable()


def test_the_report_replaces_the_file_only_when_complete(tmp_path, monkeypatch, cyclic_gc):
    """A renderer that fails half-way leaves the earlier report as it was, and no
    temporary file; a complete one replaces it, keeping its permissions."""
    from analyzer.cli import command as cli
    import analyzer.render as render_pkg
    cap = tmp_path / "x.pcap"
    _capture(cap)
    out = tmp_path / "report.json"
    out.write_text("the earlier report\n")
    os.chmod(out, 0o640)

    def half(fmt, report, stream, **options):
        stream.write("{\n half a report")
        stream.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "render", half)
    with pytest.raises(SystemExit) as exc:
        cli.main.main([str(cap), "-f", "json", "-o", str(out)], standalone_mode=False)
    assert exc.value.code == 3
    assert out.read_text() == "the earlier report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "x.pcap"]
    monkeypatch.setattr(cli, "render", render_pkg.render)
    with pytest.raises(SystemExit) as exc:
        cli.main.main([str(cap), "-f", "json", "-o", str(out)], standalone_mode=False)
    assert exc.value.code == 0
    assert out.read_text().startswith("{") and oct(out.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "x.pcap"]


def test_the_report_through_a_symlink_replaces_its_target(tmp_path):
    cap = tmp_path / "x.pcap"
    _capture(cap)
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    r = run_cli(str(cap), "-f", "json", "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and target.read_text().startswith("{")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_full_disk_is_an_io_error(tmp_path):
    cap = tmp_path / "x.pcap"
    _capture(cap)
    for fmt in ("text", "json", "zeek"):
        r = run_cli(str(cap), "-f", fmt, "-o", "/dev/full")
        assert r.returncode == 3, r.stderr
        lines = r.stderr.decode().strip().split("\n")
        assert len(lines) == 1 and "No space left on device" in lines[0], lines
        assert "internal error" not in lines[0]
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "analyzer", str(cap)], stdout=full,
                           stderr=subprocess.PIPE, env=_env(), timeout=60)
    assert r.returncode == 3 and b"No space left on device" in r.stderr, r.stderr


def test_closed_stdout_and_stdin_are_io_errors(tmp_path):
    cap = tmp_path / "x.pcap"
    _capture(cap)
    r = subprocess.run([sys.executable, "-m", "analyzer", str(cap)], capture_output=True,
                       env=_env(), timeout=60, preexec_fn=lambda: os.close(1))
    assert r.returncode == 3, r.stderr
    assert b"stdout" in r.stderr and b"internal error" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "analyzer", "-", "-f", "json"],
                       capture_output=True, env=_env(), timeout=60,
                       preexec_fn=lambda: os.close(0))
    assert r.returncode == 3, r.stderr
    assert b"stdin" in r.stderr and b"internal error" not in r.stderr
