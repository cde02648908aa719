"""A connection's judgement as the report carries it: `ConnResult`, its lingering states and
its packet ladder (rows made by `analyzer.judge.ladder`).

The judge builds one `ConnResult` per finished connection (`verdicts.finalize`); the reporting
stage counts and stores them, and renderers only read them. `ConnResult.to_dict()` is the
per-connection object of the JSON contract (docs/json.md). Addresses are kept packed (bytes)
for compactness; `to_dict()` and the renderers give them as text.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, Final, List, NamedTuple, Optional, Tuple

from analyzer.common.findings import SEVERITY_RANK, Finding
from analyzer.common.nstime import seconds
from analyzer.decode.segment import addr_str
from analyzer.decode.tunnels import describe
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import NO_COUNTS, Analysis

try:
    from analyzer.common._join import subtuple
except ImportError:                     # the pure-Python build
    from analyzer.common.join import subtuple

ANALYSIS_FIELDS: Final = Analysis.FIELDS
#: `tuple.__new__(cls, items)` for a NamedTuple (compiled: in C, common/_join.c), looked up
#: once (not by name in the module's dict for every lingering state).
_subtuple: Final = subtuple
_WARNING_RANK: Final = SEVERITY_RANK["warning"]


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


#: The class, looked up once (compiled: not by name in the module's dict for each state).
_LINGERING: Final = Lingering


def lingering(side: str, state: str, since: int, seconds: int,
              remaining: Optional[int]) -> Lingering:
    """`Lingering(side, state, since, seconds, remaining)`, made as its own `__new__` makes it
    but without calling that (Python code, which the compiled build runs interpreted)."""
    return _subtuple(_LINGERING, side, state, since, seconds, remaining)


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
    win: int = 0                    # the window field as sent
    window: Optional[int] = None    # scaled (Wireshark's tcp.window_size); None: scale unknown
    options: Tuple[Tuple[str, object], ...] = ()   # every TCP option, in the order sent
    analysis: Tuple[str, ...] = ()  # what the sequence analysis made of it (Wireshark's words)
    raw_seq: int = 0                # the numbers as on the wire
    raw_ack: Optional[int] = None

    def to_dict(self) -> dict:
        d = self._asdict()
        d["ts"] = seconds(self.ts)
        d["options"] = {name: _option_json(value) for name, value in self.options}
        d["analysis"] = list(self.analysis)
        return d


def _option_json(value: object) -> object:
    """An option's value for JSON: pairs and lists of pairs as lists."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [list(v) for v in value]
    return value


def _finding_order(f: Finding) -> Tuple[int, str]:
    """Findings in the order they first occurred (the code breaks ties)."""
    return (f.ts, f.code)


def _ep(addr: bytes, port: int) -> dict:
    return {"addr": addr_str(addr), "port": port}


class Peer(NamedTuple):
    """One end of a connection as text: `Peer("10.0.0.1", 40000)`, `Peer("2001:db8::1", 443)`
    (RFC 5952 spelling for IPv6)."""
    addr: str
    port: int

    def __str__(self) -> str:
        return ("[%s]:%d" if ":" in self.addr else "%s:%d") % (self.addr, self.port)


