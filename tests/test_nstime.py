"""Seconds from capture nanoseconds: correctly rounded, and written as repr writes them."""

from __future__ import annotations

import io
import json
import random

import pytest

from analyzer.common.nstime import LIMIT, rounded_json, rounded_parts, seconds, seconds_json, \
    seconds_parts, tenths, whole_seconds
from analyzer.pipeline import analyze
from analyzer.render import render
from analyzer.testing.synth import Dialog, write_pcap


def _values():
    rng = random.Random(20261121)
    out = [0, 1, 999, 99_999, 100_000, 100_001, 10**9, 2**53, 2**63 - 1, 2**64, -1, -10**9,
           1_707_556_972_264_442_000]
    for k, limit in enumerate(LIMIT):           # both sides of every bound the fast path uses
        for q in (limit - 1, limit):
            for frac in (10**(9 - k), 10**(9 - k) * 3, 1):
                out.append(q * 10**9 + frac)
    # both sides of the machine-integer bound (2**62 - 1) and of the spans' table (1024 s)
    for n in (2**62 - 1, 2**62):
        out += [n - 1000, n - 1, n, n + 1, n + 1000]
    out += [1023 * 10**9 + 5 * 10**8, 1024 * 10**9 + 5 * 10**8, 1023_999_999_000, 1024_000_001_000]
    for _ in range(20000):
        magnitude = rng.choice([10**5, 10**6, 10**9, 10**12, 10**15, 2 * 10**18, 10**19])
        grain = rng.choice([1, 10, 1000, 10**6, 10**9])
        out.append(rng.randrange(magnitude) // grain * grain)
    return out


VALUES = _values()


def test_seconds_is_the_correctly_rounded_quotient():
    # int / int in interpreted Python is correctly rounded; the compiled build must agree.
    assert all(seconds(n) == n / 10**9 for n in VALUES)
    # ns / 1e9 is not: the int is rounded to a float first. This one came out as
    # 1707556972.2644422; the module exists because of numbers like it.
    assert 1_707_556_972_264_442_000 / 1e9 != 1_707_556_972_264_442_000 / 10**9
    assert repr(seconds(1_707_556_972_264_442_000)) == "1707556972.264442"


def test_the_text_is_what_repr_writes():
    bad = [n for n in VALUES if seconds_json(n) != repr(seconds(n))]
    assert not bad, bad[:5]


def test_the_rounded_text_is_what_repr_of_round_writes():
    bad = [n for n in VALUES if rounded_json(n) != repr(round(seconds(n), 6))]
    assert not bad, bad[:5]


def test_spans_and_times_interleaved_are_written_as_repr_writes_them():
    # A connection's line asks for its start, end and duration, then its TIME_WAIT's since,
    # seconds and what remains: capture times and short spans in turn, as here.
    rng = random.Random(16)
    asked = []
    for _ in range(5000):
        start = 1_700_000_000 * 10**9 + rng.randrange(10**12) // 1000 * 1000
        span = rng.randrange(2 * 10**12) // rng.choice([1, 1000, 10**6]) * rng.choice([1, 1000])
        asked += [start, start + span, span, start + span // 2, span // 2, 120 * 10**9 - span // 2]
    assert [seconds_json(n) for n in asked] == [repr(seconds(n)) for n in asked]
    assert [rounded_json(n) for n in asked] == [repr(round(seconds(n), 6)) for n in asked]


def test_the_text_is_the_same_when_times_come_again():
    # seconds_json remembers its last few texts: a time asked again, in any order, with
    # others between, gets the same text.
    rng = random.Random(7)
    again = VALUES[:3000] * 3 + [-1, 0, -1, 1, 0, -2, -1]
    rng.shuffle(again)
    assert [seconds_json(n) for n in again] == [repr(seconds(n)) for n in again]


def test_the_parts_are_the_text_in_three_pieces():
    # seconds_parts and rounded_parts give the text as three pieces to join (a JSON line's
    # times, with no text made): the pieces of every value, and of capture times of a few
    # whole seconds in turn (the two it remembers, and a third that replaces one), join to
    # the text repr writes.
    rng = random.Random(3)
    turns = [(1_700_000_000 + rng.choice([0, 1, 59, 60, 3600])) * 10**9
             + rng.randrange(10**9) // rng.choice([1, 1000, 10**6]) * rng.choice([1, 1000])
             for _ in range(20000)]
    for values in (VALUES, turns, VALUES[::-1]):
        assert ["".join(seconds_parts(n)) for n in values] == [repr(seconds(n)) for n in values]
        assert ["".join(rounded_parts(n)) for n in values] == \
            [repr(round(seconds(n), 6)) for n in values]
    # whole microseconds below 2**33 s are all pieces of tables (a test that the fast path
    # is taken: its pieces are never one whole text)
    assert seconds_parts(1_700_000_000_123_456_000) == ("1700000000.", "123", "456")
    assert seconds_parts(1_700_000_000_120_000_000) == ("1700000000.", "12", "")
    assert seconds_parts(1_700_000_000_000_000_000) == ("1700000000.", "0", "")
    assert rounded_parts(59_869_413_000) == ("59.", "869", "413")
    assert seconds_parts(1_700_000_000_123_456_789) == ("1700000000.1234567", "", "")


def test_tenths_and_whole_seconds_are_what_the_float_formats_write():
    rng = random.Random(11)
    values = [0, 1, 49_999_999, 50_000_000, 50_000_001, 150_000_000, 250_000_000,
              499_999_999, 500_000_000, 500_000_001, 1_500_000_000, 2_500_000_000,
              120_000_000_000, 10**15 - 1, 10**15, 10**15 + 50_000_000, -1, -50_000_000,
              -10**9,
              # both sides of the tables' ends (99.9 s of tenths, 999 whole seconds)
              99_949_999_999, 99_950_000_000, 99_950_000_001, 100_049_999_999,
              998_500_000_001, 999_499_999_999, 999_500_000_000, 999_500_000_001]
    for _ in range(20000):
        grain = rng.choice([1, 1000, 10**6, 10**7, 5 * 10**7, 10**8, 5 * 10**8, 10**9])
        values.append(rng.randrange(rng.choice([10**9, 10**12, 10**16])) // grain * grain)
    assert [tenths(n) for n in values] == ["%.1f" % (n / 1e9) for n in values]
    assert [whole_seconds(n) for n in values] == ["%.0f" % (n / 1e9) for n in values]


@pytest.mark.parametrize("ns, text", [
    (1_700_000_000_000_000_000, "1700000000.0"),
    (1_700_000_000_000_001_000, "1700000000.000001"),
    (1_700_000_000_123_456_789, "1700000000.1234567"),     # repr's digits: no fast path
    (43_452_000, "0.043452"),
    (23_000, "2.3e-05"),
])
def test_examples(ns, text):
    assert seconds_json(ns) == text


def test_json_times_are_the_frames_times(tmp_path):
    # Microsecond timestamps whose naive conversion is one unit in the last place off.
    d = Dialog()
    d.t = 1_707_556_972_264_442_000
    d.handshake().data("c", 10).fin("c").fin("s").ack("c")
    write_pcap(tmp_path / "c.pcap", d.packets)
    out = io.StringIO()
    render("json", analyze([str(tmp_path / "c.pcap")]), out)
    text = out.getvalue()
    assert '"start": 1707556972.264442,' in text
    assert '"first_ts": 1707556972.264442,' in text
    conn = json.loads(text)["connections"][0]
    assert conn["start"] == 1_707_556_972_264_442_000 / 10**9
    assert conn["end"] == d.packets[-1][0] / 10**9
