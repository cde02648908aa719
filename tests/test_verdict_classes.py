"""The verdicts a careful reader of RFC 9293 and the packets would write, class by class
(issue 11): each test builds the packets, writes the capture and runs the analyzer.

1. An unacceptable third handshake segment completes nothing (§3.10.7.4).
2. A segment that later packets prove was ignored was ignored (RST, FIN).
3. A reply from a CLOSED port is not a connection (§3.10.7.1); a scan is said once.
4. Follow the ISN the peer acknowledges.
5. A SYN-ACK that carries data is acknowledged past it.
6. Frames out of time order.
7. A FIN never acknowledged.
8. Duplicated frames.
and the messages that must be true. Recorded kernel traffic for classes 1, 2, 3 and 7 is in
samples/loopback/ (tests/test_samples.py).
"""

from __future__ import annotations

import pytest

from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN, URG
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.testing.synth import Dialog, merge, write_pcap
from conftest import codes, conn, report_for


def findings(c: dict) -> dict:
    return {f["code"]: f for f in c["findings"]}


# -- 1. an unacceptable third handshake segment completes nothing ------------------------------

def test_unacceptable_handshake_ack_then_rst_is_a_reset_handshake(tmp_path):
    # The ACK acknowledges ISN+5: the responder answers <SEQ=SEG.ACK><CTL=RST> and stays in
    # SYN_RECEIVED; the client's RST later resets the handshake, not an established connection.
    d = (Dialog().syn().synack().ack("c", ack=5005)
         .rst("s", ack=False, seq=5005, advance=False).wait(0.5).rst("c", ack=False))
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "reset" and c["close"] is None and c["reset_by"] == "orig"
    f = findings(c)
    assert {"HANDSHAKE_ACK_BAD", "RST_REPLY", "HANDSHAKE_RESET"} <= set(f)
    assert "CONNECTION_RESET" not in f and "ACKED_UNSEEN_SEGMENT" not in f
    assert "ack 5, expected 1 (ISN+1)" in f["HANDSHAKE_ACK_BAD"]["message"]
    assert "stays in SYN_RECEIVED" in f["RST_REPLY"]["message"]


def test_unacceptable_handshake_ack_leaves_the_responder_in_syn_received(tmp_path):
    for bad in (dict(ack=5005), dict(ack=5000), dict(seq=900_000)):
        d = Dialog().syn().synack(win=1000).ack("c", **bad)
        c = conn(report_for(tmp_path, d))
        assert c["handshake"] == "half_open", bad
        assert c["final_state"]["resp"] == "SYN_RECEIVED"
        f = findings(c)
        assert "HANDSHAKE_ACK_BAD" in f and "HANDSHAKE_HALF_OPEN" in f, bad
        assert "not acceptable" in f["HANDSHAKE_HALF_OPEN"]["message"]
        assert "SEGMENT_NOT_CAPTURED" not in f and "ACKED_UNSEEN_SEGMENT" not in f


def test_unacceptable_handshake_ack_message_names_the_window(tmp_path):
    d = Dialog().syn().synack(win=1000).ack("c", seq=900_000)
    f = findings(conn(report_for(tmp_path, d)))["HANDSHAKE_ACK_BAD"]
    assert "seq 899000 is outside the window resp offered (1000 bytes from seq 1)" in f["message"]


def test_unacceptable_handshake_ack_data_does_not_complete_either(tmp_path):
    d = (Dialog().syn().synack().data("c", 50, ack=6000)
         .rst("s", ack=False, seq=6000, advance=False))
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "half_open"
    assert findings(c)["HANDSHAKE_ACK_BAD"]["count"] == 1


def test_acceptable_handshake_ack_after_an_unacceptable_one_completes(tmp_path):
    d = (Dialog().syn().synack().ack("c", ack=5005).rst("s", ack=False, seq=5005, advance=False)
         .ack("c").data("c", 10).data("s", 10))
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and c["close"] == "open"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    assert "HANDSHAKE_ACK_BAD" in codes(c) and "CONNECTION_RESET" not in codes(c)


