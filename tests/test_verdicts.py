"""Each verdict on real bytes: build the packets, write the capture, run the analyzer."""

from __future__ import annotations

import json

import pytest

from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN
from analyzer.testing.synth import Dialog
from conftest import codes, conn, report_for


def established(**kw) -> Dialog:
    return Dialog(**kw).handshake().data("c", 120).data("s", 1400)


# -- opening ------------------------------------------------------------------------------------

def test_complete_handshake_has_no_findings_and_is_open_at_end(tmp_path):
    c = conn(report_for(tmp_path, established()))
    assert c["handshake"] == "complete"
    assert c["close"] == "open"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    assert c["findings"] == []
    assert c["orig"] == {"addr": "10.0.0.1", "port": 40000}
    assert c["packets"] == {"orig": 3, "resp": 2} and c["bytes"] == {"orig": 120, "resp": 1400}


def test_refused_syn_answered_by_rst(tmp_path):
    d = Dialog().syn().send("s", RST | ACK, seq=0)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "refused"
    assert c["close"] is None and c["reset_by"] == "resp" and c["closed_first"] is None
    assert c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}
    assert "CONNECTION_REFUSED" in codes(c)


def test_unanswered_syn_counts_retransmissions(tmp_path):
    d = Dialog().syn()
    for gap in (1, 2, 4, 8):
        d.wait(gap).syn(advance=False, seq=1000)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "unanswered"
    assert c["syn_retransmissions"] == 4
    assert c["final_state"]["orig"] == "SYN_SENT"
    assert c["close"] is None
    f = {f["code"]: f for f in c["findings"]}
    assert f["SYN_RETRANSMITTED"]["count"] == 4
    assert "5 time(s)" in f["SYN_UNANSWERED"]["message"]


def test_retransmitted_syn_is_not_a_new_connection_but_a_new_isn_is(tmp_path):
    d = Dialog().syn().wait(1).syn(seq=1000, advance=False)
    assert len(report_for(tmp_path, d)["connections"]) == 1
    d = Dialog().syn().wait(1).syn(seq=77777)
    r = report_for(tmp_path, d)
    assert [c["id"] for c in r["connections"]] == [0, 1]
    assert "PORT_REUSE" in codes(conn(r, 1))


def test_half_open_synack_never_acknowledged(tmp_path):
    d = Dialog().syn().synack().wait(1).synack(seq=5000, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "half_open"
    assert c["final_state"] == {"orig": "SYN_SENT", "resp": "SYN_RECEIVED"}
    assert "HANDSHAKE_HALF_OPEN" in codes(c)


def test_reset_during_handshake(tmp_path):
    d = Dialog().syn().synack().rst("c", ack=False)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "reset" and c["reset_by"] == "orig"
    assert c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}


def test_simultaneous_open(tmp_path):
    d = Dialog().syn("c").syn("s", options=b"")
    d.send("c", SYN | ACK, seq=1000).send("s", SYN | ACK, seq=5000)
    d.ack("c").ack("s")
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "simultaneous_open"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}


def test_bad_synack_ack_is_an_error_finding(tmp_path):
    d = Dialog().syn().synack(ack=1000).ack("c")       # should acknowledge 1001
    c = conn(report_for(tmp_path, d))
    f = {f["code"]: f for f in c["findings"]}
    assert f["SYNACK_BAD_ACK"]["severity"] == "error"
    assert "acknowledges 0, expected 1 (the SYN's ISN 1000 + 1)" in f["SYNACK_BAD_ACK"]["message"]


def test_bad_third_segment_is_an_error_finding(tmp_path):
    d = Dialog().syn().synack().ack("c", ack=5005)
    c = conn(report_for(tmp_path, d))
    assert "HANDSHAKE_ACK_BAD" in codes(c)
    ok = conn(report_for(tmp_path, Dialog().handshake()))
    assert "HANDSHAKE_ACK_BAD" not in codes(ok)


def test_synack_first_means_the_syn_was_missed(tmp_path):
    d = Dialog().syn()
    d.packets.clear()                  # the SYN left before the capture started
    d.synack().ack("c").data("c", 10)
    c = conn(report_for(tmp_path, d))
    assert c["orig"]["port"] == 40000      # the SYN-ACK's receiver is the originator
    assert c["handshake"] == "complete"
    assert "SYN_NOT_CAPTURED" in codes(c)


