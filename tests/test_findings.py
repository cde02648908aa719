"""Every finding code: packets that must raise it, on real bytes; and a clean connection has none.

`BUILDERS` maps each code of the catalogue to a function building the traffic that shows it;
`test_every_code_has_a_builder` fails when a code is added to the catalogue without one.
"""

from __future__ import annotations

import struct

import pytest

from analyzer.common.findings import CATALOGUE
from analyzer.pipeline import analyze
from analyzer.settings import Settings
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN
from analyzer.testing.synth import Dialog, merge, write_pcap
from analyzer.testing.encap import fragments


def est(**kw) -> Dialog:
    return Dialog(**kw).handshake().data("c", 100).data("s", 1000)


def closed(d: Dialog) -> Dialog:
    return d.fin("c").fin("s").ack("c")


def _corrupt_checksum(packets):
    ts, ip, side = packets[3]
    ip = bytearray(ip)
    ip[20 + 16] ^= 0xFF                      # TCP checksum of the first data segment
    packets[3] = (ts, bytes(ip), side)
    return packets


def _flood():
    return [Dialog(client=("198.51.100.%d" % (i % 200 + 1), 20000 + i),
                   t0=1_700_000_000 + i * 0.005).syn() for i in range(120)]


BUILDERS = {
    "SYN_RETRANSMITTED": lambda: [Dialog().syn().wait(1).syn(seq=1000, advance=False)],
    "SYN_UNANSWERED": lambda: [Dialog().syn()],
    "CONNECTION_REFUSED": lambda: [Dialog().syn().send("s", RST | ACK, seq=0)],
    "HANDSHAKE_HALF_OPEN": lambda: [Dialog().syn().synack()],
    "HANDSHAKE_RESET": lambda: [Dialog().syn().synack().rst("c", ack=False)],
    "SYNACK_BAD_ACK": lambda: [Dialog().syn().synack(ack=999).ack("c")],
    "HANDSHAKE_ACK_BAD": lambda: [Dialog().syn().synack().ack("c", ack=5005)],
    "SYN_NOT_CAPTURED": lambda: [Dialog(isn=(1000, 5000)).send("s", SYN | ACK, ack=1001)],
    "SYNACK_NOT_CAPTURED": lambda: [Dialog().syn().ack("c", ack=5001).data("c", 10, ack=5001)],
    "HANDSHAKE_ACK_NOT_CAPTURED": lambda: [Dialog().syn().synack().data("s", 100)],
    "SELF_CONNECT": lambda: [Dialog(client=("127.0.0.1", 9), server=("127.0.0.1", 9)).syn()],
    "MIDSTREAM_START": lambda: [Dialog().data("c", 10).data("s", 10)],
    "SYN_WITH_DATA": lambda: [Dialog().syn(length=20).synack().ack("c")],
    "SYNACK_RETRANSMITTED": lambda: [Dialog().syn().synack().wait(1).synack(seq=5000, advance=False)
                                     .ack("c")],
    "DATA_BEFORE_HANDSHAKE": lambda: [Dialog().syn().send("c", PSH, 50)],
    "SYN_FIN": lambda: [Dialog().send("c", SYN | FIN)],
    "SYN_RST": lambda: [Dialog().send("c", SYN | RST)],
    "FIN_RST": lambda: [est().send("c", FIN | RST | ACK)],
    "NO_FLAGS": lambda: [Dialog().send("c", 0)],
    "RETRANSMISSION": lambda: [est().data("c", 100, seq=1101, advance=False).wait(0.3)
                               .data("c", 100, seq=1101, advance=False)],
    "OUT_OF_ORDER": lambda: [est().data("c", 100, seq=1201, advance=False)
                             .data("c", 100, seq=1101, advance=False)],
    "SEGMENT_NOT_CAPTURED": lambda: [est().data("c", 100, seq=5101)],
    "ACKED_UNSEEN_SEGMENT": lambda: [est().ack("c", ack=5001 + 1000 + 700)],
    "ACK_OF_UNSEEN_FIN": lambda: [est().ack("c", ack=5001 + 1000 + 1)],
    "KEEPALIVE": lambda: [est().ack("s").wait(7200).ack("c", seq=1100).ack("s")],
    "ZERO_WINDOW": lambda: [est().ack("s", win=0)],
    "PEER_UNRESPONSIVE": lambda: [est().data("c", 100).wait(0.2).data("c", 100, seq=1121, advance=False)
                                  .wait(0.4).data("c", 100, seq=1121, advance=False)
                                  .wait(0.8).data("c", 100, seq=1121, advance=False)],
    "ZERO_WINDOW_STALL": lambda: [est().ack("s", win=0).wait(2).ack("s")],
    "RST_CHALLENGED": lambda: [est().rst("c", ack=False, seq=1101 + 3000, advance=False)
                               .ack("s").data("c", 10)],
    "CONNECTION_RESET": lambda: [est().rst("s")],
    "FIN_RETRANSMITTED": lambda: [est().fin("c").wait(0.2).fin("c", seq=1101, advance=False)],
    "FIN_SEQ_BEHIND": lambda: [est().fin("c", seq=1050, advance=False)],
    "DATA_AFTER_FIN": lambda: [est().fin("c").data("c", 10)],
    "DATA_AFTER_RST": lambda: [est().rst("c").data("c", 10)],
    "PACKETS_AFTER_RST": lambda: [est().rst("c").ack("s")],
    "RST_AFTER_FIN": lambda: [est().fin("c").fin("s").rst("c", ack=False)],
    "RST_REPLY": lambda: [Dialog().syn().send("s", ACK, seq=7, ack=3_000_000_000, advance=False)
                          .send("c", RST, seq=3_000_000_000, advance=False)],
    "SEGMENT_IGNORED": lambda: [Dialog().syn().send("s", RST | ACK, seq=0, ack=1001)
                                .synack().ack("c").data("c", 10).data("s", 10)],
    "CLOSED_PORT_PROBE": lambda: [Dialog().send("c", FIN, seq=1234)
                                  .send("s", RST | ACK, seq=0, ack=1235)],
    "STRAY_RST": lambda: [Dialog().send("s", RST, seq=98765)],
    "CAPTURE_DUPLICATE": lambda: [est().data("c", 100, ipid=7).again()],
    "PORT_SCAN": lambda: [Dialog(server=("10.0.0.2", port)).send("c", FIN, seq=1234)
                          .send("s", RST | ACK, seq=0, ack=1235) for port in range(1, 26)],
    "SYNACK_ISN_CHANGED": lambda: [Dialog().syn().synack().synack(seq=9999, advance=False)],
    "RST_OUT_OF_WINDOW": lambda: [est().rst("s", seq=2_000_000_000, advance=False)],
    "SEGMENT_IN_WRONG_STATE": lambda: [closed(est()).data("s", 10)],
    "CLOSE_WAIT_LINGERING": lambda: [est().fin("c").ack("s").wait(30).ack("c", seq=1102)],
    "FIN_WAIT_2_LINGERING": lambda: [est().fin("c").ack("s").wait(30).ack("c", seq=1102)],
    "TIME_WAIT_AT_END": lambda: [closed(est())],
    "TIME_WAIT_REUSE": lambda: [_reuse(5)],
    "PORT_REUSE": lambda: [_reuse(61)],
    "HALF_OPEN_FLOOD": _flood,
    "BAD_CHECKSUM": lambda: [est()],
    "IP_FRAGMENTS_MALFORMED": lambda: [est()],
    # Two connections open, one held in memory, none parked (max_parked=0, in _run).
    "MEMORY_BOUND": lambda: [est(), est(client=("10.0.0.3", 40001), t0=1_700_000_000.5)],
}


