"""Segments that later packets prove their receiver ignored (RFC 9293 §3.10.7).

A capture point sees a segment go by; whether the receiver processed it is evidence that comes
later. The replay takes a SYN or FIN when the receiver's ACK covers it (conn.py), and the same
rule of evidence holds for the two segments that cannot be acknowledged:

* a RST the replay accepted is taken back when its receiver then acknowledges sequence space
  the RST's sender sent *after* the RST (a SYN-ACK, or data past the RST's sequence number):
  the receiver was still synchronized, so the RST never reset it (injected by a third party,
  or lost on its way after the capture point). Both sides return to the states they had
  before it, and SEGMENT_IGNORED names the RST;
* a FIN from an endpoint that never synchronized (CLOSED, LISTEN, SYN-SENT without an ACK
  of a SYN-ACK the capture may have missed) is dropped by any receiver (§3.10.7.2, §3.10.7.3: no SYN, no RST): it ends nothing, and its sequence
  number, which belongs to no ISN, is never compared with the sender's own.
"""

from __future__ import annotations

from typing import Final

from analyzer.decode.segment import ACK, RST, SYN, Segment, describe, seq_le, seq_lt
from analyzer.tcp.endpoint import SIDES, ConnectionCore
from analyzer.tcp.seqanalysis import rel
from analyzer.tcp.states import CLOSED, LISTEN, RECV_SYN, SEND_SYN_ACK, STATE_NAME, SYN_SENT

#: States from which no endpoint sends a FIN (it has no synchronized connection).
UNSYNCED_SENDERS: Final = frozenset({CLOSED, LISTEN, SYN_SENT})
#: Findings that only described the consequences of a RST taken back.
_AFTER_RST: Final = ("PACKETS_AFTER_RST", "DATA_AFTER_RST", "SEGMENT_IN_WRONG_STATE")


def proves_rst_ignored(c: ConnectionCore, s: int, seg: Segment) -> bool:
    """Whether this segment from the RST's receiver acknowledges what the RST's sender sent
    after the RST (only a receiver that never processed the RST can have)."""
    assert c.rst is not None and c.rst_undo is not None
    if s == c.rst[0] or seg.flags & (SYN | RST) or not seg.flags & ACK:
        return False
    r = c.endpoint(c.rst[0])
    at_rst = c.rst_undo[5]
    if r.next_seq < 0 or not seq_le(seg.ack, r.next_seq):
        return False
    if at_rst < 0:                      # the sender had no numbers yet: its SYN-ACK came after
        return r.isn >= 0 and seq_lt(r.isn, seg.ack)
    return seq_lt(at_rst, seg.ack)


def take_back_rst(c: ConnectionCore, seg: Segment) -> None:
    """The RST was ignored: both sides back where they were, what it caused unsaid."""
    assert c.rst is not None and c.rst_undo is not None
    t, _, frame = c.rst
    x, y = c.endpoint(t), c.endpoint(1 - t)
    xs, xsince, ys, ysince, ypending, _ = c.rst_undo
    c.rst = None
    c.rst_undo = None
    c.rst_discards = False
    x.state, x.since, y.state, y.since = xs, xsince, ys, ysince
    y.pending = ypending + tuple(p for p in y.pending if p not in ypending)
    for code in _AFTER_RST:
        f = c.findings.get(code)
        if f is not None and f.frame > frame:
            del c.findings[code]
    if x.state == LISTEN and x.isn >= 0 and x.synack_count:
        # It answered the SYN after its "RST": the SYN-ACK's moves, missed while CLOSED.
        x.take_pending(RECV_SYN)
        c.move(t, RECV_SYN, seg)
        c.move(t, SEND_SYN_ACK, seg)
    c.note("SEGMENT_IGNORED", seg, t, "%s's RST (frame %d) reset nothing: %s then acknowledged "
           "%s %s sent after it (an injected RST, or one lost on its way)" % (
               SIDES[t], frame, SIDES[1 - t],
               "the SYN-ACK" if xs in (LISTEN, CLOSED) else "data", SIDES[t]))


def fin_ignored(c: ConnectionCore, s: int, seg: Segment) -> bool:
    """A FIN (without SYN) from an endpoint that has not synchronized: noted, and True (the
    caller then leaves the segment out of the replay)."""
    x = c.endpoint(s)
    if x.state not in UNSYNCED_SENDERS or c.est_sides & (1 << s) or c.midstream \
            or c.self_connect or (x.state == SYN_SENT and seg.flags & ACK):
        # CLOSED after a close is FIN_ACK_LOST's case; a SYN-SENT sender whose ACK answers a
        # SYN-ACK the capture lacks is synchronized (control.infer_synack).
        return False
    c.repeat("SEGMENT_IGNORED") or c.note(
        "SEGMENT_IGNORED", seg, s, "%s sent %s at seq %d while in %s: no endpoint sends FIN "
        "before it has synchronized, and the receiver drops it (injected, or stray)"
        % (SIDES[s], describe(seg), rel(x, seg.seq), STATE_NAME[x.state]))
    return True
