"""Baselines: this run against a known-good one, by signature rather than by stream.

Stream ids and ephemeral ports change from one recording to the next, so a run is summed up
per server (the responder's address and port): how many connections, their handshake and close
verdicts, the codes of their findings and the endpoints left lingering. `--write-baseline`
stores that summary; `--baseline` compares with a stored one, or with a saved JSON report
(read one connection line at a time). A regression is a finding code of the policy's
baseline severity or worse (`warning` by default: a stuck CLOSE_WAIT is one) that is new on a
server or grew beyond the tolerance; what went away is reported too, and does not fail.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Dict, Final, Iterator, List, NamedTuple, Optional, TextIO, Tuple

from analyzer.common.version import TOOL_NAME, __version__
from analyzer.common.findings import CATALOGUE, SEVERITY_RANK
from analyzer.gate.policy import BaselineSettings
from analyzer.judge.result import ConnResult
from analyzer.report.model import Report
from analyzer.gate.discover import GateError

FORMAT: Final = 1
#: The server key of capture-wide findings (floods), which belong to no one connection.
CAPTURE_WIDE: Final = "(capture)"

Counts = Dict[str, Dict[str, int]]          # server -> signature key -> connections


class BaselineError(GateError):
    """A baseline file that cannot be read (one line, exit 2)."""


def signature(handshake: str, close: Optional[str], codes: List[str],
              lingering: List[str]) -> List[str]:
    """The signature keys of one connection (each once: a connection counts once per key)."""
    keys = ["connections", "handshake." + handshake]
    if close is not None:
        keys.append("close." + close)
    keys += codes              # one finding per code already (findings aggregate by code)
    if lingering:
        keys += set(lingering)
    return keys


def keep_lowest(examples: List[int], stream: int, limit: int) -> bool:
    """Keep the `limit` lowest stream ids in `examples` (results arrive as connections
    finish, not in stream order), sorted; whether `stream` is now among them."""
    if len(examples) < limit:
        examples.append(stream)
        examples.sort()
        return True
    if examples and stream < examples[-1]:
        examples[-1] = stream
        examples.sort()
        return True
    return False


class Signatures:
    """Signature counts per server, from results as they stream past."""

    def __init__(self, examples: int = 5) -> None:
        self.counts: Counts = {}
        #: Example streams of the finding codes (the keys that can regress) per server.
        self.examples: Dict[Tuple[str, str], List[int]] = {}
        self.limit = examples
        #: resp_raw -> (the server's name, its counts): the name is made once per server.
        self.servers: Dict[Tuple[bytes, int], Tuple[str, Dict[str, int]]] = {}

    def add(self, r: ConnResult, exempt: frozenset = frozenset()) -> None:
        known = self.servers.get(r.resp_raw)
        if known is None:
            name = str(r.resp)
            known = self.servers[r.resp_raw] = (name, self.counts.setdefault(name, {}))
        name, counts = known
        for key in signature(r.handshake, r.close, [f.code for f in r.findings],
                             [lg.state for lg in r.lingering]):
            if not (exempt and key in exempt):
                counts[key] = counts.get(key, 0) + 1
        for f in r.findings:                    # finding codes: the keys that can regress
            if not (exempt and f.code in exempt):
                keep_lowest(self.examples.setdefault((name, f.code), []), r.id, self.limit)

    def finish(self, report: Report) -> "Signatures":
        for f in report.findings:
            counts = self.counts.setdefault(CAPTURE_WIDE, {})
            counts[f.code] = counts.get(f.code, 0) + 1
        return self

    def document(self, report: Report) -> Dict[str, Any]:
        return {"baseline": {"format": FORMAT, "tool": "%s %s" % (TOOL_NAME, __version__)},
                "capture": {"files": list(report.capture.files),
                            "connections": report.summary.connections},
                "servers": {s: dict(sorted(c.items())) for s, c in sorted(self.counts.items())}}


def write_baseline(doc: Dict[str, Any], out: TextIO) -> None:
    """One server a line, keys sorted: a baseline diffs well in review."""
    out.write('{"baseline": %s,\n "capture": %s,\n "servers": {'
              % (json.dumps(doc["baseline"]), json.dumps(doc["capture"])))
    servers = list(doc["servers"].items())
    for i, (server, counts) in enumerate(servers):
        out.write('%s\n  %s: %s' % ("," if i else "", json.dumps(server), json.dumps(counts)))
    out.write("\n }\n}\n" if servers else "}\n}\n")


# -- Reading ----------------------------------------------------------------------------

def load_baseline(path: str) -> Counts:
    """Signature counts from a baseline file or a saved `--format json` report."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
            if first.strip() == "{":
                second = fh.readline()
                if second.startswith(' "tool": '):      # our report, one connection a line
                    return _from_report_lines(fh)
                fh.seek(0)
            else:
                fh.seek(0)
            doc = json.load(fh)
    except OSError as exc:
        raise BaselineError("cannot read the baseline %s: %s" % (path, exc.strerror or exc))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError("the baseline %s is not JSON: %s" % (path, exc))
    return _from_document(doc, path)


