"""Time tcpflow-check past one process: --jobs N, --dask local with N workers, capture groups.

    python bench/scale.py /tmp/bench100k.pcap                      # jobs 1, 2; dask 1, 2, 4
    python bench/scale.py /tmp/bench100k.pcap --runs "jobs 1" "dask 4"
    python bench/scale.py /tmp/arch/*.pcap --group-by-file '(s\\d+)-' --runs "jobs 1" "jobs 2"
    python bench/scale.py ... --command .venv/bin/tcpflow-check   # the compiled build
    python bench/scale.py /tmp/bench100k.pcap --runs "jobs 1" "jobs 2" "ideal 2" --rounds 12

Each run writes its report (JSON, or `--format FORMAT`) into a file of its own and is measured
from outside: wall time, CPU time (user + system of the run and every process under it: the
shards, the Dask scheduler and workers) and the largest peak RSS among them (`wait4`: the
largest, not a sum). On a shared machine wall time is noise; CPU time is what the run cost
(docs/scale.md). The reports of all runs are compared (byte for byte) with the first.

`ideal N` is what N shards could reach if no shard read another's frames: the capture is
split once, by the hash `--jobs` shards by (decode/shard.py `shard_at`; frames it does not
shard go to the first part), into N classic pcap files in a temporary folder, and N
one-process runs, one a part, run side by side; its wall time is theirs together, its CPU
time their sum, its report not compared (each part has its own). With `--rounds K` every
run is made K times, the runs interleaved, and each run's wall time is given as the best,
the mean of the three fastest and the median, with the speed-up over the first run: on this
kind of machine the host's speed drifts from minute to minute, so only runs interleaved in
one sitting compare.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))


MODES = ("jobs", "dask", "ideal")
DEFAULT_COMMAND = sys.executable + " -m analyzer"
#: Classic pcap's magic numbers, as read little-endian: microseconds, nanoseconds.
PCAP_LE = (0xA1B2C3D4, 0xA1B23C4D)
PCAP_BE = (0xD4C3B2A1, 0x4D3CB2A1)


def split(capture: str, n: int, folder: str) -> List[str]:
    """`capture` (one classic pcap) split into `n` files in `folder`, each frame into the part
    `shard_at` gives it among `n` (the part a `--jobs n` shard analyses; -1, a frame no shard
    is chosen for by its bytes, into part 0)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from analyzer.decode.shard import shard_at
    paths = [os.path.join(folder, "part%d-of-%d.pcap" % (i, n)) for i in range(n)]
    with open(capture, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0] if len(head) == 24 else 0
        if magic not in PCAP_LE + PCAP_BE:
            sys.exit("%s: `ideal` splits one classic pcap file only" % capture)
        record = struct.Struct("<IIII" if magic in PCAP_LE else ">IIII")
        linktype = struct.unpack(record.format[0] + "I", head[20:24])[0] & 0x03FFFFFF
        outs = [open(p, "wb") for p in paths]
        try:
            for out in outs:
                out.write(head)
            while True:
                rec = f.read(16)
                if len(rec) < 16:
                    break
                frame = f.read(record.unpack(rec)[2])
                part = max(shard_at(linktype, frame, 0, len(frame), n), 0)
                outs[part].write(rec)
                outs[part].write(frame)
        finally:
            for out in outs:
                out.close()
    return paths