class ConnResult:
    """Everything reported about one connection; compact, so that many can be kept."""

    __slots__ = ("id", "orig_raw", "resp_raw", "start", "end", "first_frame", "last_frame", "packets",
                 "bytes", "handshake", "close", "closed_first", "reset_by", "half_close",
                 "final_state", "lingering", "syn_retransmissions", "findings", "reused_from",
                 "analysis", "conn_state", "history", "zeek_flipped", "ip_bytes", "tunnel",
                 "rtunnel")
    # Typed, so that the compiled build keeps them unboxed where it can.
    id: int
    orig_raw: Tuple[builtins.bytes, int]     # (packed address, port): `orig` gives it as text
    resp_raw: Tuple[builtins.bytes, int]
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
    conn_state: Optional[str]               # None: the Zeek view was off (Settings.zeek_view)
    history: Optional[str]
    zeek_flipped: bool
    ip_bytes: Tuple[int, int]               # (orig, resp): IP lengths (conn.log's ip_bytes)
    tunnel: builtins.bytes                  # tunnel context (analyzer.decode.tunnels); b"": none
    rtunnel: builtins.bytes                 # the replies' context (ids may differ), else tunnel

    @classmethod
    def from_connection(cls, c: Connection, handshake: str, close: Optional[str],
                        closed_first: Optional[str], reset_by: Optional[str], half_close: bool,
                        final_state: Tuple[str, str], lingering: List[Lingering]) -> "ConnResult":
        r = ConnResult()        # (compiled: the native constructor; `cls()` is a Python call)
        o, p = c.e0, c.e1
        r.id = c.id
        r.orig_raw = (c.addr(0), c.port(0))
        r.resp_raw = (c.addr(1), c.port(1))
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
        r.final_state = final_state
        r.lingering = lingering
        r.syn_retransmissions = max(o.syn_count - 1, 0)
        findings = list(c.findings.values())
        if len(findings) > 1:                   # (most connections have none or one)
            findings.sort(key=_finding_order)
        r.findings = findings
        r.reused_from = c.reused_from
        r.analysis = (o.analysis.counts(), NO_COUNTS if o is p else p.analysis.counts())
        zeek = c.zeek_view()
        if zeek is not None:
            r.conn_state, r.history = zeek.finish(c.first_from_orig)
            r.zeek_flipped = zeek.flipped
        else:                   # computed for no output (`Settings.zeek_view`)
            r.conn_state = r.history = None
            r.zeek_flipped = False
        r.tunnel = c.tunnel
        r.rtunnel = c.rtunnel
        return r

    def __reduce__(self) -> tuple:          # pickled as a tuple: spilling is on the hot path
        return (_result, (self.__getstate__(),))

    def __getstate__(self) -> tuple:
        return (self.id, self.orig_raw, self.resp_raw, self.start, self.end, self.first_frame,
                self.last_frame, self.packets, self.bytes, self.handshake, self.close,
                self.closed_first, self.reset_by, self.half_close, self.final_state,
                self.lingering, self.syn_retransmissions, self.findings,
                self.reused_from, self.analysis, self.conn_state, self.history,
                self.zeek_flipped, self.ip_bytes, self.tunnel, self.rtunnel)

    def __setstate__(self, state: tuple) -> None:
        (self.id, self.orig_raw, self.resp_raw, self.start, self.end, self.first_frame,
         self.last_frame, self.packets, self.bytes, self.handshake, self.close,
         self.closed_first, self.reset_by, self.half_close, self.final_state,
         self.lingering, self.syn_retransmissions, self.findings, self.reused_from,
         self.analysis, self.conn_state, self.history, self.zeek_flipped, self.ip_bytes,
         self.tunnel, self.rtunnel) = state

    def flat(self) -> tuple:
        """The result as plain values only (tuples, lists, numbers, text, bytes, None), in
        `__getstate__` order with each finding and lingering state as a tuple: what the result
        store spills with `marshal`, much cheaper than pickling objects. `unflat` reverses it."""
        return (self.id, self.orig_raw, self.resp_raw, self.start, self.end, self.first_frame,
                self.last_frame, self.packets, self.bytes, self.handshake, self.close,
                self.closed_first, self.reset_by, self.half_close, self.final_state,
                [tuple(lg) for lg in self.lingering], self.syn_retransmissions,
                [(f.code, f.ts, f.frame, f.side, f.message, f.count) for f in self.findings],
                self.reused_from, self.analysis, self.conn_state, self.history,
                self.zeek_flipped, self.ip_bytes, self.tunnel, self.rtunnel)

    @property
    def orig(self) -> Peer:
        """The originator (the SYN's sender, else guessed from ports), address as text."""
        return Peer(addr_str(self.orig_raw[0]), self.orig_raw[1])

    @property
    def resp(self) -> Peer:
        """The responder, address as text."""
        return Peer(addr_str(self.resp_raw[0]), self.resp_raw[1])

    @property
    def start_time(self) -> float:
        """The first packet's capture time, seconds since 1970 (`start` is exact, in ns)."""
        return seconds(self.start)

    @property
    def end_time(self) -> float:
        """The last packet's capture time, seconds since 1970 (`end` is exact, in ns)."""
        return seconds(self.end)

    @property
    def duration(self) -> float:
        """Seconds from the first packet to the last."""
        return seconds(self.end - self.start)

    @property
    def codes(self) -> List[str]:
        """The codes of its findings, in the order they first occurred."""
        return [f.code for f in self.findings]

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

    def tunnel_layers(self) -> List[dict]:
        """The tunnels the connection came through, outermost first, as the JSON has them:
        `reply_id` where the replies carried another id than the first packet."""
        out = []
        for (kind, a, b, ident), (_, _, _, reply) in zip(describe(self.tunnel),
                                                         describe(self.rtunnel)):
            layer: Dict[str, Any] = {"kind": kind, "endpoints": [a, b],
                                     "id": None if ident < 0 else ident}
            if reply != ident:
                layer["reply_id"] = reply
            out.append(layer)
        return out

    def tunnel_text(self) -> str:
        """The same in words: `vxlan vni 42 192.0.2.1<->192.0.2.2`, layers joined by ` / `."""
        return " / ".join(tunnel_words(*layer) for layer in self.tunnel_words_args())

    def tunnel_words_args(self) -> List[Tuple[str, str, str, str]]:
        """Each layer's (kind, endpoint, endpoint, id text) for `tunnel_words`: the id as
        `7`, or `7/9` when the replies carried 9; empty when the kind keeps none."""
        out = []
        for (kind, a, b, ident), (_, _, _, reply) in zip(describe(self.tunnel),
                                                         describe(self.rtunnel)):
            text = "" if ident < 0 else str(ident) if reply == ident else "%d/%d" % (ident, reply)
            out.append((kind, a, b, text))
        return out

    def to_dict(self) -> dict:
        d: Dict[str, Any] = {
            "id": self.id,
            "orig": _ep(*self.orig_raw),
            "resp": _ep(*self.resp_raw),
        }
        if self.tunnel:
            d["tunnel"] = self.tunnel_layers()
        d.update({
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
        })
        return d


