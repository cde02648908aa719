"""Which connections a report shows, in what order, and how they add up by group.

`Selection` stands in front of a renderer's result sink during the analysis: each finished
connection is counted, tested against the filter, added to its group(s), and passed on only
if the filter accepts it — before the renderer encodes or drops it, so a filter works the
same for every format and nothing it rejects is ever kept. Stream numbers are never changed.
Groups are counted as results pass (memory: one row per group, not per connection).
`sort_key` orders the shown connections by any field (`-field` for descending).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Final, Iterator, List, Optional, Set, Tuple

from analyzer.common.findings import CATALOGUE, SEVERITY_RANK
from analyzer.decode.segment import addr_str
from analyzer.judge.result import ConnResult
from analyzer.report.store import ResultSink
from analyzer.triage.fields import FIELDS

if TYPE_CHECKING:                           # (the filter is imported when one is given)
    from analyzer.triage.filter import Filter

#: `--group-by` values: what each groups connections by.
GROUPINGS: Final = {
    "server": "the responder's address",
    "client": "the originator's address",
    "port": "the responder's port (the service)",
    "finding": "each finding code (a connection with several is in several groups)",
}
#: A group's counters, in table and JSON order.
COUNTERS: Final = ("connections", "refused", "reset", "half_open", "close_wait", "time_wait",
                   "error", "warning", "info")


def group_keys(r: ConnResult, by: str) -> Tuple[str, ...]:
    if by == "server":
        return (addr_str(r.resp_raw[0]),)
    if by == "client":
        return (addr_str(r.orig_raw[0]),)
    if by == "port":
        return (str(r.resp_raw[1]),)
    return tuple(f.code for f in r.findings)


#: Handshakes that never opened a connection: what scans and floods are made of.
FAILED: Final = frozenset(("refused", "unanswered", "half_open", "reset"))
#: A client whose failed handshakes went to at least this many different server ports
#: (address and port) is scanning: grouped by server or port, its failed attempts make one
#: group, "scan from <client>", instead of a row in each group it touched.
SCAN_MIN: Final = 10


def _count(row: List[int], r: ConnResult) -> None:
    lingering = [lg.state for lg in r.lingering]
    row[0] += 1
    row[1] += r.handshake == "refused"
    row[2] += r.close == "reset" or r.handshake == "reset"
    row[3] += r.handshake == "half_open"
    row[4] += "CLOSE_WAIT" in lingering
    row[5] += "TIME_WAIT" in lingering
    for f in r.findings:
        row[8 - SEVERITY_RANK[f.severity]] += 1         # error, warning, info


def _add(rows: Dict[str, List[int]], key: str, counts: List[int]) -> None:
    row = rows.get(key)
    if row is None:
        rows[key] = list(counts)
    else:
        for i, n in enumerate(counts):
            row[i] += n


class Groups:
    """Per-group counters of the shown connections (`--group-by`)."""

    def __init__(self, by: str) -> None:
        if by not in GROUPINGS:
            raise ValueError("group by one of %s, not %r" % (", ".join(GROUPINGS), by))
        self.by = by
        self.rows: Dict[str, List[int]] = {}
        #: finding grouping: occurrences of each code (a connection's count of it)
        self.occurrences: Dict[str, int] = {}
        #: server/port grouping: failed handshakes by client, then by group, until the end
        #: tells a scan (one client, many groups) from ordinary failures
        self.failed: Dict[str, Dict[str, List[int]]] = {}
        #: the server ports each such client tried, up to SCAN_MIN of them
        self.targets: Dict[str, Set[Tuple[bytes, int]]] = {}

    def add(self, r: ConnResult) -> None:
        rows = self.rows
        if self.by in ("server", "port") and r.handshake in FAILED:
            client = addr_str(r.orig_raw[0])
            rows = self.failed.setdefault(client, {})
            targets = self.targets.setdefault(client, set())
            if len(targets) < SCAN_MIN:
                targets.add(r.resp_raw)
        for key in group_keys(r, self.by):
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0] * len(COUNTERS)
            _count(row, r)
        if self.by == "finding":
            for f in r.findings:
                self.occurrences[f.code] = self.occurrences.get(f.code, 0) + f.count

    def merged(self) -> Dict[str, List[int]]:
        """The groups, with each scanning client's failed attempts as one group of its own."""
        rows = {k: list(v) for k, v in self.rows.items()}
        for client, per in self.failed.items():
            if len(self.targets[client]) >= SCAN_MIN:
                for counts in per.values():
                    _add(rows, "scan from " + client, counts)
            else:
                for key, counts in per.items():
                    _add(rows, key, counts)
        return rows

    def ordered(self) -> List[Tuple[str, List[int]]]:
        """Groups, most connections first (for findings: most severe first, as tshark's
        expert summary), ties by key; ports in numeric order."""
        rows = self.merged()
        if self.by == "finding":
            return sorted(rows.items(), key=lambda kv: (
                -SEVERITY_RANK[CATALOGUE[kv[0]].severity], -kv[1][0], kv[0]))
        if self.by == "port":
            return sorted(rows.items(), key=lambda kv: (
                -kv[1][0], kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
        return sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0]))

    def to_dict(self) -> dict:
        rows = []
        for key, counts in self.ordered():
            row: Dict[str, Any] = {"key": key}
            row.update(zip(COUNTERS, counts))
            if self.by == "finding":
                row["severity"] = CATALOGUE[key].severity
                row["occurrences"] = self.occurrences.get(key, 0)
            rows.append(row)
        return {"by": self.by, "groups": rows}


