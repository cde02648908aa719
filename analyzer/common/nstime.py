"""Capture time is integer nanoseconds; reports give seconds. One conversion for all of them.

`seconds(ns)` is the float nearest to ns / 10**9. `ns / 1e9` is not: ns timestamps of this
century are above 2**53, so the int is rounded to a float before the division, and the
quotient is rounded again; about a quarter of microsecond timestamps then come out one unit
in the last place off, and print with a spurious digit (1707556972.2644422 for the frame at
1707556972.264442). Python's int / int division is correctly rounded; compiled code's is not
(it converts both operands first), hence `operator.truediv`.

`seconds_json(ns)` is `repr(seconds(ns))` — what the json module writes for the float —
formatted from the integer where that is provably the same text (below), because float repr
is the most expensive step of writing a connection's JSON line.
"""

from __future__ import annotations

import operator
from typing import Final, List

NS: Final = 1_000_000_000

_truediv: Final = operator.truediv


def _limits() -> List[int]:
    """LIMIT[k]: seconds below which a float's spacing is finer than 10**-k.

    For 2**e <= v < 2**(e+1) the spacing (ulp) is 2**(e-52). LIMIT[k] = 2**(e+1) for the
    largest e with 2**(e-52) < 10**-k, that is 10**k * 2**(e-52) < 1."""
    out = []
    for k in range(10):
        e = 52
        while 10 ** k * 2 ** e >= 2 ** 52:      # 2**(e-52) * 10**k >= 1
            e -= 1
        out.append(2 ** (e + 1))
    return out


LIMIT: Final = _limits()
_LIMIT6: Final = LIMIT[6]


def seconds(ns: int) -> float:
    """ns / 10**9, correctly rounded (the float nearest to the exact quotient)."""
    return float(_truediv(ns, NS))


def seconds_json(ns: int) -> str:
    """`repr(seconds(ns))`, from the integer when the text is provably the same.

    Let D be the exact decimal ns / 10**9 written with k fractional digits (trailing zeros
    dropped, k <= 9). When 1e-4 <= D (repr writes no exponent) and D < LIMIT[k], float
    spacing near D is finer than 10**-k, so: the nearest float v to D reads back as D, and no
    other decimal of k or fewer fractional digits reads back as v (two such decimals are at
    least 10**-k apart; every decimal that reads back as v lies in an interval of v's
    spacing). repr(v) is the shortest decimal that reads back as v, hence D. Otherwise
    (microsecond-or-finer timestamps of far-future dates, nanosecond timestamps, tiny or
    negative values) it asks repr.
    """
    if ns >= 100_000:
        q = ns // NS
        r = ns - q * NS
        if r == 0:
            if q < 9_007_199_254_740_992:               # LIMIT[0] = 2**53
                return str(q) + ".0"
        else:
            digits = str(NS + r)                # "1" and the nine fractional digits
            end = 10
            while digits[end - 1] == "0":
                end -= 1
            if q < LIMIT[end - 1]:
                return str(q) + "." + digits[1:end]
    return repr(seconds(ns))


def rounded_json(ns: int) -> str:
    """`repr(round(seconds(ns), 6))`: a span in seconds to the microsecond.

    When ns is whole microseconds and below LIMIT[6] seconds, the float v nearest to it is
    within half a spacing (< 0.5e-6) of it, so rounding v to six places gives it back:
    round(v, 6) == v, whose text `seconds_json` writes."""
    if ns % 1000 == 0 and ns < _LIMIT6 * NS:
        return seconds_json(ns)
    return repr(round(seconds(ns), 6))
