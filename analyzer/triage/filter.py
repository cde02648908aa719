"""The filter language: text -> syntax tree -> a predicate over connection results, and back.

The syntax is Wireshark's display-filter syntax over the fields of `analyzer.triage.fields`:

    expr  := term ( ("or" | "||") term )*
    term  := unary ( ("and" | "&&") unary )*
    unary := ("not" | "!") unary | "(" expr ")" | test
    test  := FIELD                          (the field has a value)
           | FIELD OP value                 OP: == != < <= > >= contains (or eq ne lt le gt ge)
           | FIELD "in" "{" item ([","] item)* "}"     item: value, or number ".." number

A field with several values (`ip.addr`, `tcp.port`, `state`, `finding`...) matches when any
value does; `!=` is "no value equals" (Wireshark 3.6 and later), so `ip.addr != 10.0.0.1`
keeps connections where neither end is 10.0.0.1. Values: numbers, words, "quoted text",
addresses with an optional /prefix. Every literal is checked against its field when parsed
(a state name that does not exist is an error, not a filter that matches nothing).

`parse()` raises `FilterError(message, position)`; `str()` of a parsed filter is its canonical
text, which parses to the same tree. Nothing here reads a file or writes to a screen.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Callable, FrozenSet, List, NamedTuple, Optional, Tuple, Union, cast

from analyzer.judge.result import ConnResult
from analyzer.triage.fields import (ADDR, ALIASES, FIELDS, INT, NUMBER, ORDERED, SEVERITY, TEXT,
                                    WORD, Field, severity_rank)
from analyzer.triage.syntax import (KEYWORDS, Addr, And, Node, Not, Or, Range, Test, Value,
                                    to_text)


class FilterError(ValueError):
    """A filter that cannot be parsed: what is wrong, and where (0-based offset; `length`
    characters from there are at fault)."""

    def __init__(self, message: str, position: int, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.length = max(length, 1)

    def caret(self, text: str, indent: str = "  ") -> str:
        """Two lines: the expression, and carets under the fault."""
        return "%s%s\n%s%s%s" % (indent, text, indent, " " * self.position, "^" * self.length)


_OPS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", "<=": "<=",
        "le": "<=", ">": ">", "gt": ">", ">=": ">=", "ge": ">=", "contains": "contains",
        "in": "in"}
_UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}

# -- the lexer -------------------------------------------------------------------------------

class Token(NamedTuple):
    kind: str           # "word", "string", "op", "(", ")", "{", "}", ",", "end"
    text: str
    pos: int
    end: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<open_string>"(?:[^"\\]|\\.)*\\?)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!])
  | (?P<punct>[(){},])
  | (?P<word>[A-Za-z0-9_.:/\-]+)
""", re.VERBOSE)


