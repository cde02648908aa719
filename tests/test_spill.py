"""The result store's spill: every result read back from disk equals the one stored, whatever
it carries (findings, lingering states, tunnels, reuse), and any encoding comes back too."""

from __future__ import annotations

import glob
import os

import pytest

from analyzer.judge.result import ConnResult, unflat
from analyzer.pipeline import analyze
from analyzer.report.store import ResultStore
from analyzer.settings import Settings
from analyzer.tcp.endpoint import NO_COUNTS
from conftest import REPO

CAPTURES = sorted(glob.glob(os.path.join(str(REPO), "samples", "**", "*.pcap*"), recursive=True))


def _every_result():
    for path in CAPTURES:
        yield from analyze([path]).connections


def test_flat_round_trip_is_exact():
    n = 0
    for r in _every_result():
        back = unflat(r.flat())
        assert back.to_dict() == r.to_dict()
        assert back.flat() == r.flat()
        assert (back.analysis[0] is NO_COUNTS) == (r.analysis[0] is NO_COUNTS)
        n += 1
    assert n > 40


@pytest.mark.parametrize("path", CAPTURES, ids=os.path.basename)
def test_spilled_reports_equal_kept_ones(path):
    kept = analyze([path])
    spilled = analyze([path], Settings(result_budget=1))
    assert len(kept.connections) == 0 or spilled.connections.runs
    assert spilled.to_dict() == kept.to_dict()


class Opaque:
    """An encoding marshal cannot write (the store pickles it)."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_encodings_spill_too():
    results = list(_every_result())[:20]
    text = ResultStore(budget=3, encode=lambda r: "line %d" % r.id)
    opaque = ResultStore(budget=3, encode=lambda r: Opaque(r.id))
    for r in reversed(results):
        text.add(r)
        opaque.add(r)
    ids = sorted(r.id for r in results)
    assert list(text) == ["line %d" % i for i in ids] and text.runs
    assert [o.n for o in opaque] == ids and opaque.runs
    assert [o.n for o in opaque] == ids             # read as often as needed


def test_results_keep_their_class():
    r = next(iter(_every_result()))
    assert isinstance(unflat(r.flat()), ConnResult)


def _ordered(n, order, seed, window, step):
    """Ids 0..n-1 in `order`: ascending, descending, nearly (each `window` ids from every
    `step`-th shuffled: finalized roughly in stream order) or shuffled."""
    import random
    ids = list(range(n))
    rng = random.Random(seed)
    if order == "descending":
        ids.reverse()
    elif order == "nearly":
        for k in range(0, n - window + 1, step):
            part = ids[k:k + window]
            rng.shuffle(part)
            ids[k:k + window] = part
    elif order == "shuffled":
        rng.shuffle(ids)
    return ids


@pytest.mark.parametrize("order", ["ascending", "descending", "nearly", "shuffled"])
def test_runs_read_back_in_key_order_however_they_overlap(order):
    """Spilled runs that follow one another, overlap near their ends or interleave
    everywhere all read back in key order (the merge takes from one run while it is ahead)."""
    r = next(iter(_every_result()))
    ids = _ordered(97, order, seed=7, window=7, step=3)
    store = ResultStore(budget=5, encode=lambda res: "line %d" % res.id)
    for i in ids:
        r.id = i
        store.add(r)
    assert len(store.runs) == 19
    assert list(store) == ["line %d" % i for i in range(97)]


@pytest.mark.parametrize("order", ["ascending", "nearly", "shuffled"])
@pytest.mark.parametrize("width", [10, 30_000])
def test_text_reads_back_in_stretches_equal_to_its_lines_joined(order, width):
    """Text (the JSON writer's lines) spilled by count and by characters, in blocks cut by
    characters (lines of 30,000 characters: two a block), reads back the same line by line
    and a stretch at a time: the stretches joined by the separator are the lines joined by it,
    whatever order the lines came in, and read twice."""
    r = next(iter(_every_result()))
    ids = _ordered(200, order, seed=11, window=9, step=5)

    def line(n: int) -> str:
        return ("é%d " % n) + "x" * (width + n % 7) + "\udcff"     # not ASCII, a lone surrogate

    store = ResultStore(budget=17, encode=lambda res: line(res.id), sep=",\n  ",
                        char_budget=5 * width)
    for i in ids:
        r.id = i
        store.add(r)
    assert len(store.runs) >= 200 // 17
    expected = [line(i) for i in range(200)]
    for _ in range(2):
        assert list(store) == expected
        chunks = store.chunks()
        assert chunks is not None
        chunks = list(chunks)
        assert ",\n  ".join(chunks) == ",\n  ".join(expected)
        raw = store.raw_chunks()         # the same as UTF-8 bytes, as spilled
        assert raw is not None
        raw = [bytes(c) for c in raw]
        assert b",\n  ".join(raw) == ",\n  ".join(expected).encode("utf-8", "surrogatepass")
        assert len(raw) == len(chunks)
    if order == "ascending":            # runs one after another: a stretch per block, not a line
        assert len(chunks) < 200 // 2


def test_text_stretches_are_not_given_for_what_iteration_renumbers_or_is_not_text():
    results = list(_every_result())[:5]
    opaque = ResultStore(budget=2, encode=lambda res: Opaque(res.id), sep=",")
    objects = ResultStore(budget=2)
    for res in results:
        opaque.add(res)
        objects.add(res)
    assert opaque.chunks() is None and objects.chunks() is None
    assert opaque.raw_chunks() is None and objects.raw_chunks() is None


def test_runs_keyed_below_zero_merge_in_key_order_too():
    """The merge's heap holds (key, run) as one int: keys below zero (any int a caller puts)
    order as the pairs do, in spilled text and in spilled records alike."""
    import random
    keys = list(range(-60, 60))
    random.Random(5).shuffle(keys)
    text = ResultStore(budget=7, encode=lambda res: "", sep=",")
    records = ResultStore(budget=7, encode=lambda res: ("", 0))
    for n in keys:
        text.put(n, "line %d" % n)
        records.put(n, ("line", n))
    assert len(text.runs) == len(records.runs) == 120 // 7
    assert list(text) == ["line %d" % n for n in range(-60, 60)]
    assert list(records) == [("line", n) for n in range(-60, 60)]
