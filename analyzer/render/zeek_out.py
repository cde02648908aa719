"""`--format zeek`: the TCP connections as a Zeek conn.log (ASCII writer, TSV with headers).

The header is Zeek's: `#separator \\x09`, `#set_separator`, `#empty_field (empty)`,
`#unset_field -`, `#path conn`, `#open`, `#fields`, `#types`; then one row per connection and
`#close`. Zeek tools (zeek-cut, log readers) parse it as they parse Zeek's own.

Fields that need what we do not compute are unset (`-`): `service` (no protocol detection),
`local_orig`/`local_resp` (no Site::local_nets) and `missed_bytes`. `tunnel_parents` holds, for
a connection that came through tunnels, one element per tunnel layer, outermost first, in
words instead of Zeek's uids of the tunnel connections (we log no tunnel.log to point into):
`vxlan vni 42 192.0.2.1<->192.0.2.2` (`analyzer.judge.result.tunnel_words`).
`orig_ip_bytes`/`resp_ip_bytes` are as in Zeek: each side's IP packet lengths as their
headers announce them (IPv6: the payload length plus 40), summed. Where Zeek differs:

* `ts`, `duration`: the first and last packet of the connection; Zeek's duration stops at the
  last packet before both sides closed. As in Zeek, `duration`, `orig_bytes` and
  `resp_bytes` are unset when the duration is 0.
* `orig_bytes`/`resp_bytes`: TCP payload bytes sent, retransmissions included; Zeek derives
  them from sequence numbers.
* `uid`: `C` + base62 of a 96-bit BLAKE2s digest of the number of the connection's
  first frame (Wireshark's), start time and both endpoints: stable across runs of the same
  capture, unique to the row, not Zeek's random uid. It names the connection by its own
  packets, not by its place among the others (the stream number), so that a row is made
  whole where the connection ends, in whichever process of a parallel run saw it.
* `#open`/`#close`: the capture's first and last packet time (UTC), never the wall clock.
* When Zeek would have chosen our responder as the originator (`zeek_flipped` on the
  connection, from `ZeekView.flipped`), the row lists the endpoints and per-side counts in
  Zeek's order, so that `conn_state` and `history` read as in Zeek.
* When a bound on memory made the run finalize connections early (`capture.memory_bound`, the
  finding MEMORY_BOUND), one more field ends every row: `memory_bound` (bool), T on those
  connections. Zeek's log readers take fields by the `#fields` line, as they take the fields
  Zeek's own scripts add to conn.log; a run where no bound bit writes Zeek's fields only.

Rows are made as connections end (`make_sink`: the store keeps lines, not results, and spills
text), so memory holds the connections open at once and a bounded store, never every row; in
a parallel run (`--jobs`) the shards make their rows and the parent merges them by first
frame as bytes (render/lines.py `write_kept`). A row of a connection a bound finalized
early is kept with `\tT` after it; the writer adds `\tF` to the others when the run says a
bound bit (the `memory_bound` field), and writes the rows as they are otherwise (no
connection then has the mark).
"""

from __future__ import annotations

from hashlib import blake2s
from typing import Any, Final, List, Optional, TextIO, Tuple

from analyzer.common.native import i64
from analyzer.common.nstime import seconds, utc_text
from analyzer.decode.segment import addr_str
from analyzer.judge.result import ConnResult, tunnel_words
from analyzer.render.lines import write_kept
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
          "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
          "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
          "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
UNSET = "-"
EMPTY = "(empty)"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Two base62 digits for each number below 62 ** 2 (`_base62_96`).
_B62_PAIRS: Final = [a + b for a in _B62 for b in _B62]
#: What goes between two rows a store keeps (and ends every row written).
_SEP: Final = "\n"
#: Kept after the row of a connection a bound finalized early (`line`).
_BOUND: Final = "\tT"
#: Rows written together (one call to the stream for each such batch).
WRITE_ROWS: Final = 256
#: "000" to "999" (`_time6`).
_D3: Final = ["%03d" % i for i in range(1000)]
#: 62 ** 4: four base62 digits (`_base62_96`).
_D4: Final = 62 ** 4
#: Times below it (ns) whose whole microseconds `_time6` writes from the integer: 2 ** 33 s
#: (in 63 bits).
_EXACT_NS: Final = (1 << 33) * 1_000_000_000


