"""What the browser's table shows: every connection's result, the filtered and sorted view of
them, and the text of each cell. Plain Python (no screen), so the tests check it directly.

The model holds the analysis's results in a list (the browser needs any of them at once: a
peak of about 200 MiB for 100,000 connections — bench/README.md, "The browser"). The table is
lazy: it asks for the cells of the rows on screen only, so the cost of a view is a list of
indices. Filtering (`analyzer.triage.filter`) and sorting make a new list of indices;
nothing is copied. Stream numbers are the analysis's (Wireshark's `tcp.stream`): a filter
never renumbers.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

from analyzer.common.findings import SEVERITY_RANK
from analyzer.judge.result import ConnResult
from analyzer.triage.filter import Filter, FilterError, parse, stream_filter

Cells = Tuple[str, ...]


class Column(NamedTuple):
    """A table column: its title, whether its cells are right-aligned, its text and its sort
    key (numbers sort as numbers, addresses as addresses)."""
    title: str
    right: bool
    text: Callable[[ConnResult], str]
    key: Callable[[ConnResult], Any]


def _first(r: ConnResult) -> str:
    if r.reset_by and r.close == "reset":
        return "RST " + r.reset_by
    return r.closed_first or "-"


def _findings(r: ConnResult) -> str:
    return " ".join(f.code + ("×%d" % f.count if f.count > 1 else "") for f in r.findings) or "-"


def _duration(r: ConnResult) -> str:
    return "%.3f" % r.duration


def _addr_key(raw: Tuple[bytes, int]) -> tuple:
    return (len(raw[0]), raw[0], raw[1])          # IPv4 before IPv6, then numerically


COLUMNS: Tuple[Column, ...] = (
    Column("stream", True, lambda r: str(r.id), lambda r: r.id),
    Column("client", False, lambda r: str(r.orig), lambda r: _addr_key(r.orig_raw)),
    Column("server", False, lambda r: str(r.resp), lambda r: _addr_key(r.resp_raw)),
    Column("handshake", False, lambda r: r.handshake, lambda r: r.handshake),
    Column("close", False, lambda r: r.close or "-", lambda r: r.close or ""),
    Column("first", False, _first, _first),
    Column("final orig/resp", False, lambda r: "%s/%s" % r.final_state,
           lambda r: r.final_state),
    Column("pkts", True, lambda r: str(r.packets[0] + r.packets[1]),
           lambda r: r.packets[0] + r.packets[1]),
    Column("bytes", True, lambda r: str(r.bytes[0] + r.bytes[1]),
           lambda r: r.bytes[0] + r.bytes[1]),
    Column("duration s", True, _duration, lambda r: r.end - r.start),
    Column("findings", False, _findings, lambda r: (-r.worst(), r.codes)),
)

#: Severity rank (`ConnResult.worst()`) -> its word, for a row's colour.
SEVERITIES = {rank: word for word, rank in SEVERITY_RANK.items()}


class Model:
    """The results, and the indices of those the filter keeps, in the chosen order."""

    def __init__(self, results: Sequence[ConnResult]) -> None:
        self.results: List[ConnResult] = sorted(results, key=_by_id)
        self.filter: Optional[Filter] = None
        self.sort_column = 0
        self.descending = False
        self.view: List[int] = list(range(len(self.results)))
        self.widths = [len(c.title) + 2 for c in COLUMNS]       # + the sort arrow
        for r in self.results:           # cells never crop: each column fits its widest cell
            self._widen(r)

    def _widen(self, r: ConnResult) -> None:
        widths = self.widths
        for i, cell in enumerate(self.cells(r)):
            if len(cell) > widths[i]:
                widths[i] = len(cell)

    @staticmethod
    def cells(r: ConnResult) -> Cells:
        return tuple(c.text(r) for c in COLUMNS)

    def row(self, i: int) -> ConnResult:
        """The result on line `i` of the view."""
        return self.results[self.view[i]]

    def severity(self, r: ConnResult) -> Optional[str]:
        return SEVERITIES.get(r.worst())

    def set_filter(self, text: str) -> Optional[FilterError]:
        """Keep the connections `text` accepts (all for blank text); the error, if it is not
        a filter (the view is then unchanged)."""
        if not text.strip():
            self.filter = None
        else:
            try:
                self.filter = parse(text)
            except FilterError as exc:
                return exc
        self._rebuild()
        return None

    def sort(self, column: int, descending: Optional[bool] = None) -> None:
        """Order the view by `column`; the same column again flips the order."""
        if descending is None:
            descending = not self.descending if column == self.sort_column else False
        self.sort_column, self.descending = column, descending
        self._rebuild()

    def _rebuild(self) -> None:
        results, f = self.results, self.filter
        keep = range(len(results)) if f is None else [
            i for i, r in enumerate(results) if f.matches(r)]
        if self.sort_column == 0:            # stream order is the list's order
            view = list(keep)
            if self.descending:
                view.reverse()
        else:
            key = COLUMNS[self.sort_column].key
            # Stable either way round (`reverse` keeps equal keys in their order): rows with
            # equal keys stay in stream order.
            view = sorted(keep, key=lambda i: key(results[i]), reverse=self.descending)
        self.view = view

    def shown(self) -> List[ConnResult]:
        """The connections the filter keeps, in stream order (what an export writes)."""
        return [self.results[i] for i in sorted(self.view)]

    def caption(self) -> str:
        n, total = len(self.view), len(self.results)
        return ("%d connections" % total) if n == total and self.filter is None else (
            "%d of %d connections shown" % (n, total))


def _by_id(r: ConnResult) -> int:
    return r.id


def display_filter(r: ConnResult) -> str:
    """The Wireshark/tshark display filter that shows this connection's packets: its stream
    number, which is Wireshark's (`tcp.stream eq N`)."""
    return stream_filter(r.id)


def address_filter(r: ConnResult) -> str:
    """The same connection by its addresses and ports: for another capture of the same
    traffic, or one file of several (where the stream number is the merged capture's)."""
    o, p = r.orig, r.resp
    ip = "ipv6" if ":" in o.addr else "ip"
    return ("%s.addr eq %s and tcp.port eq %d and %s.addr eq %s and tcp.port eq %d"
            % (ip, o.addr, o.port, ip, p.addr, p.port))