# -- closing ------------------------------------------------------------------------------------

def test_four_way_close(tmp_path):
    d = established().fin("c").ack("s").fin("s").ack("c")
    c = conn(report_for(tmp_path, d, tail=70))
    assert (c["close"], c["closed_first"], c["half_close"]) == ("four_way", "orig", False)
    assert c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}     # TIME_WAIT ran out
    assert c["lingering"] == []


def test_three_segment_close_closed_by_server(tmp_path):
    d = established().fin("s").fin("c").ack("s")
    c = conn(report_for(tmp_path, d))
    assert (c["close"], c["closed_first"]) == ("three_segment", "resp")
    assert c["final_state"] == {"orig": "CLOSED", "resp": "TIME_WAIT"}


def test_simultaneous_close_both_end_in_time_wait(tmp_path):
    d = established()
    cfin, sfin = d.nxt["c"], d.nxt["s"]
    d.send("c", FIN | ACK, ack=sfin).send("s", FIN | ACK, ack=cfin)   # neither covers the other
    d.ack("c").ack("s")
    c = conn(report_for(tmp_path, d))
    assert (c["close"], c["closed_first"]) == ("simultaneous", "both")
    assert c["final_state"] == {"orig": "TIME_WAIT", "resp": "TIME_WAIT"}
    assert sorted(l["side"] for l in c["lingering"]) == ["orig", "resp"]


def test_half_close_with_data_after_the_first_fin(tmp_path):
    d = established().fin("c").ack("s").data("s", 1400).ack("c").data("s", 700).ack("c")
    d.fin("s").ack("c")
    c = conn(report_for(tmp_path, d))
    assert (c["close"], c["closed_first"], c["half_close"]) == ("four_way", "orig", True)


def test_fin_carried_on_a_data_segment(tmp_path):
    d = established().send("c", FIN | PSH | ACK, 50).fin("s").ack("c")
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "three_segment"
    assert c["final_state"] == {"orig": "TIME_WAIT", "resp": "CLOSED"}


def test_lingering_close_wait_says_for_how_long(tmp_path):
    d = established().fin("c").ack("s")
    c = conn(report_for(tmp_path, d, tail=45))
    assert c["close"] == "half_closed" and c["closed_first"] == "orig"
    assert c["final_state"] == {"orig": "FIN_WAIT_2", "resp": "CLOSE_WAIT"}
    (lg,) = c["lingering"]
    assert lg["side"] == "resp" and lg["state"] == "CLOSE_WAIT"
    assert lg["seconds"] == pytest.approx(45.001, abs=0.002)
    assert "CLOSE_WAIT_LINGERING" in codes(c)


def test_unacknowledged_fin_does_not_claim_close_wait(tmp_path):
    d = established().fin("c")
    c = conn(report_for(tmp_path, d, tail=5))
    assert c["final_state"] == {"orig": "FIN_WAIT_1", "resp": "ESTABLISHED"}
    assert c["lingering"] == []


def test_time_wait_at_end_and_the_msl_setting(tmp_path):
    d = established().fin("c").fin("s").ack("c")
    c = conn(report_for(tmp_path, d, tail=10))
    (lg,) = c["lingering"]
    assert (lg["side"], lg["state"]) == ("orig", "TIME_WAIT")
    assert lg["remaining"] == pytest.approx(50.0, abs=0.01)
    c = conn(report_for(tmp_path, d, tail=10, msl=120))
    assert c["lingering"][0]["remaining"] == pytest.approx(230.0, abs=0.01)
    c = conn(report_for(tmp_path, d, tail=61))
    assert c["final_state"]["orig"] == "CLOSED" and c["lingering"] == []


def test_reset_mid_transfer(tmp_path):
    d = established().data("c", 1400).rst("s")
    c = conn(report_for(tmp_path, d))
    assert (c["close"], c["reset_by"], c["closed_first"]) == ("reset", "resp", "resp")
    assert c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}
    assert "CONNECTION_RESET" in codes(c)


