"""How a parked connection that frozen.py cannot write flat (an attribute never set, a value of an
unknown class) is written and read back (parked.py): its record classes pickled as tuples of
their attributes, rebuilt through their constructors.

A tuple of attributes, not mypyc's dict of names and values: a pickle of 0.8-1.2 KB instead
of 2 KB. Classes and enum members go by number, so the only global a pickle names is a
function of this module. An instance is made again by its constructor with blank arguments
(`_BLANK`) and then given every attribute (mypyc's default `__setstate__` in the compiled
build, `setattr` in pure Python): a compiled class cannot be made without its `__init__` unless
mypyc is told it is serializable, and that costs every attribute read a check on the hot path
(mypyc's "always defined" analysis is off for such classes). Another class reachable from a
Connection pickles the default way, which in the compiled build needs an `__init__` that takes
no arguments: a new record class belongs in `_RECORDS` (and `_BLANK`, if its `__init__` takes
arguments).
"""

from __future__ import annotations

import operator
import pickle
from typing import Any, Callable, Dict, Final, Tuple

from analyzer.decode.segment import SYN, Segment
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import Analysis, Endpoint
from analyzer.tcp.rare import RareFacts
from analyzer.tcp.states import CLOSED, Input, State
from analyzer.tcp.zeek import ZeekView
from analyzer.tcp.zeekstate import ZeekEndpoint, ZeekRare


def fields(cls: type) -> Tuple[str, ...]:
    """A record class's attributes: the compiled build lists them in `__mypyc_attrs__`, the
    pure-Python one in the `__slots__` along its bases."""
    attrs = getattr(cls, "__mypyc_attrs__", None)
    if attrs is None:
        attrs = []
        for base in reversed(cls.__mro__):
            slots = base.__dict__.get("__slots__", ())
            attrs += [slots] if isinstance(slots, str) else list(slots)
    return tuple(a for a in attrs if a not in ("__dict__", "__weakref__"))


#: The classes of a connection's record.
_RECORDS: Final = (Connection, Endpoint, Analysis, ZeekView, ZeekEndpoint, Segment, RareFacts,
                   ZeekRare)
#: (Classes and enum members go by number: no global to look up in a pickle but the function.)
_INDEX: Final[Dict[type, int]] = {cls: i for i, cls in enumerate(_RECORDS)}
_FIELDS: Final[Dict[type, Tuple[str, ...]]] = {cls: fields(cls) for cls in _RECORDS}
_ENUMS: Final = (State, Input)
_MEMBERS: Final = tuple(tuple(e) for e in _ENUMS)
_MEMBER_NO: Final[Dict[Any, Tuple[int, int]]] = {
    m: (i, j) for i, members in enumerate(_MEMBERS) for j, m in enumerate(members)}
_GETTERS: Final[Dict[type, Callable[[Any], Any]]] = {
    cls: operator.attrgetter(*names) for cls, names in _FIELDS.items() if len(names) > 1}


def _record(obj: Any) -> Any:
    getter = _GETTERS.get(type(obj))
    if getter is None:
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    try:
        return _rebuild, (_INDEX[type(obj)], getter(obj))
    except AttributeError:              # an attribute never set (compiled): the default way
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)


def _blank_segment() -> Segment:
    return Segment(b"\0\0\0\0", b"\0\0\0\1", 1, 2, 0, 0, SYN, 0, 0)


#: How to make an instance to fill (its attributes are all replaced).
_BLANK: Final[Dict[type, Callable[[], Any]]] = {
    Connection: lambda: Connection(0, _blank_segment(), True, b"\0" * 12, b"\0" * 12),
    Endpoint: lambda: Endpoint(CLOSED, 0),
    Segment: _blank_segment,
}


def _member(obj: Any) -> Any:
    return _enum_member, _MEMBER_NO[obj]


def _enum_member(i: int, j: int) -> Any:
    return _MEMBERS[i][j]


def _rebuild(index: int, values: tuple) -> Any:
    """A record back from `_record`'s tuple."""
    cls: Any = _RECORDS[index]
    blank = _BLANK.get(cls)
    obj = cls() if blank is None else blank()
    state = dict(zip(_FIELDS[cls], values))
    if hasattr(obj, "__setstate__"):        # compiled (mypyc's: sets the attributes)
        obj.__setstate__(state)
    else:
        for name, value in state.items():
            setattr(obj, name, value)
    return obj


DISPATCH: Final[Dict[type, Callable[[Any], Any]]] = {cls: _record for cls in _RECORDS}
DISPATCH.update({cls: _member for cls in _ENUMS})
