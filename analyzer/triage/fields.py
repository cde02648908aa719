"""The fields a filter, a sort key or a grouping can name: one table, data only.

Each `Field` says how to read its values from a `ConnResult` (a tuple: a field about either
end, such as `ip.addr`, has two; one about something that may be absent, such as `reset_by`,
has none then), what kind of value it holds (which decides the operators and literals it
takes) and, for a closed vocabulary, every value it can have. Wireshark's names are kept where
Wireshark has the field (`ip.addr`, `tcp.port`, `tcp.stream`); a connection's `src` side is its
originator, `dst` its responder. docs/filters.md is drawn from this table.
"""

from __future__ import annotations

from typing import Callable, Dict, Final, NamedTuple, Optional, Tuple

from analyzer.common.findings import CATALOGUE, SEVERITY_RANK
from analyzer.judge.result import ConnResult
from analyzer.judge.verdicts import CLOSES, HANDSHAKES
from analyzer.tcp.states import State

#: Kinds of value: what a literal must look like and which operators apply.
ADDR: Final = "address"
INT: Final = "integer"
NUMBER: Final = "number"
WORD: Final = "word"           # a closed vocabulary (`values`)
TEXT: Final = "text"
SEVERITY: Final = "severity"   # a word with an order: info < warning < error

#: Operators each kind takes besides the bare test (`field`: it has a value) and `in`.
ORDERED: Final = frozenset((INT, NUMBER, SEVERITY))

SEVERITIES: Final = ("info", "warning", "error")
SIDES: Final = ("orig", "resp")
#: Zeek's conn.log `conn_state` vocabulary (docs/zeek.md).
ZEEK_CONN_STATES: Final = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0",
                           "RSTRH", "SH", "SHR", "OTH")

Values = Tuple[object, ...]


class Field(NamedTuple):
    name: str
    kind: str
    get: Callable[[ConnResult], Values]
    help: str
    values: Optional[Tuple[str, ...]] = None     # the vocabulary of a WORD or SEVERITY field


def _worst(r: ConnResult) -> Values:
    worst = r.worst()
    return (worst,) if worst >= 0 else ()


def _opt(value: Optional[str]) -> Values:
    return () if value is None else (value,)


_FIELDS: Final = [
    Field("ip.addr", ADDR, lambda r: (r.orig_raw[0], r.resp_raw[0]),
          "Either end's address (IPv4 or IPv6; CIDR accepted: `10.0.0.0/8`)."),
    Field("ip.src", ADDR, lambda r: (r.orig_raw[0],), "The originator's address (the SYN's sender)."),
    Field("ip.dst", ADDR, lambda r: (r.resp_raw[0],), "The responder's address."),
    Field("tcp.port", INT, lambda r: (r.orig_raw[1], r.resp_raw[1]), "Either end's port."),
    Field("tcp.srcport", INT, lambda r: (r.orig_raw[1],), "The originator's port."),
    Field("tcp.dstport", INT, lambda r: (r.resp_raw[1],), "The responder's port."),
    Field("tcp.stream", INT, lambda r: (r.id,),
          "The connection's number: Wireshark's `tcp.stream` (filtering never renumbers)."),
    Field("handshake", WORD, lambda r: (r.handshake,), "How the connection opened.",
          tuple(HANDSHAKES)),
    Field("close", WORD, lambda r: _opt(r.close),
          "How it closed (absent when it was never established).", tuple(CLOSES)),
    Field("closed_first", WORD, lambda r: _opt(r.closed_first),
          "Which side closed (FIN, or RST) first.", SIDES + ("both",)),
    Field("reset_by", WORD, lambda r: _opt(r.reset_by), "Which side sent the accepted RST.",
          SIDES),
    Field("state", WORD, lambda r: r.final_state,
          "Either end's state when the capture ended.", tuple(s.value for s in State)),
    Field("lingering", WORD, lambda r: tuple(lg.state for lg in r.lingering),
          "An end left in CLOSE_WAIT or TIME_WAIT at the end of the capture.",
          ("CLOSE_WAIT", "TIME_WAIT")),
    Field("finding", WORD, lambda r: tuple(f.code for f in r.findings),
          "A finding's code (docs/findings.md).", tuple(CATALOGUE)),
    Field("severity", SEVERITY, _worst,
          "The worst finding's severity (absent without findings): `severity >= warning` is "
          "what the report lists by default.", SEVERITIES),
    Field("duration", NUMBER, lambda r: (r.duration,),
          "Seconds from the first packet to the last (units `ms`, `s`, `min`, `h` accepted)."),
    Field("packets", INT, lambda r: (r.packets[0] + r.packets[1],), "Packets, both directions."),
    Field("bytes", INT, lambda r: (r.bytes[0] + r.bytes[1],),
          "TCP payload bytes, both directions."),
    Field("conn_state", WORD, lambda r: (r.conn_state,), "Zeek's conn.log `conn_state`.",
          ZEEK_CONN_STATES),
    Field("history", TEXT, lambda r: (r.history,),
          "Zeek's conn.log `history` letters (`history contains \"R\"`)."),
]

#: name -> Field, in documentation order.
FIELDS: Final[Dict[str, Field]] = {f.name: f for f in _FIELDS}
#: Other spellings a Wireshark user may type; the printer writes the canonical name.
ALIASES: Final[Dict[str, str]] = {"ipv6.addr": "ip.addr", "ipv6.src": "ip.src",
                                  "ipv6.dst": "ip.dst"}


def severity_rank(word: str) -> int:
    return SEVERITY_RANK[word]


def values(r: ConnResult, name: str) -> Values:
    """The values of field `name` (or an alias) on one result."""
    return FIELDS[ALIASES.get(name, name)].get(r)


def filters_markdown() -> str:
    """docs/filters.md: the language and every field, drawn from this table."""
    lines = ["# Filters", "",
             "Generated by `python -m analyzer.docgen` from `analyzer/triage/fields.py`; "
             "do not edit.", "",
             "`--filter EXPR` keeps the connections EXPR accepts, in Wireshark's display-filter "
             "syntax: `field`, `field OP value`, `field in {v1 v2 low..high}`, combined with "
             "`and` (`&&`), `or` (`||`), `not` (`!`) and parentheses. OP is one of `==` `!=` "
             "`<` `<=` `>` `>=` (or `eq` `ne` `lt` `le` `gt` `ge`) and `contains` for text. "
             "A field with two values (either end) matches when either does; `!=` means "
             "that no value equals (Wireshark 3.6 and later). A bare field tests that it has "
             "a value. Stream numbers stay Wireshark's `tcp.stream` whatever is filtered.", "",
             "Examples: `ip.addr == 10.0.0.0/8 and tcp.dstport in {80 443}`, "
             "`lingering == CLOSE_WAIT`, `severity >= warning and not finding == "
             "SYN_RETRANSMITTED`, `duration > 500ms`, `history contains \"R\"`.", "",
             "| field | kind | meaning | values |", "|---|---|---|---|"]
    for f in _FIELDS:
        vocab = " ".join("`%s`" % v for v in f.values) if f.values else ""
        if f.kind == WORD and f.name == "finding":
            vocab = "the codes of docs/findings.md: " + vocab
        lines.append("| `%s` | %s | %s | %s |" % (f.name, f.kind, f.help, vocab))
    lines += ["", "Also accepted: %s (printed as their canonical names)."
              % ", ".join("`%s` for `%s`" % kv for kv in ALIASES.items())]
    return "\n".join(lines) + "\n"
