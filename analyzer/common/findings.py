"""The catalogue of findings: stable codes, a severity and one sentence each.

A finding is data in the report, never an exception. Codes are UPPER_SNAKE and never change
meaning once released; users grep for them and CI gates on them. `docs/findings.md` is drawn
from `CATALOGUE` by `python -m analyzer.common.findings`, so the documentation cannot drift.

Findings aggregate per connection: the first occurrence keeps its time, frame and message, and
`count` says how many times the same code was seen.
"""

from __future__ import annotations

from typing import Dict, Final, NamedTuple, Optional

from analyzer.common.nstime import seconds

INFO: Final = "info"
WARNING: Final = "warning"
ERROR: Final = "error"
SEVERITY_RANK: Final = {INFO: 0, WARNING: 1, ERROR: 2}


class Code(NamedTuple):
    code: str
    severity: str
    sentence: str


_CODES: Final = [
    # Opening
    Code("SYN_RETRANSMITTED", INFO,
         "The originator sent its SYN again with the same initial sequence number (no answer yet)."),
    Code("SYN_UNANSWERED", WARNING,
         "A SYN was never answered: no SYN-ACK and no RST came back before the capture ended."),
    Code("CONNECTION_REFUSED", WARNING,
         "The responder answered the SYN with RST: nothing listens on that port, or a firewall refused it."),
    Code("HANDSHAKE_HALF_OPEN", WARNING,
         "The SYN-ACK was never acknowledged: the originator vanished, or its ACK was lost (SYN flood pattern)."),
    Code("HANDSHAKE_RESET", WARNING,
         "A RST ended the connection before the three-way handshake completed."),
    Code("SYNACK_BAD_ACK", ERROR,
         "The SYN-ACK does not acknowledge the SYN: its ack is not the originator's ISN+1."),
    Code("HANDSHAKE_ACK_BAD", ERROR,
         "The third segment of the handshake is not acceptable (RFC 9293 §3.10.7.4): its ack is not the responder's ISN+1 (past any data the SYN-ACK carried), or its seq is outside the window the SYN-ACK offered. The responder answers RST or ACK and stays in SYN_RECEIVED: the handshake does not complete on it."),
    Code("SYN_NOT_CAPTURED", INFO,
         "The SYN-ACK was seen but not the SYN it answers: the capture started late or missed it."),
    Code("SYNACK_NOT_CAPTURED", INFO,
         "The originator acknowledged a SYN-ACK that is not in the capture (capture loss)."),
    Code("HANDSHAKE_ACK_NOT_CAPTURED", INFO,
         "The responder sent data or FIN as if the handshake had completed, but the ACK that completed it is not in the capture."),
    Code("SELF_CONNECT", INFO,
         "A socket connected to itself (same address and port at both ends): a simultaneous open with itself, one endpoint in both roles."),
    Code("MIDSTREAM_START", INFO,
         "The capture began after the handshake: sides are guessed from ports, states assumed ESTABLISHED."),
    Code("SYN_WITH_DATA", INFO,
         "A SYN or SYN-ACK carries data: TCP Fast Open (RFC 7413) when the peer supports it, otherwise data the peer holds until the handshake ends."),
    Code("SYNACK_RETRANSMITTED", INFO,
         "The responder sent its SYN-ACK again (the ACK of it was lost or late)."),
    Code("DATA_BEFORE_HANDSHAKE", WARNING,
         "An endpoint sent data before the three-way handshake completed (outside TCP Fast Open)."),
    Code("SYN_FIN", ERROR,
         "A segment with both SYN and FIN: no conforming stack sends it (scans, evasion)."),
    Code("SYN_RST", ERROR,
         "A segment with both SYN and RST: no conforming stack sends it."),
    Code("FIN_RST", WARNING,
         "A segment with both FIN and RST."),
    Code("NO_FLAGS", WARNING,
         "A segment with none of SYN, FIN, RST, ACK, PSH, URG set (a NULL scan)."),
    # Sequence analysis (Wireshark's tcp.analysis)
    Code("RETRANSMISSION", INFO,
         "A segment carried sequence space its sender had already sent (keep-alives excluded)."),
    Code("OUT_OF_ORDER", INFO,
         "A segment filled a hole within 3 ms of the hole appearing: reordered, not resent."),
    Code("SEGMENT_NOT_CAPTURED", INFO,
         "A segment started beyond the sender's next sequence number: the bytes before it are not in the capture (capture loss)."),
    Code("ACKED_UNSEEN_SEGMENT", INFO,
         "An ACK covered data the capture never showed the peer sending (capture loss)."),
    Code("ACK_OF_UNSEEN_FIN", INFO,
         "An ACK covered exactly one byte past everything the peer sent: a FIN missing from the capture."),
    Code("KEEPALIVE", INFO,
         "A keep-alive probe: length 0 or 1 with seq = next - 1 after an idle period; not a retransmission."),
    Code("PEER_UNRESPONSIVE", WARNING,
         "Data or a FIN was sent again and again (3 times or more) but never acknowledged, and the peer stayed silent until the end: a dead or blackholed peer, a dropped route, an expired NAT entry, or a listener whose accept queue overflowed."),
    Code("ZERO_WINDOW", INFO,
         "An endpoint advertised a zero receive window (flow control; a stall if it lasts)."),
    Code("ZERO_WINDOW_STALL", WARNING,
         "An endpoint's receive window stayed zero for 0.5 s or more, or until the end: its application stopped reading."),
    # Closing and aborting
    Code("CONNECTION_RESET", WARNING,
         "An established connection was aborted with RST before both sides closed with FIN."),
    Code("FIN_RETRANSMITTED", INFO,
         "An endpoint sent its FIN again: the ACK of it was lost or late."),
    Code("FIN_SEQ_BEHIND", WARNING,
         "A FIN whose sequence number is below data its sender had already sent."),
    Code("DATA_AFTER_FIN", ERROR,
         "An endpoint sent new data beyond its own FIN."),
    Code("DATA_AFTER_RST", WARNING,
         "An endpoint sent data after its own RST."),
    Code("PACKETS_AFTER_RST", WARNING,
         "Segments followed the RST that ended the connection: in flight when it was sent, or the RST was ignored."),
    Code("RST_AFTER_FIN", INFO,
         "A RST followed the FIN exchange instead of (or after) the final ACK."),
    Code("RST_REPLY", INFO,
         "An endpoint answered an unacceptable ACK with RST (seq = that ACK's ack): in SYN-SENT (RFC 9293 §3.10.7.3) it resets a stale connection at the peer, in SYN-RECEIVED (§3.10.7.4) it refuses a bad handshake ACK; the sender's own attempt goes on."),
    Code("SEGMENT_IGNORED", WARNING,
         "A RST or FIN that later packets prove its receiver ignored (RFC 9293 §3.10.7): a FIN from an endpoint that had not synchronized, or a RST after which the receiver acknowledged what the RST's sender sent next. Injected by a third party (an evasion or censorship attempt) or lost on its way; it reset or closed nothing."),
    Code("SYNACK_ISN_CHANGED", WARNING,
         "The responder sent SYN-ACKs with different initial sequence numbers for the same SYN; the newest counts."),
    Code("RST_CHALLENGED", INFO,
         "A RST inside the window but not at the receiver's next sequence number was answered by a challenge ACK and ignored (RFC 5961 §3.2)."),
    Code("RST_OUT_OF_WINDOW", WARNING,
         "A RST whose sequence number is outside the receiver's window: a conforming receiver ignores it (possible injection)."),
    Code("SEGMENT_IN_WRONG_STATE", WARNING,
         "An endpoint sent a segment that its TCP state does not allow (for example data after its RST)."),
    Code("CLOSE_WAIT_LINGERING", WARNING,
         "An endpoint was still in CLOSE_WAIT when the capture ended, 1 s or more after the peer's FIN and its own last data: its application had not closed the socket by then (the message says for how long)."),
    Code("FIN_WAIT_2_LINGERING", INFO,
         "An endpoint's FIN was acknowledged, and 1 s or more later, when the capture ended, the peer had not sent its own FIN (or had, but this endpoint never acknowledged it: the message says which)."),
    Code("TIME_WAIT_AT_END", INFO,
         "An endpoint was still in TIME_WAIT when the capture ended."),
    Code("TIME_WAIT_REUSE", INFO,
         "A new SYN reused the 4-tuple while an endpoint of the previous connection was still in TIME_WAIT."),
    Code("PORT_REUSE", INFO,
         "A new SYN with a new initial sequence number reused the 4-tuple of an earlier connection."),
    # Segments outside any connection
    Code("CLOSED_PORT_PROBE", INFO,
         "A segment that opens nothing (a FIN, NULL or Xmas scan probe, or a stray ACK) answered by RST from a port with no connection (RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN> or <SEQ=SEG.ACK>): no connection existed."),
    Code("STRAY_RST", INFO,
         "A RST alone on its 4-tuple, with no connection in the capture for it to end (a late answer to a connection that ended or was never seen)."),
    # Memory bounds
    Code("MEMORY_BOUND", WARNING,
         "Finalized before it ended: more connections were in memory than --max-connections and none could be parked on disk (more than --max-parked parked already, or the temporary directory full or not writable). Its verdicts are as of that moment, and a later packet on its 4-tuple starts a new connection (so stream numbers from there on may differ from Wireshark's)."),
    Code("CAPTURE_DUPLICATE", INFO,
         "The same frame captured twice (same IP ID and bytes within 1 ms, e.g. a SPAN of two ports): a capture artefact, counted apart, not a retransmission."),
    # Capture-wide
    Code("PORT_SCAN", WARNING,
         "One source probed many ports or hosts (SYNs refused or unanswered, or probes answered by closed ports): the scan in one finding, with counts."),
    Code("HALF_OPEN_FLOOD", ERROR,
         "Many SYNs to one server were never answered or never completed within a short window (SYN flood or overloaded listener)."),
    Code("IP_FRAGMENTS_MALFORMED", WARNING,
         "A fragmented IP datagram was discarded, as Linux discards it: fragments overlap (other than exact duplicates), two last fragments disagree, a fragment lies past the end, the datagram exceeds 65535 bytes or 128 fragments (fragmentation attacks and evasion)."),
    Code("BAD_CHECKSUM", WARNING,
         "A TCP or IPv4 header checksum is wrong (checked only with --checksums: offload makes most captured checksums wrong)."),
]

