"""Scans: one source probing many ports or hosts, gathered into one capture-wide finding.

Fed each finished connection; a probe is an attempt that found nothing listening or nobody
answering, or a half-open probe of an open port: a SYN refused or unanswered, a SYN-ACK never
acknowledged or answered by the prober's RST, or a probe answered by a closed port (handshake
`stray` with CLOSED_PORT_PROBE). A source with probes to at least `threshold` distinct ports
(a vertical scan) or distinct hosts (a horizontal one) gets one PORT_SCAN finding with the
counts, at its first probe. Each connection keeps its own verdict; the scan is said once.
Memory: per source a set of ports (at most 65,536) and of host hashes (bounded by `MAX_HOSTS`),
never the connections.
"""

from __future__ import annotations

from typing import Dict, Final, List, Set, Tuple
from zlib import crc32

from analyzer.common.findings import Finding
from analyzer.judge.result import ConnResult
from analyzer.decode.segment import addr_str

#: Distinct ports, or distinct hosts, one source must have probed to be called a scan.
DEFAULT_THRESHOLD: Final = 20
#: Hosts remembered per source (a sweep of a /8 must not grow memory without bound).
MAX_HOSTS: Final = 65536
_PROBES: Final = frozenset({"refused", "unanswered"})


class Scan:
    __slots__ = ("ports", "hosts", "kinds", "first_ts", "first_frame", "probes")

    def __init__(self, ts: int, frame: int) -> None:
        self.ports: Set[int] = set()
        self.hosts: Set[int] = set()
        self.kinds: Dict[str, int] = {}
        self.first_ts = ts
        self.first_frame = frame
        self.probes = 0


class ScanDetector:
    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.sources: Dict[bytes, Scan] = {}

    def add(self, r: ConnResult) -> None:
        if r.handshake in _PROBES:
            kind = "SYN " + r.handshake
        elif r.handshake == "stray" and any(f.code == "CLOSED_PORT_PROBE" for f in r.findings):
            kind = "answered by a closed port"
        elif (r.handshake == "half_open" or (r.handshake == "reset" and r.reset_by == "orig")) \
                and not any(f.code == "SYN_NOT_CAPTURED" for f in r.findings):
            kind = "SYN-ACK not acknowledged (open)"      # (SYN-ACKs alone: a reflection)
        else:
            return
        src = r.orig_raw[0]
        scan = self.sources.get(src)
        if scan is None:
            scan = self.sources[src] = Scan(r.start, r.first_frame)
        if r.start < scan.first_ts or (r.start == scan.first_ts
                                       and r.first_frame < scan.first_frame):
            scan.first_ts, scan.first_frame = r.start, r.first_frame
        scan.probes += 1
        scan.ports.add(r.resp_raw[1])
        if len(scan.hosts) < MAX_HOSTS:
            scan.hosts.add(crc32(r.resp_raw[0]))
        scan.kinds[kind] = scan.kinds.get(kind, 0) + 1

    def merge(self, other: "ScanDetector") -> None:
        """Take in what another detector saw (a shard of a parallel run)."""
        for src, theirs in other.sources.items():
            scan = self.sources.get(src)
            if scan is None:
                self.sources[src] = theirs
                continue
            if (theirs.first_ts, theirs.first_frame) < (scan.first_ts, scan.first_frame):
                scan.first_ts, scan.first_frame = theirs.first_ts, theirs.first_frame
            scan.probes += theirs.probes
            scan.ports |= theirs.ports
            for host in theirs.hosts:
                if len(scan.hosts) >= MAX_HOSTS:
                    break
                scan.hosts.add(host)
            for kind, n in theirs.kinds.items():
                scan.kinds[kind] = scan.kinds.get(kind, 0) + n

    def findings(self) -> List[Finding]:
        out = []
        for src, scan in sorted(self.sources.items()):
            if len(scan.ports) < self.threshold and len(scan.hosts) < self.threshold:
                continue
            hosts = len(scan.hosts)
            f = Finding("PORT_SCAN", scan.first_ts, scan.first_frame, "orig",
                        "%s probed %d port%s on %s%d host%s (%d probes: %s)" % (
                            addr_str(src), len(scan.ports), "" if len(scan.ports) == 1 else "s",
                            "at least " if hosts >= MAX_HOSTS else "", hosts,
                            "" if hosts == 1 else "s", scan.probes,
                            ", ".join("%d %s" % (n, k) for k, n in sorted(scan.kinds.items()))))
            f.count = scan.probes
            out.append(f)
        return out
