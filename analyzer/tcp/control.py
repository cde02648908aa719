"""What SYN, FIN and RST segments do to a connection, and the segments a capture missed.

The per-segment replay (`Connection.on_segment`, in conn.py) calls these for the control
segments; they judge the sequence arithmetic of the handshake and the teardown, decide whether
a RST would be accepted (RFC 9293 §3.10.7, RFC 5961), and infer what the capture lacks only
where later traffic proves it (an ACK of an uncaptured SYN-ACK or FIN, a responder sending
data before the handshake's ACK was seen). Each inference is an info finding.
"""

from __future__ import annotations

from typing import Final

from analyzer.decode.segment import (ACK, FIN, RST, SYN, UNSET, Segment, describe, seq_diff, seq_le,
                              seq_lt)
from analyzer.tcp.endpoint import SIDES, ConnectionCore, Endpoint, fin_entry
from analyzer.tcp.seqanalysis import rel
from analyzer.tcp.states import (CLOSED, ESTABLISHED, FIN_ACK_LOST, LISTEN, RECV_ACK_OF_SYN,
                                 RECV_FIN, RECV_RST, RECV_SYN, RECV_SYN_ACK, SEND_FIN, SEND_RST,
                                 SEND_SYN, SEND_SYN_ACK, STATE_NAME, SYNACK_ACK_LOST, SYN_RECEIVED,
                                 SYN_SENT)

#: ISNs remembered per side (a flood of SYN-ACKs with random ISNs must not grow memory).
MAX_ISNS: Final = 16


def infer_synack(c: ConnectionCore, s: int, seg: Segment) -> None:
    """The originator acknowledges a SYN-ACK the capture does not hold: the responder
    received the SYN and sent a SYN-ACK whose ISN is this ack - 1."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    c.note("SYNACK_NOT_CAPTURED", seg, s,
           "%s acknowledged a SYN-ACK that is not in the capture" % SIDES[s])
    c.move(s, RECV_SYN_ACK, seg)
    x.syn_acked = True
    if y.isn < 0 and y.state in (LISTEN, SYN_RECEIVED):
        for _ in range(y.take_pending(RECV_SYN)):
            c.move(1 - s, RECV_SYN, seg)
        y.isn = (seg.ack - 1) & 0xFFFFFFFF
        if y.base_seq < 0:
            y.base_seq = y.isn
        c.synack_seen = True


def infer_handshake_ack(c: ConnectionCore, s: int, seg: Segment) -> None:
    """The ACK that completed the handshake is missing from the capture: infer it, and
    that its sender had processed the SYN-ACK."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    c.note("HANDSHAKE_ACK_NOT_CAPTURED", seg, 1 - s, "%s sent %s in SYN_RECEIVED: the "
           "ACK of its SYN-ACK is not in the capture" % (SIDES[s], describe(seg)))
    for _ in range(y.take_pending(RECV_SYN_ACK)):
        y.syn_acked = True
        c.move(1 - s, RECV_SYN_ACK, seg)
    x.syn_acked = True
    c.move(s, RECV_ACK_OF_SYN, seg)


