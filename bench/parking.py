"""Connections past --max-connections: peak RSS, parkings and what the report says.

    python bench/parking.py flood --syns 2000000 --out /tmp/flood2m.pcap     # write a flood
        [--sources N]
    python bench/parking.py run CAPTURE [--python PY] [tcpflow-check options]

`flood` writes a spoofed SYN flood: N SYNs to one server, each from its own source address and
port (or from `--sources` addresses, ports counting up), 20 µs apart, never answered (every one
a connection open until the end). Few sources keep the scan detector small (it keeps a record
per source address), so the run's memory is the flow table's. `run` analyses a
capture with `PY -m analyzer CAPTURE --format json` (PY: the interpreter whose install to
measure, e.g. a venv's python with the compiled build) under `/usr/bin/time -v`, and prints
peak RSS, user and system CPU seconds, the connections reported, and `capture.parked`,
`capture.memory_bound` and `capture.evicted_early` (missing on builds without them).

Timing on a shared machine is noise: for CPU compare instruction counts under
`valgrind --tool=callgrind` (bench/README.md, "Memory past --max-connections").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from analyzer.decode.segment import SYN  # noqa: E402
from analyzer.testing.synth import LINKTYPE_ETHERNET, PcapWriter, frame, syn_options, tcp_packet  # noqa: E402


def flood(syns: int, out: str, sources: int = 0) -> None:
    """`syns` spoofed SYNs to 192.0.2.80:80 from 10.x.y.z, 20 µs apart: one address each, or
    `sources` addresses."""
    t0 = 1_700_000_000 * 10 ** 9
    options = syn_options()
    with open(out, "wb") as fh:
        w = PcapWriter(fh, LINKTYPE_ETHERNET)
        for i in range(syns):
            a = i % sources if sources else i
            port = 1024 + ((i // sources) % 64000 if sources else (i * 7919) % 60000)
            src = "10.%d.%d.%d" % ((a >> 16) & 255, (a >> 8) & 255, a & 255)
            ip = tcp_packet(src, "192.0.2.80", port, 80, SYN,
                            (i * 2654435761) & 0xFFFFFFFF, options=options)
            w.write(t0 + i * 20_000, frame(ip))
    print("%s: %d SYNs" % (out, syns))


def run(capture: str, python: str, options: list) -> None:
    with tempfile.TemporaryFile() as report:
        proc = subprocess.run(["/usr/bin/time", "-v", python, "-m", "analyzer", capture,
                               "--format", "json", "-q"] + options,
                              stdout=report, stderr=subprocess.PIPE, check=False)
        report.seek(0)
        err = proc.stderr.decode(errors="replace")
        if proc.returncode not in (0, 1):
            sys.exit("%s exited %d: %s" % (python, proc.returncode, err[-2000:]))
        doc = json.load(report)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))
    cap = doc["capture"]
    print("peak RSS %.1f MiB, user %.1f s, sys %.1f s; %d connections; parked %s, "
          "memory_bound %s, evicted_early %s" % (
              rss / 1024, user, system, doc["summary"]["connections"], cap.get("parked", "-"),
              cap.get("memory_bound", "-"), cap.get("evicted_early", "-")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--syns", type=int, default=2_000_000)
    f.add_argument("--out", required=True)
    f.add_argument("--sources", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("capture")
    r.add_argument("--python", default=sys.executable)
    a, options = ap.parse_known_args()
    if a.cmd == "flood":
        flood(a.syns, a.out, a.sources)
    else:
        run(a.capture, a.python, [o for o in options if o != "--"])


if __name__ == "__main__":
    main()
