"""The report model: per-connection results, the capture summary, and the exit code.

Renderers (`analyzer/render/`) only read these objects; nothing here formats for a screen.
`Report.to_dict()` is the JSON contract documented in docs/json.md.
"""

from __future__ import annotations

import builtins
from typing import Final
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, NamedTuple, Optional, Protocol,
                    Tuple)

from analyzer import TOOL_NAME, __version__
from analyzer.anomalies import SEVERITY_RANK, Finding
from analyzer.nstime import seconds
from analyzer.segment import addr_str
from analyzer.seqanalysis import NO_COUNTS, Analysis

ANALYSIS_FIELDS: Final = Analysis.FIELDS
_WARNING_RANK: Final = SEVERITY_RANK["warning"]

if TYPE_CHECKING:                       # pragma: no cover
    from analyzer.conn import Connection

#: Exit codes (documented in README "Exit codes").
EXIT_OK: Final = 0
EXIT_FINDINGS: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREADABLE: Final = 3
EXIT_INTERNAL: Final = 70          # EX_SOFTWARE: a bug, reported in one line


class Lingering(NamedTuple):
    """An endpoint left in CLOSE_WAIT or TIME_WAIT when the capture ended (times in ns)."""
    side: str
    state: str
    since: int
    seconds: int
    remaining: Optional[int]   # TIME_WAIT only: what was left of 2*MSL

    def to_dict(self) -> dict:
        d = {"side": self.side, "state": self.state, "since": seconds(self.since),
             "seconds": round(seconds(self.seconds), 6)}
        if self.remaining is not None:
            d["remaining"] = round(seconds(self.remaining), 6)
        return d


class LadderRow(NamedTuple):
    """One packet of a traced connection (`--stream N`), with both states after it."""
    frame: int
    ts: int
    side: str           # sender: "orig" or "resp"
    flags: str          # tcpdump spelling: S, S., F., R., P., .
    seq: int            # relative to the sender's base (Wireshark's relative numbers)
    ack: Optional[int]  # relative to the receiver's base; None without the ACK flag
    length: int
    state_orig: str
    state_resp: str

    def to_dict(self) -> dict:
        d = self._asdict()
        d["ts"] = seconds(self.ts)
        return d


def _ep(addr: bytes, port: int) -> dict:
    return {"addr": addr_str(addr), "port": port}