def on_syn(c: ConnectionCore, s: int, seg: Segment) -> None:
    """A SYN or SYN-ACK from side `s`: ISNs, retransmissions, the SYN-ACK arithmetic."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    if seg.paylen:
        c.tfo = c.tfo or not seg.flags & ACK
        c.note("SYN_WITH_DATA", seg, s, "%s's %s carries %d bytes of data (TCP Fast Open, "
               "RFC 7413, when the peer supports it)" % (
                      SIDES[s], "SYN-ACK" if seg.flags & ACK else "SYN", seg.paylen))
    if seg.flags & ACK:
        c.synack_seen = True
        x.synack_count += 1
        if x.offered(seg.seq):
            c.note("SYNACK_RETRANSMITTED", seg, s, "%s sent its SYN-ACK again" % SIDES[s])
        # A SYN-ACK answers the peer's SYN even when its ack number is wrong.
        for _ in range(x.take_pending(RECV_SYN)):
            c.move(s, RECV_SYN, seg)
        c.synack_win = seg.win
        end = (seg.seq + 1 + seg.paylen) & 0xFFFFFFFF
        if x.isn >= 0 and seg.seq != x.isn and not x.syn_acked:
            # A SYN-ACK offering another ISN (or an earlier one again): the newest offer
            # counts until the peer acknowledges one (handshake_ack_ok), and the numbers
            # that follow count from it.
            if not x.offered(seg.seq):
                c.note("SYNACK_ISN_CHANGED", seg, s, "SYN-ACK with ISN %d, earlier %d"
                       % (seg.seq, x.isn))
            rebase(x, seg.seq, end)
        elif x.isn < 0:
            rebase(x, seg.seq, end)
            # RFC 7413 §4.2: a Fast Open server may acknowledge the SYN's data as well.
            if y.isn >= 0 and not acks_isn(seg.ack, y.isn, c.syn_data):
                c.note("SYNACK_BAD_ACK", seg, s, "SYN-ACK acknowledges %d, expected %d (the "
                       "SYN's ISN %d + 1)" % (rel(y, seg.ack), rel(y, (y.isn + 1) & 0xFFFFFFFF),
                                              y.isn))
        if (x.state == ESTABLISHED and x.syn_acked and x.offered(seg.seq)
                and x.next_seq == (seg.seq + 1) & 0xFFFFFFFF and c.rst is None):
            # Sent again before any data: the ACK of the first one never arrived.
            c.move(s, SYNACK_ACK_LOST, seg)
            x.syn_acked = False
        x.offer(seg.seq, MAX_ISNS)
        if not c.move(s, SEND_SYN_ACK, seg):
            c.note("SEGMENT_IN_WRONG_STATE", seg, s, "%s sent a SYN-ACK while in %s"
                   % (SIDES[s], STATE_NAME[x.state]))
        return
    x.syn_count += 1
    x.offer(seg.seq, MAX_ISNS)
    if x.isn < 0:
        x.isn = seg.seq
        if s == 0 and seg.ts <= c.first_ts and (seg.seq + 1) & 0xFFFFFFFF == y.last_ack:
            # The SYN-ACK came first in the file but this SYN is stamped before it: the
            # frames are out of time order, and the SYN was captured after all.
            c.findings.pop("SYN_NOT_CAPTURED", None)
        if s == 0:
            c.syn_data = seg.paylen
        if s == 0 and not c.syn_seen:
            c.syn_ts = seg.ts
        if s == 1:
            c.sim_open = True
        c.syn_seen = True
    elif seg.seq == x.isn:
        c.note("SYN_RETRANSMITTED", seg, s, "SYN sent again with the same ISN (first "
               "retransmission %.1f s after the SYN)" % ((seg.ts - c.syn_ts) / 1e9))
    if not c.move(s, SEND_SYN, seg) and c.rst is None:
        c.note("SEGMENT_IN_WRONG_STATE", seg, s, "%s sent a SYN while in %s"
               % (SIDES[s], STATE_NAME[x.state]))


def on_fin(c: ConnectionCore, s: int, seg: Segment) -> None:
    """A FIN from side `s`: its sequence number, retransmissions, a lost ACK of it."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    fin_seq = (seg.seq + seg.paylen + (1 if seg.flags & SYN else 0)) & 0xFFFFFFFF
    if x.fin_seq < 0:
        if x.next_seq >= 0 and seq_lt(fin_seq, x.next_seq) and not seg.flags & SYN:
            c.note("FIN_SEQ_BEHIND", seg, s, "%s's FIN is at seq %d but it had already "
                   "sent data up to %d" % (SIDES[s], rel(x, fin_seq), rel(x, x.next_seq)))
        x.fin_seq = fin_seq
        x.fin_ts = seg.ts
        acks_peer = (y.fin_seq >= 0 and bool(seg.flags & ACK)
                     and seq_lt(y.fin_seq, seg.ack))
        c.add_fin(fin_entry(s, seg.num, acks_peer))
    elif fin_seq == x.fin_seq and x.fin_acked and c.rst is None:
        # Sent again after the capture showed its ACK: that ACK never arrived.
        c.move(s, FIN_ACK_LOST, seg)
        x.fin_acked = False
    if not c.move(s, SEND_FIN, seg) and c.rst is None:
        c.note("SEGMENT_IN_WRONG_STATE", seg, s, "%s sent a FIN while in %s"
               % (SIDES[s], STATE_NAME[x.state]))


