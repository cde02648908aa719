"""The summary's counts by key (report/model.py `Counts`): runs of one key counted aside must
give the same dicts as counting every result into them."""

from __future__ import annotations

from collections import Counter

from analyzer.decode.segment import ACK, RST
from analyzer.report.model import Counts, Summary
from analyzer.testing.synth import Dialog
from conftest import report_for


def _closed(port: int) -> Dialog:
    d = Dialog(client=("10.0.0.1", port)).handshake().data("c", 100)
    return d.fin("c").fin("s").ack("c")


def _reset(port: int) -> Dialog:
    return Dialog(client=("10.0.0.1", port)).handshake().data("c", 10).rst("s")


def _refused(port: int) -> Dialog:
    return Dialog(client=("10.0.0.1", port)).syn().send("s", RST | ACK, seq=0)


def test_summary_counts_every_connection_once_in_runs_and_alone(tmp_path):
    # Runs of one outcome, and outcomes alone between them: the summary's counts are the
    # connections' own, whatever the order.
    makers = [_closed, _closed, _closed, _reset, _closed, _refused, _refused, _reset, _closed]
    dialogs = [make(41000 + i) for i, make in enumerate(makers)]
    report = report_for(tmp_path, *dialogs)
    conns = report["connections"]
    assert len(conns) == len(makers)
    summary = report["summary"]
    assert summary["handshakes"] == dict(sorted(Counter(c["handshake"] for c in conns).items()))
    assert summary["closes"] == dict(sorted(
        Counter(c["close"] or "none" for c in conns).items()))
    assert summary["closes"]["three_segment"] == 5 and summary["handshakes"]["refused"] == 2
    by_code = Counter(f["code"] for c in conns for f in c["findings"])
    assert summary["findings_by_code"] == dict(sorted(by_code.items()))
    assert summary["resets"] == {
        "orig": sum(c["reset_by"] == "orig" for c in conns),
        "resp": sum(c["reset_by"] == "resp" for c in conns)}
    assert summary["resets"]["resp"] >= 2


def test_counts_keep_keys_in_the_order_first_counted():
    c = Counts()
    for key in ["b", "b", "a", "b", "c", "c", "a"]:
        c.add(key)
    assert list(c.counts().items()) == [("b", 3), ("a", 2), ("c", 2)]
    c.add("a")                              # a run that goes on after a read
    c.counts()["d"] = 5                     # a change made to the dict stays
    c.add("a")
    assert c.counts() == {"b": 3, "a": 4, "c": 2, "d": 5}


def test_summary_merge_adds_a_shards_counts():
    mine, theirs = Summary(), Summary()
    mine.set_counts({"complete": 2}, {}, {}, {}, {}, {})
    theirs.set_counts({"complete": 3, "refused": 1}, {}, {}, {}, {}, {"TIME_WAIT_AT_END": 4})
    mine.merge(theirs)
    assert mine.handshakes == {"complete": 5, "refused": 1}
    assert mine.to_dict()["findings_by_code"] == {"TIME_WAIT_AT_END": 4}
