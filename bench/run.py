"""Time tcpflow-check, tshark and tcptrace on the same capture and print one table.

    python bench/run.py /tmp/bench100k.pcap [--repeat 3] [--tools tcpflow-check,tshark,tcptrace]
    python bench/run.py /tmp/bench100k.pcap --profile

Each measured command runs in a fresh child Python process that starts it with stdout and
stderr away from the terminal (stdout to /dev/null) and reports its wall time
(`time.perf_counter` around the run), its CPU time and its peak resident set size
(the larger of `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, the largest single process,
and the resident memory of the command's whole process tree sampled every 20 ms from /proc:
a command that forks workers, such as `--jobs 2`, shows their sum).
A fresh wrapper per run keeps one run's peak from hiding the next one's.

Commands (the ones whose program is not installed are left out, with a note):

    tcpflow-check json   python -m analyzer CAPTURE --format json   (or --command CMD)
    tcpflow-check text   python -m analyzer CAPTURE                 (the terminal report, piped)
    tshark conv,tcp      tshark -n -q -z conv,tcp -r CAPTURE
    tcptrace -l          tcptrace -n -l CAPTURE
    tcptrace -b          tcptrace -n -b CAPTURE

`-n` keeps tshark and tcptrace from resolving names (no network). `python -m analyzer` runs
the checkout given by `--root` (default: the one holding this script), started in that
directory with it on PYTHONPATH (the line `analyzer` says which package was imported);
`--command tcpflow-check` times an installed console script instead.

The packet count comes from reading the capture once with `analyzer.capture.files` before the runs;
that read also puts the file in the page cache, so every tool reads it warm. Columns: wall
seconds (best of `--repeat` runs), packets per second (packets / wall), CPU seconds (user +
system of that run), peak MiB (the highest of the runs), and wall time divided by that of
the first tcpflow-check row (above 1: slower than tcpflow-check).

`--args OPTIONS` adds tcpflow-check options to its rows (the connection-cost shapes of
`generate.py --shape`: `--args '--max-connections 3000000'`, so that no connection is shed).

`--profile` times nothing: it runs `analyzer.pipeline.analyze` on the capture in this process
under cProfile and prints the 25 functions with the most time of their own (tottime).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))

#: The wrapper run in a fresh interpreter for each measurement: the command as JSON in, one
#: JSON line out.
_MEASURE = r"""
import json, os, resource, subprocess, sys, tempfile, time
job = json.loads(sys.argv[1])
timeout = job["timeout"] or None

def tree_rss(pid):
    # The resident memory of the process and its descendants, summed (Linux /proc).
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/status" % p) as fh:
                total += next((int(l.split()[1]) for l in fh if l.startswith("VmRSS:")), 0) * 1024
            with open("/proc/%d/task/%d/children" % (p, p)) as fh:
                todo.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            pass
    return total