def _from_document(doc: Any, path: str) -> Counts:
    if isinstance(doc, dict) and isinstance(doc.get("servers"), dict):
        servers = doc["servers"]
        if all(isinstance(c, dict) and all(isinstance(n, int) for n in c.values())
               for c in servers.values()):
            return {s: dict(c) for s, c in servers.items()}
    elif isinstance(doc, dict) and isinstance(doc.get("connections"), list):
        return _count(iter(doc["connections"]), doc.get("findings", []))
    raise BaselineError("%s is neither a baseline (--write-baseline) nor a JSON report "
                        "(--format json)" % path)


def _from_report_lines(fh: TextIO) -> Counts:
    """The rest of our JSON report: header lines up to `"connections": [`, then one
    connection a line (docs/json.md), so memory stays bounded for any report size."""
    findings: List[dict] = []
    for line in fh:
        if line.startswith(' "findings": '):
            findings = json.loads(line[len(' "findings": '):].rstrip().rstrip(","))
        if line.startswith(' "connections": ['):
            break
    lines = (ln.strip().rstrip(",") for ln in fh)
    return _count((json.loads(ln) for ln in lines if ln.startswith("{")), findings)


def _count(connections: Iterator[dict], findings: List[dict]) -> Counts:
    counts: Counts = {}
    for c in connections:
        resp = c["resp"]
        addr = ipaddress.ip_address(resp["addr"])
        server = ("[%s]:%d" if addr.version == 6 else "%s:%d") % (addr, resp["port"])
        server_counts = counts.setdefault(server, {})
        for key in signature(c["handshake"], c["close"], [f["code"] for f in c["findings"]],
                             [lg["state"] for lg in c["lingering"]]):
            server_counts[key] = server_counts.get(key, 0) + 1
    for f in findings:
        wide = counts.setdefault(CAPTURE_WIDE, {})
        wide[f["code"]] = wide.get(f["code"], 0) + 1
    return counts


# -- Comparing --------------------------------------------------------------------------

class Change(NamedTuple):
    server: str
    key: str
    before: int
    now: int
    kind: str                   # "new", "grown", "gone", "shrunk"
    regression: bool
    examples: Tuple[int, ...]
    message: str


def watched(key: str, severity: str) -> bool:
    """Whether a signature key can regress: a finding code at `severity` or worse (a stuck
    CLOSE_WAIT is one: CLOSE_WAIT_LINGERING). Verdict and lingering counts are kept for the
    reader of the baseline; they grow with the length of a recording, not with its faults."""
    code = CATALOGUE.get(key)
    return code is not None and SEVERITY_RANK[code.severity] >= SEVERITY_RANK[severity]


def compare(before: Counts, now: Signatures, settings: BaselineSettings,
            source: str) -> List[Change]:
    """Regressions first (new, then grown), then what went away; servers and keys sorted."""
    changes: List[Change] = []
    for server in sorted(set(before) | set(now.counts)):
        old, new = before.get(server, {}), now.counts.get(server, {})
        for key in sorted(set(old) | set(new)):
            if not watched(key, settings.severity):
                continue
            b, n = old.get(key, 0), new.get(key, 0)
            tol = settings.tolerance_for(key)
            if n > b:
                kind = "new" if b == 0 else "grown"
                regression = not tol.allows(b, n)
            elif n < b:
                kind, regression = ("gone" if n == 0 else "shrunk"), False
            else:
                continue
            examples = tuple(now.examples.get((server, key), ()))
            changes.append(Change(server, key, b, n, kind, regression, examples,
                                  _message(server, key, b, n, kind, regression, tol.text,
                                           examples, source)))
    order = {"new": 0, "grown": 1, "shrunk": 2, "gone": 3}
    changes.sort(key=lambda c: (not c.regression, order[c.kind]))
    return changes


def _message(server: str, key: str, b: int, n: int, kind: str, regression: bool,
             tolerance: str, examples: Tuple[int, ...], source: str) -> str:
    head = "baseline: " if regression else "baseline note: "
    streams = ""
    if examples:
        streams = "; stream%s %s" % ("s" if len(examples) > 1 else "",
                                     ", ".join(map(str, examples)))
        if n > len(examples):
            streams += " and %d more" % (n - len(examples))
    if kind in ("gone", "shrunk"):
        return "%s%s on %s: %d connections, %d in %s (%s)" % (
            head, key, server, n, b, source, kind)
    return "%s%s on %s: %d connection%s, %d in %s (%s, tolerance %s)%s" % (
        head, key, server, n, "" if n == 1 else "s", b, source, kind, tolerance, streams)