def on_rst(c: ConnectionCore, s: int, seg: Segment) -> None:
    """A RST from side `s`: accepted, held (in window, not at RCV.NXT), a reply, or dropped."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    x.rsts += 1
    if c.midstream and (seg.seq == y.last_ack >= 0 or (
            seg.seq == 0 and seg.flags & ACK and seg.ack == y.next_seq >= 0)):
        c.reply_rsts += 1   # RFC 9293 §3.10.7.1's answer from CLOSED (verdicts: stray)
    if c.rst is not None and x.state == CLOSED and y.state == CLOSED:
        return              # already reset: a RST to a closed endpoint changes nothing
    if x.state == SYN_RECEIVED and c.bad_ack >= 0 and seg.seq == c.bad_ack:
        # RFC 9293 §3.10.7.4: an unacceptable ACK in SYN-RECEIVED is answered by
        # <SEQ=SEG.ACK><CTL=RST>; the sender stays where it is, and the peer, whose numbers
        # are not these, is not reset by it.
        c.note("RST_REPLY", seg, s, "%s answered an unacceptable ACK (ack %d) with RST and "
               "stays in SYN_RECEIVED" % (SIDES[s], rel(x, seg.seq)))
        return
    if (x.state == SYN_SENT and y.last_ack >= 0 and seg.seq == y.last_ack
            and (x.isn < 0 or y.last_ack != (x.isn + 1) & 0xFFFFFFFF)):
        # RFC 9293 §3.10.7.3: a SYN-SENT endpoint answers an unacceptable ACK with
        # <SEQ=SEG.ACK><CTL=RST> and stays where it is.
        c.note("RST_REPLY", seg, s, "%s answered an unacceptable ACK (ack %d) with RST"
               % (SIDES[s], rel(x, seg.seq)))
        if y.state == SYN_RECEIVED and x.isn >= 0:
            # The peer expects ISN+1 (it got the SYN): a RST below that is dropped.
            if not rst_in_window(x, y, seg) or seq_lt(seg.seq, (x.isn + 1) & 0xFFFFFFFF):
                return
        # Otherwise it resets the peer's stale connection (half-open recovery, RFC 9293
        # Figure 10): a peer modelled in LISTEN stays there, one in SYN_RECEIVED closes.
        y.pending = ()
        c.move(1 - s, RECV_RST, seg)
        return
    if y.state == SYN_SENT:
        # RFC 9293 §3.10.7.3: in SYN-SENT only a RST whose ACK acknowledges the SYN counts
        # (SND.UNA < SEG.ACK =< SND.NXT); one without ACK, or with another ack, is dropped.
        if seg.flags & ACK and y.isn >= 0 and seq_lt(y.isn, seg.ack) and (
                y.next_seq < 0 or seq_le(seg.ack, y.next_seq)):
            accept_rst(c, s, seg)
        else:
            c.note("RST_OUT_OF_WINDOW", seg, s, "%s's RST %s: a SYN-SENT endpoint drops it"
                   % (SIDES[s], "has no ACK" if not seg.flags & ACK else
                      "acknowledges %d, not the SYN" % rel(y, seg.ack)))
        return
    if y.state == LISTEN and (x.next_seq < 0
                                    or abs(seq_diff(seg.seq, x.next_seq)) <= 65535):
        # Nothing to reset at the receiver (it never took the SYN): the sender aborted its
        # own attempt (SYN then RST: Zeek's RSTOS0). A RST nowhere near the sender's own
        # numbers is someone else's (floods, injection) and falls through to be dropped.
        accept_rst(c, s, seg)
        return
    if not rst_in_window(x, y, seg):
        if x.fin_seq >= 0 and seg.seq == x.fin_seq:
            return      # at its own FIN's number (some stacks send one there, then one at
                        # FIN+1): the receiver drops it, and nothing about it is suspicious
        # The receiver drops it; and a RST outside the window is as likely injected by a
        # third party as sent by this endpoint, so neither side's state changes.
        c.note("RST_OUT_OF_WINDOW", seg, s, "RST seq %d is outside the receiver's window (its "
               "next expected byte is %d)" % (rel(x, seg.seq), rel(x, _rcv_nxt(x, y))))
        return
    if x.next_seq >= 0 and seg.seq != x.next_seq and seg.seq != y.last_ack:
        # In the window but not at RCV.NXT: RFC 5961 §3.2 (RFC 9293 §3.10.7.4) answers with
        # a challenge ACK and keeps the connection. Held until the receiver's next segment
        # says which (a bare ACK: challenged; anything else: it took effect).
        c.held_rst = (s, seg)
        return
    accept_rst(c, s, seg)


def accept_rst(c: ConnectionCore, s: int, seg: Segment) -> None:
    """A RST the receiver takes: both sides CLOSED; the first one is the connection's RST."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    if c.rst is None:
        # What taking it back restores, should its receiver prove it ignored it (ignored.py).
        c.rst_undo = (x.state, x.since, y.state, y.since, y.pending, x.next_seq)
        c.rst = (s, seg.ts, seg.num)
        # Data the receiver sent that the RST's sender never acknowledged is thrown away
        # (RFC 1122 §4.2.2.13: a close with unread data aborts).
        data_end = y.next_seq
        if data_end >= 0 and y.fin_seq >= 0 and data_end == (y.fin_seq + 1) & 0xFFFFFFFF:
            data_end = y.fin_seq
        c.rst_discards = bool(data_end >= 0 and x.last_ack >= 0
                              and seq_lt(x.last_ack, data_end) and y.sent_data)
    c.move(s, SEND_RST, seg)
    y.pending = ()
    c.move(1 - s, RECV_RST, seg)


