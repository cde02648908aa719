"""A parked connection's record as flat values (parked.py): `freeze` and `thaw`, about a third
fewer instructions a park and return than a pickle of the objects (bench/README.md).

Rules:

* **Generic.** Each object of a connection's record (the Connection, its Endpoints, their
  Analysis, the Zeek view and its responder's endpoint, a kept Segment, its Findings)
  becomes the tuple of its attributes in its class's attribute order (`fields`: mypyc's
  `__mypyc_attrs__` in the compiled build, the `__slots__` along the bases in pure Python),
  read with one `operator.attrgetter`; so a class's new or removed attribute needs nothing
  here. A new record class belongs in `RECORDS` (with a blank-instance maker in `_BLANK`).
* **What marshal writes stays as it is**: ints, bools, bytes, str, None, floats, and tuples of
  them. Anything else (a reference to another object of the record, an enum member, a shared
  constant such as `QUIET`, a container holding one of these) is written as a patch
  (position, kind, payload) beside the tuple, and its position in the tuple holds None: no value
  of the data is ever taken for a marker. Objects shared within the record (`e0` and `e1`
  of a self-connection) stay shared, and shared constants stay the constants themselves.
* **Thaw** makes each object by its constructor with blank arguments (a compiled class cannot
  be made without its `__init__`), then sets every attribute.
* **Anything else** (an attribute never set, a value of an unknown class): `freeze` raises
  `Unfreezable`, and `dumps` pickles that connection instead (pickled.py); a record's first
  byte says which way it was written.
"""

from __future__ import annotations

import io
import marshal
import operator
import pickle
from typing import Any, Callable, Dict, Final, List, Tuple

from analyzer.common.findings import CATALOGUE, Finding
from analyzer.decode.segment import SYN, Segment
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import NO_FINDINGS, QUIET, Analysis, Endpoint
from analyzer.tcp.pickled import DISPATCH, fields
from analyzer.tcp.rare import RareFacts
from analyzer.tcp.states import CLOSED, Input, State
from analyzer.tcp.zeek import ZeekView
from analyzer.tcp.zeekstate import ZeekEndpoint, ZeekRare


class Unfreezable(Exception):
    """A record `freeze` cannot write flat (the caller pickles it)."""


#: The classes of a connection's record, by number (the Connection first).
RECORDS: Final[Tuple[type, ...]] = (Connection, Endpoint, Analysis, ZeekView, ZeekEndpoint,
                                    Segment, Finding, RareFacts, ZeekRare)
_CLASS_NO: Final[Dict[type, int]] = {cls: i for i, cls in enumerate(RECORDS)}
_FIELDS: Final[Tuple[Tuple[str, ...], ...]] = tuple(fields(cls) for cls in RECORDS)
#: (Every record class has two attributes or more: `attrgetter` gives a tuple.)
_GET: Final[Tuple[Callable[[Any], Any], ...]] = tuple(
    operator.attrgetter(*names) for names in _FIELDS)
#: Shared objects a record refers to, kept by identity (`_Freezer.encode` names them).
_CONSTANTS: Final[Tuple[Any, ...]] = (QUIET, NO_FINDINGS)
_MEMBERS: Final[Tuple[Any, ...]] = tuple(State) + tuple(Input)
_MEMBER_NO: Final[Dict[Any, int]] = {m: i for i, m in enumerate(_MEMBERS)}

# An encoding's kinds: (kind, payload).
_OBJECT: Final = 0          # an object of the record: its number
_CONSTANT: Final = 1        # a shared constant: its number in _CONSTANTS
_MEMBER: Final = 2          # an enum member: its number in _MEMBERS
_TUPLE: Final = 3           # a tuple: its items, each (kind, payload)
_LIST: Final = 4            # a list: its items, each (kind, payload)
_DICT: Final = 5            # a dict: (keys, values), each (kind, payload)
_VALUE: Final = 6           # a plain value inside a container


def _plain(v: object) -> bool:
    t = type(v)
    if t is int or t is bool or v is None or t is bytes or t is str or t is float:
        return True
    if t is tuple:
        assert isinstance(v, tuple)
        for item in v:
            if not _plain(item):
                return False
        return True
    return False


