"""Sequence analysis of one segment, the way Wireshark's `tcp.analysis` does it.

Called by `Connection._replay` (conn.py) before the sender's next sequence number advances;
the fast path in `Connection.on_segment` skips only segments that cannot change any of it. The
order of the checks is Wireshark's, so that a keep-alive (length 0 or 1, seq = next - 1, no
SYN/FIN/RST) and the ACK that answers it are recognised first and never counted as
retransmissions. Then:

* a segment starting beyond the sender's next sequence number: the segment(s) before it were
  not captured (capture loss, not a protocol fault); the hole is remembered;
* a segment (data, SYN or FIN) starting before the next sequence number: out of order if it
  fills a hole within `OOO_NS` of the hole appearing, otherwise a retransmission;
* an ACK beyond anything the peer was seen to send: it acknowledges segments the capture
  missed;
* a zero receive window (not on SYN, FIN or RST).

Counters live on each `Endpoint` (`Analysis`, endpoint.py); the first occurrence of each kind is also a
finding, aggregated with its count.
"""

from __future__ import annotations

from typing import Final

from analyzer.decode.segment import ACK, FIN, RST, SYN, Segment, seq_diff, seq_le, seq_lt
from analyzer.tcp.endpoint import SIDES, Analysis, ConnectionCore, Endpoint
from analyzer.tcp.states import CLOSE_WAIT, ESTABLISHED

#: A segment filling a hole this soon after the hole appeared is out of order, not resent
#: (Wireshark's default out-of-order threshold is 3 ms when no RTT is known).
OOO_NS: Final = 3_000_000
#: Holes remembered per direction; older ones are forgotten (bounded memory).
MAX_HOLES: Final = 8
#: A receive window closed at least this long is a stall (ZERO_WINDOW_STALL, a warning); a
#: shorter zero window is flow control doing its job (ZERO_WINDOW, info).
ZERO_WINDOW_STALL_NS: Final = 500_000_000


def rel(e: Endpoint, n: int) -> int:
    """`n` as Wireshark's relative number in `e`'s sequence space (`tcp.seq`/`tcp.ack` with
    relative numbers, the ladder's): absolute while `e` has no base yet. Messages use these."""
    return (n - e.base_seq) & 0xFFFFFFFF if e.base_seq >= 0 else n


def acks_unseen_fin(y: Endpoint, seg: Segment) -> bool:
    """The ACK covers exactly one byte past everything the peer `y` sent, and `y` could have
    sent a FIN: the ACK_OF_UNSEEN_FIN evidence, on which the replay infers that FIN (one rule
    for the finding and the inference, whatever else the segment carries)."""
    return (y.fin_seq < 0 and y.seq_exact and y.next_seq >= 0 and not seg.flags & SYN
            and seg.ack == (y.next_seq + 1) & 0xFFFFFFFF
            and y.state in (ESTABLISHED, CLOSE_WAIT))