def test_handshake_ack_with_seq_inside_the_window_is_acceptable(tmp_path):
    # RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND: the RFC's test, not seq == ISN+1.
    d = Dialog().syn().synack().ack("c", seq=1003).data("s", 10)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and "HANDSHAKE_ACK_BAD" not in codes(c)


# -- 2. a segment that later packets prove was ignored was ignored ------------------------------

def test_ignored_rst_before_the_synack_resets_nothing(tmp_path):
    d = (Dialog().syn().send("s", RST | ACK, seq=0, ack=1001, advance=False)
         .synack().ack("c").data("c", 100).data("s", 200))
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and c["close"] == "open" and c["reset_by"] is None
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    f = findings(c)
    assert "frame 2" in f["SEGMENT_IGNORED"]["message"]
    assert not {"HANDSHAKE_RESET", "PACKETS_AFTER_RST", "DATA_AFTER_RST",
                "SEGMENT_IN_WRONG_STATE", "DATA_BEFORE_HANDSHAKE"} & set(f)


def test_ignored_fin_before_the_synack_closes_nothing(tmp_path):
    d = (Dialog().syn().send("s", FIN | ACK, seq=0, ack=1001, advance=False)
         .synack().ack("c").data("c", 100).data("s", 200))
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and c["close"] == "open"
    assert c["final_state"] == {"orig": "ESTABLISHED", "resp": "ESTABLISHED"}
    f = findings(c)
    assert "while in LISTEN" in f["SEGMENT_IGNORED"]["message"]
    # never compared with numbers of another ISN
    assert "DATA_AFTER_FIN" not in f and "HANDSHAKE_ACK_NOT_CAPTURED" not in f


def test_ignored_rst_mid_connection_when_data_goes_on(tmp_path):
    d = Dialog().handshake().data("c", 100).data("s", 1000)
    d.rst("s", advance=False).data("s", 300).ack("c").data("c", 50).ack("s")
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and c["close"] == "open"
    assert "SEGMENT_IGNORED" in codes(c) and "CONNECTION_RESET" not in codes(c)


def test_rst_stays_when_only_in_flight_segments_follow(tmp_path):
    # The receiver's segment after the RST acknowledges nothing sent after it: in flight.
    d = Dialog().handshake().data("c", 100).data("s", 1000)
    d.rst("s", advance=False).data("c", 50, ack=6001)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "reset" and "SEGMENT_IGNORED" not in codes(c)


# -- 3. a reply from a CLOSED port is not a connection ------------------------------------------

@pytest.mark.parametrize("flags,seq,ack,reply_seq,reply_ack", [
    (FIN, 1234, 0, 0, 1235),                 # FIN scan
    (0, 1234, 0, 0, 1234),                   # NULL scan
    (FIN | PSH | URG, 1234, 0, 0, 1235),     # Xmas scan
    (ACK, 1234, 777, 777, None),             # ACK probe: <SEQ=SEG.ACK><CTL=RST>
])
def test_closed_port_reply_is_not_a_connection(tmp_path, flags, seq, ack, reply_seq, reply_ack):
    d = Dialog().send("c", flags, seq=seq, ack=ack)
    if reply_ack is None:
        d.send("s", RST, seq=reply_seq)
    else:
        d.send("s", RST | ACK, seq=reply_seq, ack=reply_ack)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "stray" and c["close"] is None and c["reset_by"] is None
    assert c["final_state"] == {"orig": "CLOSED", "resp": "CLOSED"}
    f = findings(c)
    assert "port 80 has no connection" in f["CLOSED_PORT_PROBE"]["message"]
    assert not {"MIDSTREAM_START", "CONNECTION_RESET"} & set(f)


