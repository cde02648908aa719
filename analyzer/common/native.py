"""`i64`: a machine integer where the compiled build can use one, a plain `int` elsewhere
(`i32`, `i16`, `u8`: smaller ones);
`mypyc_attr`: how the compiled build lays out a class (a no-op interpreted).

The rule: annotate with `i64` only arithmetic whose every value fits in 63 bits (byte offsets,
header fields, hashes of a few bytes); a value that may not fit stays an `int`. Compiled with
mypyc, an `i64` local is a C `int64_t`: reading a byte of a `bytes` object and shifting or
combining it costs a few machine instructions, where a Python `int` costs a function call per
operation (tagged integers). Interpreted, and in a compiled build installed without
`mypy_extensions`, `i64(x)` is `int(x)`: the same values, so both builds give the same results.

An attribute annotated `i32`, `i16` or `u8` (values that always fit: a state number, a bit
mask, a TCP window) takes 4, 2 or 1 bytes of its object in the compiled build instead of 8, where
declared next to others of its kind (mypyc lays attributes out in the order they are
declared): only where that makes the object a size class smaller is it worth it.

`@mypyc_attr(acyclic=True)` on a record class that never takes part in a reference cycle (its
objects point only down, to objects that do not point back): the compiled build then makes its
objects without the cyclic garbage collector's header, 16 bytes less each. Only mypyc reads it
(from the source); at run time it changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable

try:
    from mypy_extensions import i16 as i16, i32 as i32, i64 as i64, u8 as u8
except ImportError:                     # not installed: interpreted code needs only the name
    i16 = i32 = i64 = u8 = int  # type: ignore[misc, assignment]

try:
    from mypy_extensions import mypyc_attr as mypyc_attr
except ImportError:                     # not installed: the decorator does nothing

    def _no_layout(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda cls: cls

    mypyc_attr = _no_layout  # type: ignore[assignment]
