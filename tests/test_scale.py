"""Past one process: capture groups (--group-by-file) and Dask (--dask), each byte for byte the
report one process gives (docs/scale.md).

The Dask tests run on a LocalCluster of several workers (threads here, to stay quick; the CLI
test starts processes) and are skipped where the 'dask' extra is not installed."""

from __future__ import annotations

import importlib.util
import io
import json
import os
from pathlib import Path

import pytest

from conftest import REPO, corpus_files, run_cli, run_python
from analyzer.parallel.groups import GroupError, group_files
from analyzer.pipeline import analyze
from analyzer.render import render
from analyzer.settings import Settings

DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(not DASK, reason="the 'dask' extra (dask.distributed) is not "
                                "installed: pip install 'tcpflow-check[dask]'")
SAMPLES = REPO / "samples"


def test_files_are_grouped_by_the_first_group_of_the_match():
    paths = ["a/s2-000.pcap", "a/s1-000.pcap", "a/s2-001.pcap", "b/s1-001.pcap"]
    groups = group_files(paths, r"(s\d)-")
    assert [(g.name, g.files) for g in groups] == [
        ("s2", ("a/s2-000.pcap", "a/s2-001.pcap")), ("s1", ("a/s1-000.pcap", "b/s1-001.pcap"))]
    assert [g.name for g in group_files(paths, r"^[ab]")] == ["a", "b"]     # no group: match
    with pytest.raises(GroupError, match="does not match c.pcap"):
        group_files(paths + ["c.pcap"], r"(s\d)-")
    with pytest.raises(GroupError, match="stdin"):
        group_files(["-"], r"(s\d)-")
    with pytest.raises(GroupError, match="not a regular expression"):
        group_files(paths, r"(s\d")


def archive(tmp_path: Path) -> list:
    """Three sensors' rotated files: mixed.pcap, the two-interface pcapng's frames and
    reuse_from_time_wait.pcap, each cut in parts by bench/rotate.py (by capture time)."""
    out = tmp_path / "archive"
    out.mkdir()
    for n, name in enumerate(["mixed.pcap", "reuse_from_time_wait.pcap", "vlan.pcap"]):
        p = run_python("import sys; sys.path.insert(0, 'bench'); import rotate; "
                       "rotate.main(sys.argv[1:])", str(SAMPLES / name), "--seconds", "10",
                       "--out", str(out / ("sensor%d" % n)))
        assert p.returncode == 0, p.stderr
    return sorted(str(p) for p in out.iterdir())


def parts(fmt: str, text: str) -> list:
    """The groups' parts of a grouped report, as (name, part)."""
    if fmt == "json":
        doc = json.loads(text)
        return [(g["group"], g["report"]) for g in doc["groups"]]
    marker = "#group\t" if fmt == "zeek" else "== group "
    out = []
    for chunk in text.split("\n" + marker if fmt == "text" else marker)[0 if fmt == "text" else 1:]:
        head, _, body = chunk.partition("\n")
        name = head.replace("== group ", "").split(":")[0] if fmt == "text" else head
        out.append((name, body))
    return out


@pytest.mark.parametrize("fmt", ["text", "json", "zeek"])
def test_each_groups_part_is_the_report_of_its_files_alone(tmp_path, fmt):
    files = archive(tmp_path)
    assert len(files) > 6
    whole = run_cli(*files, "--group-by-file", r"(sensor\d)-", "-f", fmt, "--all")
    assert whole.returncode == 0, whole.stderr
    two = run_cli(*files, "--group-by-file", r"(sensor\d)-", "-f", fmt, "--all", "--jobs", "2")
    assert two.stdout == whole.stdout
    got = parts(fmt, whole.stdout.decode())
    assert [name for name, _ in got] == ["sensor0", "sensor1", "sensor2"]
    for name, part in got:
        alone = run_cli(*[f for f in files if "/%s-" % name in f], "-f", fmt, "--all")
        want = json.loads(alone.stdout) if fmt == "json" else alone.stdout.decode()
        assert part == want, name


def test_group_mode_refuses_what_describes_one_capture(tmp_path):
    files = [str(SAMPLES / "mixed.pcap")]
    for extra, why in [(["-f", "html"], "-f html"), (["-f", "junit"], "-f junit"),
                       (["-s", "0"], "--stream"),
                       (["--write-baseline", str(tmp_path / "b.json")], "--baseline"),
                       (["--report", "junit=%s" % (tmp_path / "j.xml")], "--report"),
                       (["--group-by-file", "(nomatch)"], "does not match")]:
        p = run_cli(*files, "--group-by-file", "(mixed)", *extra)
        assert p.returncode == 2 and why in p.stderr.decode(), (extra, p.stderr)
        assert p.stdout == b""


