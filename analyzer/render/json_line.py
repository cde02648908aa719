"""A connection's JSON line (`--format json`, render/json_out.py; the contract in docs/json.md).

Formatted directly from the connection's result, field by field in `ConnResult.to_dict()`
order, with the json module's own string escaper and times written from their integer
nanoseconds (`analyzer.common.nstime`): the same bytes the encoder writes for `to_dict()`
(tests/test_json_out.py holds the two equal on every sample and corpus capture), at a quarter
of the cost. `connection_tail` is the line without its stream number, which the writer puts in
front (`json_out.relabel`, or as bytes in a `--jobs` run). The texts that repeat from one
connection to the next are cached, each cache bounded.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring        # the C escaper where there is one
from typing import Any, Callable, Dict, Final, List, Optional, Tuple

from analyzer.common.findings import Finding
from analyzer.common.native import i64
from analyzer.common.nstime import rounded_json, rounded_parts, seconds_json, seconds_parts
from analyzer.decode.segment import addr_str
from analyzer.judge.result import ANALYSIS_FIELDS, ConnResult, Lingering
from analyzer.tcp.endpoint import NO_COUNTS

try:                # the compiled build's C join (setup.py); the pure build's is Python
    from analyzer.common._join import concat, plain
except ImportError:
    from analyzer.common.join import concat, plain
#: (as constants: the compiled build calls them without looking their names up each time)
_concat: Final = concat
_plain: Final = plain

#: The encoder of everything not formatted directly (a traced connection with its ladder, the
#: report's head, a tunnel's layers).
dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

_COUNTS: Final = ", ".join('"%s": %%d' % name for name in ANALYSIS_FIELDS)
_NO_COUNTS_TEXT: Final = _COUNTS % NO_COUNTS
#: From the lingering states' bracket to the findings' when the connection reused no other's
#: 4-tuple and its sequence analysis counted nothing (most connections): one piece.
_PLAIN_TAIL: Final = ('], "reused_from": null, "analysis": {"orig": {' + _NO_COUNTS_TEXT
                      + '}, "resp": {' + _NO_COUNTS_TEXT + '}}, "findings": [')

#: Encoded text of the strings that repeat from connection to connection (states, verdicts,
#: history letters, finding codes): one dict lookup instead of escaping again. Emptied when
#: full, so that odd strings cannot grow it without bound.
_CACHE_LIMIT: Final = 4096
_texts: Final[Dict[str, str]] = {}
#: (conn_state, history, handshake, syn_retransmissions, close, closed_first, reset_by,
#: half_close, final_state) -> that part of the line (`_verdicts`), emptied when full.
_verdict_texts: Final[Dict[tuple, str]] = {}
#: Packed addresses -> their JSON text (clients and servers come back again and again),
#: emptied past a bound (`_Last.addr_limit`): at most `_ADDR_LIMIT` (about 2 MB), so that a
#: busy capture's working set of addresses (13.5 k in the reference capture of bench/README.md)
#: fits, where 4,096 was emptied again and again. When the cache filled up with fewer hits
#: than addresses (most addresses were seen once: every client new, as in a scan or the
#: window shape of bench/shapes.py), the next bound is a quarter of it, down to
#: `_ADDR_FLOOR`, and the cache stops holding ~2 MB of strings written once; a fill with more
#: hits than addresses puts the bound back at `_ADDR_LIMIT`.
_addrs: Final[Dict[bytes, str]] = {}
_ADDR_LIMIT: Final = 16384
_ADDR_FLOOR: Final = 1024
#: The text of the numbers below `_SMALL` (`_num`), and of three digits (`_digits`).
_SMALL: Final = 1024
_NUMS: Final = [str(n) for n in range(_SMALL)]
_D3: Final = ["%03d" % n for n in range(1000)]
#: A finding's end when it occurred once.
_COUNT_ONE: Final = ', "count": 1}'


def connection_json(r: ConnResult) -> str:
    """`dumps(r.to_dict())`, formatted directly."""
    return _line(r, True)


def connection_tail(r: ConnResult) -> str:
    """`connection_json(r)` without its start, `{"id": ` and the number: what the shards of a
    parallel run send, before the stream number is known (`relabel` completes it)."""
    return _line(r, False)


def _line(r: ConnResult, numbered: bool) -> str:
    """The line (`numbered`: with its start and stream number), one string made of its
    pieces at once (`concat`: compiled, in C, common/_join.c).

    The pieces are the texts that repeat (kept: the verdicts, the endpoints, a lingering
    state's and a finding's start), the constant texts between them, and the numbers and
    times as up to three texts each from tables (`_digits`, `seconds_parts`), so that no
    text is made for them. A connection with one lingering state and one finding (most:
    TIME_WAIT at the capture's end) has them among the pieces; one with none or more than
    one has them as one text each (`_lingering_list`, `_findings_list`), the other pieces
    empty."""
    if numbered:
        h0 = '{"id": '
        h1, h2, h3 = _digits(r.id)
    else:
        h0 = h1 = h2 = h3 = ""
    orig = _orig(r.orig_raw[0])
    o1, o2, o3 = _digits(r.orig_raw[1])
    resp = _resp(r.resp_raw[0], r.resp_raw[1])
    start = '}, "tunnel": %s, "start": ' % dumps(r.tunnel_layers()) if len(r.tunnel) \
        else '}, "start": '
    s1, s2, s3 = seconds_parts(r.start)
    e1, e2, e3 = seconds_parts(r.end)
    d1, d2, d3 = seconds_parts(r.end - r.start)
    f1, f2, f3 = _digits(r.first_frame)
    l1, l2, l3 = _digits(r.last_frame)
    packets = _packets(r.packets)
    sizes = r.bytes
    b1, b2, b3 = _digits(sizes[0])
    c1, c2, c3 = _digits(sizes[1])
    verdicts = _verdicts(r)
    lingering = r.lingering
    if len(lingering) == 1:
        side, state, since, seconds, remaining = lingering[0]
        g0 = _lingering_head(side, state)
        if since == r.end:                  # (TIME_WAIT from the last packet on: most)
            g1, g2, g3 = e1, e2, e3
        else:
            g1, g2, g3 = seconds_parts(since)
        g4 = ', "seconds": '
        g5, g6, g7 = rounded_parts(seconds)
        if remaining is None:
            g8, g9, g10, g11, g12 = "}", "", "", "", ""
        else:
            g8 = ', "remaining": '
            g9, g10, g11 = rounded_parts(remaining)
            g12 = "}"
    else:
        g0 = _lingering_list(lingering)
        g1 = g2 = g3 = g4 = g5 = g6 = g7 = g8 = g9 = g10 = g11 = g12 = ""
    tail = _tail(r)
    findings = r.findings
    if len(findings) == 1:
        f = findings[0]
        k0 = _finding_start(f.code, f.severity, f.ts)
        k1, k2, k3 = _digits(f.frame)
        k4 = _side(f.side)
        message = f.message
        if _plain(message):             # (most: the text itself between quotes)
            k5, k6, k7 = '"', message, '"'
        else:
            k5, k6, k7 = _message(message), "", ""
        count = f.count
        k8 = _COUNT_ONE if count == 1 else ', "count": ' + str(count) + "}"
    else:
        k0 = _findings_list(findings)
        k1 = k2 = k3 = k4 = k5 = k6 = k7 = k8 = ""
    return _concat(h0, h1, h2, h3, orig, o1, o2, o3, resp, start, s1, s2, s3, ', "end": ',
                   e1, e2, e3, ', "duration": ', d1, d2, d3, ', "first_frame": ', f1, f2, f3,
                   ', "last_frame": ', l1, l2, l3, packets, b1, b2, b3, ', "resp": ',
                   c1, c2, c3, verdicts, g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12,
                   tail, k0, k1, k2, k3, k4, k5, k6, k7, k8, "]}")


def _digits(n: int) -> Tuple[str, str, str]:
    """`str(n)` as three texts from tables (its groups of three digits), for 0 <= n < 10**9;
    otherwise its text and two empty ones."""
    if 0 <= n < 1_000_000_000:
        v: i64 = n                          # (machine integers, compiled)
        if v < 1000:
            return _NUMS[v], "", ""
        if v < 1_000_000:
            return _NUMS[v // 1000], _D3[v % 1000], ""
        return _NUMS[v // 1_000_000], _D3[v // 1000 % 1000], _D3[v % 1000]
    return str(n), "", ""


def _tail(r: ConnResult) -> str:
    """From the lingering states' closing bracket to the findings' opening one."""
    counts = r.analysis
    if r.reused_from is None and counts[0] is NO_COUNTS and counts[1] is NO_COUNTS:
        return _PLAIN_TAIL                  # (most: the shared tuple of no counts, twice)
    orig_counts, resp_counts = _counts(counts[0]), _counts(counts[1])
    if r.reused_from is None and orig_counts is _NO_COUNTS_TEXT and \
            resp_counts is _NO_COUNTS_TEXT:
        return _PLAIN_TAIL
    return "".join([
        '], "reused_from": ', "null" if r.reused_from is None else str(r.reused_from),
        ', "analysis": {"orig": {', orig_counts, '}, "resp": {', resp_counts,
        '}}, "findings": ['])


def _lingering_list(lingering: List[Lingering]) -> str:
    """Lingering states' objects, comma-separated (none: empty)."""
    return _objects(lingering, _lingering)


def _findings_list(findings: List[Finding]) -> str:
    """Findings' objects, comma-separated (none: empty)."""
    return _objects(findings, _finding)


def _objects(items: List[Any], write: Callable[[List[str], Any], None]) -> str:
    """Each item's object, as `write` puts it in pieces, comma-separated (none: empty)."""
    if not items:
        return ""
    out: List[str] = []
    for i, item in enumerate(items):
        if i:
            out.append(", ")
        write(out, item)
    return "".join(out)


def _orig(addr: bytes) -> str:
    """The originator's object to its port (the last line's when the address is the same)."""
    last = _LAST
    if addr != last.orig_addr or not last.orig:
        last.orig_addr = addr
        last.orig = "".join([', "orig": {"addr": ', _addr(addr), ', "port": '])
    return last.orig


def _resp(addr: bytes, port: int) -> str:
    """The responder's object but its closing brace (the last line's when it is the same)."""
    last = _LAST
    if port != last.resp_port or addr != last.resp_addr or not last.resp:
        last.resp_addr, last.resp_port = addr, port
        last.resp = "".join(['}, "resp": {"addr": ', _addr(addr), ', "port": ', _num(port)])
    return last.resp


def _num(n: int) -> str:
    """`str(n)`; from a table for the small numbers (packets, bytes, ports) lines repeat."""
    return _NUMS[n] if 0 <= n < _SMALL else str(n)


def _verdicts(r: ConnResult) -> str:
    """The line from `conn_state` to the bracket before `lingering`: connections share a few
    combinations of these fields, each written once (`_verdict_texts`); the last one is
    compared first (a flood's lines, a batch of alike connections, come one after another)."""
    last = _LAST
    # The last line's fields, compared one by one (the same string objects, mostly: verdicts
    # are constants, histories shared), before any tuple is made.
    history = r.history
    if history is last.history and r.conn_state is last.conn_state and \
            r.handshake is last.handshake and r.close is last.close and \
            r.closed_first is last.closed_first and r.reset_by is last.reset_by and \
            r.syn_retransmissions == last.syn_retransmissions and \
            r.half_close == last.half_close and r.final_state == last.final_state and \
            last.verdict_text:
        return last.verdict_text
    key: tuple = (r.conn_state, history, r.handshake, r.syn_retransmissions, r.close,
                  r.closed_first, r.reset_by, r.half_close, r.final_state)   # (boxed once)
    last.history, last.conn_state, last.handshake, last.close = \
        history, r.conn_state, r.handshake, r.close
    last.closed_first, last.reset_by, last.syn_retransmissions = \
        r.closed_first, r.reset_by, r.syn_retransmissions
    last.half_close, last.final_state = r.half_close, r.final_state
    if key == last.verdict:
        return last.verdict_text
    text = _verdict_texts.get(key)
    last.verdict = key
    if text is None:
        if len(_verdict_texts) >= _CACHE_LIMIT:
            _verdict_texts.clear()
        text = _verdict_texts[key] = "".join([
            '}, "conn_state": ', _text(r.conn_state), ', "history": ', _text(r.history),
            ', "handshake": ', _text(r.handshake),
            ', "syn_retransmissions": ', str(r.syn_retransmissions),
            ', "close": ', _text(r.close), ', "closed_first": ', _text(r.closed_first),
            ', "reset_by": ', _text(r.reset_by),
            ', "half_close": ', "true" if r.half_close else "false",
            ', "final_state": {"orig": ', _text(r.final_state[0]),
            ', "resp": ', _text(r.final_state[1]), '}, "lingering": ['])
    last.verdict_text = text
    return text


def _text(s: Optional[str]) -> str:
    if s is None:
        return "null"
    text = _texts.get(s)
    if text is None:
        if len(_texts) >= _CACHE_LIMIT:
            _texts.clear()
        text = _texts[s] = encode_basestring(s)
    return text


def _addr(addr: bytes) -> str:
    text = _addrs.get(addr)
    if text is None:
        last = _LAST
        size = len(_addrs)
        if size >= last.addr_limit:
            if last.addr_hits < size:       # (a cache mostly of addresses seen once)
                last.addr_limit = max(_ADDR_FLOOR, last.addr_limit // 4)
            else:
                last.addr_limit = _ADDR_LIMIT
            last.addr_hits = 0
            _addrs.clear()
        text = _addrs[addr] = '"' + addr_str(addr) + '"'  # digits, dots, colons: no escapes
    else:
        _LAST.addr_hits += 1
    return text


def _counts(counts: Tuple[int, ...]) -> str:
    return _NO_COUNTS_TEXT if counts is NO_COUNTS or counts == NO_COUNTS else _COUNTS % counts


def _lingering_head(side: str, state: str) -> str:
    """A lingering state's object to its `since` (the last one's when alike)."""
    last = _LAST
    if side != last.lingering_side or state != last.lingering_state or not last.lingering:
        last.lingering_side, last.lingering_state = side, state
        last.lingering = "".join(['{"side": ', _text(side), ', "state": ', _text(state),
                                  ', "since": '])
    return last.lingering


def _lingering(out: List[str], lg: Lingering) -> None:
    """A lingering state's object, in pieces at the end of `out`."""
    side, state, since, seconds, remaining = lg
    # (appended one by one: a list literal to extend with costs more than its appends)
    out.append(_lingering_head(side, state))
    out.append(seconds_json(since))
    out.append(', "seconds": ')
    out.append(rounded_json(seconds))
    if remaining is None:
        out.append("}")
    else:
        out.append(', "remaining": ')
        out.append(rounded_json(remaining))
        out.append("}")


def _finding(out: List[str], f: Finding) -> None:
    """A finding's object, in pieces at the end of `out`: its code and severity, and its
    side, each one piece (the last finding's, or made now)."""
    count = f.count
    out.append(_finding_head(f.code, f.severity))
    out.append(seconds_json(f.ts))
    out.append(', "frame": ')
    out.append(str(f.frame))
    out.append(_side(f.side))
    out.append(_message(f.message))
    out.append(_COUNT_ONE if count == 1 else ', "count": ' + str(count) + "}")


def _finding_start(code: str, severity: str, ts: int) -> str:
    """A finding's object to its `frame` (the last one's when alike: the TIME_WAIT findings
    of a capture share their time, its end)."""
    last = _LAST
    head = _finding_head(code, severity)
    if ts != last.ts or head is not last.ts_head or not last.start:
        last.ts, last.ts_head = ts, head
        last.start = "".join([head, seconds_json(ts), ', "frame": '])
    return last.start


def _packets(packets: Tuple[int, int]) -> str:
    """The packets' object and the bytes' to their first count (the last line's when the
    same: alike connections come one after another)."""
    last = _LAST
    if packets != last.packets or not last.packets_text:
        last.packets = packets
        last.packets_text = "".join([', "packets": {"orig": ', _num(packets[0]), ', "resp": ',
                                     _num(packets[1]), '}, "bytes": {"orig": '])
    return last.packets_text


def _finding_head(code: str, severity: str) -> str:
    """A finding's object to its `ts` (the last one's when alike)."""
    last = _LAST
    if code != last.code or severity != last.severity or not last.head:
        last.code, last.severity = code, severity
        last.head = "".join(['{"code": ', _text(code), ', "severity": ', _text(severity),
                             ', "ts": '])
    return last.head


def _side(side: Optional[str]) -> str:
    """A finding's side with the text around it (the last one's when alike)."""
    last = _LAST
    if side != last.side or not last.side_text:
        last.side = side
        last.side_text = "".join([', "side": ', _text(side), ', "message": '])
    return last.side_text


class _Last:
    """What the last line wrote, to write it again without looking it up: its finding's
    message (a flood's thousands of findings share one) and its text, the text of its
    finding's code and severity (`head`) and side (`side_text`), its verdicts (`_verdicts`:
    their key and text), its lingering state's side and state (`lingering`), its originator's
    address (`orig`), its responder (`resp`), its packets (`packets_text`) and its finding's
    start to the frame (`start`, with the `ts` and head it was made of); and the address
    cache's bound."""

    def __init__(self) -> None:
        self.message = ""
        self.text = '""'
        self.code = ""
        self.severity = ""
        self.head = ""
        self.side: Optional[str] = None
        self.side_text = ""
        self.verdict: tuple = ()
        self.verdict_text = ""
        # (its fields, as `_verdicts` compares them first)
        self.history: Optional[str] = None
        self.conn_state: Optional[str] = None
        self.handshake = ""
        self.close: Optional[str] = None
        self.closed_first: Optional[str] = None
        self.reset_by: Optional[str] = None
        self.syn_retransmissions = -1
        self.half_close = False
        self.final_state: Tuple[str, str] = ("", "")
        self.orig_addr = b""
        self.orig = ""
        self.packets = (-1, -1)
        self.packets_text = ""
        self.ts = -1
        self.ts_head = ""
        self.start = ""
        self.resp_addr = b""
        self.resp_port = -1
        self.resp = ""
        self.lingering_side = ""
        self.lingering_state = ""
        self.lingering = ""
        # The address cache's bound and its hits since it was last emptied (`_addr`).
        self.addr_limit = _ADDR_LIMIT
        self.addr_hits = 0


_LAST: Final = _Last()


def _message(message: str) -> str:
    """A finding's message as JSON text: the last one's when the same (a flood's thousands
    of findings share one)."""
    last = _LAST
    if message == last.message:
        return last.text
    text = '"' + message + '"' if _plain(message) else encode_basestring(message)
    last.message, last.text = message, text
    return text