class Selection:
    """The filter, the counts and the groups of one run; a `ResultSink` in front of `inner`."""

    def __init__(self, inner: ResultSink, flt: Optional[Filter] = None,
                 group_by: Optional[str] = None, sort: Optional[str] = None) -> None:
        self.inner = inner
        self.filter = flt
        self.groups = Groups(group_by) if group_by else None
        self.sort = sort
        self.total = 0
        self.shown = 0

    def add(self, r: ConnResult) -> None:
        self.total += 1
        flt = self.filter
        if flt is not None and not flt.matches(r):
            return
        self.shown += 1
        if self.groups is not None:
            self.groups.add(r)
        self.inner.add(r)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.inner)

    def __len__(self) -> int:
        return self.shown

    def caption(self) -> str:
        """"N of M connections shown (filter: ...)", or "" when nothing was filtered."""
        if self.filter is None:
            return ""
        return "%d of %d connections shown (filter: %s)" % (self.shown, self.total, self.filter)

    def to_dict(self) -> dict:
        d: Dict[str, Any] = {"filter": None if self.filter is None else str(self.filter),
                             "shown": self.shown, "connections": self.total,
                             "sort": self.sort}
        if self.groups is not None:
            d.update(self.groups.to_dict())
        return d


def sort_key(spec: str) -> Tuple[Callable[[ConnResult], Any], bool]:
    """(key, descending) for `--sort [-]FIELD`. Connections without a value sort last either
    way; ties keep stream order. ValueError names the fields when `spec` is not one."""
    descending = spec.startswith("-")
    name = spec[1:] if descending else spec
    field = FIELDS.get(name)
    if field is None:
        raise ValueError("cannot sort by %r: sort by one of %s" % (name, ", ".join(FIELDS)))
    get = field.get

    def key(r: ConnResult) -> Any:
        values = get(r)
        if not values:
            return (1,)
        v = max(values) if descending else min(values)     # type: ignore[type-var]
        return (0, v)
    return key, descending


class ResultList(List[ConnResult]):
    """Results in a given order, as a `ResultSink` (what `sorted_results` gives)."""

    def add(self, r: ConnResult) -> None:
        self.append(r)


def sorted_results(results: Any, spec: str) -> ResultList:
    """The results ordered by `spec` (held in memory to sort), stream order among equals."""
    key, descending = sort_key(spec)
    rows = list(results)
    rows.sort(key=lambda r: r.id)
    present = [r for r in rows if key(r) != (1,)]
    absent = [r for r in rows if key(r) == (1,)]
    present.sort(key=key, reverse=descending)      # stable: equal keys stay in stream order
    return ResultList(present + absent)

