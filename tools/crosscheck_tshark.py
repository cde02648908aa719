#!/usr/bin/env python3
"""Check that our connection numbers are Wireshark's `tcp.stream` numbers.

For each capture (every file in the shared corpus's MANIFEST.tsv, or the files given), run

    tshark -n -r FILE -o tcp.analyze_sequence_numbers:TRUE -Y "tcp && !icmp && !icmpv6"
           -T fields -e frame.number -e tcp.stream -e tcp.srcport -e tcp.dstport -e frame.protocols

derive each tcp.stream's first frame, last frame and packet count, and compare them with our
connections' `id`, `first_frame`, `last_frame` and `packets.orig + packets.resp`.

What tshark numbers that we do not, and how each case is counted (neither is a disagreement):

* TCP quoted inside ICMP/ICMPv6 errors. tshark gives the quoted header a tcp.stream number (a
  new one when no conversation matches), so those numbers are missing from the filtered output
  above: `icmp_only`. We number them the same way (a gap in our ids too); tshark's own
  `-z conv,tcp` table leaves them out, and so do we.
* TCP our decoder deliberately leaves alone (analyzer/decode/frames.py SKIP_REASONS): tunnels other
  than IP-in-IP (GRE/ERSPAN, GTP-U, L2TP, ...), IP fragments (tshark reassembles them), TCP
  headers inside another payload (sFlow samples). A tshark stream all of whose frames we skip
  is `not_decoded:<our reason>(<what carried the TCP, from tshark's frame.protocols>)`; a
  stream of which only some frames are such is `not_decoded_frames:...`.

Our ids are expected to be tshark's numbers minus the number of such streams before them: a
stream whose first/last frame and packet count agree and whose id equals tcp.stream is `agree`;
with a lower id by exactly that shift it is `renumbered` (Wireshark's `tcp.stream eq N` then
names another connection than our id N). Anything else is a disagreement:

* `frames_skipped:<reason>` — the same stream, but we drop some of its frames for a reason
  that is not deliberate (e.g. `truncated_tcp`);
* `split` / `merged` — we cut the 4-tuple into more / fewer connections than tshark;
* `ours_only` — a connection of ours with no tshark stream starting at its first frame;
* `id_differs` — same frames, but our id is off by other than the expected shift (reported
  once where the numbering jumps);
* `differs` — anything else.

Usage: python3 tools/crosscheck_tshark.py [-v] [FILE...]   (exit status 1 on a disagreement)
Needs tshark (checked with 4.0) on PATH.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.capture.files import CaptureError, CaptureStats, open_capture, read_frames  # noqa: E402
from analyzer.decode.frames import decode_frame  # noqa: E402
from analyzer.pipeline import analyze  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
TSHARK_FILTER = "tcp && !icmp && !icmpv6"
#: Our decoder's skip reasons that are deliberate (see analyzer/decode/frames.py SKIP_REASONS): TCP
#: that is not at the top of the packet (sFlow samples, ICMP quotes), tunnels, fragments.
DELIBERATE = frozenset({"not_tcp", "tunnel_not_decoded", "ip_fragment"})
#: Outcomes that are not disagreements: the streams line up once tshark's extra ones are removed.
EXPLAINED = ("agree", "renumbered", "icmp_only", "not_decoded")


class Stream:
    """One tshark tcp.stream: its frames, in order."""
    __slots__ = ("num", "frames")

    def __init__(self, num: int) -> None:
        self.num = num
        self.frames: List[int] = []


def tshark_streams(path: str) -> Tuple[Dict[int, Stream], Dict[int, str]]:
    """tcp.stream -> Stream for TCP not inside ICMP errors, and frame -> what carries its TCP."""
    cmd = ["tshark", "-n", "-r", path, "-o", "tcp.analyze_sequence_numbers:TRUE",
           "-Y", TSHARK_FILTER, "-T", "fields", "-e", "frame.number", "-e", "tcp.stream",
           "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "frame.protocols"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    streams: Dict[int, Stream] = {}
    carriers: Dict[int, str] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1]:
            continue
        frame = int(parts[0])
        carriers[frame] = _carrier(parts[4] if len(parts) > 4 else "")
        # A frame with two TCP headers (TCP in a tunnel over TCP) lists both streams.
        for s in parts[1].split(","):
            n = int(s)
            st = streams.get(n)
            if st is None:
                st = streams[n] = Stream(n)
            st.frames.append(frame)
    return streams, carriers


def _carrier(protocols: str) -> str:
    """What lies between the outer IP header and the TCP header in tshark's frame.protocols
    (`udp:l2tp:ppp:ipv6`, `gre:erspan:eth:ip`, `udp:sflow:eth:ip`), '' for plain IP/TCP."""
    layers = [p for p in protocols.split(":") if p not in ("ethertype", "eth", "vlan")]
    try:
        start = next(i for i, p in enumerate(layers) if p in ("ip", "ipv6")) + 1
        end = layers.index("tcp")
    except (StopIteration, ValueError):
        return ""
    return ":".join(layers[start:end])


def our_skips(path: str) -> Dict[int, str]:
    """frame number -> our decoder's skip reason, for every frame we do not read as TCP."""
    stats = CaptureStats()
    try:
        src = open_capture(path, stats)
    except CaptureError:
        return {}
    skips = {}
    for num, (_, linktype, buf) in enumerate(read_frames([src], stats), 1):
        seg = decode_frame(linktype, buf)
        if isinstance(seg, str):
            skips[num] = seg
    return skips