#: What a tunnel kind's id is called in words.
_ID_NAMES: Final = {"vxlan": "vni", "geneve": "vni", "gre": "key", "erspan": "session"}


def tunnel_words(kind: str, a: str, b: str, ident: str) -> str:
    """One tunnel layer in words: kind, id (where the kind keeps one), outer endpoints."""
    if not ident:
        return "%s %s<->%s" % (kind, a, b)
    return "%s %s %s %s<->%s" % (kind, _ID_NAMES.get(kind, "id"), ident, a, b)


def unflat(t: tuple) -> ConnResult:
    """A result from `ConnResult.flat()`: equal to the one flattened."""
    r = ConnResult()
    (r.id, r.orig_raw, r.resp_raw, r.start, r.end, r.first_frame, r.last_frame, r.packets,
     r.bytes, r.handshake, r.close, r.closed_first, r.reset_by, r.half_close, r.final_state,
     lingering_flat, r.syn_retransmissions, findings, r.reused_from, analysis, r.conn_state,
     r.history, r.zeek_flipped, r.ip_bytes, r.tunnel, r.rtunnel) = t
    r.lingering = [lingering_of(lg) for lg in lingering_flat]
    out = []
    for code, ts, frame, side, message, count in findings:
        f = Finding(code, ts, frame, side, message)
        f.count = count
        out.append(f)
    r.findings = out
    o, p = analysis
    r.analysis = (NO_COUNTS if o == NO_COUNTS else o, NO_COUNTS if p == NO_COUNTS else p)
    return r


def lingering_of(t: tuple) -> Lingering:
    """A `Lingering` from its values as a plain tuple (`ConnResult.flat`)."""
    return _subtuple(_LINGERING, *t)


def _result(state: tuple) -> ConnResult:
    """A pickled ConnResult back (`ConnResult.__reduce__`)."""
    r = ConnResult()
    r.__setstate__(state)
    return r
