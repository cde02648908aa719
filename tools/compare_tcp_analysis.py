#!/usr/bin/env python3
"""Compare our sequence analysis with tshark's `tcp.analysis` flags, per file and per stream.

For each capture (every file of the shared corpus's MANIFEST.tsv, or the files given) run tshark
once:

    tshark -n -r FILE -o tcp.analyze_sequence_numbers:TRUE -Y "tcp && !icmp && !icmpv6"
           -T fields -e frame.number -e tcp.stream -e tcp.analysis.flags
           -e tcp.analysis.retransmission -e tcp.analysis.fast_retransmission
           -e tcp.analysis.spurious_retransmission -e tcp.analysis.out_of_order
           -e tcp.analysis.lost_segment -e tcp.analysis.ack_lost_segment
           -e tcp.analysis.keep_alive -e tcp.analysis.keep_alive_ack -e tcp.analysis.zero_window
           -e tcp.analysis.reused_ports -e tcp.flags.syn -e tcp.flags.fin -e tcp.flags.ack

count the flagged frames of each tcp.stream, and compare them with our connection of the same
id (`analyzer.pipeline.analyze([FILE]).to_dict()`; our ids are tcp.stream numbers).

How the categories map (CATEGORIES below):

* retransmissions — tshark's `tcp.analysis.retransmission` is set on every kind of resend: SYN,
  SYN-ACK, FIN, data, and also on the frames it calls fast or spurious retransmissions (those
  carry both flags). Ours are split: SYN and SYN-ACK retransmissions are the counts of the
  SYN_RETRANSMITTED and SYNACK_RETRANSMITTED findings (`syn_retransmissions` is the originator's
  part), data and FIN retransmissions are `analysis.{orig,resp}.retransmissions`. The two sub-rows
  compare tshark's flagged frames with and without the SYN bit against each part.
* reused ports — ours are the PORT_REUSE and TIME_WAIT_REUSE findings: a new connection on a used
  4-tuple. tshark also flags a SYN-ACK whose sequence number differs from the base its sender
  already had (from a SYN-ACK, a stale ACK or a RST) without starting a new tcp.stream; the
  sub-row counts only the flags on SYNs without ACK, each of which starts a new tcp.stream.
* out_of_order, lost_segments, acked_unseen, keepalives, keepalive_acks, zero_windows — one
  tshark flag each, against the same-named counters of `analysis.{orig,resp}`.

Where the two differ, and why, is in docs/conformance.md ("Sequence analysis against tshark");
tests/test_tcp_analysis_conformance.py holds every corpus file to its counts without tshark.

Usage: python3 tools/compare_tcp_analysis.py [-v] [-j N] [FILE...]
  -v   list, for each differing file, the streams whose counts differ
Needs tshark (checked with 4.0.17) on PATH. Exit status 0; 2 if tshark failed on a file.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.pipeline import analyze  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
TSHARK_FILTER = "tcp && !icmp && !icmpv6"
FIELDS = ("frame.number", "tcp.stream", "tcp.analysis.flags", "tcp.analysis.retransmission",
          "tcp.analysis.fast_retransmission", "tcp.analysis.spurious_retransmission",
          "tcp.analysis.out_of_order", "tcp.analysis.lost_segment",
          "tcp.analysis.ack_lost_segment", "tcp.analysis.keep_alive",
          "tcp.analysis.keep_alive_ack", "tcp.analysis.zero_window", "tcp.analysis.reused_ports",
          "tcp.flags.syn", "tcp.flags.fin", "tcp.flags.ack")
Frame = Dict[str, str]
Counts = Dict[int, Counter]          # stream id -> category -> count


def _flag(name: str) -> Callable[[Frame], bool]:
    return lambda f: f[name] != ""


def _syn(f: Frame) -> bool:
    return f["tcp.flags.syn"] in ("1", "True")


def _ack(f: Frame) -> bool:
    return f["tcp.flags.ack"] in ("1", "True")


def _findings(c: dict, *codes: str) -> int:
    return sum(f["count"] for f in c["findings"] if f["code"] in codes)


def _sides(name: str) -> Callable[[dict], int]:
    return lambda c: sum(side.get(name, 0) for side in c["analysis"].values())


def _syn_retransmissions(c: dict) -> int:
    return _findings(c, "SYN_RETRANSMITTED", "SYNACK_RETRANSMITTED")


class Category(NamedTuple):
    name: str
    tshark: Callable[[Frame], bool]       # is this frame counted by tshark?
    ours: Callable[[dict], int]           # our count for one connection (JSON `connections[]`)


_RETR = _flag("tcp.analysis.retransmission")
_REUSED = _flag("tcp.analysis.reused_ports")

#: The rows of the table, in order. Names starting with two spaces are parts of the row above.
CATEGORIES = (
    Category("retransmissions", _RETR,
             lambda c: _syn_retransmissions(c) + _sides("retransmissions")(c)),
    Category("  of SYN/SYN-ACK", lambda f: _RETR(f) and _syn(f), _syn_retransmissions),
    Category("  of data/FIN", lambda f: _RETR(f) and not _syn(f), _sides("retransmissions")),
    Category("out_of_order", _flag("tcp.analysis.out_of_order"), _sides("out_of_order")),
    Category("lost_segments", _flag("tcp.analysis.lost_segment"), _sides("lost_segments")),
    Category("acked_unseen", _flag("tcp.analysis.ack_lost_segment"), _sides("acked_unseen")),
    Category("keepalives", _flag("tcp.analysis.keep_alive"), _sides("keepalives")),
    Category("keepalive_acks", _flag("tcp.analysis.keep_alive_ack"), _sides("keepalive_acks")),
    Category("zero_windows", _flag("tcp.analysis.zero_window"), _sides("zero_windows")),
    Category("reused_ports", _REUSED,
             lambda c: _findings(c, "PORT_REUSE", "TIME_WAIT_REUSE")),
    Category("  on a SYN (new stream)", lambda f: _REUSED(f) and _syn(f) and not _ack(f),
             lambda c: _findings(c, "PORT_REUSE", "TIME_WAIT_REUSE")),
)
#: tshark-only detail: frames also flagged retransmission (reported as a note under the table).
TSHARK_ONLY = (("fast retransmissions", _flag("tcp.analysis.fast_retransmission")),
               ("spurious retransmissions", _flag("tcp.analysis.spurious_retransmission")))


class TsharkError(Exception):
    pass


def tshark_counts(path: str) -> Tuple[Counts, Counter]:
    """Per tcp.stream, the frames tshark flags in each category; and the tshark-only totals."""
    cmd = ["tshark", "-n", "-r", path, "-o", "tcp.analyze_sequence_numbers:TRUE",
           "-Y", TSHARK_FILTER, "-T", "fields", "-E", "occurrence=f"]
    for name in FIELDS:
        cmd += ["-e", name]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TsharkError("%s: tshark exit %d: %s" % (path, proc.returncode,
                                                     proc.stderr.strip().splitlines()[-1:]))
    counts: Counts = defaultdict(Counter)
    extra: Counter = Counter()
    for line in proc.stdout.splitlines():
        frame = dict(zip(FIELDS, line.split("\t")))
        if not frame.get("tcp.stream"):
            continue
        c = counts[int(frame["tcp.stream"])]
        for cat in CATEGORIES:
            if cat.tshark(frame):
                c[cat.name] += 1
        for name, pred in TSHARK_ONLY:
            if pred(frame):
                extra[name] += 1
    return counts, extra


def our_counts(path: str) -> Counts:
    counts: Counts = defaultdict(Counter)
    for conn in analyze([path]).to_dict()["connections"]:
        c = counts[conn["id"]]
        for cat in CATEGORIES:
            n = cat.ours(conn)
            if n:
                c[cat.name] = n
    return counts


class FileResult(NamedTuple):
    name: str
    tshark: Counts
    ours: Counts
    extra: Counter

    def total(self, side: Counts, cat: str) -> int:
        return sum(c[cat] for c in side.values())

    def agrees(self, cat: str) -> bool:
        """The file's totals agree (streams may still differ and cancel out)."""
        return self.total(self.tshark, cat) == self.total(self.ours, cat)

    def stream_diffs(self, cat: str) -> List[Tuple[int, int, int]]:
        """(stream, tshark, ours) for each stream whose counts differ."""
        out = []
        for i in sorted(set(self.tshark) | set(self.ours)):
            t, o = _get(self.tshark, i, cat), _get(self.ours, i, cat)
            if t != o:
                out.append((i, t, o))
        return out


