"""Time tcpflow-check past one process: --jobs N, --dask local with N workers, capture groups.

    python bench/scale.py /tmp/bench100k.pcap                      # jobs 1, 2; dask 1, 2, 4
    python bench/scale.py /tmp/bench100k.pcap --runs "jobs 1" "dask 4"
    python bench/scale.py /tmp/arch/*.pcap --group-by-file '(s\\d+)-' --runs "jobs 1" "jobs 2"
    python bench/scale.py ... --command .venv/bin/tcpflow-check   # the compiled build

Each run writes the JSON report to /dev/null and is measured from outside: wall time, CPU
time (user + system of the run and every process under it: the shards, the Dask scheduler
and workers) and the largest peak RSS among them (RUSAGE_CHILDREN: the largest, not a sum).
On a shared machine wall time is noise; CPU time is what the run cost (docs/scale.md). The
JSON reports of all runs are compared (byte for byte) with the first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shlex
import subprocess
import sys
import time
from typing import List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))


def run(command: List[str], mode: str, n: int, captures: Sequence[str],
        extra: Sequence[str]) -> dict:
    argv = command + ["-q", "-f", "json", *extra, *captures]
    argv += ["--jobs", str(n)] if mode == "jobs" else ["--dask", "local", "--jobs", str(n)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 1):
        sys.exit("%s failed (%d): %s" % (shlex.join(argv), out.returncode,
                                         out.stderr.decode()[-500:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"run": "%s %d" % (mode, n), "wall": wall, "cpu": cpu,
            "rss": after.ru_maxrss / 1024, "digest": hashlib.sha256(out.stdout).hexdigest()[:12]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--runs", nargs="+", default=["jobs 1", "jobs 2", "dask 1", "dask 2",
                                                   "dask 4"])
    ap.add_argument("--command", default=sys.executable + " -m analyzer",
                    help="tcpflow-check command line (default: this checkout, pure Python "
                         "unless compiled in place)")
    ap.add_argument("--group-by-file", metavar="REGEX")
    args = ap.parse_args(argv)
    extra = ["--group-by-file", args.group_by_file] if args.group_by_file else []
    rows = []
    for spec in args.runs:
        mode, n = spec.split()
        rows.append(run(shlex.split(args.command), mode, int(n), args.captures, extra))
        r = rows[-1]
        print("%-8s wall %7.2f s  cpu %7.2f s  peak rss %6.0f MiB  report %s%s" % (
            r["run"], r["wall"], r["cpu"], r["rss"], r["digest"],
            "" if r["digest"] == rows[0]["digest"] else "  DIFFERS"), flush=True)
    return 0 if all(r["digest"] == rows[0]["digest"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