class ConnResult:
    """Everything reported about one connection; compact, so that many can be kept."""

    __slots__ = ("id", "orig", "resp", "start", "end", "first_frame", "last_frame", "packets",
                 "bytes", "handshake", "close", "closed_first", "reset_by", "half_close",
                 "final_state", "lingering", "syn_retransmissions", "findings", "reused_from",
                 "analysis", "conn_state", "history", "zeek_flipped", "ip_bytes")
    # Typed, so that the compiled build keeps them unboxed where it can.
    id: int
    orig: Tuple[builtins.bytes, int]         # (packed address, port)
    resp: Tuple[builtins.bytes, int]
    start: int                              # ns
    end: int
    first_frame: int
    last_frame: int
    packets: Tuple[int, int]                # (orig, resp)
    bytes: Tuple[int, int]
    handshake: str
    close: Optional[str]
    closed_first: Optional[str]
    reset_by: Optional[str]
    half_close: bool
    final_state: Tuple[str, str]
    lingering: List[Lingering]
    syn_retransmissions: int
    findings: List[Finding]
    reused_from: Optional[int]
    analysis: Tuple[Tuple[int, ...], Tuple[int, ...]]
    conn_state: str
    history: str
    zeek_flipped: bool
    ip_bytes: Tuple[int, int]               # (orig, resp): IP lengths (conn.log's ip_bytes)

    @classmethod
    def from_connection(cls, c: "Connection", handshake: str, close: Optional[str],
                        closed_first: Optional[str], reset_by: Optional[str], half_close: bool,
                        final_state: List[str], lingering: List[Lingering]) -> "ConnResult":
        r = cls()
        o, p = c.ep
        r.id = c.id
        r.orig = (o.addr, o.port)
        r.resp = (p.addr, p.port)
        r.start, r.end = c.first_ts, c.last_ts
        r.first_frame, r.last_frame = c.first_frame, c.last_frame
        if o is p:      # a self-connection: one socket sent everything
            r.packets, r.bytes, r.ip_bytes = (o.pkts, 0), (o.bytes, 0), (o.ip_bytes, 0)
        else:
            r.packets = (o.pkts, p.pkts)
            r.bytes = (o.bytes, p.bytes)
            r.ip_bytes = (o.ip_bytes, p.ip_bytes)
        r.handshake, r.close = handshake, close
        r.closed_first, r.reset_by, r.half_close = closed_first, reset_by, half_close
        r.final_state = (final_state[0], final_state[1])
        r.lingering = lingering
        r.syn_retransmissions = max(o.syn_count - 1, 0)
        r.findings = sorted(c.findings.values(), key=lambda f: (f.ts, f.code))
        r.reused_from = c.reused_from
        r.analysis = (o.analysis.counts(), NO_COUNTS if o is p else p.analysis.counts())
        r.conn_state, r.history = c.zeek.finish(c.first_from_orig)
        r.zeek_flipped = c.zeek.flipped
        return r

    def __reduce__(self) -> tuple:          # pickled as a tuple: spilling is on the hot path
        return (_result, (self.__getstate__(),))

    def __getstate__(self) -> tuple:
        return (self.id, self.orig, self.resp, self.start, self.end, self.first_frame,
                self.last_frame, self.packets, self.bytes, self.handshake, self.close,
                self.closed_first, self.reset_by, self.half_close, self.final_state,
                self.lingering, self.syn_retransmissions, self.findings,
                self.reused_from, self.analysis, self.conn_state, self.history,
                self.zeek_flipped, self.ip_bytes)

    def __setstate__(self, state: tuple) -> None:
        (self.id, self.orig, self.resp, self.start, self.end, self.first_frame,
         self.last_frame, self.packets, self.bytes, self.handshake, self.close,
         self.closed_first, self.reset_by, self.half_close, self.final_state,
         self.lingering, self.syn_retransmissions, self.findings, self.reused_from,
         self.analysis, self.conn_state, self.history, self.zeek_flipped, self.ip_bytes) = state

    @property
    def duration(self) -> float:
        return seconds(self.end - self.start)

    def worst(self) -> int:
        """Highest finding severity rank, -1 when there is none."""
        worst = -1
        for f in self.findings:
            rank = SEVERITY_RANK[f.severity]
            if rank > worst:
                worst = rank
        return worst

    def needs_attention(self) -> bool:
        """Shown by default in the terminal: a warning or an error (a stuck CLOSE_WAIT is one)."""
        return self.worst() >= _WARNING_RANK

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "orig": _ep(*self.orig),
            "resp": _ep(*self.resp),
            "start": seconds(self.start),
            "end": seconds(self.end),
            "duration": self.duration,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "packets": {"orig": self.packets[0], "resp": self.packets[1]},
            "bytes": {"orig": self.bytes[0], "resp": self.bytes[1]},
            "conn_state": self.conn_state,
            "history": self.history,
            "handshake": self.handshake,
            "syn_retransmissions": self.syn_retransmissions,
            "close": self.close,
            "closed_first": self.closed_first,
            "reset_by": self.reset_by,
            "half_close": self.half_close,
            "final_state": {"orig": self.final_state[0], "resp": self.final_state[1]},
            "lingering": [lg.to_dict() for lg in self.lingering],
            "reused_from": self.reused_from,
            "analysis": {"orig": dict(zip(ANALYSIS_FIELDS, self.analysis[0])),
                         "resp": dict(zip(ANALYSIS_FIELDS, self.analysis[1]))},
            "findings": [f.to_dict() for f in self.findings],
        }


class Summary:
    """Counters over all connections, updated as each result arrives."""

    def __init__(self) -> None:
        self.connections = 0
        # Plain dicts (not Counter): the compiled build updates them without a method call.
        self.handshakes: Dict[str, int] = {}
        self.closes: Dict[str, int] = {}
        self.resets: Dict[str, int] = {}
        self.lingering: Dict[str, int] = {}
        self.severities: Dict[str, int] = {}
        self.codes: Dict[str, int] = {}
        self.analysis = [0] * len(ANALYSIS_FIELDS)
        self.syn_retransmissions = 0
        self.attention = 0

    def add(self, r: ConnResult) -> None:
        self.connections += 1
        _bump(self.handshakes, r.handshake)
        _bump(self.closes, r.close or "none")
        if r.reset_by:
            _bump(self.resets, r.reset_by)
        for lg in r.lingering:
            _bump(self.lingering, lg[1])            # state
        for f in r.findings:
            self.count(f)
        o, p = r.analysis
        if o is not NO_COUNTS or p is not NO_COUNTS:
            totals = self.analysis
            for i in range(len(totals)):
                totals[i] += o[i] + p[i]
        self.syn_retransmissions += r.syn_retransmissions
        if r.needs_attention():
            self.attention += 1

    def count(self, f: Finding) -> None:
        """A finding in the severity and code counts."""
        _bump(self.severities, f.severity)
        _bump(self.codes, f.code)

    def to_dict(self) -> dict:
        return {
            "connections": self.connections,
            "needing_attention": self.attention,
            "handshakes": dict(sorted(self.handshakes.items())),
            "syn_retransmissions": self.syn_retransmissions,
            "closes": dict(sorted(self.closes.items())),
            "resets": {"orig": self.resets.get("orig", 0), "resp": self.resets.get("resp", 0)},
            "lingering": {"CLOSE_WAIT": self.lingering.get("CLOSE_WAIT", 0),
                          "TIME_WAIT": self.lingering.get("TIME_WAIT", 0)},
            "findings": {s: self.severities.get(s, 0) for s in ("error", "warning", "info")},
            "findings_by_code": dict(sorted(self.codes.items())),
            "analysis": dict(zip(ANALYSIS_FIELDS, self.analysis)),
        }


