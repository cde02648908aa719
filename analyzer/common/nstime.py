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

`utc_text(ns)` is the calendar date and time of a capture time, for any integer: pcapng
times reach far beyond the years `datetime` (1 to 9999) and `time_t` know, on both sides of
1970, and Wireshark shows them all; so the date is computed from the integer here.

`second_ns(sec)` is `sec * NS` for a capture's whole seconds, with every product inside
machine integers in the compiled build (see there).
"""

from __future__ import annotations

import operator
from typing import Final, List, Optional, Tuple

from analyzer.common.native import i64

NS: Final = 1_000_000_000
_DAY_NS: Final = 86_400 * NS

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
#: Zeros that go between the dot and a fraction's first nonzero digit, by how many.
_ZEROS: Final = ["0" * k for k in range(10)]


class _Four:
    """The last four ints given with their texts (`keep`: each new one in place of the
    oldest), for `get`. Made with one true pair in every place: no sentinel among the keys."""

    def __init__(self, key: int, text: str) -> None:
        self.n0 = self.n1 = self.n2 = self.n3 = key
        self.t0 = self.t1 = self.t2 = self.t3 = text
        self.turn = 0

    def get(self, key: int) -> Optional[str]:
        if key == self.n0:
            return self.t0
        if key == self.n1:
            return self.t1
        if key == self.n2:
            return self.t2
        if key == self.n3:
            return self.t3
        return None

    def keep(self, key: int, text: str) -> str:
        turn = self.turn
        if turn == 0:
            self.n0, self.t0, self.turn = key, text, 1
        elif turn == 1:
            self.n1, self.t1, self.turn = key, text, 2
        elif turn == 2:
            self.n2, self.t2, self.turn = key, text, 3
        else:
            self.n3, self.t3, self.turn = key, text, 0
        return text


#: seconds_json's memory: the last four times (not spans) it wrote, with their text (a
#: connection's times repeat: a SYN's start, end and finding; the capture's end in every
#: connection's TIME_WAIT_AT_END, after its start, end and TIME_WAIT's start).
_RECENT: Final = _Four(0, "0.0")
#: The last four whole seconds written with their dot, beyond `_HEADS` (`_head`): a
#: connection's times are in a second or two, and the capture's end in its TIME_WAIT finding
#: in another.
_HEADS_SEEN: Final = _Four(0, "0.")


def _head(q: int) -> str:
    """`str(q) + "."`, remembered (`_HEADS_SEEN`)."""
    head = _HEADS_SEEN.get(q)
    return _HEADS_SEEN.keep(q, str(q) + ".") if head is None else head

#: Below this many seconds (spans: durations, TIME_WAIT's seconds), the whole seconds with the
#: dot come from `_HEADS`, and the text does not take the place of a capture time's in
#: `_RECENT`.
_SPAN_HEADS: Final = 1024
_HEADS: Final = [str(q) + "." for q in range(_SPAN_HEADS)]
#: `seconds_json` and `rounded_json` compute in machine integers up to this (2**62 - 1 ns,
#: the year 2116; the largest integer the compiled build keeps unboxed).
_I64_NS: Final = 4_611_686_018_427_387_903
#: Below LIMIT[6] seconds, in ns (one product, not one a call: it is beyond machine integers)
_LIMIT6_NS: Final = LIMIT[6] * NS
#: LIMIT[6], the whole seconds below which every time of whole microseconds has its fast text
#: (2**33, written out: the compiled build compares it as a machine integer; checked here).
_LIMIT6: Final = 8_589_934_592
assert _LIMIT6 == LIMIT[6]
#: Three digits of a fraction (`_D3`), and three with their trailing zeros dropped (`_D3S`, the
#: fraction's last group): a time of whole microseconds is written from two of them, with no
#: conversion of the fraction to text.
_D3: Final = ["%03d" % n for n in range(1000)]
_D3S: Final = [("%03d" % n).rstrip("0") for n in range(1000)]


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
    negative values) it asks repr. The digits are found with machine integers (the
    fraction's trailing zeros divided away; a time of whole microseconds, as pcap's are, takes
    its six from two tables of three), and the last few texts are remembered.
    """
    recent = _RECENT
    known = recent.get(ns)
    if known is not None:
        return known
    if 100_000 <= ns <= _I64_NS:
        v: i64 = ns
        q: i64 = v // NS
        r: i64 = v % NS
        if r == 0:
            if q < 9_007_199_254_740_992:               # LIMIT[0] = 2**53
                return recent.keep(ns, str(q) + ".0")
        elif r % 1000 == 0 and q < _LIMIT6:
            # Whole microseconds (pcap's times): k <= 6 fractional digits and LIMIT[k] >=
            # LIMIT[6], so the text below is the one the general case writes; its six digits
            # are two groups of three from tables, the last without its trailing zeros.
            m: i64 = r // 1000
            a: i64 = m // 1000
            b: i64 = m % 1000
            if q < _SPAN_HEADS:
                head = _HEADS[q]
                return f"{head}{_D3S[a]}" if b == 0 else f"{head}{_D3[a]}{_D3S[b]}"
            head = _head(q)
            return recent.keep(ns, f"{head}{_D3S[a]}" if b == 0 else
                               f"{head}{_D3[a]}{_D3S[b]}")
        else:
            k: i64 = 9                                  # the fractional digits, 1 to 9
            while r % 10 == 0:
                r //= 10
                k -= 1
            if q < LIMIT[k]:
                digits = str(r)
                pad = k - len(digits)
                if q < _SPAN_HEADS:
                    # A span (a duration): the whole seconds with the dot from a table, and
                    # the text not remembered (spans seldom come again; times do).
                    head = _HEADS[q]
                    return head + digits if pad == 0 else head + _ZEROS[pad] + digits
                # The whole seconds with the dot: the times of one capture share a few.
                head = _head(q)
                return recent.keep(ns, head + digits if pad == 0 else
                                   head + _ZEROS[pad] + digits)
    elif ns == 0:
        return "0.0"
    return repr(seconds(ns))


