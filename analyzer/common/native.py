"""What the compiled build needs to know about a class, in a form both builds accept.

`mypyc_attr(serializable=True)` on a class makes the compiled build pickle it as Python does
(`__new__` without `__init__`, then the attributes back): the flow table parks connections on
disk as pickles (tcp/parked.py), and a compiled class without it cannot be unpickled (its
`__new__` calls `__init__` without arguments). The pure-Python build pickles any slotted class
already; there the decorator does nothing. mypy (and so mypyc) reads the real one from
`mypy_extensions`, which is not a runtime dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    def mypyc_attr(*_args: Any, **_kwargs: Any) -> Callable[[T], T]:
        """The pure-Python stand-in: leaves the class as it is."""
        return lambda cls: cls
