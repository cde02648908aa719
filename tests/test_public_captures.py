"""Public captures of each encapsulation, against tshark: our connection count against the
number of `tcp.stream` values tshark gives, capture by capture, and our radiotap reading (dpkt)
against tshark's on every radiotap frame.

The captures are not in this repository (licences, size): `tests/public_captures.tsv` pins
211 of them (Zeek's btest traces, tcpdump's tests, suricata-verify) by repository, commit and
path, and `tools/public_captures.py DEST MIRRORS` extracts them. The tests read them from the
directory named by the environment variable `TCPFLOW_PUBLIC_CAPTURES`, and skip with the
reason when it is unset, a capture is missing or tshark is not installed.

Every capture where the counts differ is in `DIFFERENCES`, with both counts and the reason,
so that a change either way fails. docs/conformance.md sums them up.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from analyzer.capture.files import CaptureStats, open_capture, read_frames
from analyzer.decode.wlan import radiotap_flags
from analyzer.pipeline import analyze

LIST = Path(__file__).resolve().parent / "public_captures.tsv"
ROOT = os.environ.get("TCPFLOW_PUBLIC_CAPTURES", "")
TSHARK = shutil.which("tshark")


def _listed() -> List[str]:
    with open(LIST, newline="") as fh:
        return [row["local_path"] for row in csv.DictReader(fh, delimiter="\t")]


CAPTURES = _listed()

_TEREDO_PORTS = ("Teredo between a client and a relay on UDP ports 3797 and 32900: tshark opens "
                 "Teredo only on port 3544 unless its heuristic is on (-o "
                 "teredo.heuristic_teredo:TRUE counts it); we open Teredo on any port when the "
                 "payload is an IPv6 packet of exactly its length with a Teredo address, and "
                 "Zeek logs it too")
_GSO_UDP = ("BIG TCP inside a tunnel: the outer IPv4 total length (or IPv6 payload length) and "
            "the UDP length are 0, as Linux hands a GSO packet to the capture; tshark 4.0 stops "
            "at 'Bad length value 0 < 8' in UDP, we read the packet to the end of the frame")

#: local path -> (tshark's tcp.stream count, our connections, why).
DIFFERENCES: Dict[str, Tuple[int, int, str]] = {
    "zeek/tunnels__Teredo.pcap": (4, 5, _TEREDO_PORTS),
    "suricata-verify/decode-teredo-01__input.pcap": (4, 5, _TEREDO_PORTS),
    "zeek/tunnels__teredo_bubble_with_payload.pcap": (0, 1, _TEREDO_PORTS),
    "zeek/tunnels__tunnel-direct-bypass.pcap": (
        1, 2, "one 4-tuple's packets alternate between plain IPv4 and GRE (a crafted bypass "
        "test): the tunnel context is part of our key, so the tunnelled half is a connection of "
        "its own; tshark keys by the inner 4-tuple only"),
    "tcpdump/bigtcp-ipv6.pcap": (
        0, 1, "Linux BIG TCP over IPv6 without the hop-by-hop jumbo option (payload length 0, "
              "next header TCP): tshark 4.0 flags the TCP header malformed, we read the segment "
              "to the end of the frame (tcpdump prints it)"),
    **{"tcpdump/bigtcp-%s-%s-%s.pcap" % (o, t, i): (0, 1, _GSO_UDP)
       for o in ("ipv4", "ipv6") for t in ("geneve", "vxlan") for i in ("ipv4", "ipv6")},
}


def _path(local: str) -> Path:
    if not ROOT:
        pytest.skip("TCPFLOW_PUBLIC_CAPTURES is not set (tools/public_captures.py makes the "
                    "directory)")
    path = Path(ROOT) / local
    if not path.exists():
        pytest.skip("%s is not in %s" % (local, ROOT))
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    return path


@lru_cache(maxsize=None)
def _tshark(path: Path, *fields: str) -> List[List[str]]:
    cmd = [str(TSHARK), "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_the_list_and_the_differences_agree():
    assert len(CAPTURES) == len(set(CAPTURES)) == 211
    assert set(DIFFERENCES) <= set(CAPTURES)


@pytest.mark.parametrize("local", CAPTURES)
def test_connection_count_matches_tshark_streams(local):
    path = _path(local)
    streams = {s for row in _tshark(path, "tcp.stream") for s in row[0].split(",") if s}
    doc = analyze([str(path)]).to_dict()
    ours = doc["summary"]["connections"]
    got = (len(streams), ours)
    if local in DIFFERENCES:
        assert got == DIFFERENCES[local][:2], DIFFERENCES[local][2]
    else:
        assert ours == len(streams), doc["capture"]["skipped"]


@pytest.mark.parametrize("local", CAPTURES)
def test_radiotap_flags_as_tshark_reads_them(local):
    path = _path(local)
    stats = CaptureStats()
    frames = [buf for _, linktype, buf in read_frames([open_capture(str(path), stats)], stats)
              if linktype == 127]
    if not frames:
        pytest.skip("no radiotap frames")
    rows = _tshark(path, "radiotap.length", "radiotap.flags")
    assert len(rows) == len(frames)
    for buf, (length, flags) in zip(frames, rows):
        ours = radiotap_flags(buf[:int(length)])
        if flags:
            assert ours == int(flags, 16), (local, length, flags)
        else:       # no Flags field, or a header tshark calls invalid (we: bad_link_header)
            assert ours in (0, -1), (local, length)