def _reuse(gap: float) -> Dialog:
    d = closed(est()).wait(gap)
    d.nxt["c"] = 77_000_000
    return d.syn().synack().ack("c")


def _run(tmp_path, code):
    dialogs = BUILDERS[code]()
    packets = merge(*dialogs)
    if code == "BAD_CHECKSUM":
        packets = _corrupt_checksum(packets)
    if code == "IP_FRAGMENTS_MALFORMED":            # the SYN in fragments that overlap
        ts, ip, side = packets[0]
        first, last = fragments(ip, [24])
        packets = [(ts, first, side), (ts, fragments(ip, [16])[1], side),
                   (ts, last, side)] + packets[1:]
    path = tmp_path / "c.pcap"
    write_pcap(path, packets)
    bound = {"max_live": 1, "max_parked": 0} if code == "MEMORY_BOUND" else {}
    return analyze([str(path)], Settings(checksums=(code == "BAD_CHECKSUM"), **bound)).to_dict()


def _all_codes(doc):
    found = {f["code"]: f for f in doc["findings"]}
    for c in doc["connections"]:
        for f in c["findings"]:
            found.setdefault(f["code"], f)
    return found


def test_every_code_has_a_builder():
    assert set(BUILDERS) == set(CATALOGUE)


@pytest.mark.parametrize("code", sorted(BUILDERS))
def test_finding_appears(tmp_path, code):
    found = _all_codes(_run(tmp_path, code))
    assert code in found, sorted(found)
    f = found[code]
    assert f["severity"] == CATALOGUE[code].severity
    assert f["frame"] >= 1 and f["ts"] > 1_600_000_000 and f["message"]