def tokens(text: str) -> List[Token]:
    out: List[Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            hint = " (comparison is '==')" if ch == "=" else ""
            raise FilterError("unexpected character %r%s" % (ch, hint), i)
        kind = m.lastgroup
        if kind == "open_string":
            raise FilterError("unterminated string", i, m.end() - i)
        if kind == "string":
            raw = m.group()[1:-1]
            out.append(Token("string", re.sub(r"\\(.)", r"\1", raw), i, m.end()))
        elif kind == "punct":
            out.append(Token(m.group(), m.group(), i, m.end()))
        elif kind != "space":
            out.append(Token(kind or "", m.group(), i, m.end()))
        i = m.end()
    out.append(Token("end", "", len(text), len(text)))
    return out


# -- the parser ------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokens(text)
        self.i = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Token) -> FilterError:
        return FilterError(message, tok.pos, tok.end - tok.pos)

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return (tok.kind == "word" and tok.text.lower() in words) or (
            tok.kind == "op" and tok.text in words)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty filter", self.peek())
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            what = "')' without '('" if tok.kind == ")" else "%r" % tok.text
            raise self.error("unexpected %s: expected 'and', 'or' or the end" % what, tok)
        return node

    def expr(self) -> Node:
        items = [self.term()]
        while self.is_word("or", "||"):
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(_flat(items, Or)))

    def term(self) -> Node:
        items = [self.unary()]
        while self.is_word("and", "&&"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(_flat(items, And)))

    def unary(self) -> Node:
        tok = self.peek()
        if self.is_word("not", "!"):
            self.take()
            return Not(self.unary())
        if tok.kind == "(":
            self.take()
            node = self.expr()
            close = self.peek()
            if close.kind != ")":
                raise self.error("missing ')' for the '(' at column %d" % (tok.pos + 1), close)
            self.take()
            return node
        return self.test()

    def test(self) -> Node:
        tok = self.take()
        if tok.kind != "word" or tok.text.lower() in KEYWORDS:
            raise self.error("expected a field name%s" % (
                ", found the end" if tok.kind == "end" else ", found %r" % tok.text), tok)
        name = ALIASES.get(tok.text, tok.text)
        field = FIELDS.get(name)
        if field is None:
            close = difflib.get_close_matches(name, list(FIELDS) + list(ALIASES), 1, 0.6)
            raise self.error("unknown field %r%s" % (tok.text, (
                " (did you mean %r?)" % close[0]) if close else " (fields: %s)"
                % ", ".join(FIELDS)), tok)
        optok = self.peek()
        op = _OPS.get(optok.text.lower() if optok.kind == "word" else optok.text) \
            if optok.kind in ("word", "op") else None
        if op is None:
            if optok.kind == "string" or (optok.kind == "word"
                                          and optok.text.lower() not in ("and", "or")):
                raise self.error("expected an operator (== != < <= > >= in contains), "
                                 "found %r" % optok.text, optok)
            return Test(name, None, None)
        self.take()
        if op in ("<", "<=", ">", ">=") and field.kind not in ORDERED:
            raise self.error("%s is a %s: it takes == != in%s, not %s" % (
                name, field.kind, " contains" if field.kind in (WORD, TEXT) else "", op), optok)
        if op == "contains" and field.kind not in (WORD, TEXT):
            raise self.error("%s is a%s %s: 'contains' applies to text" % (
                name, "n" if field.kind[0] in "aeiou" else "", field.kind), optok)
        if op == "in":
            return Test(name, op, self.set(field))
        return Test(name, op, self.value(field, self.take(), op == "contains"))

    def set(self, field: Field) -> Tuple[Value, ...]:
        open_ = self.take()
        if open_.kind != "{":
            raise self.error("expected '{' after 'in'", open_)
        items: List[Value] = []
        while True:
            tok = self.take()
            if tok.kind == "}":
                if not items:
                    raise self.error("empty set", tok)
                return tuple(items)
            if tok.kind == "," and items:
                continue
            if tok.kind == "end":
                raise self.error("missing '}' for the '{' at column %d" % (open_.pos + 1), tok)
            items.append(self.value(field, tok, False, ranges=True))

    def value(self, field: Field, tok: Token, substring: bool, ranges: bool = False) -> Value:
        if tok.kind not in ("word", "string"):
            raise self.error("expected a value for %s%s" % (
                field.name, ", found the end" if tok.kind == "end" else
                ", found %r" % tok.text), tok)
        text = tok.text
        kind = field.kind
        if substring or kind == TEXT:
            return text
        if kind in (INT, NUMBER):
            if ranges and tok.kind == "word" and ".." in text:
                low, _, high = text.partition("..")
                lo, hi = self.number(field, low, tok), self.number(field, high, tok)
                if hi < lo:
                    raise self.error("empty range: %s is below %s" % (high, low), tok)
                return Range(lo, hi)
            return self.number(field, text, tok)
        if kind == ADDR:
            return self.address(text, tok)
        vocab = field.values or ()
        for word in vocab:
            if word.lower() == text.lower():
                return severity_rank(word) if kind == SEVERITY else word
        close = difflib.get_close_matches(text, list(vocab), 1, 0.6)
        listed = ", ".join(vocab) if len(vocab) <= 16 else "docs/filters.md lists them"
        raise self.error("%s has no value %r%s" % (
            field.name, text, (" (did you mean %r?)" % close[0]) if close
            else " (values: %s)" % listed), tok)

    def number(self, field: Field, text: str, tok: Token) -> Union[int, float]:
        scale = 1.0
        if field.kind == NUMBER:
            m = re.match(r"(.*?)(ms|s|min|h)\Z", text)
            if m and m.group(1):
                text, scale = m.group(1), _UNITS[m.group(2)]
        try:
            if field.kind == INT:
                return int(text, 0) if text.lower().startswith("0x") else int(text)
            value = float(text) * scale
        except ValueError:
            raise self.error("%s takes %s, not %r" % (
                field.name, "an integer" if field.kind == INT else "a number", tok.text), tok)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error("%s takes a finite number" % field.name, tok)
        return int(value) if value.is_integer() and scale == 1.0 and "." not in text \
            and "e" not in text.lower() else value

    def address(self, text: str, tok: Token) -> Addr:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise self.error("not an IP address or network: %r" % text, tok)
        return Addr(4 if net.version == 4 else 16, int(net.network_address), net.prefixlen)