def test_dask_is_imported_only_with_dask():
    p = run_python("import sys; from analyzer.cli import main\n"
                   "try:\n    main(['-f', 'json', '--jobs', '2', %r])\nexcept SystemExit:\n"
                   "    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
                   "('dask', 'distributed') or m == 'analyzer.parallel.cluster'), "
                   "file=sys.stderr)" % str(SAMPLES / "mixed.pcap"))
    assert p.stderr.decode().strip().splitlines()[-1] == "[]"


def test_without_the_extra_dask_is_a_usage_error():
    p = run_python("import sys; sys.modules['distributed'] = None\n"
                   "import importlib.util\nimportlib.util.find_spec = lambda name, *a: None\n"
                   "from analyzer.cli import main\nmain(['--dask', 'local', %r])"
                   % str(SAMPLES / "mixed.pcap"))
    assert p.returncode == 2 and b"pip install 'tcpflow-check[dask]'" in p.stderr
    assert p.stdout == b""


# --- on a Dask cluster ------------------------------------------------------------------------

def json_of(report) -> str:
    out = io.StringIO()
    render("json", report, out, show_all=True, settings=Settings(), captures=())
    return out.getvalue()


@pytest.fixture(scope="module")
def client():
    if not DASK:
        pytest.skip("the 'dask' extra (dask.distributed) is not installed")
    from analyzer.parallel.cluster import connect
    with connect("local", 3, processes=False) as c:
        yield c


def captures():
    corpus = sorted(corpus_files(), key=lambda p: p.stat().st_size if p.exists() else 1 << 40)
    return sorted(SAMPLES.glob("*.pcap*")) + [p for p in corpus if p.exists()][::15][:8]


@needs_dask
@pytest.mark.parametrize("settings", [Settings(), Settings(checksums=True, msl=5)],
                         ids=["default", "checksums"])
def test_shards_on_a_dask_cluster_give_the_report_of_one_process(client, settings):
    from analyzer.parallel.cluster import run_tasks
    from analyzer.parallel.merge import Merger
    from analyzer.render import make_sink
    for path in captures():
        want = json_of(analyze([str(path)], settings))
        for count in (3, 5):
            merger = Merger(count, settings)
            run_tasks(client, [([str(path)], i, count, None) for i in range(count)], settings,
                      merger.take)
            assert json_of(merger.report()) == want, (path, count)
        # The tasks encoding their JSON lines and counting (the sink's work), as the CLI's.
        sink = make_sink("json", settings)
        merger = Merger(3, settings, sink, True)
        run_tasks(client, [([str(path)], i, 3, sink.shard_work()) for i in range(3)], settings,
                  merger.take)
        assert json_of(merger.report()) == want, (path, "work")


@needs_dask
def test_groups_on_a_dask_cluster_are_the_groups_of_one_process(tmp_path, client):
    from analyzer.parallel.groups import analyze_groups
    import analyzer.parallel.cluster as cluster
    groups = group_files(archive(tmp_path), r"(sensor\d)-")
    want = [(g, json_of(r)) for g, r in analyze_groups(groups, Settings())]
    # the groups run on the module's cluster (a LocalCluster of threads)
    real = cluster.connect
    cluster.connect = lambda *a: _shared(client)
    try:
        got = [(g, json_of(r)) for g, r in analyze_groups(groups, Settings(), dask="local")]
    finally:
        cluster.connect = real
    assert got == want and len(got) == 3