def _bump(counts: Dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class CaptureSummary(NamedTuple):
    """What was read: files, packets, skipped packets by reason, damage."""
    files: Tuple[str, ...]
    packets: int
    tcp_packets: int
    skipped: Dict[str, int]
    truncated: bool
    warnings: Tuple[str, ...]
    errors: Tuple[str, ...]
    first_ts: Optional[int]
    last_ts: Optional[int]
    linktypes: Dict[int, int]
    evicted_early: int = 0

    def to_dict(self) -> dict:
        return {
            "files": list(self.files),
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "skipped": dict(sorted(self.skipped.items())),
            "truncated": self.truncated,
            "warnings": list(self.warnings),
            "errors": list(self.errors),
            "first_ts": None if self.first_ts is None else seconds(self.first_ts),
            "last_ts": None if self.last_ts is None else seconds(self.last_ts),
            "linktypes": {str(k): v for k, v in sorted(self.linktypes.items())},
            "evicted_early": self.evicted_early,
        }


def _result(state: tuple) -> ConnResult:
    """A pickled ConnResult back (`ConnResult.__reduce__`)."""
    r = ConnResult()
    r.__setstate__(state)
    return r


class Results(Protocol):
    """The connections of a report: a list, or the `ResultStore` that spills them to disk.
    They are `ConnResult`s, unless `analyze()` was given an `encode` function: then they are
    what it made of each (the JSON writer's lines)."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Report:
    """One run's result."""

    def __init__(self, capture: CaptureSummary, connections: Results,
                 summary: Summary, msl: float,
                 ladders: Optional[Dict[int, List[LadderRow]]] = None,
                 findings: Optional[List[Finding]] = None) -> None:
        self.capture = capture
        self.connections = connections
        self.summary = summary
        self.msl = msl
        #: stream id -> its packets, for the streams asked for with `--stream`.
        self.ladders: Dict[int, List[LadderRow]] = ladders or {}
        #: Capture-wide findings (floods): about many connections, not one.
        self.findings: List[Finding] = findings or []

    def return_code(self, fail_on: Optional[str] = None) -> int:
        """0 analysed; 1 a finding at or above `fail_on`; 3 some input could not be read."""
        if self.capture.errors:
            return EXIT_UNREADABLE
        if fail_on is not None:
            floor = SEVERITY_RANK[fail_on]
            if any(SEVERITY_RANK[s] >= floor and n for s, n in self.summary.severities.items()):
                return EXIT_FINDINGS
        return EXIT_OK

    def connection_dicts(self):
        """Each connection's JSON object, in stream order (with its ladder when traced)."""
        for c in self.connections:
            d = c.to_dict()
            if c.id in self.ladders:
                d["ladder"] = [row.to_dict() for row in self.ladders[c.id]]
            yield d

    def to_dict(self, connections: bool = True) -> dict:
        doc = {
            "tool": {"name": TOOL_NAME, "version": __version__},
            "settings": {"msl": self.msl, "time_wait": 2 * self.msl},
            "capture": self.capture.to_dict(),
            "summary": self.summary.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }
        if connections:
            doc["connections"] = list(self.connection_dicts())
        return doc


__all__ = ["ConnResult", "LadderRow", "Lingering", "Summary", "CaptureSummary", "Report", "Finding",
           "EXIT_OK", "EXIT_FINDINGS", "EXIT_USAGE", "EXIT_UNREADABLE"]
