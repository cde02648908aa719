"""The report model: the capture summary, the counters over all results, and the exit code.

Renderers (`analyzer/render/`) only read these objects; nothing here formats for a screen.
`Report.to_dict()` is the JSON contract documented in docs/json.md.
"""

from __future__ import annotations

from typing import Dict, Final, List, NamedTuple, Optional, Tuple

from analyzer.common.findings import SEVERITY_RANK, Finding
from analyzer.common.native import i64
from analyzer.common.nstime import seconds
from analyzer.common.version import TOOL_NAME, __version__
from analyzer.judge.result import ANALYSIS_FIELDS, ConnResult, LadderRow
from analyzer.report.store import ResultSink
from analyzer.tcp.endpoint import NO_COUNTS

#: Exit codes (documented in README "Exit codes").
EXIT_OK: Final = 0
EXIT_FINDINGS: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREADABLE: Final = 3
EXIT_INTERNAL: Final = 70          # EX_SOFTWARE: a bug, reported in one line

_WARNING_RANK: Final = SEVERITY_RANK["warning"]


class Counts:
    """Counts by key, read as a dict (`counts()`) whose keys are in the order first counted.

    The results come in long runs of the same handshake, close, lingering state and finding:
    the current run's key and length are kept aside, its length a machine int, and the dict
    brought up to date when another key comes or the counts are read. Counting the same key
    again is then an identity test and an increment, where a dict's get and set, with a new
    int object for every count past 256, cost about 380 instructions."""

    def __init__(self, counts: Optional[Dict[str, int]] = None) -> None:
        self._counts: Dict[str, int] = {} if counts is None else counts
        self._key: Optional[str] = None     # the current run's key (None: no run yet)
        self._run: i64 = 0                  # its counts not yet in `_counts`

    def add(self, key: str) -> None:
        """Count `key` once."""
        if key is self._key:
            self._run += 1
            return
        self._flush()
        self._key = key
        self._run = 1

    def _flush(self) -> None:
        key = self._key
        if key is not None and self._run:
            counts = self._counts
            counts[key] = counts.get(key, 0) + self._run
            self._run = 0

    def counts(self) -> Dict[str, int]:
        """Every count, as the dict itself (what is changed in it stays)."""
        self._flush()
        return self._counts


class Summary:
    """Counters over all connections, updated as each result arrives."""

    def __init__(self) -> None:
        self.connections = 0
        # By key (`handshakes`, ..., `codes`: each a dict of the counts).
        self._handshakes = Counts()
        self._closes = Counts()
        self._resets = Counts()
        self._lingering = Counts()
        self._severities = Counts()
        self._codes = Counts()
        self.analysis = [0] * len(ANALYSIS_FIELDS)
        self.syn_retransmissions = 0
        self.attention = 0

    def add(self, r: ConnResult) -> None:
        self.connections += 1
        self._handshakes.add(r.handshake)
        self._closes.add(r.close or "none")
        if r.reset_by:
            self._resets.add(r.reset_by)
        for lg in r.lingering:
            self._lingering.add(lg[1])              # state
        # (the worst finding found in the same pass over the findings as their counts, not
        # again by `ConnResult.needs_attention`, interpreted code: once every connection)
        worst = -1
        for f in r.findings:
            self.count(f)
            rank = SEVERITY_RANK[f.severity]
            if rank > worst:
                worst = rank
        o, p = r.analysis
        if o is not NO_COUNTS or p is not NO_COUNTS:
            totals = self.analysis
            for i in range(len(totals)):
                totals[i] += o[i] + p[i]
        self.syn_retransmissions += r.syn_retransmissions
        if worst >= _WARNING_RANK:                  # r.needs_attention()
            self.attention += 1

    def merge(self, other: "Summary") -> None:
        """Add another summary's counts (a shard of a parallel run)."""
        self.connections += other.connections
        for mine, theirs in ((self.handshakes, other.handshakes), (self.closes, other.closes),
                             (self.resets, other.resets), (self.lingering, other.lingering),
                             (self.severities, other.severities), (self.codes, other.codes)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        for i, n in enumerate(other.analysis):
            self.analysis[i] += n
        self.syn_retransmissions += other.syn_retransmissions
        self.attention += other.attention

    def count(self, f: Finding) -> None:
        """A finding in the severity and code counts."""
        self._severities.add(f.severity)
        self._codes.add(f.code)

    def set_counts(self, handshakes: Dict[str, int], closes: Dict[str, int],
                   resets: Dict[str, int], lingering: Dict[str, int],
                   severities: Dict[str, int], codes: Dict[str, int]) -> None:
        """The counts by key, given whole (a shard's: `merge.tally_parts`)."""
        self._handshakes, self._closes, self._resets = (
            Counts(handshakes), Counts(closes), Counts(resets))
        self._lingering, self._severities, self._codes = (
            Counts(lingering), Counts(severities), Counts(codes))

    # The counts by key, each a dict.

    @property
    def handshakes(self) -> Dict[str, int]:
        return self._handshakes.counts()

    @property
    def closes(self) -> Dict[str, int]:
        return self._closes.counts()

    @property
    def resets(self) -> Dict[str, int]:
        return self._resets.counts()

    @property
    def lingering(self) -> Dict[str, int]:
        return self._lingering.counts()

    @property
    def severities(self) -> Dict[str, int]:
        return self._severities.counts()

    @property
    def codes(self) -> Dict[str, int]:
        return self._codes.counts()

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
    interrupted: bool = False           # a signal ended the reading (SIGINT, SIGTERM)
    #: Connections finalized early because a bound on memory bit (finding MEMORY_BOUND; also
    #: counted in `evicted_early`), and times a connection was parked on disk (no effect on
    #: the report: flows.py, parked.py).
    memory_bound: int = 0
    parked: int = 0

    def memory_words(self) -> Optional[str]:
        """The report's "Memory" line: connections parked on disk, and those a bound
        finalized early; None when neither happened."""
        if not (self.parked or self.memory_bound):
            return None
        words = "parked on disk %d times (--max-connections; no effect on the report)" % self.parked
        if self.memory_bound:
            words += " · %d finalized early by a bound (finding MEMORY_BOUND)" % self.memory_bound
        return words

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
            "memory_bound": self.memory_bound,
            "parked": self.parked,
            "interrupted": self.interrupted,
        }


class Report:
    """One run's result."""

    def __init__(self, capture: CaptureSummary, connections: ResultSink,
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

    def with_connections(self, connections: ResultSink) -> "Report":
        """The same run with other connections (another renderer's sink of the same pass)."""
        return Report(self.capture, connections, self.summary, self.msl, self.ladders,
                      self.findings)

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