def resolve_held_rst(c: ConnectionCore, s: int, seg: Segment) -> None:
    """The receiver's next segment after an in-window RST that was not at RCV.NXT decides
    its fate; segments from the RST's own sender leave it held (they rather suggest it was
    injected)."""
    assert c.held_rst is not None
    t, rst = c.held_rst
    if s == t:
        return
    c.held_rst = None
    if seg.flags & (SYN | FIN | RST | ACK) == ACK and not seg.paylen:
        c.note("RST_CHALLENGED", seg, s, "%s answered the RST in frame %d (seq %d, not its "
               "RCV.NXT) with a challenge ACK: the RST was ignored (RFC 5961)"
               % (SIDES[s], rst.num, rel(c.endpoint(t), rst.seq)))
    else:
        accept_rst(c, t, rst)


def infer_fin(c: ConnectionCore, t: int, seg: Segment) -> None:
    """Side `t` sent a FIN the capture lacks: its peer acknowledges one byte past all of
    `t`'s data (the ACK_OF_UNSEEN_FIN evidence). Taken back by `undo_inferred_fin` if `t`
    then sends data beyond it: the byte was data the capture missed."""
    e, peer = c.endpoint(t), c.endpoint(1 - t)
    c.inferred_fin = (t, e.state, e.since, peer.state, peer.since, peer.close_wait_since,
                      len(c.fins), c.fin_acked_by, peer.pending, c.half_close_data)
    fin = e.next_seq
    assert fin >= 0                     # the caller checked seq_exact, so next_seq is known
    e.fin_seq = fin
    e.fin_ts = seg.ts
    e.next_seq = (fin + 1) & 0xFFFFFFFF
    acks_peer = peer.fin_seq >= 0 and e.last_ack >= 0 and \
        seq_lt(peer.fin_seq, e.last_ack)
    c.add_fin(fin_entry(t, seg.num, acks_peer))
    c.move(t, SEND_FIN, seg)
    c.hold(peer, RECV_FIN, e.next_seq)


def _rcv_nxt(x: Endpoint, y: Endpoint) -> int:
    """The receiver's next expected sequence number as the capture shows it: its last ACK,
    else what the sender has sent."""
    if y.last_ack >= 0:
        return y.last_ack
    return x.next_seq if x.next_seq >= 0 else 0


def undo_inferred_fin(c: ConnectionCore, seg: Segment) -> None:
    """The side whose FIN was inferred sends data at or past it: that byte was data."""
    assert c.inferred_fin is not None
    t, state, since, pstate, psince, pcw, nfins, acked_by, ppending, half = c.inferred_fin
    c.inferred_fin = None
    e, peer = c.endpoint(t), c.endpoint(1 - t)
    e.state, e.since, e.fin_seq, e.fin_acked = state, since, UNSET, False
    peer.state, peer.since, peer.close_wait_since, peer.pending = pstate, psince, pcw, ppending
    c.fins = c.fins[:nfins]
    c.fin_acked_by = acked_by
    c.half_close_data = half
    f = c.findings.get("ACK_OF_UNSEEN_FIN")
    if f is not None:
        f.count -= 1
        if not f.count:
            del c.findings["ACK_OF_UNSEEN_FIN"]
    e.own_analysis().lost_segments += 1
    c.repeat("SEGMENT_NOT_CAPTURED") or c.note(
        "SEGMENT_NOT_CAPTURED", seg, t, "%s: 1 byte before seq %d is not in the capture (the "
        "peer acknowledged it)" % (SIDES[t], rel(e, seg.seq)))