def test_a_clean_connection_has_no_findings(tmp_path):
    d = est().data("c", 1448).data("c", 1448).ack("s").data("s", 500).ack("c")
    d.fin("s").fin("c").ack("s")
    path = tmp_path / "clean.pcap"
    write_pcap(path, d.packets)
    with open(path, "ab") as fh:                  # the capture runs on past TIME_WAIT
        fh.write(struct.pack("<IIII", 1_700_000_100, 0, 14, 14) + bytes(12) + b"\x08\x06")
    doc = analyze([str(path)], Settings(checksums=True)).to_dict()
    (c,) = doc["connections"]
    assert c["findings"] == [] and doc["findings"] == []
    assert set(c["analysis"]["orig"].values()) == {0} and set(c["analysis"]["resp"].values()) == {0}


def test_findings_aggregate_with_a_count(tmp_path):
    d = est()
    for _ in range(500):
        d.wait(0.3).data("c", 100, seq=1101, advance=False)
    path = tmp_path / "r.pcap"
    write_pcap(path, d.packets)
    (c,) = analyze([str(path)]).to_dict()["connections"]
    retrans = [f for f in c["findings"] if f["code"] == "RETRANSMISSION"]
    assert len(retrans) == 1 and retrans[0]["count"] == 499
    assert c["analysis"]["orig"]["retransmissions"] == 499


def test_keepalives_are_not_retransmissions(tmp_path):
    d = est().ack("s")
    for _ in range(5):
        d.wait(75).ack("c", seq=1100).ack("s")
    d.wait(75).send("c", ACK, 1, seq=1100, advance=False).ack("s")   # 1-byte probe (Windows)
    path = tmp_path / "k.pcap"
    write_pcap(path, d.packets)
    (c,) = analyze([str(path)]).to_dict()["connections"]
    a = c["analysis"]
    assert a["orig"]["keepalives"] == 6 and a["resp"]["keepalive_acks"] == 6
    assert a["orig"]["retransmissions"] == 0 and a["resp"]["retransmissions"] == 0
    f = {f["code"]: f for f in c["findings"]}
    assert f["KEEPALIVE"]["count"] == 6 and "RETRANSMISSION" not in f


def test_flood_reports_server_count_and_rate(tmp_path):
    doc = _run(tmp_path, "HALF_OPEN_FLOOD")
    (f,) = doc["findings"]
    assert "120 SYNs to 10.0.0.2:80" in f["message"] and "200 source" not in f["message"]
    assert f["count"] == 120
    assert doc["summary"]["findings_by_code"]["HALF_OPEN_FLOOD"] == 1


def test_messages_carry_the_numbers(tmp_path):
    f = _all_codes(_run(tmp_path, "SYNACK_BAD_ACK"))["SYNACK_BAD_ACK"]
    assert "acknowledges 4294967295, expected 1 (the SYN's ISN 1000 + 1)" in f["message"]
    f = _all_codes(_run(tmp_path, "SEGMENT_NOT_CAPTURED"))["SEGMENT_NOT_CAPTURED"]
    assert "from seq 101 to 4101" in f["message"]
