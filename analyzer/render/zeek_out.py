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
* `uid`: `C` + base62 of the first 96 bits of SHA-256 over the stream number, start time and
  both endpoints: stable across runs of the same capture, not Zeek's random uid.
* `#open`/`#close`: the capture's first and last packet time (UTC), never the wall clock.
* When Zeek would have chosen our responder as the originator (`zeek_flipped` on the
  connection, from `ZeekView.flipped`), the row lists the endpoints and per-side counts in
  Zeek's order, so that `conn_state` and `history` read as in Zeek.
* When a bound on memory made the run finalize connections early (`capture.memory_bound`, the
  finding MEMORY_BOUND), one more field ends every row: `memory_bound` (bool), T on those
  connections. Zeek's log readers take fields by the `#fields` line, as they take the fields
  Zeek's own scripts add to conn.log; a run where no bound bit writes Zeek's fields only.
"""

from __future__ import annotations

import hashlib
from typing import Optional, TextIO, Tuple

from analyzer.common.nstime import seconds, utc_text
from analyzer.report.model import Report
from analyzer.decode.segment import addr_str
from analyzer.judge.result import tunnel_words

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


def uid(stream_id: int, start_ns: int, orig: tuple, resp: tuple) -> str:
    """A Zeek-style connection uid, deterministic for the same capture and stream."""
    key = "%d|%d|%s|%d|%s|%d" % (stream_id, start_ns, addr_str(orig[0]), orig[1],
                                 addr_str(resp[0]), resp[1])
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:12], "big")
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = _B62[r] + digits
    return "C" + (digits or "0")


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


def row(conn) -> list:
    """The conn.log columns of one connection result, in `FIELDS` order."""
    state, history, flipped = _labels(conn)
    (oa, op), (ra, rp) = conn.orig_raw, conn.resp_raw
    opk, rpk = conn.packets
    oby, rby = conn.bytes
    oip, rip = conn.ip_bytes
    if flipped:
        (oa, op, opk, oby, oip), (ra, rp, rpk, rby, rip) = \
            (ra, rp, rpk, rby, rip), (oa, op, opk, oby, oip)
    dur = seconds(conn.end - conn.start)
    timed = dur > 0
    return ["%.6f" % seconds(conn.start), uid(conn.id, conn.start, conn.orig_raw, conn.resp_raw),
            addr_str(oa), str(op), addr_str(ra), str(rp), "tcp", UNSET,
            "%.6f" % dur if timed else UNSET, str(oby) if timed else UNSET,
            str(rby) if timed else UNSET, state, UNSET, UNSET, UNSET, history or UNSET,
            str(opk), str(oip), str(rpk), str(rip), _tunnel_parents(conn)]


def _tunnel_parents(conn) -> str:
    """The tunnel layers as a Zeek set (elements joined by the set separator)."""
    if not getattr(conn, "tunnel", b""):
        return UNSET
    return ",".join(tunnel_words(*layer) for layer in conn.tunnel_words_args())


def _bound(conn) -> str:
    """`memory_bound`: T when a memory bound finalized the connection early."""
    return "T" if any(f.code == "MEMORY_BOUND" for f in conn.findings) else "F"


def render(report: Report, out: TextIO, **_options) -> None:
    """Write `report`'s TCP connections to `out` as a Zeek conn.log."""
    cap = report.capture
    fields: Tuple[str, ...] = FIELDS
    types: Tuple[str, ...] = TYPES
    if getattr(cap, "memory_bound", 0):
        fields, types = FIELDS + ("memory_bound",), TYPES + ("bool",)
        rows = [row(c) + [_bound(c)] for c in report.connections]
    else:
        rows = [row(c) for c in report.connections]      # labels checked before any output
    out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t%s\n#unset_field\t%s\n"
              "#path\tconn\n#open\t%s\n" % (EMPTY, UNSET, _stamp(cap.first_ts)))
    out.write("#fields\t%s\n#types\t%s\n" % ("\t".join(fields), "\t".join(types)))
    for cols in rows:
        out.write("\t".join(cols) + "\n")
    out.write("#close\t%s\n" % _stamp(cap.last_ts))