def _flat(items: List[Node], cls: type) -> List[Node]:
    out: List[Node] = []
    for n in items:
        out.extend(n.items if isinstance(n, cls) else [n])   # type: ignore[union-attr]
    return out


# -- evaluation ------------------------------------------------------------------------------

Predicate = Callable[[ConnResult], bool]


def _addr_test(v: Addr) -> Callable[[object], bool]:
    if v.prefix == v.size * 8:
        packed = v.value.to_bytes(v.size, "big")
        return lambda a: a == packed
    shift = v.size * 8 - v.prefix
    net = v.value >> shift
    return lambda a: (isinstance(a, bytes) and len(a) == v.size
                      and int.from_bytes(a, "big") >> shift == net)


def _one(v: Value, op: str) -> Callable[[object], bool]:
    """A test of one field value against one literal."""
    if isinstance(v, Addr):
        return _addr_test(v)
    if isinstance(v, Range):
        return lambda x: v.low <= x <= v.high            # type: ignore[operator]
    if op == "contains":
        return lambda x: isinstance(x, str) and v in x     # type: ignore[operator]
    if op in ("==", "!=", "in"):
        return lambda x: x == v
    compare = {"<": lambda x: x < v, "<=": lambda x: x <= v, ">": lambda x: x > v,
               ">=": lambda x: x >= v}[op]
    return compare                                      # type: ignore[return-value]


def compile_node(node: Node) -> Predicate:
    if isinstance(node, Or):
        parts = [compile_node(n) for n in node.items]
        return lambda r: any(p(r) for p in parts)
    if isinstance(node, And):
        parts = [compile_node(n) for n in node.items]
        return lambda r: all(p(r) for p in parts)
    if isinstance(node, Not):
        inner = compile_node(node.item)
        return lambda r: not inner(r)
    get = FIELDS[node.field].get
    if node.op is None:
        return lambda r: bool(get(r))
    literals = cast(Tuple[Value, ...], node.value if node.op == "in" else (node.value,))
    tests = [_one(v, node.op) for v in literals]
    if node.op == "!=":
        return lambda r: not any(t(x) for x in get(r) for t in tests)
    return lambda r: any(t(x) for x in get(r) for t in tests)


class Filter:
    """A parsed filter: `matches(result)`, `str()` for its canonical text, `tree` for its AST."""

    __slots__ = ("tree", "matches", "text")

    def __init__(self, tree: Node, text: Optional[str] = None) -> None:
        self.tree = tree
        self.text = text if text is not None else to_text(tree)
        self.matches: Predicate = compile_node(tree)

    def __str__(self) -> str:
        return to_text(self.tree)

    def __repr__(self) -> str:
        return "Filter(%r)" % str(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other.tree == self.tree

    def __hash__(self) -> int:
        return hash(self.tree)

    def fields(self) -> FrozenSet[str]:
        """The fields the filter reads."""
        out = set()
        stack: List[Node] = [self.tree]
        while stack:
            n = stack.pop()
            if isinstance(n, Test):
                out.add(n.field)
            elif isinstance(n, Not):
                stack.append(n.item)
            else:
                stack.extend(n.items)
        return frozenset(out)


def parse(text: str) -> Filter:
    """The filter `text` says; `FilterError` with the position of the fault otherwise."""
    return Filter(_Parser(text).parse(), text)


def stream_filter(stream: int) -> str:
    """The Wireshark display filter that shows one connection's packets."""
    return "tcp.stream eq %d" % stream
