"""Scans: one source probing many ports or hosts, gathered into one capture-wide finding.

Fed each finished connection; a probe is an attempt that found nothing listening or nobody
answering, or a half-open probe of an open port: a SYN refused or unanswered, a SYN-ACK never
acknowledged or answered by the prober's RST, or a probe answered by a closed port (handshake
`stray` with CLOSED_PORT_PROBE). A source with probes to at least `threshold` distinct ports
(a vertical scan) or distinct hosts (a horizontal one) gets one PORT_SCAN finding with the
counts, at its first probe. Each connection keeps its own verdict; the scan is said once.
Memory: per source a set of ports (at most 65,536) and of host hashes (bounded by `MAX_HOSTS`),
never the connections; a source with one port, one host and one kind of probe (every source of
a spoofed SYN flood) keeps them as plain values, about 200 bytes instead of 830.
"""

from __future__ import annotations

from typing import Dict, Final, List, Optional, Set, Tuple
import zlib

from analyzer.common.findings import Finding
from analyzer.judge.result import ConnResult
from analyzer.decode.segment import addr_str

#: Distinct ports, or distinct hosts, one source must have probed to be called a scan.
DEFAULT_THRESHOLD: Final = 20
#: Hosts remembered per source (a sweep of a /8 must not grow memory without bound).
MAX_HOSTS: Final = 65536
#: (a constant: the compiled build reads an imported name from the module dict at each call)
_crc32: Final = zlib.crc32
#: The kinds of probe of a refused or unanswered SYN (one string each, not one a probe).
_PROBES: Final = {"refused": "SYN refused", "unanswered": "SYN unanswered"}


class Scan:
    """One source's probes. Its ports, host hashes and kinds of probe (with their counts) are
    sets and a dict once there are two distinct ones (`ports`, `hosts`, `kinds`: then they
    hold them all); until then the one seen is a plain value (`port`, `host`, `kind`, whose
    count is `probes`), as for nearly every source of a spoofed flood."""

    __slots__ = ("port", "ports", "host", "hosts", "kind", "kinds", "first_ts", "first_frame",
                 "probes")

    def __init__(self, ts: int, frame: int) -> None:
        self.port = -1                                  # -1: none yet
        self.ports: Optional[Set[int]] = None
        self.host = -1                                  # a CRC-32; -1: none yet
        self.hosts: Optional[Set[int]] = None
        self.kind: Optional[str] = None
        self.kinds: Optional[Dict[str, int]] = None
        self.first_ts = ts
        self.first_frame = frame
        self.probes = 0

    def add_port(self, port: int) -> None:
        ports = self.ports
        if ports is not None:
            ports.add(port)
        elif self.port < 0:
            self.port = port
        elif port != self.port:
            self.ports = {self.port, port}

    def add_host(self, host: int) -> None:
        """One more host hash (the callers keep them to `MAX_HOSTS`)."""
        hosts = self.hosts
        if hosts is not None:
            hosts.add(host)
        elif self.host < 0:
            self.host = host
        elif host != self.host:
            self.hosts = {self.host, host}

    def add_kind(self, kind: str, n: int) -> None:
        """`n` probes more of `kind` (`probes` does not count them yet)."""
        kinds = self.kinds
        if kinds is not None:
            kinds[kind] = kinds.get(kind, 0) + n
        elif self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            self.kinds = {self.kind: self.probes, kind: n}

    def port_set(self) -> Set[int]:
        ports = self.ports
        if ports is not None:
            return ports
        return {self.port} if self.port >= 0 else set()

    def host_set(self) -> Set[int]:
        hosts = self.hosts
        if hosts is not None:
            return hosts
        return {self.host} if self.host >= 0 else set()

    def kind_counts(self) -> Dict[str, int]:
        kinds = self.kinds
        if kinds is not None:
            return kinds
        return {self.kind: self.probes} if self.kind is not None else {}

    def nports(self) -> int:
        ports = self.ports
        return len(ports) if ports is not None else (1 if self.port >= 0 else 0)

    def nhosts(self) -> int:
        hosts = self.hosts
        return len(hosts) if hosts is not None else (1 if self.host >= 0 else 0)


class ScanDetector:
    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.sources: Dict[bytes, Scan] = {}

    def add(self, r: ConnResult) -> None:
        probe = _PROBES.get(r.handshake)
        if probe is not None:
            kind = probe
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
        scan.add_kind(kind, 1)
        scan.probes += 1
        scan.add_port(r.resp_raw[1])
        if scan.nhosts() < MAX_HOSTS:
            scan.add_host(_crc32(r.resp_raw[0]))

    def merge(self, other: "ScanDetector") -> None:
        """Take in what another detector saw (a shard of a parallel run)."""
        for src, theirs in other.sources.items():
            scan = self.sources.get(src)
            if scan is None:
                self.sources[src] = theirs
                continue
            if (theirs.first_ts, theirs.first_frame) < (scan.first_ts, scan.first_frame):
                scan.first_ts, scan.first_frame = theirs.first_ts, theirs.first_frame
            for kind, n in theirs.kind_counts().items():
                scan.add_kind(kind, n)
                scan.probes += n
            for port in theirs.port_set():
                scan.add_port(port)
            for host in theirs.host_set():
                if scan.nhosts() >= MAX_HOSTS:
                    break
                scan.add_host(host)

    def findings(self) -> List[Finding]:
        out = []
        for src, scan in sorted(self.sources.items()):
            ports, hosts = scan.nports(), scan.nhosts()
            if ports < self.threshold and hosts < self.threshold:
                continue
            f = Finding("PORT_SCAN", scan.first_ts, scan.first_frame, "orig",
                        "%s probed %d port%s on %s%d host%s (%d probes: %s)" % (
                            addr_str(src), ports, "" if ports == 1 else "s",
                            "at least " if hosts >= MAX_HOSTS else "", hosts,
                            "" if hosts == 1 else "s", scan.probes,
                            ", ".join("%d %s" % (n, k)
                                      for k, n in sorted(scan.kind_counts().items()))))
            f.count = scan.probes
            out.append(f)
        return out