def seconds_parts(ns: int) -> Tuple[str, str, str]:
    """`seconds_json(ns)` as three texts whose concatenation it is, made of texts held in
    tables (no text made) for a time or span of whole microseconds: the whole seconds with
    the dot (`_HEADS`, or the last four whole seconds written: `_head`), and the fraction's
    groups of three digits (`_D3`, and `_D3S` for the last); otherwise its text and two
    empty ones. The same cases as `seconds_json`'s fast path for whole microseconds, the
    same text."""
    if 100_000 <= ns <= _I64_NS:
        v: i64 = ns
        q: i64 = v // NS
        r: i64 = v % NS
        if r % 1000 == 0 and q < _LIMIT6:
            head = _HEADS[q] if q < _SPAN_HEADS else _head(q)
            if r == 0:
                return head, "0", ""
            m: i64 = r // 1000
            b: i64 = m % 1000
            if b == 0:
                return head, _D3S[m // 1000], ""
            return head, _D3[m // 1000], _D3S[b]
    return seconds_json(ns), "", ""


def rounded_parts(ns: int) -> Tuple[str, str, str]:
    """`rounded_json(ns)` as three texts, as `seconds_parts` gives them."""
    if 0 <= ns <= _I64_NS:
        v: i64 = ns
        if v % 1000 == 0:
            return seconds_parts(ns)
    return rounded_json(ns), "", ""


def rounded_json(ns: int) -> str:
    """`repr(round(seconds(ns), 6))`: a span in seconds to the microsecond.

    When ns is whole microseconds and below LIMIT[6] seconds, the float v nearest to it is
    within half a spacing (< 0.5e-6) of it, so rounding v to six places gives it back:
    round(v, 6) == v, whose text `seconds_json` writes."""
    if 0 <= ns <= _I64_NS:                      # (below LIMIT[6] seconds)
        v: i64 = ns
        if v % 1000 == 0:
            return seconds_json(ns)
    elif ns % 1000 == 0 and ns < _LIMIT6_NS:
        return seconds_json(ns)
    return repr(round(seconds(ns), 6))


def tenths(ns: int) -> str:
    """`"%.1f" % (ns / 1e9)`: seconds to a tenth, as the findings' messages write them.

    For 0 <= ns < 10**15 whose exact tenths do not end in a half (ns % 10**8 != 5 * 10**7), the
    exact value is at least 1 ns from a rounding boundary and the float ns / 1e9 is within
    0.2 ns of it, so both round alike: the digits come from the integer. Otherwise "%.1f"."""
    if 0 <= ns < 1_000_000_000_000_000:
        v: i64 = ns
        r: i64 = v % 100_000_000
        if r != 50_000_000:
            t: i64 = v // 100_000_000 + (1 if r > 50_000_000 else 0)
            return _TENTHS[t] if t < _SMALL_TEXTS else str(t // 10) + _DOTS[t % 10]
    return "%.1f" % (ns / 1e9)


def whole_seconds(ns: int) -> str:
    """`"%.0f" % (ns / 1e9)`, from the integer as `tenths` does."""
    if 0 <= ns < 1_000_000_000_000_000:
        v: i64 = ns
        r: i64 = v % NS
        if r != 500_000_000:
            w: i64 = v // NS + (1 if r > 500_000_000 else 0)
            return _WHOLE[w] if w < _SMALL_TEXTS else str(w)
    return "%.0f" % (ns / 1e9)


#: ".0" to ".9".
_DOTS: Final = ["." + str(d) for d in range(10)]
#: The texts of the tenths (`tenths`: "0.0" to "99.9") and whole seconds (`whole_seconds`)
#: below 100 and 1000 seconds: a finding's message (a TIME_WAIT's seconds, its 2*MSL) from a
#: table, no text made.
_SMALL_TEXTS: Final = 1000
_TENTHS: Final = [str(t // 10) + "." + str(t % 10) for t in range(_SMALL_TEXTS)]
_WHOLE: Final = [str(w) for w in range(_SMALL_TEXTS)]


def second_ns(sec: int) -> int:
    """`sec * NS`, for 0 <= sec < 2**32 (a pcap second) made of products below 2**47.

    Compiled (mypyc), a product with a factor of 2**30 or more is handed to CPython's
    arbitrary-size multiply, which checks for pending signals and can fail; compiled code
    takes that failure for a lost allocation and aborts the process. The halves of `sec`
    keep each product small; the sum is below 2**62, a machine integer still. Other values
    are multiplied as they are (correct, only slower)."""
    if 0 <= sec < 0x1_0000_0000:
        return ((sec >> 16) * NS << 16) + (sec & 0xFFFF) * NS
    return sec * NS


def civil(days: int) -> Tuple[int, int, int]:
    """(year, month, day) of the day `days` after 1970-01-01, proleptic Gregorian calendar,
    for any integer (H. Hinnant's civil_from_days; year 0 is 1 BC, as in ISO 8601)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def utc_text(ns: int, digits: int = 3, sep: str = " ", tsep: str = ":") -> str:
    """The UTC date and time of `ns`, as `YYYY-MM-DD HH:MM:SS.mmm` with `digits` fractional
    digits (truncated, none for 0), for any integer: a year of more than four digits is
    written whole, one before year 0 with a minus sign."""
    days, rest = divmod(ns, _DAY_NS)
    year, month, day = civil(days)
    secs, frac = divmod(rest, NS)
    text = "%s-%02d-%02d%s%02d%s%02d%s%02d" % (
        "%04d" % year if year >= 0 else "-%04d" % -year, month, day, sep,
        secs // 3600, tsep, secs // 60 % 60, tsep, secs % 60)
    if digits:
        text += "." + ("%09d" % frac)[:digits]
    return text
