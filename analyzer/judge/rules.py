"""The rules the verdicts follow, each with the RFC 9293 section it comes from.

Data for `docs/verdicts.md` (drawn by `python -m analyzer.docgen`): one line per rule, stating
what the replay and the verdicts do, so that a reader can check a verdict against the packets.
The code that applies each rule names it in its docstring.
"""

from __future__ import annotations

from typing import Final, Tuple

#: (rule, RFC section, what it means for a verdict)
RULES: Final[Tuple[Tuple[str, str, str], ...]] = (
    ("The third segment of the handshake must be acceptable", "§3.10.7.4",
     "The ACK that completes a handshake must acknowledge the responder's ISN+1 (or up to "
     "the end of data its SYN-ACK carried: ISS < SEG.ACK =< SND.NXT; an ack of another ISN "
     "the responder offered counts, and its numbers follow that ISN) and its seq must lie in "
     "the window the SYN-ACK offered (RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND). Otherwise the "
     "responder answers RST (bad ack; RST_REPLY) or an ACK (bad seq) and stays in "
     "SYN_RECEIVED (Linux's tcp_check_req does the same): HANDSHAKE_ACK_BAD, and the "
     "handshake completes only on an acceptable ACK. One rule on every path."),
    ("A received SYN, SYN-ACK or FIN takes effect when acknowledged", "§3.10.7.4",
     "The receiver's own ACK covering it is the evidence that it arrived; until then it is "
     "pending (this yields simultaneous open and close without special cases)."),
    ("A RST its receiver then ignores reset nothing", "§3.10.7.3, §3.10.7.4",
     "A RST is taken when seen (in SYN-SENT only if it acknowledges the SYN; otherwise in the "
     "window, at RCV.NXT or held for RFC 5961's challenge ACK), and taken back when its "
     "receiver then acknowledges what the RST's sender sent after it (a SYN-ACK, or data past "
     "the RST): SEGMENT_IGNORED, and both sides keep the states they had."),
    ("A FIN from an endpoint that never synchronized is dropped", "§3.10.7.2, §3.10.7.3",
     "No endpoint in CLOSED, LISTEN or SYN-SENT sends FIN, and a receiver in those states "
     "drops a segment without SYN or RST: it closes nothing (SEGMENT_IGNORED), and its "
     "sequence number, from no ISN, is never compared with the sender's own."),
    ("A reply from a CLOSED port is not a connection", "§3.10.7.1",
     "A port with no connection answers a segment with <SEQ=SEG.ACK><CTL=RST>, or without ACK "
     "with <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. Probes (FIN, NULL, Xmas, a stray ACK) so "
     "answered, or a RST alone on its 4-tuple, get the handshake `stray` "
     "(CLOSED_PORT_PROBE, STRAY_RST); a source probing 20 or more ports or hosts is one "
     "PORT_SCAN finding with counts."),
    ("Sequence numbers follow the ISN in use", "§3.4",
     "A SYN-ACK offering a new ISN restarts its sender's numbers (and Wireshark's relative "
     "base), and an ACK of an earlier offered ISN+1 brings them back to that one: segments "
     "after it are judged from the ISN the peer acknowledged."),
    ("Data on a SYN-ACK moves what acknowledges it", "§3.4, §3.10.7.4",
     "A SYN-ACK carrying data (TCP Fast Open and friends) is acknowledged at ISN+1+length: "
     "that is acceptable, not a bad ACK."),
    ("Order is frame order, time is the timestamps", "-",
     "Events are taken in file order (Wireshark's frame numbers and stream numbers); a "
     "capture whose timestamps run backwards is warned about once with a count. A connection "
     "spans its earliest to its latest timestamp; who closed first is frame order; a SYN "
     "stamped before the SYN-ACK that preceded it in the file was captured; bytes of a hole "
     "filled by a frame stamped before the one that opened it were captured."),
    ("A FIN resent and never acknowledged did not close", "§3.10.4, §3.10.7.4",
     "A side that sends its FIN again 3 or more times with no ACK of it until the end of the "
     "capture has an unresponsive peer (PEER_UNRESPONSIVE); when both sides had sent FIN the "
     "close is `unacknowledged`, not a completed close."),
    ("A frame captured twice is one segment", "-",
     "A frame identical to the connection's frame before it (same side, flags, IPv4 ID, TCP "
     "checksum, seq and ack) within 1 ms is a capture duplicate (CAPTURE_DUPLICATE): counted "
     "as a frame, never as a retransmission. Not compared: IPv6 frames (no ID), and bare ACKs "
     "with ID 0 (RFC 6864 lets a sender repeat it; identical duplicate ACKs are TCP's own)."),
    ("Lingering states are said as the capture shows them", "§3.6",
     "CLOSE_WAIT and FIN_WAIT_2 are reported as findings only when they lasted 1 s or more "
     "(after the peer's FIN and the side's own last data) by the end of the capture, and say "
     "how long: `in CLOSE_WAIT for 1.2 s when the capture ended`; FIN_WAIT_2 says whether the "
     "peer had sent its FIN. TIME_WAIT ends after 2*MSL of capture time."),
)
