"""The JSON writer formats each connection directly; it must write exactly what the json
encoder writes for `ConnResult.to_dict()` (the documented contract, docs/json.md)."""

from __future__ import annotations

import io
import json

import pytest

from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.render import make_sink, render
from analyzer.render.json_line import connection_json, dumps as _dumps
from analyzer.testing.synth import Dialog, write_pcap
from conftest import REPO, every_capture

try:                        # the compiled build's C join; the pure build has none
    from analyzer.common import _join
except ImportError:
    _join = None


def test_each_connection_is_written_as_the_encoder_writes_it():
    checked = 0
    for path in every_capture():
        for r in analyze([str(path)]).connections:
            assert connection_json(r) == _dumps(r.to_dict()), (path, r.id)
            checked += 1
    assert checked >= 80             # the samples alone hold 82 connections


def test_lines_in_any_order_are_written_as_the_encoder_writes_them():
    # The writer reuses what the line before it wrote (verdicts, a finding's code, severity
    # and side, a lingering state's side and state): alike and unlike connections in turn,
    # forwards, backwards and each one twice, must each come out as the encoder writes it.
    results = [r for path in sorted((REPO / "samples").rglob("*.pcap"))
               for r in analyze([str(path)]).connections]
    assert len({json.dumps(r.to_dict()["findings"][:1]) for r in results}) > 5
    for r in results + results[::-1] + [r for r in results for _ in range(2)]:
        assert connection_json(r) == _dumps(r.to_dict()), r.id


def test_text_that_needs_escaping(tmp_path):
    # A finding message carries no user text today; escaping is still the encoder's own.
    d = Dialog().handshake().data("c", 10).fin("c").fin("s").ack("c")
    write_pcap(tmp_path / "c.pcap", d.packets)
    r = next(iter(analyze([str(tmp_path / "c.pcap")]).connections))
    r.history = 'Sh"\\\u00e9\n\x01'
    r.closed_first = None
    assert connection_json(r) == _dumps(r.to_dict())
    assert json.loads(connection_json(r))["history"] == 'Sh"\\\u00e9\n\x01'


@pytest.mark.parametrize("trace", [None, {0}])
def test_the_document_is_the_report(tmp_path, trace):
    d = Dialog().handshake().data("c", 10).data("s", 20).fin("c").fin("s").ack("c")
    write_pcap(tmp_path / "c.pcap", d.packets + Dialog(client=("10.0.0.9", 41000)).syn().packets)
    report = analyze([str(tmp_path / "c.pcap")], Settings(ladders=frozenset(trace or ())))
    out = io.StringIO()
    render("json", report, out)
    doc = json.loads(out.getvalue())
    assert doc == json.loads(json.dumps(report.to_dict()))
    assert ("ladder" in doc["connections"][0]) == bool(trace)


def test_lines_kept_instead_of_results_make_the_same_document(tmp_path):
    # What the CLI does for --format json: the renderer's sink keeps each connection's line,
    # spilled to disk like the results (a budget of 3 forces several runs).
    settings = Settings(result_budget=3)
    for path in sorted((REPO / "samples").rglob("*.pcap"))[:12] + [REPO / "samples" / "mixed.pcap"]:
        outs = []
        for sink in (None, make_sink("json", settings)):
            out = io.StringIO()
            render("json", analyze([str(path)], settings, sink=sink), out)
            outs.append(out.getvalue())
        assert outs[0] == outs[1], path


@pytest.mark.parametrize("budget", [3, 5000])
def test_lines_written_as_bytes_to_a_utf8_output_make_the_same_document(budget):
    # The CLI's output writes UTF-8 and has its bytes underneath: the kept lines go there as
    # the bytes they were spilled as (a budget of 3: many runs, merged; 5,000: all in
    # memory). The document is the one written as text, and the one of the results.
    settings = Settings(result_budget=budget)
    for path in sorted((REPO / "samples").rglob("*.pcap"))[:12] + [REPO / "samples" / "mixed.pcap"]:
        text = io.StringIO()
        render("json", analyze([str(path)], settings), text)
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        render("json", analyze([str(path)], settings, sink=make_sink("json", settings)), out)
        out.flush()
        assert raw.getvalue() == text.getvalue().encode("utf-8"), path