class Outcome:
    """Per-file comparison result."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tshark = 0          # tshark stream numbers (0..max), including icmp_only gaps
        self.ours = 0
        self.kinds: Counter = Counter()
        self.details: List[str] = []

    @property
    def disagreements(self) -> int:
        return sum(n for k, n in self.kinds.items() if not k.startswith(EXPLAINED))


def compare(path: str) -> Outcome:
    res = Outcome(path)
    report = analyze([path]).to_dict()
    conns = report["connections"]
    res.ours = len(conns)
    streams, carriers = tshark_streams(path)
    top = max(streams) + 1 if streams else 0
    res.tshark = top
    skips = our_skips(path) if streams else {}

    def why(frames: List[int]) -> str:
        """Our skip reasons for these frames, with what tshark saw carrying the TCP."""
        return ",".join(sorted({skips.get(f, "?") + ("(%s)" % carriers[f] if carriers.get(f)
                                                     else "") for f in frames}))

    by_first = {c["first_frame"]: c for c in conns}
    matched = set()
    shift = 0                       # tshark streams so far that we do not have
    for n in range(top):
        st = streams.get(n)
        if st is None:
            # We give that 4-tuple the same number (flows.FlowTable.reserve): no shift.
            res.kinds["icmp_only"] += 1
            continue
        ours = [f for f in st.frames if f not in skips]
        if not ours:
            res.kinds["not_decoded:" + why(st.frames)] += 1
            shift += 1
            continue
        c = by_first.get(ours[0])
        if c is None:
            res.kinds["merged"] += 1
            res.details.append("tcp.stream %d (frames %d..%d, %d pkts): no connection of ours "
                               "starts at frame %d" % (n, st.frames[0], st.frames[-1],
                                                       len(st.frames), ours[0]))
            shift += 1
            continue
        matched.add(c["id"])
        pk = c["packets"]["orig"] + c["packets"]["resp"]
        theirs = (st.frames[0], st.frames[-1], len(st.frames))
        mine = (c["first_frame"], c["last_frame"], pk)
        if c["id"] != n - shift:
            kind = "id_differs"
            shift = n - c["id"]         # report the jump once, then compare from there on
        elif mine == (ours[0], ours[-1], len(ours)) and mine != theirs:
            skipped = [f for f in st.frames if f in skips]
            deliberate = all(skips[f] in DELIBERATE for f in skipped)
            kind = ("not_decoded_frames:" if deliberate else "frames_skipped:") + why(skipped)
        elif mine == theirs:
            kind = "agree" if c["id"] == n else "renumbered"
        elif c["last_frame"] < ours[-1] and pk < len(ours):
            kind = "split"
        else:
            kind = "differs"
        res.kinds[kind] += 1
        if not kind.startswith(EXPLAINED):
            res.details.append("tcp.stream %d frames %d..%d %d pkts; ours id %d frames %d..%d "
                               "%d pkts: %s" % (n, *theirs, c["id"], *mine, kind))
    for c in conns:
        if c["id"] not in matched:
            res.kinds["ours_only"] += 1
            res.details.append("our id %d frames %d..%d: no tcp.stream starts there"
                               % (c["id"], c["first_frame"], c["last_frame"]))
    return res


def corpus_files() -> List[str]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return [str(CORPUS / r["local_path"]) for r in csv.DictReader(fh, delimiter="\t")]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="captures (default: the whole shared corpus)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every disagreement")
    args = ap.parse_args(argv)
    files = args.files or corpus_files()
    total: Counter = Counter()
    nfiles = streams = ours = bad_files = 0
    width = min(max(len(_short(f)) for f in files), 56)
    for path in files:
        o = compare(path)
        nfiles += 1
        streams += o.tshark
        ours += o.ours
        total.update(o.kinds)
        extra = " ".join("%s=%d" % kv for kv in sorted(o.kinds.items()) if kv[0] != "agree")
        flag = "DIFF" if o.disagreements else "ok  "
        if o.disagreements:
            bad_files += 1
        if o.disagreements or extra or args.verbose:
            print("%s %-*s tshark %5d ours %5d agree %5d %s"
                  % (flag, width, _short(path), o.tshark, o.ours, o.kinds["agree"], extra))
        if args.verbose or o.disagreements:
            for d in o.details:
                print("       " + d)
    real = sum(n for k, n in total.items() if not k.startswith(EXPLAINED))
    print("\nfiles compared %d (%d with disagreements); tshark streams %d; our connections %d"
          % (nfiles, bad_files, streams, ours))
    print("streams agreeing (same number, first/last frame, packet count): %d" % total["agree"])
    for k, n in sorted(total.items()):
        if k != "agree":
            print("  %-40s %6d%s" % (k, n, "" if k.startswith(EXPLAINED) else "   <- disagreement"))
    print("unexplained disagreements: %d" % real)
    return 1 if real else 0


def _short(path: str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(CORPUS))
    except ValueError:
        return path


if __name__ == "__main__":
    sys.exit(main())
