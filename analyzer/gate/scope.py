"""Scopes: which connections a policy rule or an allow entry is about.

A scope is an expression of the filter language (`--filter`, `analyzer.triage.filter`:
`"tcp.dstport == 5432 and not ip.addr == 10.0.0.9"`), or one of the shorthands a CI policy
reads best — a server (`"10.0.0.5:5432"`, `"[2001:db8::5]:443"`), a port (`"port 443"`), a host
(`"10.0.0.9"`, `"host 10.0.0.9"`) or a network (`"10.0.0.0/8"`, `"net 10.0.0.0/8"`), each
matching a connection when either end fits it, as tcpdump's `host`, `port` and `net` do. A
shorthand is checked here (so that its errors point into the text as written), then written
out in the filter language, and the one filter parser compiles it as it compiles any other
scope. A shorthand is also tested directly on the packed addresses and ports (a fraction of
the time the general evaluator takes, and the gate tests every scope on every connection); a
test holds the two to the same answer on every connection of a varied capture.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Final, NamedTuple, Optional, Tuple, Union

from analyzer.judge.result import ConnResult
from analyzer.triage.filter import FilterError, parse

Predicate = Callable[[ConnResult], bool]

_PORT: Final = re.compile(r"\s*port\s+(\d+)\s*$")
_HOST_PORT: Final = re.compile(r"\s*(?:\[([0-9A-Fa-f:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d+)\s*$")
_WORD: Final = re.compile(r"\s*(host|net)\s+(\S+)\s*$")


class ScopeError(ValueError):
    """A scope that does not parse; `column` (0-based) points at the fault when known."""

    def __init__(self, message: str, column: Optional[int] = None) -> None:
        super().__init__(message)
        self.column = column


class Scope(NamedTuple):
    """A compiled scope: its text as written, the filter expression it stands for (canonical
    spelling), and the predicate."""
    text: str
    expression: str
    accepts: Predicate


def compile_scope(text: str) -> Scope:
    """The scope `text` names; `ScopeError` when it names none."""
    if not isinstance(text, str) or not text.strip():
        raise ScopeError("a scope is a non-empty string such as \"10.0.0.5:5432\", "
                         "\"port 443\", \"10.0.0.0/8\" or a filter expression")
    short = shorthand(text)
    try:
        compiled = parse(text if short is None else short[0])
    except FilterError as exc:
        if short is not None:                # pragma: no cover - shorthands are checked above
            raise ScopeError(exc.message) from None
        raise ScopeError(exc.message, exc.position) from None
    return Scope(text, str(compiled), compiled.matches if short is None else short[1])


def shorthand(text: str) -> Optional[Tuple[str, Predicate]]:
    """The filter expression a shorthand stands for and the same test made directly; None
    when `text` is not a shorthand."""
    m = _PORT.match(text)
    if m:
        port = _port_number(m.group(1), text)
        return "tcp.port == %d" % port, _port(port)
    m = _HOST_PORT.match(text)
    if m:
        addr = _address(m.group(1) or m.group(2), text)
        port = _port_number(m.group(3), text)
        return (("ip.src == {0} and tcp.srcport == {1} or ip.dst == {0} and tcp.dstport == {1}"
                 .format(addr, port)), _endpoint((ipaddress.ip_address(addr).packed, port)))
    m = _WORD.match(text)
    word, rest = (m.group(1), m.group(2)) if m else ("", text.strip())
    try:
        net = ipaddress.ip_network(rest, strict=False)
    except ValueError:
        if word:
            raise ScopeError("%r is not an address or network after %r" % (rest, word),
                             text.index(rest)) from None
        return None
    if word == "host" and net.num_addresses != 1:
        raise ScopeError("%r is a network: write \"net %s\"" % (rest, rest), text.index(rest))
    return ("ip.addr == %s" % (net.network_address if net.num_addresses == 1 else net),
            _network(net))


def _port_number(digits: str, text: str) -> int:
    port = int(digits)
    if port > 65535:
        raise ScopeError("port %d is out of range (0-65535)" % port, text.index(digits))
    return port


def _port(port: int) -> Predicate:
    def accepts(r: ConnResult) -> bool:
        return r.orig_raw[1] == port or r.resp_raw[1] == port
    return accepts


def _endpoint(end: Tuple[bytes, int]) -> Predicate:
    def accepts(r: ConnResult) -> bool:
        return r.resp_raw == end or r.orig_raw == end
    return accepts


def _network(net: Union[ipaddress.IPv4Network, ipaddress.IPv6Network]) -> Predicate:
    size = 4 if net.version == 4 else 16
    first = int(net.network_address)
    mask = int(net.netmask)

    def inside(addr: bytes) -> bool:
        return len(addr) == size and int.from_bytes(addr, "big") & mask == first

    def accepts(r: ConnResult) -> bool:
        return inside(r.orig_raw[0]) or inside(r.resp_raw[0])
    return accepts


def _address(addr: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise ScopeError("%r is not an IP address" % addr, text.index(addr)) from None