class _Freezer:
    """One record being frozen: its objects, numbered in the order they were met, and for
    each: its class's number, its attribute tuple, and its patches (position, kind, payload,
    position, kind, payload, ...: the values marshal cannot write)."""

    def __init__(self) -> None:
        self.objects: List[Any] = []
        self.records: List[Any] = []

    def add(self, obj: Any) -> int:
        """`obj`'s number in the record, writing it on its first reference."""
        objects = self.objects
        for n in range(len(objects)):
            if objects[n] is obj:
                return n
        cls_no = _CLASS_NO.get(type(obj), -1)
        if cls_no < 0:
            raise Unfreezable(type(obj).__name__)
        n = len(objects)
        objects.append(obj)
        records = self.records
        records.append(cls_no)
        records.append(None)
        records.append(None)
        try:
            values = _GET[cls_no](obj)
        except AttributeError as exc:          # an attribute never set (compiled)
            raise Unfreezable(str(exc)) from None
        patches: List[Any] = []
        i = 0
        for v in values:
            if not _plain(v):
                kind, payload = self.encode(v)
                patches.append(i)
                patches.append(kind)
                patches.append(payload)
            i += 1
        if patches:
            items = list(values)
            for j in range(0, len(patches), 3):
                items[patches[j]] = None
            values = tuple(items)
        records[3 * n + 1] = values
        records[3 * n + 2] = tuple(patches)
        return n

    def encode(self, v: Any) -> Tuple[int, Any]:
        if _plain(v):
            return _VALUE, v
        if v is QUIET:
            return _CONSTANT, 0
        if v is NO_FINDINGS:
            return _CONSTANT, 1
        t = type(v)
        if t in _CLASS_NO:
            return _OBJECT, self.add(v)
        if t is State or t is Input:
            return _MEMBER, _MEMBER_NO[v]
        if t is tuple:
            return _TUPLE, tuple([self.encode(item) for item in v])
        if t is list:
            return _LIST, tuple([self.encode(item) for item in v])
        if t is dict:
            return _DICT, (tuple([self.encode(k) for k in v]),
                           tuple([self.encode(x) for x in v.values()]))
        raise Unfreezable(t.__name__)


def freeze(conn: Connection) -> bytes:
    """`conn` and every object it refers to, as one marshal string (`Unfreezable`: see the
    rules)."""
    f = _Freezer()
    f.add(conn)
    return marshal.dumps(tuple(f.records), 2)


def _blank_segment() -> Segment:
    return Segment(b"\0\0\0\0", b"\0\0\0\1", 1, 2, 0, 0, SYN, 0, 0)


def _blank_connection() -> Connection:
    return Connection(0, _blank_segment(), True, b"\0" * 12, b"\0" * 12)


def _blank_endpoint() -> Endpoint:
    return Endpoint(CLOSED, 0)


def _blank_finding() -> Finding:
    return Finding(next(iter(CATALOGUE)), 0, 0, None, "")


#: How to make an instance to fill (its attributes are all replaced).
_BLANK: Final[Tuple[Callable[[], Any], ...]] = (
    _blank_connection, _blank_endpoint, Analysis, ZeekView, ZeekEndpoint, _blank_segment,
    _blank_finding, RareFacts, ZeekRare)


def _decode(enc: Tuple[int, Any], objects: List[Any]) -> Any:
    kind, payload = enc
    if kind == _VALUE:
        return payload
    if kind == _OBJECT:
        return objects[payload]
    if kind == _CONSTANT:
        return _CONSTANTS[payload]
    if kind == _MEMBER:
        return _MEMBERS[payload]
    if kind == _TUPLE:
        return tuple([_decode(item, objects) for item in payload])
    if kind == _LIST:
        return [_decode(item, objects) for item in payload]
    keys, values = payload
    return {_decode(k, objects): _decode(x, objects) for k, x in zip(keys, values)}


def thaw(data: bytes) -> Connection:
    """The connection `freeze` wrote."""
    records = marshal.loads(data)
    objects = [_BLANK[records[k]]() for k in range(0, len(records), 3)]
    for n in range(len(objects)):
        obj = objects[n]
        values = records[3 * n + 1]
        patches = records[3 * n + 2]
        if patches:
            items = list(values)
            for j in range(0, len(patches), 3):
                items[patches[j]] = _decode((patches[j + 1], patches[j + 2]), objects)
            values = tuple(items)
        names = _FIELDS[records[3 * n]]
        for j in range(len(names)):
            setattr(obj, names[j], values[j])
    conn = objects[0]
    assert isinstance(conn, Connection)
    return conn


# A record's first byte: how it was written.
FLAT: Final = b"F"                  # freeze
PICKLED: Final = b"P"               # pickled.py, for what freeze cannot write


def dumps(conn: Connection) -> bytes:
    """A parked connection's record: frozen flat, or pickled where that cannot be."""
    try:
        return FLAT + freeze(conn)
    except Unfreezable:
        pass
    out = io.BytesIO()
    out.write(PICKLED)
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = DISPATCH  # type: ignore[assignment]
    pickler.dump(conn)
    return out.getvalue()


def loads(data: bytes) -> Connection:
    """The connection `dumps` wrote."""
    if data[:1] == FLAT:
        return thaw(data[1:])
    conn = pickle.loads(data[1:])
    assert isinstance(conn, Connection)
    return conn