def analyze_segment(c: ConnectionCore, s: int, x: Endpoint, y: Endpoint, seg: Segment) -> None:
    """Classify one segment from side `s` (sender `x`, receiver `y`); updates counters and
    findings. Must run before `x.next_seq` includes this segment. A finding's message is built
    only the first time its code shows on the connection (`c.repeat` counts the rest)."""
    flags = seg.flags
    if flags & RST:
        return
    a = x.analysis          # QUIET (shared, read only) until the first count: own_analysis()
    nxt = x.next_seq
    paylen = seg.paylen
    if seg.win == 0 and not flags & (SYN | FIN):
        a = x.own_analysis()
        a.zero_windows += 1
        if not a.zw_since:
            a.zw_since = seg.ts
        c.repeat("ZERO_WINDOW") or c.note(
            "ZERO_WINDOW", seg, s, "%s advertised a zero receive window" % SIDES[s])
    elif a.zw_since and not flags & SYN:
        closed_for = seg.ts - a.zw_since
        a.zw_since = 0
        if closed_for >= ZERO_WINDOW_STALL_NS:
            c.repeat("ZERO_WINDOW_STALL") or c.note(
                "ZERO_WINDOW_STALL", seg, s, "%s's receive window stayed zero for %.1f s: its "
                "application stopped reading" % (SIDES[s], closed_for / 1e9))
    if nxt >= 0 and not flags & (SYN | FIN) and paylen <= 1 and \
            seg.seq == (nxt - 1) & 0xFFFFFFFF and (y.last_ack < 0 or y.last_ack == nxt):
        # RFC 1122 §4.2.3.6: a probe goes out on a quiet connection, everything acknowledged;
        # a 1-byte resend of unacknowledged data is a retransmission.
        a = x.own_analysis()
        a.keepalives += 1
        a.keepalive_open = True
        c.repeat("KEEPALIVE") or c.note(
            "KEEPALIVE", seg, s, "%s sent a %s (seq next-1, %d byte%s) after %.1f s" % (
                SIDES[s], "zero-window probe" if y.analysis.zw_since else "keep-alive probe",
                paylen, "" if paylen == 1 else "s", max(seg.ts - c.prev_ts, 0) / 1e9))
        return
    if y.analysis.keepalive_open and flags & ACK and not paylen and not flags & (SYN | FIN):
        y.analysis.keepalive_open = False
        if y.next_seq >= 0 and seq_le(seg.ack, y.next_seq):
            a = x.own_analysis()
            a.keepalive_acks += 1
            return
    if flags & ACK and not flags & SYN and y.next_seq >= 0 and \
            0 < ((seg.ack - y.next_seq) & 0xFFFFFFFF) < 0x80000000:     # seq_lt(next, ack)
        if not y.seq_exact and seg.ack == (y.next_seq + 1) & 0xFFFFFFFF:
            # The peer was seen only in bare segments, whose seq may be SND.NXT - 1 (a
            # keep-alive probe): this ACK tells its real next sequence number.
            y.next_seq = seg.ack
            return
        a = x.own_analysis()
        a.acked_unseen += 1
        if acks_unseen_fin(y, seg):
            c.repeat("ACK_OF_UNSEEN_FIN") or c.note(
                "ACK_OF_UNSEEN_FIN", seg, s, "%s acknowledged %d, one past everything seen from "
                "the peer: a FIN that is not in the capture" % (SIDES[s], rel(y, seg.ack)))
        else:
            c.repeat("ACKED_UNSEEN_SEGMENT") or c.note(
                "ACKED_UNSEEN_SEGMENT", seg, s, "%s acknowledged %d bytes the capture never "
                "showed the peer sending (capture loss)"
                % (SIDES[s], seq_diff(seg.ack, y.next_seq)))
    if nxt < 0 or flags & SYN:
        return                          # SYN and SYN-ACK retransmissions are judged in conn.py
    seq = seg.seq
    if seq == nxt:
        return                          # the normal case: new data in order
    if seq_lt(nxt, seq):
        if not x.seq_exact and seq == (nxt + 1) & 0xFFFFFFFF:
            return                      # only bare segments seen so far: one was a probe
        # A jump forward, even on a bare ACK: the bytes before it were not captured.
        a = x.own_analysis()
        a.lost_segments += 1
        if a.holes is None:
            a.holes = []
        elif len(a.holes) >= MAX_HOLES:
            del a.holes[0]
        a.holes.append((nxt, seq, seg.ts))
        c.repeat("SEGMENT_NOT_CAPTURED") or c.note(
            "SEGMENT_NOT_CAPTURED", seg, s, "%s jumped from seq %d to %d: %d bytes before this "
            "segment are not in the capture"
            % (SIDES[s], rel(x, nxt), rel(x, seq), seq_diff(seq, nxt)))
        return
    if not (paylen or flags & FIN):
        return                          # a bare ACK behind: nothing was sent again
    if flags & FIN and paylen == 0 and x.fin_seq >= 0 and seq == x.fin_seq:
        a = x.own_analysis()
        a.retransmissions += 1
        _count_resend(a, y)
        c.repeat("FIN_RETRANSMITTED") or c.note(
            "FIN_RETRANSMITTED", seg, s, "%s sent its FIN again" % SIDES[s])
        return
    holes = a.holes or []
    for i, (start, end, ts) in enumerate(holes):
        if seq_le(start, seq) and seq_lt(seq, end):
            if seq_le(end, (seq + paylen) & 0xFFFFFFFF):
                del holes[i]
            if seg.ts < ts and seq == start and seq_le(end, (seq + paylen) & 0xFFFFFFFF):
                # Filled, whole, by a frame stamped before the one that opened it: the frames
                # are out of time order, and the bytes were in the capture after all.
                a.lost_segments -= 1
                f = c.findings.get("SEGMENT_NOT_CAPTURED")
                if f is not None:
                    f.count -= 1
                    if not f.count:
                        del c.findings["SEGMENT_NOT_CAPTURED"]
            if seg.ts - ts <= OOO_NS:
                a.out_of_order += 1
                c.repeat("OUT_OF_ORDER") or c.note(
                    "OUT_OF_ORDER", seg, s, "%s segment at seq %d arrived after later data"
                    % (SIDES[s], rel(x, seq)))
                return
            break
    a = x.own_analysis()
    a.retransmissions += 1
    _count_resend(a, y)
    c.repeat("RETRANSMISSION") or c.note(
        "RETRANSMISSION", seg, s, "%s sent %d bytes at seq %d again (next new byte is %d)"
        % (SIDES[s], paylen, rel(x, seq), rel(x, nxt)))


def _count_resend(a: Analysis, y: Endpoint) -> None:
    """One more resend in the current episode (it ends when the peer's ACK moves)."""
    if a.resent and y.last_ack == a.resend_ack:
        a.resent += 1
    else:
        a.resent, a.resend_ack = 1, y.last_ack