def rst_in_window(x: Endpoint, y: Endpoint, seg: Segment) -> bool:
    """RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND (RFC 9293 §3.10.7.4) for a RST from `x` to `y`.

    RCV.NXT is the lower of `y`'s last ACK and `x`'s next sequence number (data may be in
    flight either way); RCV.WND the largest window `y` advertised after its SYN, scaled when
    both sides negotiated window scaling (RFC 7323: a SYN's window is never scaled).
    """
    if x.next_seq < 0 and y.last_ack < 0:
        return True                     # nothing known of the numbers
    lo = _rcv_nxt(x, y)
    if x.next_seq >= 0 and seq_lt(x.next_seq, lo):
        lo = x.next_seq
    scale = y.wscale if (y.wscale >= 0 and x.wscale >= 0) else 0
    window = (y.max_win << scale) or 65535
    return 0 <= seq_diff(seg.seq, lo) <= window


def handshake_ack_ok(c: ConnectionCore, s: int, seg: Segment) -> bool:
    """Whether an ACK from side `s` to a SYN-RECEIVED peer is acceptable (RFC 9293 §3.10.7.4):
    its seq in the receive window the SYN-ACK offered (RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND,
    RCV.NXT being the SYN-ACK's ack) and ISS < SEG.ACK =< SND.NXT (ISN+1, or past the data a
    SYN-ACK carried). The one rule for the third segment of the handshake on every path: an
    unacceptable one is answered by RST (bad ack) or an ACK (bad seq) and completes nothing,
    as Linux's tcp_check_req does. An ack of another ISN the peer offered is acceptable: the
    peer's numbers are rebased on it."""
    y = c.endpoint(1 - s)
    ack = seg.ack
    if y.next_seq < 0 or not (seq_lt(y.isn, ack) and seq_le(ack, y.next_seq)):
        if seg.ack == (y.isn + 1) & 0xFFFFFFFF or not y.offered((ack - 1) & 0xFFFFFFFF):
            return False
        rebase(y, (ack - 1) & 0xFFFFFFFF, ack)
    rcv_nxt = y.last_ack
    if rcv_nxt >= 0 and c.synack_win >= 0:
        off = seq_diff(seg.seq, rcv_nxt)
        end = off + seg.paylen
        win = c.synack_win
        if not (0 <= off < max(win, 1) or (seg.paylen and 0 < end <= win)):
            return False
    return True


def note_bad_handshake_ack(c: ConnectionCore, s: int, seg: Segment) -> None:
    """HANDSHAKE_ACK_BAD, with what the peer expected, in relative numbers; `bad_ack` keeps
    an unacceptable ack (answered <SEQ=SEG.ACK><CTL=RST>: RST_REPLY)."""
    x, y = c.endpoint(s), c.endpoint(1 - s)
    ack_ok = seq_lt(y.isn, seg.ack) and y.next_seq >= 0 and seq_le(seg.ack, y.next_seq)
    if not ack_ok:
        c.bad_ack = seg.ack
    if c.repeat("HANDSHAKE_ACK_BAD"):
        return
    c.note("HANDSHAKE_ACK_BAD", seg, s, "%s's ACK of the SYN-ACK is not acceptable: %s; %s stays "
           "in SYN_RECEIVED" % (
               SIDES[s], ("seq %d is outside the window %s offered (%d bytes from seq %d)" % (
                   rel(x, seg.seq), SIDES[1 - s], c.synack_win, rel(x, y.last_ack)))
               if ack_ok else "ack %d, expected %d (ISN+1)" % (
                   rel(y, seg.ack), rel(y, (y.isn + 1) & 0xFFFFFFFF)), SIDES[1 - s]))


def rebase(e: Endpoint, isn: int, nxt: int) -> None:
    """`e`'s numbers start from another ISN (a SYN-ACK sent again with a new one, or the one its
    peer acknowledged): its ISN, Wireshark's relative base and its next sequence number."""
    e.isn = e.base_seq = isn
    e.next_seq = nxt
    if e.analysis.holes is not None:
        e.analysis.holes = None


def acks_isn(ack: int, isn: int, syn_data: int) -> bool:
    """Whether `ack` may acknowledge a SYN: ISN+1, or with TCP Fast Open ISN+1+data (RFC 7413
    §4.2). (A test, not a tuple of the two to look `ack` up in: once a SYN-ACK.)"""
    one = (isn + 1) & 0xFFFFFFFF
    return ack == one or (syn_data != 0 and ack == (one + syn_data) & 0xFFFFFFFF)