def uid(first_frame: int, start_ns: int, orig: tuple, resp: tuple) -> str:
    """A Zeek-style connection uid, deterministic for the same capture and connection: from
    its first frame's number (unique to it), start time and endpoints."""
    return _uid(first_frame, start_ns, addr_str(orig[0]), orig[1], addr_str(resp[0]), resp[1])


def _uid(first_frame: int, start_ns: int, orig_h: str, orig_p: int, resp_h: str,
         resp_p: int) -> str:
    """`uid` from the endpoints' addresses as text: `C` and the 96-bit BLAKE2s digest of
    `first_frame|start_ns|orig_h|orig_p|resp_h|resp_p` in base62 (no leading zeros). BLAKE2s
    (the interpreter's own code, no library): a tenth of a connection's conn.log work less
    than SHA-256 through OpenSSL on a message this short."""
    key = f"{first_frame}|{start_ns}|{orig_h}|{orig_p}|{resp_h}|{resp_p}"
    return "C" + _base62_96(blake2s(key.encode(), digest_size=12).digest())


def _base62_96(digest: bytes) -> str:
    """The first 12 bytes of `digest`, a big-endian number, in base62 without leading zeros
    ("0" for zero): divided by 62 ** 4 while not zero, as three 32-bit limbs (each step's
    remainder shifted onto the next limb stays below 2 ** 56: machine integers), each
    remainder four digits (`_B62_PAIRS`, two at a time)."""
    a: i64 = i64(digest[0]) << 24 | i64(digest[1]) << 16 | i64(digest[2]) << 8 | i64(digest[3])
    b: i64 = i64(digest[4]) << 24 | i64(digest[5]) << 16 | i64(digest[6]) << 8 | i64(digest[7])
    c: i64 = i64(digest[8]) << 24 | i64(digest[9]) << 16 | i64(digest[10]) << 8 | i64(digest[11])
    parts: List[str] = []
    while a or b or c:
        r: i64 = a % _D4
        a = a // _D4
        cur: i64 = r << 32 | b
        b = cur // _D4
        cur = (cur % _D4) << 32 | c
        c = cur // _D4
        r = cur % _D4
        parts.append(_B62_PAIRS[r // 3844] + _B62_PAIRS[r % 3844])
    parts.reverse()
    return "".join(parts).lstrip("0") or "0"


def _time6(ns: int) -> str:
    """`"%.6f" % seconds(ns)` (conn.log's times: seconds, six decimals), from the integer
    where that is provably the same text: a whole number of microseconds below 2 ** 33 s
    (there the float nearest to it is less than half a microsecond away, so rounding it to
    six decimals gives it back); the fraction's digits from a table, three at a time."""
    if 0 <= ns < _EXACT_NS and ns % 1000 == 0:
        us: i64 = ns // 1000
        frac: i64 = us % 1_000_000
        return f"{us // 1_000_000}.{_D3[frac // 1000]}{_D3[frac % 1000]}"
    return "%.6f" % seconds(ns)


def _stamp(ts_ns: Optional[int]) -> str:
    """Zeek's #open/#close time format, from a capture timestamp (UTC), for any time (not
    time_t's range)."""
    return utc_text(ts_ns or 0, digits=0, sep="-", tsep="-")


def _labels(conn) -> tuple:
    """The Zeek labels the core attaches to a connection result, or a clear error."""
    state = getattr(conn, "conn_state", None)
    history = getattr(conn, "history", None)
    if state is None or history is None:
        raise RuntimeError(
            "--format zeek needs the Zeek labels (conn_state, history) on every connection, "
            "computed by analyzer.tcp.zeek.ZeekView during the replay; connection %s has none"
            % getattr(conn, "id", "?"))
    return state, history, bool(getattr(conn, "zeek_flipped", False))


def row(conn: Any) -> List[str]:
    """The conn.log columns of one connection result, in `FIELDS` order."""
    return _text(conn).split("\t")             # (no column holds a tab)


def _text(conn: Any) -> str:
    """The conn.log columns of one connection result, joined by tabs: one text built, its
    integers written into it (typed: the compiled build writes them without a call each)."""
    state, history, flipped = _labels(conn)
    orig: Tuple[bytes, int] = conn.orig_raw
    resp: Tuple[bytes, int] = conn.resp_raw
    op, rp = orig[1], resp[1]
    oh, rh = addr_str(orig[0]), addr_str(resp[0])
    start: int = conn.start
    end: int = conn.end
    u = _uid(conn.first_frame, start, oh, op, rh, rp)
    packets: Tuple[int, int] = conn.packets
    sent: Tuple[int, int] = conn.bytes
    ip: Tuple[int, int] = conn.ip_bytes
    opk, rpk = packets
    oby, rby = sent
    oip, rip = ip
    if flipped:
        (oh, op, opk, oby, oip), (rh, rp, rpk, rby, rip) = \
            (rh, rp, rpk, rby, rip), (oh, op, opk, oby, oip)
    hist = history or UNSET
    tunnels = _tunnel_parents(conn)
    ts = _time6(start)
    if end > start:                     # duration, orig_bytes, resp_bytes (Zeek's: unset at 0)
        timed = f"{_time6(end - start)}\t{oby}\t{rby}"
    else:
        timed = "-\t-\t-"
    return (f"{ts}\t{u}\t{oh}\t{op}\t{rh}\t{rp}\ttcp\t-\t{timed}\t{state}\t-\t-\t-\t{hist}\t"
            f"{opk}\t{oip}\t{rpk}\t{rip}\t{tunnels}")


def _tunnel_parents(conn) -> str:
    """The tunnel layers as a Zeek set (elements joined by the set separator)."""
    if not getattr(conn, "tunnel", b""):
        return UNSET
    return ",".join(tunnel_words(*layer) for layer in conn.tunnel_words_args())


def _bound(conn) -> str:
    """`memory_bound`: T when a memory bound finalized the connection early."""
    return "T" if any(f.code == "MEMORY_BOUND" for f in conn.findings) else "F"


def make_sink(settings: Settings, **_options) -> Optional[ResultSink]:
    """Each connection's row, made as it ends (`line`): the same in any process."""
    return ResultStore(settings.result_budget, encode=line, relabel=_as_is, unnumbered=line,
                       sep=_SEP)


def line(conn: ConnResult) -> str:
    """`conn`'s conn.log row, its columns joined by tabs, without its newline; `_BOUND` after
    it when a bound on memory finalized it early."""
    text = _text(conn)
    return text + _BOUND if conn.findings and _bound(conn) == "T" else text


def _as_is(text: str, _n: int) -> str:
    """A row with stream number `n`: the row (it does not depend on the number)."""
    return text


def render(report: Any, out: TextIO, **_options) -> None:
    """Write `report`'s TCP connections to `out` as a Zeek conn.log. (`report`: a `Report`,
    or any object with its `capture` and `connections`; typed `Any` so that the compiled
    build takes one.)"""
    cap = report.capture
    bound = bool(getattr(cap, "memory_bound", 0))
    fields: Tuple[str, ...] = FIELDS + ("memory_bound",) if bound else FIELDS
    types: Tuple[str, ...] = TYPES + ("bool",) if bound else TYPES
    connections: Any = report.connections
    store = getattr(connections, "inner", connections)      # (behind a triage selection)
    made = isinstance(store, ResultStore) and store.encode is line
    if not made:
        for conn in connections:        # labels checked before any output
            _labels(conn)
    kept = made and store is connections
    out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t%s\n#unset_field\t%s\n"
              "#path\tconn\n#open\t%s\n" % (EMPTY, UNSET, _stamp(cap.first_ts)))
    out.write("#fields\t%s\n#types\t%s\n" % ("\t".join(fields), "\t".join(types)))
    if not (kept and not bound and write_kept(out, connections, "", _SEP, ("", _SEP), True)):
        _write_each(out, connections, bound)
    out.write("#close\t%s\n" % _stamp(cap.last_ts))


def _write_each(out: TextIO, connections: Any, bound: bool) -> None:
    """The rows one by one: kept rows (text) or made from results; with `bound`, each ends
    with its `memory_bound` field."""
    pending: List[str] = []
    for item in connections:
        if isinstance(item, str):
            text = item if not bound or item.endswith(_BOUND) else item + "\tF"
        else:
            text = _text(item) + "\t" + _bound(item) if bound else _text(item)
        pending.append(text)
        if len(pending) >= WRITE_ROWS:
            pending.append("")
            out.write("\n".join(pending))
            pending = []
    if pending:
        pending.append("")
        out.write("\n".join(pending))