def test_rst_out_of_window_is_ignored(tmp_path):
    d = established().rst("s", seq=5000 + 1_000_000_000, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "open"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    assert "RST_OUT_OF_WINDOW" in codes(c)


def test_data_after_rst_is_a_finding(tmp_path):
    d = established().rst("c").data("c", 10)
    c = conn(report_for(tmp_path, d))
    assert "DATA_AFTER_RST" in codes(c)


def test_rst_after_fin_exchange_keeps_the_close_shape(tmp_path):
    d = established().fin("c").fin("s").rst("c", ack=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "three_segment" and c["reset_by"] == "orig"
    assert "RST_AFTER_FIN" in codes(c)


# -- 4-tuples, sides and numbering ------------------------------------------------------------

def test_reuse_from_time_wait_starts_a_new_numbered_connection(tmp_path):
    d = established().fin("c").fin("s").ack("c").wait(5)
    d.nxt["c"] = 900000
    d.syn().synack().ack("c").fin("c").fin("s").ack("c")
    r = report_for(tmp_path, d)
    first, second = r["connections"]
    assert (first["id"], second["id"]) == (0, 1)
    assert first["final_state"]["orig"] == "CLOSED"        # its TIME_WAIT ended by the new SYN
    assert second["handshake"] == "complete" and second["reused_from"] == 0
    f = {f["code"]: f for f in second["findings"]}
    assert "5.0 s into orig's 60 s TIME_WAIT" in f["TIME_WAIT_REUSE"]["message"]


def test_mid_connection_start_picks_the_client_by_port(tmp_path):
    d = Dialog()
    d.data("s", 1400).ack("c").data("c", 10).fin("c").fin("s").ack("c")
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "not_seen"
    assert c["orig"]["port"] == 40000 and c["resp"]["port"] == 80
    assert c["close"] == "three_segment" and c["closed_first"] == "orig"
    assert "MIDSTREAM_START" in codes(c)


def test_streams_are_numbered_in_order_of_first_packet(tmp_path):
    a = Dialog(client=("10.0.0.1", 40001), t0=1_700_000_000.0).handshake()
    b = Dialog(client=("10.0.0.1", 40002), t0=1_700_000_000.0005).handshake()
    r = report_for(tmp_path, b, a)
    assert [c["orig"]["port"] for c in r["connections"]] == [40001, 40002]


def test_ipv6_and_vlan_connections(tmp_path):
    d = Dialog(client=("2001:db8::1", 50000), server=("2001:db8::2", 443)).handshake()
    d.fin("c").fin("s").ack("c")
    c = conn(report_for(tmp_path, d, vlans=(10, 20)))
    assert c["orig"]["addr"] == "2001:db8::1" and c["close"] == "three_segment"


def test_sequence_numbers_wrap_around(tmp_path):
    d = Dialog(isn=(0xFFFFFF00, 0xFFFFFFF0)).handshake().data("c", 1000).data("s", 1000)
    d.fin("c").fin("s").ack("c")
    c = conn(report_for(tmp_path, d))
    assert (c["handshake"], c["close"]) == ("complete", "three_segment")
    assert c["findings"][0]["code"] == "TIME_WAIT_AT_END" and len(c["findings"]) == 1


def test_one_sided_capture_infers_the_missing_handshake_ack(tmp_path):
    d = Dialog().syn().synack().ack("c").data("s", 300).fin("s")
    d.packets[:] = [p for p in d.packets if p[2] == "s"]     # only the server's packets
    c = conn(report_for(tmp_path, d))
    assert c["orig"]["port"] == 40000
    assert c["handshake"] == "complete"
    assert {"SYN_NOT_CAPTURED", "HANDSHAKE_ACK_NOT_CAPTURED"} <= codes(c)
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "FIN_WAIT_1"}


def test_client_side_only_capture_infers_the_synack(tmp_path):
    d = Dialog().syn().synack().ack("c").data("c", 100).data("c", 50)
    d.packets[:] = [p for p in d.packets if p[2] == "c"]
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    assert "SYNACK_NOT_CAPTURED" in codes(c) and "SYN_UNANSWERED" not in codes(c)


def test_syn_synack_rst_probe_is_a_handshake_reset(tmp_path):
    d = Dialog().syn().synack().rst("c", ack=False).data("c", 10)
    c = conn(report_for(tmp_path, d))
    assert (c["handshake"], c["close"], c["reset_by"]) == ("reset", None, "orig")


def test_rst_answering_a_stale_ack_keeps_the_attempt_alive(tmp_path):
    d = Dialog().syn()
    d.send("s", ACK, seq=777, ack=3_000_000_000, advance=False)        # ACK of a stale connection
    d.send("c", RST, seq=3_000_000_000, advance=False)                  # <SEQ=SEG.ACK><CTL=RST>
    d.wait(1).syn(seq=1000, advance=False).synack().ack("c")
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and c["close"] == "open"
    assert "RST_REPLY" in codes(c) and "RST_OUT_OF_WINDOW" not in codes(c)


def test_synack_with_a_new_isn_counts_the_newest(tmp_path):
    d = Dialog().syn().synack().wait(1).synack(seq=123456, advance=False)
    d.nxt["s"] = 123457
    d.ack("c")
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete"
    assert "SYNACK_ISN_CHANGED" in codes(c) and "HANDSHAKE_ACK_BAD" not in codes(c)


def test_a_fresh_close_wait_is_listed_but_not_called_stuck(tmp_path):
    d = established().fin("c").ack("s")
    c = conn(report_for(tmp_path, d, tail=0.2))
    assert c["lingering"][0]["state"] == "CLOSE_WAIT"
    assert "CLOSE_WAIT_LINGERING" not in codes(c)


def test_self_connect_is_a_simultaneous_open_with_itself(tmp_path):
    d = Dialog(client=("127.0.0.1", 6881), server=("127.0.0.1", 6881))
    d.syn().send("c", SYN | ACK, seq=1000, ack=1001).ack("c", seq=1001, ack=1001)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "simultaneous_open"
    assert "SELF_CONNECT" in codes(c)


# -- found in review: each of these once gave a wrong verdict -----------------------------------

def test_a_lost_one_byte_segment_is_not_taken_for_a_fin(tmp_path):
    d = established()
    d.data("s", 1)                                      # 1 byte the capture will miss
    lost = d.packets.pop()
    d.ack("c").data("s", 500).ack("c").data("s", 500).ack("c")
    c = conn(report_for(tmp_path, d))
    assert (c["close"], c["final_state"]) == ("open", {"orig": "ESTABLISHED", "resp": "ESTABLISHED"})
    assert {"DATA_AFTER_FIN", "ACK_OF_UNSEEN_FIN"}.isdisjoint(codes(c))
    assert "SEGMENT_NOT_CAPTURED" in codes(c) and lost


def test_bare_rst_in_syn_sent_is_dropped(tmp_path):
    d = Dialog().syn().send("s", RST, seq=0, advance=False).wait(1).syn(seq=1000, advance=False)
    d.synack().ack("c").data("c", 10)
    c = conn(report_for(tmp_path, d))
    assert (c["handshake"], c["close"]) == ("complete", "open")
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    assert "RST_OUT_OF_WINDOW" in codes(c) and "CONNECTION_RESET" not in codes(c)


def test_refused_fast_open_syn_acknowledging_its_data(tmp_path):
    d = Dialog().syn(length=40).send("s", RST | ACK, seq=0, ack=1041, advance=False)
    c = conn(report_for(tmp_path, d))
    assert (c["handshake"], c["final_state"]) == ("refused", {"orig": "CLOSED", "resp": "CLOSED"})


def test_held_rst_is_settled_by_the_receiver_not_the_sender(tmp_path):
    d = established().rst("c", ack=False, seq=1101 + 3000, advance=False)
    d.data("c", 10).ack("s").data("s", 10)             # the receiver goes on: a challenge ACK
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "open" and "RST_CHALLENGED" in codes(c)
    assert {"CONNECTION_RESET", "DATA_AFTER_RST", "PACKETS_AFTER_RST"}.isdisjoint(codes(c))


def test_syn_window_is_not_scaled_for_the_rst_window(tmp_path):
    # Later segments advertise 500 << 7 = 64000 bytes; the SYN's 65535 is not scaled (an 8 MB
    # window): a RST 2 MB ahead is outside.
    d = Dialog(win=500).handshake().data("c", 120).data("s", 1400)
    d.packets[0] = (d.packets[0][0], d.packets[0][1][:34] + b"\xff\xff" + d.packets[0][1][36:],
                    d.packets[0][2])
    d.rst("s", seq=5000 + 1400 + 1 + 2_000_000, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "open" and "RST_OUT_OF_WINDOW" in codes(c)


def test_port_reuse_does_not_depend_on_unrelated_traffic(tmp_path):
    def run(with_other):
        d = established().fin("c").fin("s").ack("c").wait(63)
        d.nxt["c"] = 88_000_000
        d.syn().synack().ack("c")
        dialogs = [d]
        if with_other:
            dialogs.append(Dialog(client=("10.0.0.9", 1234), t0=1_700_000_061.0).syn())
        return report_for(tmp_path, *dialogs)["connections"]
    for conns in (run(False), run(True)):
        second = [c for c in conns if c["orig"]["port"] == 40000][1]
        assert second["reused_from"] == 0 and "PORT_REUSE" in codes(second)


def test_a_far_future_timestamp_does_not_stretch_close_wait(tmp_path):
    d = established().fin("c").ack("s")
    other = Dialog(client=("10.0.0.9", 1234), t0=2_500_000_000.0).syn()   # a corrupt date
    tail = Dialog(client=("10.0.0.8", 1234), t0=1_700_000_010.0).syn()
    packets = d.packets + other.packets + tail.packets                    # file order
    path = tmp_path / "c.pcap"
    from analyzer.testing.synth import write_pcap
    from analyzer.pipeline import analyze
    write_pcap(path, packets)
    c = analyze([str(path)]).to_dict()["connections"][0]
    (lg,) = c["lingering"]
    assert lg["state"] == "CLOSE_WAIT" and lg["seconds"] < 11


_FAST_AND_SLOW = """
import json, sys
from analyzer.tcp.conn import Connection
from analyzer.pipeline import analyze
fast = [analyze([p]).to_dict() for p in sys.argv[1:]]
Connection.on_segment = Connection._replay          # never steady: every segment replayed
slow = [analyze([p]).to_dict() for p in sys.argv[1:]]
print(json.dumps([len(fast), sum(f == s for f, s in zip(fast, slow))]))
"""


def test_the_fast_path_changes_nothing(pure_python):
    # Run where the class can be patched: the pure-Python sources (the compiled build is the
    # same code, test_build.py compares the two).
    from conftest import REPO, run_python
    paths = [str(p) for p in sorted((REPO / "samples").rglob("*.pcap"))]
    res = run_python(_FAST_AND_SLOW, *paths, path=pure_python)
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout) == [len(paths), len(paths)]


def test_rsts_after_the_reset_are_not_findings(tmp_path):
    d = established().rst("c").data("s", 30, advance=False)
    d.rst("s", ack=False, seq=5001, advance=False).rst("s", ack=False, seq=5001, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "reset" and c["reset_by"] == "orig"
    assert "RST_OUT_OF_WINDOW" not in codes(c)
    f = {f["code"]: f for f in c["findings"]}
    assert f["PACKETS_AFTER_RST"]["count"] == 1          # the data; the RSTs are not counted


def test_a_refused_syn_retried_with_the_same_isn_ends_refused(tmp_path):
    d = Dialog().syn().send("s", RST | ACK, seq=0, ack=1001, advance=False)
    d.wait(0.5).syn(seq=1000, advance=False).send("s", RST | ACK, seq=0, ack=1001, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "refused" and c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}


def test_a_rst_at_its_own_fins_number_is_dropped_quietly(tmp_path):
    # FIN (seq 1101), ACK of it, then RST at 1101 (dropped: below RCV.NXT) and at 1102.
    d = established().fin("c").ack("s")
    d.send("c", RST, seq=1120 + 1, advance=False).send("c", RST, seq=1120 + 2, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "reset" and c["reset_by"] == "orig"
    assert "RST_OUT_OF_WINDOW" not in codes(c)