def _get(side: Counts, stream: int, cat: str) -> int:
    c = side.get(stream)
    return c[cat] if c is not None else 0


def corpus_files() -> List[str]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return [str(CORPUS / r["local_path"]) for r in csv.DictReader(fh, delimiter="\t")]


def short(path: str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(CORPUS.resolve()))
    except ValueError:
        return path


def tshark_version() -> str:
    out = subprocess.run(["tshark", "-v"], capture_output=True, text=True).stdout
    m = re.search(r"\d+\.\d+\.\d+", out.splitlines()[0] if out else "")
    return "tshark " + (m.group(0) if m else "(version unknown)")


def compare(files: List[str], jobs: int) -> Tuple[List[FileResult], List[str]]:
    """tshark runs in `jobs` threads while we analyse the files one after the other."""
    results: List[FileResult] = []
    errors: List[str] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(path, pool.submit(tshark_counts, path)) for path in files]
        for path, fut in futures:
            ours = our_counts(path)
            try:
                theirs, extra = fut.result()
            except TsharkError as exc:
                errors.append(str(exc))
                continue
            results.append(FileResult(short(path), theirs, ours, extra))
    return results, errors


def report(results: List[FileResult], verbose: bool, out=sys.stdout) -> None:
    n = len(results)
    print("Sequence analysis: %s tcp.analysis flags vs tcpflow-check, %d file%s\n"
          % (tshark_version(), n, "" if n == 1 else "s"), file=out)
    rows = []
    for cat in CATEGORIES:
        t = sum(r.total(r.tshark, cat.name) for r in results)
        o = sum(r.total(r.ours, cat.name) for r in results)
        files_ok = sum(1 for r in results if r.agrees(cat.name))
        streams_ok = sum(1 for r in results if not r.stream_diffs(cat.name))
        rows.append((cat.name, t, o, "%d/%d" % (files_ok, n), "%d/%d" % (streams_ok, n)))
    head = ("category", "tshark", "ours", "files agreeing", "every stream agreeing")
    w0 = max(len(r[0]) for r in rows + [head])
    fmt = "%-{0}s  %7s  %7s  %14s  %21s".format(w0)
    print(fmt % head, file=out)
    for row in rows:
        print(fmt % row, file=out)
    extra: Counter = Counter()
    for r in results:
        extra.update(r.extra)
    print("\n(tshark's retransmissions include %s)" % ", ".join(
        "%d %s" % (extra[name], name) for name, _ in TSHARK_ONLY), file=out)

    for cat in CATEGORIES:
        differing = [r for r in results
                     if not r.agrees(cat.name) or (verbose and r.stream_diffs(cat.name))]
        if not differing:
            continue
        print("\n%s: files where the counts differ (tshark -> ours)" % cat.name.strip(), file=out)
        for r in differing:
            t, o = r.total(r.tshark, cat.name), r.total(r.ours, cat.name)
            print("  %-60s %6d -> %d" % (r.name, t, o), file=out)
            if verbose:
                diffs = r.stream_diffs(cat.name)
                shown = ", ".join("%d: %d -> %d" % d for d in diffs[:12])
                more = " (+%d more)" % (len(diffs) - 12) if len(diffs) > 12 else ""
                print("      streams %s%s" % (shown, more), file=out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="captures (default: the whole shared corpus)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list the differing streams of each differing file")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="tshark processes at once")
    args = ap.parse_args(argv)
    files = args.files or corpus_files()
    results, errors = compare(files, max(1, args.jobs))
    report(results, args.verbose)
    for e in errors:
        print("error: " + e, file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
