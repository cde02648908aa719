"""The filter language's syntax tree and its printer: what `analyzer.triage.filter` parses to.

A tree is plain named tuples (`Test`, `Not`, `And`, `Or`), comparable and hashable; `to_text`
writes its canonical text, which parses back to the same tree (tests/test_filter.py holds
this for generated filters). Literals are already typed for their field: numbers, words of
the field's vocabulary, severity ranks, `Addr` networks, `Range`s.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple, Optional, Tuple, Union

from analyzer.triage.fields import FIELDS, SEVERITY, WORD

KEYWORDS = frozenset(("and", "or", "not", "in", "contains", "eq", "ne", "lt", "le", "gt",
                       "ge"))

# -- the tree ------------------------------------------------------------------------------

class Addr(NamedTuple):
    """An address or a network: its packed length (4 or 16), integer value, prefix length."""
    size: int
    value: int
    prefix: int

    def __str__(self) -> str:
        cls = ipaddress.IPv4Network if self.size == 4 else ipaddress.IPv6Network
        net = cls((self.value, self.prefix))
        return str(net.network_address) if self.prefix == self.size * 8 else str(net)


class Range(NamedTuple):
    low: Union[int, float]
    high: Union[int, float]

    def __str__(self) -> str:
        return "%s..%s" % (_number(self.low), _number(self.high))


Value = Union[int, float, str, Addr, Range]


class Test(NamedTuple):
    field: str
    op: Optional[str]                   # None: the bare test
    value: Union[None, Value, Tuple[Value, ...]]    # a tuple for `in`


class Not(NamedTuple):
    item: "Node"


class And(NamedTuple):
    items: Tuple["Node", ...]


class Or(NamedTuple):
    items: Tuple["Node", ...]


Node = Union[Test, Not, And, Or]



def _number(v: Union[int, float]) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _quote(s: str) -> str:
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _value_text(v: Value, kind: str) -> str:
    if isinstance(v, (Addr, Range)):
        return str(v)
    if isinstance(v, str):
        if kind in (WORD, SEVERITY) and _BARE.match(v) and v not in KEYWORDS:
            return v
        return _quote(v)
    if kind == SEVERITY:
        return ("info", "warning", "error")[int(v)]
    return _number(v)


def to_text(node: Node, parent: int = 0) -> str:
    """The canonical text of a tree (the inverse of `parse`, up to spelling)."""
    if isinstance(node, Or):
        text = " or ".join(to_text(n, 1) for n in node.items)
        return "(%s)" % text if parent > 1 else text
    if isinstance(node, And):
        text = " and ".join(to_text(n, 2) for n in node.items)
        return "(%s)" % text if parent > 2 else text
    if isinstance(node, Not):
        return "not " + to_text(node.item, 3)
    kind = FIELDS[node.field].kind
    if node.op is None:
        return node.field
    if node.op == "in":
        return "%s in {%s}" % (node.field, " ".join(_value_text(v, kind)
                                                    for v in node.value))  # type: ignore[union-attr]
    return "%s %s %s" % (node.field, node.op, _value_text(node.value, kind))  # type: ignore[arg-type]
