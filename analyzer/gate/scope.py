"""Scopes: which connections a policy rule or an allow entry is about.

A scope is written as a server (`"10.0.0.5:5432"`, `"[2001:db8::5]:443"`), a port
(`"port 443"`), a host (`"10.0.0.9"`, `"host 10.0.0.9"`) or a network (`"10.0.0.0/8"`,
`"net 10.0.0.0/8"`) — each matching a connection when either end fits it, as tcpdump's
`host`, `port` and `net` do — or as an expression of the filter language (`--filter`), which
the triage package parses: both go through `compile_scope`, the one place a scope is read.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Final, NamedTuple, Optional

from analyzer.judge.result import ConnResult

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
    """A compiled scope: its text as written and the predicate it stands for."""
    text: str
    accepts: Predicate


def compile_scope(text: str) -> Scope:
    """The scope `text` names; `ScopeError` when it names none."""
    if not isinstance(text, str) or not text.strip():
        raise ScopeError("a scope is a non-empty string such as \"10.0.0.5:5432\", "
                         "\"port 443\" or \"10.0.0.0/8\"")
    shorthand = _shorthand(text)
    if shorthand is not None:
        return Scope(text, shorthand)
    return Scope(text, _expression(text))


def _shorthand(text: str) -> Optional[Predicate]:
    m = _PORT.match(text)
    if m:
        return _port(_port_number(m.group(1), text))
    m = _HOST_PORT.match(text)
    if m:
        return _endpoint(_address(m.group(1) or m.group(2), text),
                         _port_number(m.group(3), text))
    m = _WORD.match(text)
    word, rest = (m.group(1), m.group(2)) if m else ("", text.strip())
    try:
        net = ipaddress.ip_network(rest, strict=False)
    except ValueError:
        if word:
            raise ScopeError("%r is not an address or network after %r" % (rest, word),
                             text.index(rest))
        return None
    if word == "host" and net.num_addresses != 1:
        raise ScopeError("%r is a network: write \"net %s\"" % (rest, rest), text.index(rest))
    return _network(net)


def _port_number(digits: str, text: str) -> int:
    port = int(digits)
    if port > 65535:
        raise ScopeError("port %d is out of range (0-65535)" % port, text.index(digits))
    return port


def _address(addr: str, text: str) -> bytes:
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        raise ScopeError("%r is not an IP address" % addr, text.index(addr)) from None


def _port(port: int) -> Predicate:
    def accepts(r: ConnResult) -> bool:
        return r.orig_raw[1] == port or r.resp_raw[1] == port
    return accepts


def _endpoint(addr: bytes, port: int) -> Predicate:
    end = (addr, port)

    def accepts(r: ConnResult) -> bool:
        return r.resp_raw == end or r.orig_raw == end
    return accepts


def _network(net) -> Predicate:
    size = 4 if net.version == 4 else 16
    first = int(net.network_address)
    mask = int(net.netmask)

    def inside(addr: bytes) -> bool:
        return len(addr) == size and int.from_bytes(addr, "big") & mask == first

    def accepts(r: ConnResult) -> bool:
        return inside(r.orig_raw[0]) or inside(r.resp_raw[0])
    return accepts


def _expression(text: str) -> Predicate:
    """A filter expression (issue 13's language): the triage package's parser, where it is."""
    raise ScopeError("not a scope: %r (write \"ADDR:PORT\", \"port N\", an address or a "
                     "network such as \"10.0.0.0/8\")" % text, 0)