def test_closed_port_reply_lone_rst_is_stray(tmp_path):
    c = conn(report_for(tmp_path, Dialog().send("s", RST, seq=98765)))
    assert c["handshake"] == "stray"
    assert set(findings(c)) == {"STRAY_RST"}


def test_closed_port_reply_needs_the_reply_numbers(tmp_path):
    # A RST that answers nothing in particular after data: a reset joined mid-way.
    d = Dialog().data("c", 100).rst("s", seq=5000, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "not_seen" and c["close"] == "reset"


def test_closed_port_reply_scan_is_one_finding_with_counts(tmp_path):
    probes = [Dialog(server=("10.0.0.2", port), t0=1_700_000_000 + port / 100)
              .send("c", FIN, seq=1234).send("s", RST | ACK, seq=0, ack=1235)
              for port in range(1, 31)]
    refused = [Dialog(server=("10.0.0.3", port), client=("10.0.0.1", 41000 + port),
                      t0=1_700_000_001 + port / 100).syn().send("s", RST | ACK, seq=0)
               for port in range(1, 6)]
    r = report_for(tmp_path, *probes, *refused)
    (scan,) = [f for f in r["findings"] if f["code"] == "PORT_SCAN"]
    assert scan["count"] == 35
    assert ("10.0.0.1 probed 30 ports on 2 hosts (35 probes: 5 SYN refused, 30 answered by "
            "a closed port)") in scan["message"]
    few = report_for(tmp_path, *probes[:5])
    assert not [f for f in few["findings"] if f["code"] == "PORT_SCAN"]



def test_scan_counts_every_kind_of_probe_once_per_port_and_host(tmp_path):
    """One source, the four kinds of probe, ports and hosts seen again: distinct ports and
    hosts are counted once each, every probe once, the first probe is the finding's frame;
    a crowd of sources probing once each (a spoofed flood) makes no scan."""
    scanner = ("10.9.9.9", 50000)
    dialogs = []
    for i, port in enumerate(range(100, 124)):              # 24 ports on 2 hosts, 4 kinds
        host = "10.0.0.%d" % (2 + i % 2)
        d = Dialog(client=(scanner[0], scanner[1] + i), server=(host, port),
                   t0=1_700_000_000 + i / 10)
        kind = i % 4
        if kind == 0:
            d.syn().send("s", RST | ACK, seq=0)             # refused
        elif kind == 1:
            d.syn()                                         # unanswered
        elif kind == 2:
            d.syn().synack().rst("c", ack=False)            # half-open probe of an open port
        else:
            d.send("c", FIN, seq=1234).send("s", RST | ACK, seq=0, ack=1235)   # closed port
        dialogs.append(d)
    again = Dialog(client=(scanner[0], 60000), server=("10.0.0.2", 100),
                   t0=1_700_000_010).syn()                  # port 100 and host .2 again
    crowd = [Dialog(client=("172.16.%d.%d" % (n // 200, n % 200 + 1), 1024 + n),
                    server=("10.0.0.2", 80), t0=1_700_000_000.5 + n / 1000).syn()
             for n in range(300)]
    r = report_for(tmp_path, *dialogs, again, *crowd)
    (scan,) = [f for f in r["findings"] if f["code"] == "PORT_SCAN"]
    assert scan["count"] == 25 and scan["frame"] == 1
    assert ("10.9.9.9 probed 24 ports on 2 hosts (25 probes: 6 SYN refused, 7 SYN unanswered, "
            "6 SYN-ACK not acknowledged (open), 6 answered by a closed port)") in scan["message"]


# -- 4. follow the ISN the peer acknowledges ----------------------------------------------------

def test_followed_isn_newest_synack(tmp_path):
    d = (Dialog().syn().synack().wait(1).synack(seq=3_000_000_000, advance=False)
         .ack("c", ack=3_000_000_001))
    d.nxt["s"] = 3_000_000_001
    d.data("s", 100).data("s", 100).data("c", 10).data("s", 100)
    report = analyze([str(_write(tmp_path, d))], Settings(ladders=frozenset({0})))
    c = conn(report.to_dict())
    assert c["handshake"] == "complete"
    assert "RETRANSMISSION" not in codes(c) and "PEER_UNRESPONSIVE" not in codes(c)
    assert c["analysis"]["resp"]["retransmissions"] == 0
    # Wireshark's relative numbers: the new ISN is the resp's base from its SYN-ACK on.
    rows = report.ladders[0]
    assert [(row.seq, row.ack) for row in rows[2:6]] == [(0, 1), (1, 1), (1, 1), (101, 1)]


def test_followed_isn_the_one_acknowledged(tmp_path):
    # Two SYN-ACKs with different ISNs; the client acknowledges the first: that one counts.
    d = Dialog().syn().synack().synack(seq=3_000_000_000, advance=False).ack("c")
    d.data("s", 100).data("s", 100)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete" and "HANDSHAKE_ACK_BAD" not in codes(c)
    assert c["analysis"]["resp"]["retransmissions"] == 0


# -- 5. a SYN-ACK that carries data -------------------------------------------------------------

def test_synack_with_data_is_acknowledged_past_its_data(tmp_path):
    d = Dialog().syn().synack(length=30).ack("c").data("c", 10).data("s", 10)
    c = conn(report_for(tmp_path, d))
    assert c["handshake"] == "complete"
    assert codes(c) == {"SYN_WITH_DATA"}


# -- 6. frames out of time order ---------------------------------------------------------------

def _write(tmp_path, d, packets=None, name="c.pcap"):
    path = tmp_path / name
    write_pcap(path, packets if packets is not None else merge(d))
    return path


def test_frames_out_of_time_order(tmp_path):
    d = (Dialog().handshake().data("c", 100).data("c", 100).data("c", 100).ack("s")
         .fin("c").fin("s").ack("c"))
    p = list(d.packets)
    p[0], p[1] = p[1], p[0]              # the SYN-ACK first in the file, stamped after the SYN
    p[4], p[5] = p[5], p[4]              # the second data segment before the first
    doc = analyze([str(_write(tmp_path, d, p))]).to_dict()
    (w,) = doc["capture"]["warnings"]
    assert w.startswith("2 frames are stamped earlier than the frame before")
    (c,) = doc["connections"]
    assert c["handshake"] == "complete" and c["close"] == "three_segment"
    assert c["duration"] == pytest.approx(0.009)       # earliest to latest stamp
    f = findings(c)
    assert "SYN_NOT_CAPTURED" not in f and "SEGMENT_NOT_CAPTURED" not in f
    assert c["analysis"]["orig"]["lost_segments"] == 0


def test_frames_out_of_time_order_who_closed_first_is_frame_order(tmp_path):
    d = Dialog().handshake().data("c", 10).fin("c").fin("s").ack("c")
    p = list(d.packets)
    ts_fin_c, ip, side = p[4]
    p[4] = (ts_fin_c + 10_000_000, ip, side)       # orig's FIN stamped after resp's
    doc = analyze([str(_write(tmp_path, d, p))]).to_dict()
    c = conn(doc)
    assert c["closed_first"] == "orig" and c["close"] == "three_segment"


# -- 7. a FIN never acknowledged ---------------------------------------------------------------

def test_fin_never_acknowledged_is_an_unresponsive_peer(tmp_path):
    d = Dialog().handshake().data("c", 100).data("s", 1000).fin("s").ack("c").fin("c")
    for gap in (0.3, 0.6, 1.2, 2.4):
        d.wait(gap).fin("c", seq=1101, advance=False)
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "unacknowledged"
    f = findings(c)
    assert "orig sent its FIN again 4 times over 4.5 s; resp never acknowledged it" in \
        f["PEER_UNRESPONSIVE"]["message"]
    assert "never acknowledged the peer's FIN (frame 8)" in f["FIN_WAIT_2_LINGERING"]["message"]


def test_fin_acknowledged_after_resends_is_a_four_way_close(tmp_path):
    d = Dialog().handshake().data("c", 100).fin("s").ack("c").fin("c")
    for gap in (0.3, 0.6, 1.2):
        d.wait(gap).fin("c", seq=1101, advance=False)
    d.ack("s")
    c = conn(report_for(tmp_path, d))
    assert c["close"] == "four_way" and "PEER_UNRESPONSIVE" not in codes(c)


# -- 8. duplicated frames ----------------------------------------------------------------------

def test_duplicated_frames_are_not_retransmissions(tmp_path):
    d = Dialog().handshake()
    d.data("c", 100, ipid=11).again().data("c", 100, ipid=12).again().ack("s", ipid=40)
    c = conn(report_for(tmp_path, d))
    assert c["packets"] == {"orig": 6, "resp": 2}
    assert c["analysis"]["orig"]["retransmissions"] == 0
    f = findings(c)
    assert set(f) == {"CAPTURE_DUPLICATE"} and f["CAPTURE_DUPLICATE"]["count"] == 2
    assert "same IP ID 11" in f["CAPTURE_DUPLICATE"]["message"]


def test_duplicated_frames_need_the_same_ip_id_and_the_same_millisecond(tmp_path):
    d = Dialog().handshake()
    d.data("c", 100, ipid=11).data("c", 100, seq=1001, advance=False, ipid=12)
    c = conn(report_for(tmp_path, d))
    assert c["analysis"]["orig"]["retransmissions"] == 1 and "CAPTURE_DUPLICATE" not in codes(c)
    d = Dialog().handshake().data("c", 100, ipid=11).again(after=0.2)
    c = conn(report_for(tmp_path, d))
    assert c["analysis"]["orig"]["retransmissions"] == 1 and "CAPTURE_DUPLICATE" not in codes(c)


def test_duplicated_frames_not_claimed_for_identical_acks_with_ip_id_0(tmp_path):
    # RFC 6864 lets a sender repeat ID 0; identical duplicate ACKs are the protocol's own.
    d = Dialog().handshake().data("s", 1000).ack("c").ack("c").ack("c")
    c = conn(report_for(tmp_path, d))
    assert c["packets"]["orig"] == 5 and "CAPTURE_DUPLICATE" not in codes(c)
    d = Dialog().handshake().data("c", 100).again()          # data with ID 0: a duplicate
    assert "CAPTURE_DUPLICATE" in codes(conn(report_for(tmp_path, d)))


# -- messages that must be true ----------------------------------------------------------------

def test_messages_use_wiresharks_relative_numbers(tmp_path):
    d = Dialog(isn=(3_000_000_000, 5000)).handshake().data("c", 100).data("s", 1000)
    d.data("c", 100, seq=3_000_000_001, advance=False)
    f = findings(conn(report_for(tmp_path, d)))
    assert "orig sent 100 bytes at seq 1 again (next new byte is 101)" in f["RETRANSMISSION"]["message"]


def test_messages_close_wait_says_how_long_not_never(tmp_path):
    d = Dialog().handshake().data("c", 100).fin("c").ack("s")
    c = conn(report_for(tmp_path, d, tail=1.2))
    msg = findings(c)["CLOSE_WAIT_LINGERING"]["message"]
    assert "resp in CLOSE_WAIT for 1.2 s when the capture ended" in msg and "never" not in msg


def test_messages_ack_of_unseen_fin_on_a_data_segment(tmp_path):
    d = Dialog().handshake().data("c", 100).data("s", 1000)
    d.data("c", 10, ack=6002)                 # acknowledges the server's FIN, not captured
    f = findings(conn(report_for(tmp_path, d)))
    assert "ACK_OF_UNSEEN_FIN" in f and "ACKED_UNSEEN_SEGMENT" not in f
    assert "acknowledged 1002" in f["ACK_OF_UNSEEN_FIN"]["message"]