def run(command: List[str], mode: str, n: int, captures: Sequence[str],
        extra: Sequence[str], parts: Dict[int, List[str]], checkout: bool,
        fmt: str = "json") -> dict:
    # (this checkout's package on the path only for its own `python -m analyzer`: another
    # command, an installed build, imports its own)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE)) if checkout else None
    if mode == "ideal":
        argvs = [command + ["-q", "-f", fmt, *extra, part] for part in parts[n]]
    else:
        argv = command + ["-q", "-f", fmt, *extra, *captures]
        argvs = [argv + (["--jobs", str(n)] if mode == "jobs"
                         else ["--dask", "local", "--jobs", str(n)])]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err, contextlib.ExitStack() as files:
        # (every report into a file of its own, so that each run pays for writing it)
        outs = [files.enter_context(tempfile.TemporaryFile()) for _ in argvs]
        out = outs[0]
        procs = [subprocess.Popen(a, stdout=o, stderr=err, env=env)
                 for a, o in zip(argvs, outs)]
        # Each process's own usage with its children's (wait4): CPU time added up, peak
        # RSS the largest of the run's processes (per run, not since the first).
        usage = [os.wait4(p.pid, 0) for p in procs]
        wall = time.perf_counter() - t0
        for p, (_, status, _) in zip(procs, usage):
            p.returncode = os.waitstatus_to_exitcode(status)
        for a, p in zip(argvs, procs):
            if p.returncode not in (0, 1):
                err.seek(0)
                sys.exit("%s failed (%d): %s" % (shlex.join(a), p.returncode,
                                                 err.read().decode(errors="replace")[-500:]))
        digest = "(parts)"
        if mode != "ideal":
            out.seek(0)
            h = hashlib.sha256()
            for block in iter(lambda: out.read(1 << 20), b""):
                h.update(block)
            digest = h.hexdigest()[:12]
    cpu = sum(ru.ru_utime + ru.ru_stime for _, _, ru in usage)
    return {"run": "%s %d" % (mode, n), "wall": wall, "cpu": cpu,
            "rss": max(ru.ru_maxrss for _, _, ru in usage) / 1024, "digest": digest}


def rounds_table(rows: List[dict]) -> None:
    """Each run's wall times over the rounds: best, mean of the 3 fastest, median, and the
    speed-up of each over the first run's."""
    walls: Dict[str, List[float]] = {}
    for r in rows:
        walls.setdefault(r["run"], []).append(r["wall"])
    stats = {k: (min(v), statistics.mean(sorted(v)[:3]), statistics.median(v))
             for k, v in walls.items()}
    first = stats[rows[0]["run"]]
    print("\n%-8s %6s %6s %6s   speed-up: best, fastest 3, median" % ("run", "best", "fast3",
                                                                    "median"))
    for k, (b, f3, m) in stats.items():
        print("%-8s %6.3f %6.3f %6.3f   %5.2fx %5.2fx %5.2fx" % (
            k, b, f3, m, first[0] / b, first[1] / f3, first[2] / m))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--runs", nargs="+", default=["jobs 1", "jobs 2", "dask 1", "dask 2",
                                                   "dask 4"])
    ap.add_argument("--command", default=DEFAULT_COMMAND,
                    help="tcpflow-check command line (default: this checkout, pure Python "
                         "unless compiled in place)")
    ap.add_argument("--group-by-file", metavar="REGEX")
    ap.add_argument("--format", default="json", metavar="FORMAT",
                    help="the report every run writes (-f: json, text, zeek, ...; default json)")
    ap.add_argument("--rounds", type=int, default=1, metavar="K",
                    help="make every run K times, interleaved; then each run's best, mean of the 3 "
                         "fastest and median wall time, and their speed-ups over the first run")
    args = ap.parse_args(argv)
    extra = ["--group-by-file", args.group_by_file] if args.group_by_file else []
    specs = []
    for spec in args.runs:
        mode, n = spec.split()
        if mode not in MODES or not n.isdigit() or int(n) < 1:
            ap.error("a run is MODE N, MODE one of %s: %r" % (", ".join(MODES), spec))
        specs.append((mode, int(n)))
    if any(mode == "ideal" for mode, _ in specs) and (len(args.captures) != 1 or extra):
        ap.error("`ideal` splits one capture, without --group-by-file")
    rows: List[dict] = []
    digests = set()
    with tempfile.TemporaryDirectory(prefix="scale-ideal-") as folder:
        try:
            parts = {n: split(args.captures[0], n, folder) for mode, n in specs
                     if mode == "ideal"}
        except OSError as e:
            sys.exit("cannot split %s: %s" % (args.captures[0], e.strerror or e))
        for _ in range(args.rounds):
            for mode, n in specs:
                r = run(shlex.split(args.command), mode, n, args.captures, extra, parts,
                        args.command == DEFAULT_COMMAND, args.format)
                rows.append(r)
                if mode != "ideal":
                    digests.add(r["digest"])
                print("%-8s wall %7.2f s  cpu %7.2f s  peak rss %6.0f MiB  report %s%s" % (
                    r["run"], r["wall"], r["cpu"], r["rss"], r["digest"],
                    "  DIFFERS" if len(digests) > 1 and mode != "ideal" else ""), flush=True)
    if args.rounds > 1:
        rounds_table(rows)
    return 0 if len(digests) <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
