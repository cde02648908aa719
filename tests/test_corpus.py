"""The whole shared corpus of real public captures, end to end.

1. Every capture in MANIFEST.tsv is analysed without an exception and its JSON document
   serialises.
2. Our number of connections equals the number of conversations in tshark's `-z conv,tcp`
   output (`_derived/tshark-conv-tcp/`), except in the files of `CONV_DIFFERENCES`, each with
   its reason and the exact counts, so that a change either way fails.
3. Verdicts on a few varied captures, checked against the packets and the upstream Zeek /
   Suricata ground truth; known analyzer bugs are strict xfails.

tshark is not needed: its output is stored in the corpus. `tools/crosscheck_tshark.py` does
the finer check (stream numbers, first/last frame, packet counts) where tshark is installed.
Runtime: about 4 s for the 158 files (the largest, the 2.9 MB spoofed SYN flood, about 2 s);
each capture is analysed once and shared by the tests.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List

import pytest

from analyzer.pipeline import analyze
from conftest import CORPUS, corpus_files

#: Files where our connection count differs from tshark's conv,tcp table:
#: path -> (tshark conversations, our connections, why).
CONV_DIFFERENCES: Dict[str, tuple] = {
    "suricata-verify/bug-5437-02__input.pcap": (
        10, 11, ("all 60 TCP frames are mirror copies inside ERSPAN type II over GRE; the packets "
                 "of 41.108.52.138:54530 <-> 196.25.212.207:80 come through two ERSPAN sessions "
                 "with different outer endpoints (session 7 via 230.47.210.140, session 2 via "
                 "60.95.207.235): two tunnel contexts, two connections for us; tshark keys by the "
                 "inner 4-tuple only")),
    "zeek/tunnels__Teredo.pcap": (
        4, 5, ("the fifth connection is IPv6 inside Teredo between a client and a relay on UDP "
               "ports 3797 and 32900: tshark opens Teredo only on port 3544 unless its heuristic "
               "is on (`-o teredo.heuristic_teredo:TRUE` lists 5); we open Teredo on any port "
               "when the payload is an IPv6 packet of exactly its length with a Teredo address, "
               "and Zeek logs that connection too")),
}
# Files where the counts agree although tshark sees more TCP than we do (no entry needed, but
# worth knowing when reading tshark output next to ours):
# * stopddos/amp.TCP.reflection.SYNACK.pcap: 139 ICMP errors quote TCP headers. tshark's
#   conv,tcp leaves them out (7674 = ours), but its tcp.stream numbers count them (0..7812),
#   so from the first such ICMP error (frame 128) our ids are lower than tcp.stream.
# * pcapplusplus/tcp-reassembly.pcap: frame 66 is an sFlow datagram with 7 sampled TCP
#   headers; tshark numbers 6 extra tcp.streams for them (not in conv,tcp); we read it as UDP.
# * dpkt/nb6-http.pcap (IPv6 over PPP over L2TP over PPPoE) and
#   zeek/tunnels__gtp__gtp2_different_udp_port.pcap (GTP-U, 42 of 78 packets in two outer IP
#   fragments) agree since tunnels and fragments are read.


def _manifest() -> List[str]:
    files = [str(p.relative_to(CORPUS)) for p in corpus_files()]
    return files or ["<no corpus>"]   # one test that the `corpus` fixture skips


FILES = _manifest()


@lru_cache(maxsize=None)
def _report(local_path: str) -> dict:
    """The JSON document of one capture, analysed once per test session."""
    doc = analyze([str(CORPUS / local_path)]).to_dict()
    json.loads(json.dumps(doc, allow_nan=False))       # serialises, and round-trips
    return doc


def _conv_count(corpus: Path, local_path: str) -> int:
    text = (corpus / "_derived" / "tshark-conv-tcp" / (local_path + ".txt")).read_text()
    return sum(1 for line in text.splitlines() if "<->" in line)


# --- 1 and 2: every file ----------------------------------------------------------------------

def test_manifest_lists_the_whole_corpus(corpus):
    assert len(FILES) == 158
    assert all((corpus / f).is_file() for f in FILES)
    assert set(CONV_DIFFERENCES) <= set(FILES)


@pytest.mark.parametrize("local_path", FILES)
def test_file_is_analysed_and_serialises(corpus, local_path):
    doc = _report(local_path)
    assert doc["capture"]["errors"] == []
    ids = [c["id"] for c in doc["connections"]]
    # Numbered 0, 1, 2... like tcp.stream; the only gaps are numbers Wireshark gives to TCP
    # headers quoted in ICMP errors on 4-tuples with no connection of their own.
    assert ids == sorted(set(ids))
    gaps = (ids[-1] + 1 - len(ids)) if ids else 0
    assert gaps <= doc["capture"]["skipped"].get("icmp_quoted_tcp", 0)
    assert doc["summary"]["connections"] == len(ids)


@pytest.mark.parametrize("local_path", FILES)
def test_connection_count_matches_tshark_conversations(corpus, local_path):
    ours = len(_report(local_path)["connections"])
    tshark = _conv_count(corpus, local_path)
    if local_path in CONV_DIFFERENCES:
        want_tshark, want_ours, why = CONV_DIFFERENCES[local_path]
        assert (tshark, ours) == (want_tshark, want_ours), why
    else:
        assert ours == tshark


# --- 3: verdicts on varied captures -------------------------------------------------------------

def _conn(local_path: str, i: int) -> dict:
    return _report(local_path)["connections"][i]


def _codes(c: dict) -> set:
    return {f["code"] for f in c["findings"]}


def _shape(c: dict) -> tuple:
    return (c["handshake"], c["close"], c["closed_first"], c["reset_by"],
            c["final_state"]["orig"], c["final_state"]["resp"])


# (file, connection id, (handshake, close, closed_first, reset_by, final orig, final resp)),
# each checked against the packets (tshark -o tcp.relative_sequence_numbers:FALSE) and, where
# there is one, the upstream truth in GROUND_TRUTH.tsv (quoted).
VERDICTS = [
    # textbook FIN, ACK, FIN, ACK after a handshake that is not in the capture
    ("ppa-chrissanders/tcp_teardown.pcapng", 0,
     ("not_seen", "four_way", "resp", None, "CLOSED", "TIME_WAIT")),
    ("ppa-chrissanders/tcp_refuseconnection.pcapng", 0,
     ("refused", None, None, "resp", "CLOSED", "CLOSED")),
    # Zeek REJ Sr (its 3 REJ per tuple are SYN retransmissions: one tcp.stream, one for us)
    ("zeek/pop3__pop3.pcap", 0, ("refused", None, None, "resp", "CLOSED", "CLOSED")),
    # Zeek SF ShAdDafF: the server's FIN first, acknowledged, then the client's
    ("zeek/pop3__pop3.pcap", 2, ("complete", "four_way", "resp", None, "CLOSED", "CLOSED")),
    # Zeek SF ShADadFf: FIN, FIN+ACK, ACK; the client ends in TIME_WAIT
    ("zeek/http__get.pcap", 0,
     ("complete", "three_segment", "orig", None, "TIME_WAIT", "CLOSED")),
    # Zeek SF ShAdDaFf, ports 57191: the FINs cross (the REPORT's simultaneous-close example)
    ("zeek/ssh__ssh.pcap", 3, ("complete", "simultaneous", "both", None, "CLOSED", "CLOSED")),
    # Zeek RSTR ShADadFr
    ("zeek/ssh__ssh.pcap", 4, ("complete", "reset", "orig", "resp", "CLOSED", "CLOSED")),
    # Zeek SF DaFfA: no handshake in the capture
    ("zeek/ssh__ssh.pcap", 19,
     ("not_seen", "three_segment", "orig", None, "CLOSED", "CLOSED")),
    # Zeek RSTO ShADdR
    ("zeek/ldap__simpleauth.pcap", 0, ("complete", "reset", "orig", "orig", "CLOSED", "CLOSED")),
    # Zeek S1 ShADad: established, never closed
    ("zeek/wikipedia.pcap", 2,
     ("complete", "open", None, None, "ESTABLISHED", "ESTABLISHED")),
    # Zeek OTH DdA
    ("zeek/wikipedia.pcap", 0,
     ("not_seen", "open", None, None, "ESTABLISHED", "ESTABLISHED")),
    # Zeek S0 S (each SYN is seen twice, plain and FabricPath-encapsulated)
    ("zeek/cisco-fabric-path.pcap", 0,
     ("unanswered", None, None, None, "SYN_SENT", "LISTEN")),
    # Zeek RSTOS0 SR
    ("zeek/tcp__syn-then-rst.pcap", 0, ("reset", None, None, "orig", "CLOSED", "LISTEN")),
    # crafted split handshake: SYNs from both sides, then a RST
    ("suricata-verify/tcp-split-handshake-01-4whs__split-handshake-4whs.pcap", 0,
     ("simultaneous_open", "reset", "orig", "orig", "CLOSED", "CLOSED")),
    # Suricata says last_ack, but the server's FIN (frame 19, ack 917) does not acknowledge
    # the client's FIN (frame 18, seq 917): they crossed. The server then acknowledges it
    # (frame 20, ack 918) and retransmits its FIN, never acknowledged, until the end: an
    # unresponsive peer, and a close that did not complete (issue 11).
    ("suricata-verify/bug-2646-01__input.pcap", 0,
     ("complete", "unacknowledged", "both", None, "FIN_WAIT_2", "CLOSING")),
]


@pytest.mark.parametrize("local_path, i, shape", VERDICTS,
                         ids=["%s#%d" % (v[0].split("/")[-1], v[1]) for v in VERDICTS])
def test_verdicts(corpus, local_path, i, shape):
    assert _shape(_conn(local_path, i)) == shape


def test_summaries_of_many_connection_files(corpus):
    echo = _report("zeek/echo-connections.pcap.gz")["summary"]
    assert echo["handshakes"] == {"complete": 500}
    assert echo["closes"] == {"three_segment": 500}
    scan = _report("ppa-chrissanders/synscan.pcapng")["summary"]  # nmap -sS, 1994 ports
    assert scan["handshakes"] == {"half_open": 3, "refused": 5, "unanswered": 1986}
    flood = _report("stopddos/pkt.TCP.synflood.spoofed.pcap")["summary"]
    assert flood["handshakes"] == {"unanswered": 37669}


# --- verdicts that once were wrong, and the one known gap --------------------------------------------------------------------

def test_client_side_capture_is_not_unanswered(corpus):
    # Zeek SH SADF; only the client's direction was captured.
    c = _conn("zeek/ssh__ssh.client-side-half-duplex.pcap", 2)
    assert c["handshake"] == "complete"
    assert "SYN_UNANSWERED" not in _codes(c)
    assert c["final_state"]["resp"] != "LISTEN"


def test_syn_synack_rst_probe_is_a_handshake_reset(corpus):
    # Zeek RSTO ShR: SYN (62), SYN-ACK (63), RST from the originator (64); then data (65) and
    # the responder's RST (66) on the dead 4-tuple.
    c = _conn("zeek/modbus__modbus-and-non-modbus-p502.pcap", 4)
    assert (c["handshake"], c["close"]) == ("reset", None)


def test_rst_answering_a_challenge_ack_is_not_out_of_window(corpus):
    # SYN (10); the server answers with an ACK for a stale connection (12, ack 3058576675);
    # the client's RST (14) has seq 3058576675; the SYN is retransmitted (20) and succeeds.
    c = _conn("suricata-verify/tls__tls-subjectaltname__input.pcap", 0)
    assert "RST_OUT_OF_WINDOW" not in _codes(c)


def test_syn_with_options_cut_by_snaplen_is_read(corpus):
    c = _conn("zeek/tcp__truncated-header.pcap", 0)
    assert (c["first_frame"], c["packets"]["orig"] + c["packets"]["resp"]) == (1, 24)
    assert "SYN_NOT_CAPTURED" not in _codes(c)


def test_rejected_rst_does_not_reset_the_handshake(corpus):
    # SYN (4712), then a RST from the same side with seq 0 (out of the window: ISN 1997012992).
    c = _conn("stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng", 4672)
    assert c["final_state"] == {"orig": "SYN_SENT", "resp": "LISTEN"}
    assert c["handshake"] == "unanswered"


def test_ack_of_a_later_synack_isn_is_not_an_error(corpus):
    c = _conn("suricata-verify/tcp-fastopen-10-syn-data-ignore__input.pcap", 0)
    assert "HANDSHAKE_ACK_BAD" not in _codes(c)


def test_ids_equal_tcp_stream_after_icmp_quoted_tcp(corpus):
    conns = _report("stopddos/amp.TCP.reflection.SYNACK.pcap")["connections"]
    by_first = {c["first_frame"]: c["id"] for c in conns}
    assert by_first[129] == 124         # tshark: frame 129 opens tcp.stream 124
    assert by_first[8000] == 7812       # ... and frame 8000 the last one, 7812