def test_addresses_stay_right_while_the_address_cache_shrinks_and_grows_back(tmp_path):
    # 24,000 clients seen once each (the cache fills with no hits and its bound falls), then
    # 6,000 clients twice each in a row (as many hits as addresses: the bound goes back):
    # every line's addresses are its packets' own.
    def syn(client: str, port: int) -> list:
        return Dialog(client=(client, port), server=("192.0.2.%d" % (1 + (port & 1)), 443)).syn().packets
    packets = []
    for i in range(24000):
        packets += syn("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 40000 + (i & 1))
    for i in range(12000):
        packets += syn("172.16.%d.%d" % ((i >> 1) >> 8, (i >> 1) & 255), 1024 + (i & 1) * 2)
    for n, (_, ip, side) in enumerate(packets):         # (one microsecond apart, in order)
        packets[n] = (n * 1000, ip, side)
    write_pcap(tmp_path / "c.pcap", packets)
    settings = Settings()
    out = io.StringIO()
    render("json", analyze([str(tmp_path / "c.pcap")], settings,
                           sink=make_sink("json", settings)), out)
    conns = json.loads(out.getvalue())["connections"]
    assert len(conns) == 36000
    for c in conns[:24000]:
        i = c["id"]
        assert c["orig"]["addr"] == "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)
        assert c["resp"]["addr"] == "192.0.2.%d" % (1 + (i & 1))
    for c in conns[24000:]:
        i = c["id"] - 24000
        assert c["orig"]["addr"] == "172.16.%d.%d" % ((i >> 1) >> 8, (i >> 1) & 255)
        assert c["orig"]["port"] == 1024 + (i & 1) * 2


@pytest.mark.parametrize("impl", ["python", "c"])
def test_the_joins_are_str_join_in_c_and_in_python(impl):
    # common/_join.c (the compiled build's) and common/join.py (the pure build's) give what
    # str.join gives, and what a spilled text block holds: ASCII pieces, empty ones, none,
    # and others not ASCII (two- and four-byte characters, a lone surrogate: the other path);
    # keys below zero and beyond 64 bits (None: written as records).
    import random
    from array import array
    from analyzer.common import join
    if impl == "c" and _join is None:
        pytest.skip("the pure-Python build has no C join")
    concat = join.concat if impl == "python" else _join.concat
    plain = join.plain if impl == "python" else _join.plain
    text_block = join.text_block if impl == "python" else _join.text_block
    rng = random.Random(16)
    words = ["", "a", "ab", "abcd", "abcdefgh", "abcdefghijklmnopq", '{"id": ', "1700000000.",
             "x" * 3000, "\u00e9", "\u4e2d", "\U0001f600", "\udcff", ",\n  "]
    for _ in range(3000):
        pieces = [rng.choice(words) for _ in range(rng.randrange(90))]
        assert concat(*pieces) == "".join(pieces)
        assert type(concat(*pieces)) is str
        sep = rng.choice([",\n  ", "", "\u00e9"])
        keys = [rng.choice([0, 7, -3, 2**40, 2**63 - 1, -2**63, 2**63]) for _ in pieces]
        got = text_block(sep, keys, pieces)
        ascii = sep.isascii() and all(p.isascii() for p in pieces)
        if not ascii or 2**63 in keys:
            assert got is None
            continue
        assert got is not None
        packed, ends, text = got
        assert packed == array("q", keys).tobytes()
        assert text == sep.join(pieces).encode("ascii")
        assert ends == array("q", [len(sep.join(pieces[:i + 1])) for i in range(len(pieces))]
                             ).tobytes()
    # plain: the text the encoder writes as it is between quotes (ASCII, nothing escaped)
    from json.encoder import encode_basestring
    texts = ["", "orig in TIME_WAIT for 59.9 s, 0.1 s of 60 s left", 'say "hi"', "back\\slash",
             "tab\there", "\x1f", "\x7f", " ~", "caf\u00e9", "\udcff"] + \
        ["a" * at + chr(c) + "b" * (16 - at) for c in range(128) for at in range(17)]
    for text in texts:
        assert plain(text) == (text.isascii() and encode_basestring(text) == '"' + text + '"'), \
            text
    assert plain("orig in TIME_WAIT for 59.9 s") and not plain('a"b') and not plain("\u00e9")
    assert concat() == "" and text_block(",", [], []) == (b"", b"", b"")
    with pytest.raises(TypeError):
        concat("a", 1)
    with pytest.raises(TypeError):
        concat("a", b"b")
    with pytest.raises(ValueError):
        text_block(",", [1], [])


@pytest.mark.parametrize("impl", ["python", "c"])
def test_subtuple_makes_a_named_tuple_as_its_constructor_does(impl):
    # common/_join.c's subtuple (the compiled build's) and common/join.py's: a NamedTuple (a
    # lingering state, as finalize makes one) equal to, and of the class of, what the class
    # makes; it pickles and is tracked by the collector as one made by the class; any tuple
    # subclass, no items too; anything else than a tuple type refused.
    import gc
    import pickle
    from typing import NamedTuple
    from analyzer.common import join
    from analyzer.judge.result import Lingering, lingering, lingering_of
    if impl == "c" and _join is None:
        pytest.skip("the pure-Python build has no C join")
    subtuple = join.subtuple if impl == "python" else _join.subtuple
    big = 1_700_000_000_123_456_789
    made = subtuple(Lingering, "orig", "TIME_WAIT", big, 5 * 10**8, None)
    want = Lingering("orig", "TIME_WAIT", big, 5 * 10**8, None)
    assert type(made) is Lingering and made == want and made.since == big
    assert made.remaining is None and made.to_dict() == want.to_dict()
    assert pickle.loads(pickle.dumps(made)) == want
    assert gc.is_tracked(made) == gc.is_tracked(want)
    assert lingering("resp", "CLOSE_WAIT", 3, 4, 7) == Lingering("resp", "CLOSE_WAIT", 3, 4, 7)
    assert type(lingering_of(("a", "b", 1, 2, None))) is Lingering

    class Pair(NamedTuple):
        a: int
        b: str
    assert subtuple(Pair, 1, "x") == Pair(1, "x") and type(subtuple(Pair, 1, "x")) is Pair
    empty = subtuple(type("Empty", (tuple,), {}))
    assert empty == () and type(empty).__name__ == "Empty"
    for bad in ([], [int], [list, 1], ["Lingering", 1]):
        with pytest.raises(TypeError):
            subtuple(*bad)


@pytest.mark.parametrize("impl", ["python", "c"])
def test_a_parallel_runs_lines_are_merged_and_numbered_as_a_sort_and_a_count_would(impl):
    # (and, given an `end`, merged as they are: conn.log's rows)
    # common/_join.c's merge_lines (the compiled build's) and common/join.py's (the pure
    # build's) against a sort of every line by key and a count of the shards' numbers below
    # each: sources of one to four blocks as lists or arrays, with separators or none, as
    # bytes or views; numbers with gaps (reservations, lines not kept) or none (each number's
    # line, the usual case); stretches cut at `MERGE_BYTES`; keys asked out of order
    # counted again; ends beyond a block's data refused.
    import random
    from array import array
    from bisect import bisect_left
    from analyzer.common import join
    if impl == "c" and _join is None:
        pytest.skip("the pure-Python build has no C join")
    merge_lines = join.merge_lines if impl == "python" else _join.merge_lines
    rng = random.Random(1616)
    for trial in range(300):
        shards = rng.randrange(1, 4)
        count = rng.randrange(1, 60 if trial % 10 else 3000)
        numbers = sorted(rng.sample(range(1, 2 * count + 10 ** rng.randrange(2, 7)), count))
        starts = [array("q") for _ in range(shards)]
        for n in numbers:
            starts[rng.randrange(shards)].append(n)
        dense = trial % 2 == 0
        kept = numbers if dense else [n for n in numbers if rng.random() < 0.7] or numbers[:1]
        lines = {n: ('%s, "n": "%s"}' % (n, "x" * rng.choice([0, 5, 300, 9000]))).encode()
                 for n in kept}
        groups: list = [[] for _ in range(rng.randrange(1, 5))]
        for n in kept:
            rng.choice(groups).append(n)
        blocks_of = []
        for keys in groups:
            if not keys:
                continue
            blocks = []
            while keys:
                cut = rng.randrange(1, len(keys) + 1)
                part, keys = keys[:cut], keys[cut:]
                sep = rng.choice([b"", b",\n  "])
                data = sep.join(lines[n] for n in part)
                ends, at = [], -len(sep)
                for n in part:
                    at += len(sep) + len(lines[n])
                    ends.append(at)
                if rng.random() < 0.5:
                    part, ends = array("q", part), array("q", ends)
                blocks.append([part, ends, memoryview(data) if rng.random() < 0.5 else data,
                               len(sep), 0])
            blocks_of.append(blocks)
        def merged(*between):
            heads = [list(blocks[0]) for blocks in blocks_of]
            rests = [iter([list(b) for b in blocks[1:]]) for blocks in blocks_of]
            steps = [[s, 0] for s in starts]
            pieces, first = [], True
            while heads:
                text, done = merge_lines(heads, steps if not between else [], first, *between)
                assert len(text) < join.MERGE_BYTES + 12000
                if text:
                    first = False
                    pieces.append(text)
                if done >= 0:
                    following = next(rests[done], None)
                    if following is not None:
                        heads[done] = following
                    else:
                        del heads[done]
                        del rests[done]
            return b"".join(pieces)
        expected = b"".join(
            (b'\n  {"id": ' if i == 0 else b',\n  {"id": ') +
            b"%d" % sum(bisect_left(s, n) for s in starts) + lines[n]
            for i, n in enumerate(sorted(kept)))
        assert merged() == expected, trial
        if dense:
            assert merged().count(b'{"id": ') == len(numbers)
        # with `between` (conn.log rows): each line as it is, it between two, no number
        between = rng.choice([b"\n", b"", b"\r\n"])
        assert merged(between) == between.join(lines[n] for n in sorted(kept)), trial
    # keys asked out of order: counted again, not from where the last one left off
    starts = [array("q", [1, 4, 9]), array("q", [2, 3])]
    steps = [[s, 0] for s in starts]
    assert merge_lines([[[9], [2], b"x}", 0, 0]], steps, True) == (b'\n  {"id": 4x}', 0)
    assert merge_lines([[[3], [2], b"y}", 0, 0]], steps, False) == (b',\n  {"id": 2y}', 0)
    assert merge_lines([], steps, True) == (b"", -1)
    assert merge_lines([[[9], [2], b"x}", 0, 0]], [], True, b"\n") == (b"x}", 0)
    assert merge_lines([[[9], [2], b"x}", 0, 0]], [], False, b"\n") == (b"\nx}", 0)
    with pytest.raises(TypeError):
        merge_lines([[[9], [2], b"x}", 0, 0]], [], False, "\n")  # (bytes, not text)
    with pytest.raises(ValueError):
        merge_lines([[[1], [9], b"short", 0, 0]], steps, True)
    with pytest.raises(ValueError):
        merge_lines([[[1, 2], [2, 1], b"abcd", 0, 0]], steps, True)
