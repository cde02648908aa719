"""`i64`: a machine integer where the compiled build can use one, a plain `int` elsewhere.

The rule: annotate with `i64` only arithmetic whose every value fits in 63 bits (byte offsets,
header fields, hashes of a few bytes); a value that may not fit stays an `int`. Compiled with
mypyc, an `i64` local is a C `int64_t`: reading a byte of a `bytes` object and shifting or
combining it costs a few machine instructions, where a Python `int` costs a function call per
operation (tagged integers). Interpreted, and in a compiled build installed without
`mypy_extensions`, `i64(x)` is `int(x)`: the same values, so both builds give the same results.
"""

from __future__ import annotations

try:
    from mypy_extensions import i64 as i64
except ImportError:                     # not installed: interpreted code needs only the name
    i64 = int  # type: ignore[misc, assignment]