class _shared:
    """The module's client as a `connect()` context that does not close it."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return False


@needs_dask
def test_the_cli_on_a_local_dask_cluster_writes_the_report_of_one_process(tmp_path):
    # Real worker processes (a LocalCluster of two): the shards of one capture, then groups.
    path = str(SAMPLES / "mixed.pcap")
    one = run_cli(path, "-f", "json")
    on = run_cli(path, "-f", "json", "--dask", "local", "--jobs", "2")
    assert on.returncode == 0, on.stderr
    assert on.stdout == one.stdout
    one = run_cli(path)                     # the terminal report: each task keeps its worst
    on = run_cli(path, "--dask", "local", "--jobs", "2")
    assert (on.returncode, on.stdout) == (one.returncode, one.stdout), on.stderr
    files = archive(tmp_path)
    for fmt in ("zeek", "json", "text"):
        one = run_cli(*files, "--group-by-file", r"(sensor\d)-", "-f", fmt)
        on = run_cli(*files, "--group-by-file", r"(sensor\d)-", "-f", fmt, "--dask", "local",
                     "--jobs", "2")
        assert on.returncode == one.returncode, on.stderr
        assert on.stdout == one.stdout and on.stdout.count(b"sensor2") >= 1, fmt


def test_an_unreachable_scheduler_is_one_line_and_exit_3():
    if not DASK:
        pytest.skip("the 'dask' extra (dask.distributed) is not installed")
    os.environ["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "1s"      # (default 30 s)
    try:
        p = run_cli(str(SAMPLES / "mixed.pcap"), "--dask", "tcp://127.0.0.1:9", "-f", "json")
    finally:
        del os.environ["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"]
    assert p.returncode == 3 and p.stdout == b""
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]


def test_a_signal_stops_the_group_processes_and_keeps_what_was_read(tmp_path, monkeypatch):
    # The signal comes with the first message: the running groups stop (SIGTERM, as --jobs
    # does) and report what they read, the groups not started are left out, no process stays.
    import signal as signals
    from analyzer.parallel import groups as grouping
    from analyzer.parallel import workers
    files = archive(tmp_path)
    groups = group_files(files, r"(sensor\d)-")
    want = {g.name: json_of(r) for g, r in grouping.analyze_groups(groups, Settings())}
    seen = []
    real_take = grouping.Merger.take

    def take(self, index, chunk):
        seen.append(1)
        real_take(self, index, chunk)

    monkeypatch.setattr(grouping.Merger, "take", take)
    monkeypatch.setattr(grouping, "received", lambda: signals.SIGINT if seen else 0)
    got = list(grouping.analyze_groups(groups, Settings(), jobs=1 + 1))
    # The two running ones, and the third only if its process had started it (a group is
    # sent ahead to a process, which starts it as soon as it has ended the one before).
    names = [g.name for g, _ in got]
    assert names in (["sensor0", "sensor1"], ["sensor0", "sensor1", "sensor2"]), names
    for group, report in got:
        assert report.capture.interrupted or json_of(report) == want[group.name]
    assert workers.running() == []


def many_groups(tmp_path: Path, n: int = 9) -> list:
    """`n` sensors of one file each (three samples in turn): more groups than processes."""
    out = tmp_path / "many"
    out.mkdir()
    names = ["mixed.pcap", "reuse_from_time_wait.pcap", "vlan.pcap"]
    files = []
    for i in range(n):
        dst = out / ("s%02d-0.pcap" % i)
        dst.write_bytes((SAMPLES / names[i % 3]).read_bytes())
        files.append(str(dst))
    return files


@pytest.mark.parametrize("fmt, extra", [("json", []), ("text", []), ("text", ["--all"]),
                                        ("zeek", [])])
def test_a_pool_of_processes_gives_every_groups_report_as_one_process(tmp_path, fmt, extra):
    # JSON and the terminal report: each group's process encodes or chooses its results
    # itself; --all and conn.log: every result travels.
    files = many_groups(tmp_path)
    one = run_cli(*files, "--group-by-file", r"(s\d+)-", "-f", fmt, *extra)
    assert one.returncode in (0, 1) and one.stdout.count(b"s08") >= 1, one.stderr
    for jobs in ("2", "3"):
        got = run_cli(*files, "--group-by-file", r"(s\d+)-", "-f", fmt, *extra, "--jobs", jobs)
        assert (got.returncode, got.stdout) == (one.returncode, one.stdout), jobs


def test_the_pool_forks_its_processes_once_for_all_the_groups(tmp_path, monkeypatch):
    from analyzer.parallel import groups as grouping
    from analyzer.parallel import workers
    if not workers.FORK:
        pytest.skip("no fork here: a process is spawned for each group")
    groups = group_files(many_groups(tmp_path), r"(s\d+)-")
    want = [(g.name, json_of(r)) for g, r in grouping.analyze_groups(groups, Settings())]
    started = []
    real = grouping.launch

    def launch(target, args, name):
        started.append(name)
        return real(target, args, name)

    monkeypatch.setattr(grouping, "launch", launch)
    got = [(g.name, json_of(r)) for g, r in grouping.analyze_groups(groups, Settings(), jobs=2)]
    assert got == want and len(got) == 9
    assert len(started) == 2, started
    assert workers.running() == []


def test_a_defect_in_a_groups_process_is_reported_and_no_process_stays(tmp_path, monkeypatch):
    from analyzer.parallel import groups as grouping
    from analyzer.parallel import workers
    from analyzer.parallel.merge import ShardFailed
    groups = group_files(many_groups(tmp_path, 5), r"(s\d+)-")
    real = grouping.run_shard

    def broken(paths, *args, **kwargs):
        if paths[0].endswith("s02-0.pcap"):
            raise RuntimeError("a defect in group s02")
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(grouping, "run_shard", broken)
    got = []
    with pytest.raises(ShardFailed, match="a defect in group s02"):
        for group, _ in grouping.analyze_groups(groups, Settings(), jobs=2):
            got.append(group.name)
    assert got in ([], ["s00"], ["s00", "s01"]), got
    assert workers.running() == []


def test_a_signal_before_the_first_group_starts_no_process(tmp_path, monkeypatch):
    import signal as signals
    from analyzer.parallel import groups as grouping
    groups = group_files(many_groups(tmp_path, 4), r"(s\d+)-")
    started = []
    monkeypatch.setattr(grouping, "launch", lambda *a: started.append(a))
    monkeypatch.setattr(grouping, "received", lambda: signals.SIGTERM)
    assert list(grouping.analyze_groups(groups, Settings(), jobs=2)) == []
    assert started == []


def test_a_group_of_many_files_is_not_sent_ahead_into_a_busy_process(tmp_path):
    # Group ga's process sends more than its pipe holds; gc's task (its 500 files' paths) is
    # more than a pipe holds too: sent ahead to ga's process, the write would wait for it
    # while it waits for its messages to be read. gc waits until a process is idle instead.
    out = tmp_path / "a"
    out.mkdir()
    big = run_python("import sys; sys.path.insert(0, 'bench'); import generate; "
                     "generate.main(sys.argv[1:])", "--connections", "3000",
                     "--out", str(out / "ga-0.pcap"))
    assert big.returncode == 0, big.stderr
    (out / "gb-0.pcap").write_bytes((SAMPLES / "mixed.pcap").read_bytes())
    small = (SAMPLES / "vlan.pcap").read_bytes()
    for i in range(500):
        (out / ("gc-%03d-%s.pcap" % (i, "x" * 140))).write_bytes(small)
    files = sorted(str(p) for p in out.iterdir())
    one = run_cli(*files, "--group-by-file", r"(g[abc])-", "-f", "json")
    two = run_cli(*files, "--group-by-file", r"(g[abc])-", "-f", "json", "--jobs", "2")
    assert one.returncode == 0 and len(one.stdout) > 2 << 20, one.stderr
    assert (two.returncode, two.stdout) == (one.returncode, one.stdout), two.stderr


_SPAWNED_GROUPS = """
import io, sys
from analyzer.parallel import groups, workers
from analyzer.parallel.groups import analyze_groups, group_files
from analyzer.render import make_sink, render
from analyzer.settings import Settings

def text(report):
    out = io.StringIO()
    render("json", report, out, show_all=True, settings=Settings(), captures=())
    return out.getvalue()

found = group_files(sys.argv[1:], r"(s\\d+)-")
sink = lambda: make_sink("json", Settings())
want = [(g.name, text(r)) for g, r in analyze_groups(found, Settings(), make_sink=sink)]
workers.FORK = groups.FORK = False      # as where there is no fork: a process spawned a group
groups.Pool = None                      # (not used there)
got = [(g.name, text(r)) for g, r in analyze_groups(found, Settings(), jobs=2, make_sink=sink)]
assert got == want and len(got) == 3, (len(got), len(want))
import multiprocessing
assert not multiprocessing.active_children()
print("same")
"""


def test_groups_in_spawned_processes_are_the_groups_of_one_process(tmp_path):
    # Where there is no fork (a process spawned for each group, `run_local`): the JSON lines
    # made in the group's process (its sink's work, pickled into it), the same reports.
    p = run_python(_SPAWNED_GROUPS, *many_groups(tmp_path, 3))
    assert p.returncode == 0 and p.stdout.strip() == b"same", p.stderr.decode()[-2000:]