err_file = tempfile.TemporaryFile()
t = time.perf_counter()
p = subprocess.Popen(job["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=err_file, env=dict(os.environ, **job["env"]), cwd=job["cwd"])
tree, rc = 0, None
while True:
    try:
        rc = p.wait(timeout=0.02)
        break
    except subprocess.TimeoutExpired:
        tree = max(tree, tree_rss(p.pid))
        if timeout and time.perf_counter() - t > timeout:
            p.kill()
            p.wait()
            rc = None
            break
wall = time.perf_counter() - t
err_file.seek(0)
err = err_file.read()[-1500:].decode("utf-8", "replace")
if rc is None:
    err = "timed out after %s s" % timeout
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
scale = 1 if sys.platform == "darwin" else 1024          # ru_maxrss: bytes on macOS, KiB on Linux
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss": max(ru.ru_maxrss * scale, tree), "rc": rc, "stderr": err}))
"""


class Tool:
    """One command line to time, with its extra environment and working directory."""

    def __init__(self, name: str, argv: List[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env or {}, cwd

    @property
    def installed(self) -> bool:
        return shutil.which(self.argv[0]) is not None


def tools(capture: str, command: Optional[str], root: str, wanted: Sequence[str],
          jobs: Sequence[str] = (), extra: Sequence[str] = ()) -> List[Tool]:
    """The commands to time, in table order, filtered by the `--tools` families; `jobs`: the
    JSON and conn.log runs again with each of these `--jobs` values; `extra` options go to
    every tcpflow-check row."""
    if command:
        base, env, cwd = shlex.split(command), {}, None
    else:       # -m puts the working directory first on sys.path: run it from the checkout
        base, env, cwd = [sys.executable, "-m", "analyzer"], {"PYTHONPATH": root}, root
    base = base + list(extra)
    every = [
        ("tcpflow-check", Tool("tcpflow-check json", base + [capture, "--format", "json"],
                               env, cwd)),
        *[("tcpflow-check", Tool("tcpflow-check json --jobs %s" % n,
                                 base + [capture, "--format", "json", "--jobs", n], env, cwd))
          for n in jobs],
        ("tcpflow-check", Tool("tcpflow-check zeek", base + [capture, "--format", "zeek"],
                               env, cwd)),
        *[("tcpflow-check", Tool("tcpflow-check zeek --jobs %s" % n,
                                 base + [capture, "--format", "zeek", "--jobs", n], env, cwd))
          for n in jobs],
        ("tcpflow-check", Tool("tcpflow-check text", base + [capture], env, cwd)),
        ("tcpflow-check", Tool("tcpflow-check text --all", base + [capture, "--all"], env, cwd)),
        ("tshark", Tool("tshark conv,tcp",
                        ["tshark", "-n", "-q", "-z", "conv,tcp", "-r", capture])),
        ("tcptrace", Tool("tcptrace -l", ["tcptrace", "-n", "-l", capture])),
        ("tcptrace", Tool("tcptrace -b", ["tcptrace", "-n", "-b", capture])),
    ]
    return [tool for family, tool in every if family in wanted]


def measure(tool: Tool, timeout: float) -> dict:
    """Run the tool once under the wrapper; its wall/cpu seconds, peak RSS bytes, exit code."""
    job = {"argv": tool.argv, "env": tool.env, "cwd": tool.cwd, "timeout": timeout}
    out = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(job)],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    return json.loads(out)


def count_packets(capture: str, root: str) -> Tuple[int, int]:
    """(records, bytes) of the capture, read once with the project's own reader."""
    sys.path.insert(0, root)
    from analyzer.capture.files import CaptureStats, open_capture
    stats = CaptureStats()
    source = open_capture(capture, stats)
    n = 0
    try:
        for _ in source:
            n += 1
    finally:
        source.close()
    for warning in stats.warnings:
        print("warning: " + warning, file=sys.stderr)
    return n, os.path.getsize(capture)


def version(argv: List[str]) -> str:
    """First line a tool prints about its version ('' if it prints none)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [ln.strip() for ln in p.stdout.splitlines() if re.search(r"\d\.\d", ln)]
    return lines[0] if lines else ""


def imported(root: str) -> str:
    """Where `python -m analyzer`, started as the runs start it, finds the package."""
    code = ("import analyzer; print(analyzer.__file__, analyzer.__version__, \"(%s)\" % "
            "(analyzer.build() if hasattr(analyzer, \"build\") else \"pure Python\"))")
    p = subprocess.run([sys.executable, "-c", code], cwd=root,
                       env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    return p.stdout.strip()


def table(rows: List[dict], packets: int) -> str:
    """The results as a Markdown table (readable as plain text too)."""
    head = ("tool", "wall s", "packets/s", "CPU s", "peak MiB", "wall ÷ tcpflow-check")
    ref = next((r["wall"] for r in rows if r["ok"] and r["name"].startswith("tcpflow-check")), None)
    lines = [head]
    for r in rows:
        if not r["ok"]:
            lines.append((r["name"], "failed", "", "", "", r["why"]))
            continue
        ratio = f"{r['wall'] / ref:.2f}" if ref else "-"
        lines.append((r["name"], f"{r['wall']:.2f}", f"{packets / r['wall']:,.0f}",
                      f"{r['cpu']:.2f}", f"{r['rss'] / 2**20:,.0f}", ratio))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]

    def fmt(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(lines[0]), rule] + [fmt(line) for line in lines[1:]])


def profile(capture: str, root: str, top: int = 25) -> None:
    """analyze() under cProfile; the `top` functions by their own time."""
    import cProfile
    import pstats
    sys.path.insert(0, root)
    from analyzer.pipeline import analyze
    prof = cProfile.Profile()
    began = time.perf_counter()
    prof.enable()
    report = analyze([capture])
    prof.disable()
    took = time.perf_counter() - began
    print(f"analyze({capture!r}) under cProfile: {took:.1f} s, {report.capture.packets:,} packets, "
          f"{len(report.connections):,} connections")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="best of N runs (default 1)")
    ap.add_argument("--tools", default="tcpflow-check,tshark,tcptrace",
                    help="comma-separated families to time (default: all three)")
    ap.add_argument("--command", help="tcpflow-check command line, e.g. 'tcpflow-check' "
                    "(default: python -m analyzer from --root)")
    ap.add_argument("--root", default=os.path.dirname(HERE),
                    help="checkout whose analyzer is run (default: this one)")
    ap.add_argument("--jobs", default="", metavar="N,...",
                    help="also time the JSON and conn.log runs with --jobs N for each N (e.g. 2,auto)")
    ap.add_argument("--timeout", type=float, default=0, help="seconds per run (default: none)")
    ap.add_argument("--args", default="", metavar="OPTIONS",
                    help="more tcpflow-check options, e.g. '--max-connections 3000000' for the "
                    "shapes with more connections open at once than the default cap")
    ap.add_argument("--profile", action="store_true", help="profile analyze() instead of timing")
    a = ap.parse_args(argv)
    capture, root = os.path.abspath(a.capture), os.path.abspath(a.root)
    if not os.path.isfile(capture):
        ap.error(f"{a.capture}: no such file")
    if a.profile:
        profile(capture, root)
        return 0
    wanted = [w.strip() for w in a.tools.split(",") if w.strip()]
    unknown = set(wanted) - {"tcpflow-check", "tshark", "tcptrace"}
    if unknown or not wanted:
        ap.error(f"--tools: choose among tcpflow-check, tshark, tcptrace (not {sorted(unknown)})")
    began = time.perf_counter()
    packets, size = count_packets(capture, root)
    print(f"capture  {a.capture}: {packets:,} packets, {size:,} bytes ({size / 2**30:.2f} GiB); "
          f"counted in {time.perf_counter() - began:.1f} s")
    print(f"machine  {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    if not a.command and "tcpflow-check" in wanted:
        print(f"analyzer {imported(root)}")
    rows = []
    jobs = [n.strip() for n in a.jobs.split(",") if n.strip()]
    for tool in tools(capture, a.command, root, wanted, jobs, shlex.split(a.args)):
        if not tool.installed:
            print(f"skipped  {tool.name}: {tool.argv[0]} is not installed")
            continue
        print(f"running  {tool.name}: {' '.join(shlex.quote(x) for x in tool.argv)}", flush=True)
        runs = [measure(tool, a.timeout) for _ in range(max(1, a.repeat))]
        bad = [r for r in runs if r["rc"] != 0]
        if bad:
            why = bad[0]["stderr"].strip().splitlines()[-1:] or [f"exit code {bad[0]['rc']}"]
            rows.append({"name": tool.name, "ok": False, "why": why[0][:80]})
            continue
        best = min(runs, key=lambda r: r["wall"])
        rows.append({"name": tool.name, "ok": True, "wall": best["wall"], "cpu": best["cpu"],
                     "rss": max(r["rss"] for r in runs)})
    for name, argv_ in (("tshark", ["tshark", "--version"]), ("tcptrace", ["tcptrace", "-v"])):
        if name in wanted and shutil.which(name):
            print(f"version  {version(argv_)}")
    print()
    print(table(rows, packets))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
