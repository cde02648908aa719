"""Our sequence analysis against tshark's `tcp.analysis` flags on the shared corpus (issue 3).

For every capture, three counts are compared with MANIFEST.tsv, where they were taken with
tshark 4.0 (`tcp.analysis.retransmission`, `.keep_alive`, `.reused_ports`; tshark is not
needed here):

* `retransmissions`: tshark flags every resend (SYN, SYN-ACK, FIN, data; its fast and spurious
  retransmissions carry the flag too). Ours: the SYN_RETRANSMITTED and SYNACK_RETRANSMITTED
  findings plus `analysis.{orig,resp}.retransmissions` (data and FIN).
* `keepalives`: `analysis.{orig,resp}.keepalives`.
* `reused_ports`: the PORT_REUSE and TIME_WAIT_REUSE findings (a new connection on a used
  4-tuple).

Each count equals tshark's, or the file is in `DIFFERENCES` with both counts pinned and the
reason, so that a change either way fails. `BUGS` holds the counts an analyzer bug makes wrong:
the current value (pinned) and, as a strict xfail, the value the packets call for. `CONN_BUGS`
does the same for a per-connection counter MANIFEST.tsv does not hold. The reasoning, frame by
frame, is in docs/conformance.md; `tools/compare_tcp_analysis.py` redoes the comparison with
tshark, per stream and for every tcp.analysis category.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from typing import Dict, Tuple

import pytest

from conftest import CORPUS
from test_corpus import FILES, _report

COLUMNS = ("retransmissions", "keepalives", "reused_ports")

_OOO = ("tshark 4.0 calls a resent segment out of order (not a retransmission) when it comes "
        "within the initial RTT (3 ms without one) of the sender's newest segment; we call a "
        "segment out of order only when it fills a hole of bytes never seen, within 3 ms of the "
        "hole appearing")
_KEEPALIVE = ("tshark calls any segment of 0 or 1 byte at seq next-1 a keep-alive; a keep-alive "
              "probe goes out on a quiet connection with everything acknowledged (RFC 1122 "
              "4.2.3.6), so we also require the peer's last ACK to cover the sender's last byte")
_DUPS = ("the same frame captured twice (same IP ID and bytes, within 1 ms): a capture "
         "duplicate (CAPTURE_DUPLICATE, issue 11), which tshark calls a retransmission")
_IGNORED = ("a FIN from a client still in SYN-SENT, at its SYN's sequence number, which no "
            "receiver takes (SEGMENT_IGNORED, issue 11): tshark calls it a retransmission of "
            "the SYN's sequence space")
_SYNACK_BASE = ("tshark flags a SYN-ACK whose sequence number differs from the base it already "
                "had for its sender (taken from an earlier ACK, RST or SYN-ACK) as reused ports, "
                "without starting a new tcp.stream (Wireshark issue 19771); we count only new "
                "connections on a used 4-tuple, and there is none")

#: (file, column) -> (tshark, ours, why): deliberate differences, each with its reason.
DIFFERENCES: Dict[Tuple[str, str], Tuple[int, int, str]] = {
    ("suricata-verify/bug-5437-02__input.pcap", "retransmissions"): (
        22, 15, "an ERSPAN mirror that captured 7 frames twice (stream 6: frames 44, 46, 48, 50, "
        "52, 54, 56 repeat the frame before them with the same inner IPv4 ID and checksum, 11 to "
        "262 us later): capture duplicates, counted apart (CAPTURE_DUPLICATE), where tshark calls "
        "them retransmissions"),
    ("suricata-verify/bug-4376__syn_retransmit_with_ts.pcap", "retransmissions"): (
        18, 19, "frame 51 resends seq 1513478042, which frame 22 carried and the receiver kept "
        "acknowledging as missing: a retransmission of bytes already seen; " + _OOO + " "
        "(timestamps 1 us apart here)"),
    ("suricata-verify/tcp-rst-unacked-stream-09__TLPW1-tcp-110.37.219.134-10.12.14.101-tcp-990-"
     "49230.pcap", "retransmissions"): (
        0, 2, "frames 38 and 42 carry bytes of holes that opened 2.6 s and 1.9 s earlier, each "
        "sent after the receiver acknowledged up to the hole: retransmissions; " + _OOO
        + " (iRTT 358 ms)"),
    ("suricata-verify/tls__tls-subjectaltname__input.pcap", "retransmissions"): (
        62, 90, "+39: segments that fill holes more than 3 ms after the holes appeared (e.g. "
        "stream 14, frames 1539-1589: the SACK recovery that the fast retransmission of frame "
        "1508 began after ten duplicate ACKs); " + _OOO
        + " (iRTT about 18 ms); -2: the SYN-ACKs of frames 114 and 1996 carry a fresh ISN after "
        "the server's challenge ACK to the first SYN (frames 45, 1450); tshark compares the ISN "
        "with that ACK's sequence number and calls it a retransmission; and it goes on comparing the "
        "data after those SYN-ACKs with that ACK's numbers (7 in stream 3, frames 118-126, and 2 "
        "in stream 35), where we follow the ISN the client acknowledged (issue 11)"),
    ("zeek/cisco-fabric-path.pcap", "retransmissions"): (
        0, 10, "each of the 16 SYNs is captured twice, plain and FabricPath-encapsulated, with "
        "the same ISN; tshark's FabricPath dissector takes the frame's last 4 bytes as an FCS, "
        "cuts the inner IPv4 packet to 36 of its 40 bytes and leaves the short TCP header "
        "unanalysed. Ours: 6 pairs within 1 ms are " + _DUPS + "; the other 10 copies come "
        "later and are SYN retransmissions"),
    ("zeek/pppoe-over-qinq.pcap", "retransmissions"): (
        23, 25, "frames 57 and 58 resend the bytes of frames 50 and 51, 1.5 s later; " + _OOO),
    ("zeek/tcp__ctu-64702-888.pcap", "retransmissions"): (
        3, 0, "every packet is captured twice: " + _DUPS),
    ("stopddos/amp.TCP.reflection.SYNACK.pcap", "retransmissions"): (
        1, 0, "frames 6294 and 6296: " + _DUPS),
    ("stopddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng", "retransmissions"): (
        559, 558, "frames 383 and 384: " + _DUPS),
    ("suricata-verify/http-range-multiflows__input.pcap", "retransmissions"): (
        34, 29, "five FIN+ACKs 10 us after an identical one (e.g. frames 115, 116): " + _DUPS),
    ("zeek/http__m57-long-49583-80.pcap", "retransmissions"): (
        83, 0, "every packet is captured twice: " + _DUPS),
    ("zeek/http__vnd.ms-cab-compressed-multi-conn.pcap", "retransmissions"): (
        50, 1, "every packet is captured twice: " + _DUPS),
    ("zeek/nflog-http.pcap", "retransmissions"): (
        2, 0, "NFLOG logs packets at two hooks: " + _DUPS),
    ("zeek/tcp__ssh-dups.pcap", "retransmissions"): (
        166, 0, "every packet is captured twice: " + _DUPS),
    ("zeek/tcp__fin_retransmission.pcap", "retransmissions"): (
        2, 0, "frame 2 is " + _IGNORED + "; frame 4 repeats it with ACK, outside the window "
        "the SYN-ACK offered: the server does not take it (HANDSHAKE_ACK_BAD) and it is no "
        "part of the client's stream"),
    ("zeek/tcp__syn-then-stuff-then-rst.pcap", "retransmissions"): (
        1, 0, "frame 3 is " + _IGNORED),
    ("zeek/echo-connections.pcap.gz", "retransmissions"): (
        241, 263, "22 one-byte segments sent again 200 ms (the Linux minimum RTO) after the "
        "unacknowledged original (e.g. frame 29412 repeats 24258): tshark calls them keep-alives "
        "(seq next-1, length 1); " + _KEEPALIVE),
    ("zeek/echo-connections.pcap.gz", "keepalives"): (
        23, 0, "the 22 one-byte resends above, and frame 13502, a pure ACK with the seq of the "
        "1-byte segment captured 1 us before it (frame 13501); " + _KEEPALIVE),
    ("zeek/vlan-collisions.pcap", "keepalives"): (
        4, 0, "frames 26, 27, 36, 37 are copies, from other VLANs of the same 4-tuple, of pure "
        "ACKs sent before the client's FIN (frame 17); " + _KEEPALIVE),
    ("suricata-verify/dcerpc__zerologon__input.pcap", "keepalives"): (
        1, 0, "frame 316 is a pure ACK with the seq of the server's FIN, sent 40 us after that "
        "FIN (frame 314); " + _KEEPALIVE),
    ("suricata-verify/tls__tls-subjectaltname__input.pcap", "reused_ports"): (
        9, 0, "frames 21, 114, 141, 158, 257, 1860, 1865, 1996, 2627: the SYN-ACK that answers a "
        "retransmitted SYN after the server's challenge ACK and the client's RST; "
        + _SYNACK_BASE),
    ("suricata-verify/tcp-fastopen-10-syn-data-ignore__input.pcap", "reused_ports"): (
        4, 0, "frames 14, 15, 17, 22: the server alternates SYN-ACKs with ISNs 3212050950 and "
        "97572840 on one connection; " + _SYNACK_BASE),
    ("suricata-verify/bug-3286-02-linux-evasion__with_evasion_linux.pcap", "reused_ports"): (
        1, 0, "frame 5: the SYN-ACK after the server's RST and FIN with seq 0 (frames 2, 3); "
        + _SYNACK_BASE),
    ("zeek/tcp__rst-inject-rae.pcap", "reused_ports"): (
        1, 0, "frame 3: the SYN-ACK after an injected RST with seq 0 (frame 2); " + _SYNACK_BASE),
}

#: Connections whose lost-segment counter shows a jump forward on a bare ACK (tshark flags the
#: frame too): (file, stream, side, counter, value, why).
CONN_CHECKS = [
    ("suricata-verify/dcerpc__zerologon__input.pcap", 29, "orig", "lost_segments", 1,
     "frame 418, an ACK with seq 1379956203, 144 bytes past the client's last byte; frame 419 "
     "carries them 223 ms later"),
    ("suricata-verify/tls__tls-subjectaltname__input.pcap", 4, "resp", "lost_segments", 1,
     "frame 92, a D-SACK ACK with seq 2021812547, 4869 bytes ahead; frames 94-100 carry them"),
    ("suricata-verify/tls__tls-subjectaltname__input.pcap", 57, "resp", "lost_segments", 1,
     "frame 2759, a D-SACK ACK with seq 371646985, 6336 bytes ahead; frames 2760-2768 carry "
     "them"),
]


@lru_cache(maxsize=None)
def _manifest() -> Dict[str, Dict[str, int]]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return {r["local_path"]: {k: int(r[k] or 0) for k in COLUMNS}
                for r in csv.DictReader(fh, delimiter="\t")}


def _count(conn: dict, *codes: str) -> int:
    return sum(f["count"] for f in conn["findings"] if f["code"] in codes)


def _sides(conn: dict, counter: str) -> int:
    return sum(side.get(counter, 0) for side in conn["analysis"].values())


@lru_cache(maxsize=None)
def _ours(local_path: str) -> Dict[str, int]:
    """Our counts of one capture, in MANIFEST.tsv's terms."""
    conns = _report(local_path)["connections"]
    return {
        "retransmissions": sum(_count(c, "SYN_RETRANSMITTED", "SYNACK_RETRANSMITTED")
                               + _sides(c, "retransmissions") for c in conns),
        "keepalives": sum(_sides(c, "keepalives") for c in conns),
        "reused_ports": sum(_count(c, "PORT_REUSE", "TIME_WAIT_REUSE") for c in conns),
    }


def _conn(local_path: str, stream: int) -> dict:
    return next(c for c in _report(local_path)["connections"] if c["id"] == stream)


def test_pinned_files_are_in_the_corpus(corpus):
    files = set(FILES)
    assert {f for f, _ in DIFFERENCES} <= files
    assert {b[0] for b in CONN_CHECKS} <= files


@pytest.mark.parametrize("local_path", FILES)
@pytest.mark.parametrize("column", COLUMNS)
def test_count_is_tsharks_or_pinned(corpus, local_path, column):
    tshark = _manifest()[local_path][column]
    ours = _ours(local_path)[column]
    pinned = DIFFERENCES.get((local_path, column))
    if pinned is not None:
        want_tshark, want_ours, why = pinned
        assert (tshark, ours) == (want_tshark, want_ours), why
    else:
        assert ours == tshark


@pytest.mark.parametrize("local_path, stream, side, counter, value, why", CONN_CHECKS,
                         ids=["%s#%d" % (b[0].split("/")[-1], b[1]) for b in CONN_CHECKS])
def test_forward_jump_on_a_bare_ack_is_a_lost_segment(corpus, local_path, stream, side,
                                                      counter, value, why):
    assert _conn(local_path, stream)["analysis"][side][counter] == value, why