#: code -> Code. The one place every finding is defined.
CATALOGUE: Final[Dict[str, Code]] = {c.code: c for c in _CODES}


class Finding:
    """One finding on one connection, aggregated by code."""

    __slots__ = ("code", "severity", "ts", "frame", "side", "message", "count")

    def __init__(self, code: str, ts: int, frame: int, side: Optional[str], message: str) -> None:
        self.code = code
        self.severity = CATALOGUE[code].severity
        self.ts = ts
        self.frame = frame
        self.side = side
        self.message = message
        self.count = 1

    def __reduce__(self) -> tuple:
        # Pickled as plain fields (spilled results carry their findings) and rebuilt by a
        # function: the compiled build's classes have no argument-free constructor.
        return (_finding, (self.code, self.ts, self.frame, self.side, self.message, self.count))

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "ts": seconds(self.ts),
                "frame": self.frame, "side": self.side, "message": self.message,
                "count": self.count}


def _finding(code: str, ts: int, frame: int, side: Optional[str], message: str,
             count: int) -> Finding:
    """A pickled Finding back (`Finding.__reduce__`)."""
    f = Finding(code, ts, frame, side, message)
    f.count = count
    return f


def catalogue_markdown() -> str:
    lines = ["# Findings", "",
             "Generated by `python -m analyzer.common.findings` from `analyzer/common/findings.py`; do not edit.",
             "", "| code | severity | meaning |", "|---|---|---|"]
    for c in _CODES:
        lines.append("| `%s` | %s | %s |" % (c.code, c.severity, c.sentence))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
