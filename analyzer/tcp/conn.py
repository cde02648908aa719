"""One TCP connection: its two endpoints and the replay of its segments through the state machine.

Each segment is one input for the endpoint that sent it and one for the endpoint it goes to.
What an ACK means is decided here from sequence numbers: it acknowledges a SYN or FIN only if
it covers that SYN's or FIN's sequence number.

When a *receiver* processed a SYN or FIN cannot be seen on the wire, only inferred. A capture
point sees a FIN go by, but the peer may already have sent its own FIN (the FINs crossed) or
may never get it. So a received SYN, SYN-ACK or FIN is held as *pending* for the receiver and
delivered when the receiver's own traffic proves it arrived: a segment from the receiver whose
ACK covers it. That one rule yields simultaneous open and simultaneous close (CLOSING) without
special cases, and an endpoint that never acknowledged a FIN is not claimed to be in CLOSE_WAIT.
RSTs and plain ACKs cannot be acknowledged, so they take effect when seen, with two
corrections in the same spirit: a FIN or SYN-ACK sent again after the capture showed its ACK
proves that ACK was lost, so the sender goes back to the state it had before it; and a RST in
the window but not at the receiver's next sequence number is held until the receiver's next
segment (a bare ACK is RFC 5961's challenge ACK: the RST was ignored). The control segments'
logic lives in control.py.

Sides are indexed 0 = originator (`orig`), 1 = responder (`resp`).
"""

from __future__ import annotations

from typing import Final

from analyzer.common.native import mypyc_attr
from analyzer.decode.segment import ACK, FIN, RST, SYN, Segment, describe, seq_le, seq_lt
from analyzer.tcp import control, ignored, oddities
from analyzer.tcp.endpoint import ACKED_BY, SIDES, ConnectionCore, pending_end, pending_input
from analyzer.tcp.oddities import CLASSIC
from analyzer.tcp.seqanalysis import acks_unseen_fin, analyze_segment, rel
from analyzer.tcp.states import (CLOSE_WAIT, CLOSED, ESTABLISHED, LAST_ACK, LISTEN, RECV_ACK,
                                 RECV_ACK_OF_FIN, RECV_ACK_OF_SYN, RECV_FIN, RECV_SYN,
                                 RECV_SYN_ACK, SEND_ACK, STATE_NAME, SYN_RECEIVED, SYN_SENT)
from analyzer.tcp.zeek import ZeekView

#: The flags that decide what a segment is: a bare ACK or data segment has ACK and none of
#: the others (`flags & CONTROL == ACK`).
CONTROL: Final = FIN | SYN | RST | ACK
#: States before the handshake completed, where data has no place (TFO aside).
_UNSYNCHRONIZED: Final = frozenset({CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED})


@mypyc_attr(acyclic=True)
class Connection(ConnectionCore):
    """A connection between `orig` and `resp`, fed segments in capture order."""

    __slots__ = ()

    # -- the replay --------------------------------------------------------------------------

    def on_segment(self, seg: Segment) -> bool:
        """Replay one segment; True when it took the full replay (a state may have changed).

        The fast path: on a `steady` connection (both ESTABLISHED, nothing pending, no RST,
        no keep-alive awaiting its ACK) an in-order ACK or data segment that acknowledges
        nothing unseen cannot change a state, a verdict or a finding; it only moves counters
        and sequence numbers. Everything else takes the full replay.
        """
        # (`okey` spelt out: a property would cost a call a packet)
        from_orig = seg.key == (self.key if self.first_from_orig else self.rkey)
        if oddities.duplicate(self, from_orig, seg):
            return False
        if self.steady and seg.flags & CONTROL == ACK and seg.win and seg.ts >= self.last_ts:
            x, y = (self.e0, self.e1) if from_orig else (self.e1, self.e0)
            seq = seg.seq
            ynext = y.next_seq
            if seq == x.next_seq and ynext >= 0 and \
                    ((ynext - seg.ack) & 0xFFFFFFFF) < 0x80000000:
                self.prev_ts = self.last_ts
                self.last_ts = x.last_ts = seg.ts
                self.last_frame = seg.num
                paylen = seg.paylen
                x.pkts += 1
                x.bytes += paylen
                x.ip_bytes += seg.iplen
                if seg.win > x.max_win:
                    x.max_win = seg.win
                x.last_ack = seg.ack
                if paylen:
                    x.next_seq = (seq + paylen) & 0xFFFFFFFF
                    x.seq_exact = True
                    x.last_data_ts = seg.ts
                    x.sent_data = True
                zeek = self.zeek            # None when the view is off (the terminal report)
                if zeek is not None:
                    if not isinstance(zeek, ZeekView):
                        zeek = self.zeek_view()
                    if zeek is not None:
                        zeek.segment(from_orig, seg, not seg.cut, seg.bad_csum)
                return False
        self._replay(seg, 0 if from_orig else 1)
        a, b = self.e0, self.e1
        self.steady = (a.state == ESTABLISHED and b.state == ESTABLISHED
                       and not a.pending and not b.pending and self.rst is None
                       and a.next_seq >= 0 and b.next_seq >= 0
                       and not a.analysis.keepalive_open and not b.analysis.keepalive_open
                       and not a.analysis.zw_since and not b.analysis.zw_since
                       and self.held_rst is None and a is not b)
        return True

    def _replay(self, seg: Segment, s: int = -1) -> None:
        """The full replay of one segment: inputs for the sender, then for the receiver
        (`s`: its sender's side, given once on_segment has ruled out a duplicate frame;
        -1: not yet)."""
        if s < 0:
            from_orig = seg.key == self.okey
            if oddities.duplicate(self, from_orig, seg):
                return
            s = 0 if from_orig else 1
        if seg is not self.zeek:            # (the first packet waits for the second)
            zeek = self.zeek_view()
            if zeek is not None:
                zeek.segment(s == 0, seg, not seg.cut, seg.bad_csum)
        if s == 0:
            x, y = self.e0, self.e1
        else:
            x, y = self.e1, self.e0
        flags = seg.flags
        self.prev_ts = self.last_ts
        # Frames out of time order (merged interfaces, a clock step): the connection spans
        # its earliest to its latest timestamp; frame order stays the order of events.
        if seg.ts >= self.last_ts:
            self.last_ts = seg.ts
        elif seg.ts < self.first_ts:
            self.first_ts = seg.ts
        self.last_frame = seg.num
        if self.held_rst is not None:
            control.resolve_held_rst(self, s, seg)
        if self.rst is not None:
            if self.rst_undo is not None and seg.flags & SYN and s != self.rst[0]:
                self.rst_undo = None        # its receiver started again: it took the RST
            if self.rst_undo is not None and ignored.proves_rst_ignored(self, s, seg):
                ignored.take_back_rst(self, seg)
            else:
                oddities.after_rst(self, s, seg)
        # (two or more of FIN, SYN and RST: `in MULTI_FLAGS`, without a set lookup a packet)
        multi = flags & (FIN | SYN | RST)
        if multi & (multi - 1) or not flags & CLASSIC:
            oddities.odd_flags(self, s, seg)
        x.pkts += 1
        x.bytes += seg.paylen
        x.ip_bytes += seg.iplen
        if seg.ts > x.last_ts:
            x.last_ts = seg.ts
        # Wireshark's relative base: a side's SYN, else its first seq - 1, else the peer's first
        # ack - 1; a SYN-ACK with another ISN starts it again.
        if x.base_seq < 0 or (flags & SYN and flags & ACK and seg.seq != x.base_seq):
            x.base_seq = seg.seq if flags & SYN else (seg.seq - 1) & 0xFFFFFFFF
        if y.base_seq < 0 and flags & ACK:
            y.base_seq = (seg.ack - 1) & 0xFFFFFFFF
        if (flags & (ACK | SYN | RST) == ACK and y.state == SYN_RECEIVED
                and not y.syn_acked and y.isn >= 0 and x is not y
                and not control.handshake_ack_ok(self, s, seg)):
            # RFC 9293 §3.10.7.4: the receiver drops it (answering RST or ACK): it changes
            # nothing, and its numbers are not the sender's stream.
            control.note_bad_handshake_ack(self, s, seg)
            if x.pending and seg.ack != y.isn:
                self._deliver(s, seg)       # it did get the SYN-ACK its ack is made from
            return
        if seg.win > x.max_win and not flags & SYN:   # a SYN's window is never scaled
            x.max_win = seg.win
        if flags & ACK:
            x.last_ack = seg.ack
        if self.inferred_fin is not None and self.inferred_fin[0] == s and seg.paylen and \
                x.fin_seq >= 0 and seq_le(x.fin_seq, seg.seq) and not flags & RST:
            control.undo_inferred_fin(self, seg)
        if flags & SYN and seg.wscale >= 0:
            x.wscale = seg.wscale

        if flags & (FIN | SYN | RST) == FIN and x.state in ignored.UNSYNCED_SENDERS and \
                ignored.fin_ignored(self, s, seg):
            return
        analyze_segment(self, s, x, y, seg)

        # 1. The sender's ACK is evidence of what it received: deliver pending SYN/FINs (and
        # infer a FIN the capture missed when the ACK covers one byte past the peer's data).
        if flags & ACK and not flags & RST:
            if acks_unseen_fin(y, seg):
                control.infer_fin(self, 1 - s, seg)
            if x.pending:
                self._deliver(s, seg)
            elif x.state == SYN_SENT and not flags & (SYN | RST):
                control.infer_synack(self, s, seg)

        # A responder sending data or FIN must have had its SYN-ACK acknowledged (unless the
        # SYN carried data: a TCP Fast Open server may answer before the handshake ends).
        if x.state == SYN_RECEIVED and not flags & (SYN | RST) and (
                seg.paylen or flags & FIN) and not self.tfo:
            control.infer_handshake_ack(self, s, seg)
        if seg.paylen and not flags & SYN and x.state in _UNSYNCHRONIZED and not (
                self.tfo and x.state == SYN_RECEIVED) and self.rst is None \
                and not self.est_sides & (1 << s):
            self.note("DATA_BEFORE_HANDSHAKE", seg, s, "%s sent %d bytes while in %s, before "
                      "the handshake completed" % (SIDES[s], seg.paylen, STATE_NAME[x.state]))
        if seg.paylen and x.fin_seq >= 0 and \
                seq_lt(x.fin_seq, (seg.seq + seg.paylen) & 0xFFFFFFFF):
            self.note("DATA_AFTER_FIN", seg, s, "%s sent data up to seq %d after its FIN at seq %d"
                      % (SIDES[s], rel(x, (seg.seq + seg.paylen) & 0xFFFFFFFF), rel(x, x.fin_seq)))

        # 2. What the sender did.
        if flags & RST:
            control.on_rst(self, s, seg)
            return
        if flags & SYN:
            control.on_syn(self, s, seg)
        if flags & FIN:
            control.on_fin(self, s, seg)
        if not flags & (SYN | FIN):
            if not self.move(s, SEND_ACK, seg) and (
                    seg.paylen or x.state == CLOSED) and self.rst is None:
                self.note("SEGMENT_IN_WRONG_STATE", seg, s, "%s sent %s while in %s"
                          % (SIDES[s], describe(seg), STATE_NAME[x.state]))
        end = (seg.seq + seg.seglen) & 0xFFFFFFFF
        nxt = x.next_seq
        advances = nxt < 0 or 0 < ((end - nxt) & 0xFFFFFFFF) < 0x80000000    # seq_lt(nxt, end)
        new_data = seg.paylen > 0 and advances
        if advances:
            x.next_seq = end
        if seg.seglen:
            x.seq_exact = True
        if new_data:
            x.last_data_ts = seg.ts
            x.sent_data = True
        if new_data and x.state in (CLOSE_WAIT, LAST_ACK) and not self.half_close_data:
            self.half_close_data = True

        # 3. What the receiver gets: ACKs now, SYN/FIN when it acknowledges them.
        if flags & ACK and not flags & SYN:
            ack = seg.ack
            if y.isn >= 0 and not y.syn_acked and y.state == SYN_RECEIVED:
                y.syn_acked = True          # acceptable: handshake_ack_ok said so above
                self.move(1 - s, RECV_ACK_OF_SYN, seg)
            if y.fin_seq >= 0 and not y.fin_acked and seq_lt(y.fin_seq, ack):
                y.fin_acked = True
                if self.fin_acked_by is None:
                    self.fin_acked_by = ACKED_BY[2 * s + (1 if flags & FIN else 0)]
                self.move(1 - s, RECV_ACK_OF_FIN, seg)
            else:
                self.move(1 - s, RECV_ACK, seg)
        if flags & SYN:
            inp = RECV_SYN_ACK if flags & ACK else RECV_SYN
            self.hold(y, inp, (seg.seq + 1) & 0xFFFFFFFF)
        if flags & FIN and x.fin_seq >= 0:       # on_fin set it
            self.hold(y, RECV_FIN, (x.fin_seq + 1) & 0xFFFFFFFF)

    def _deliver(self, s: int, seg: Segment) -> None:
        x = self.endpoint(s)
        pending = x.pending
        if len(pending) == 1:               # the commonest: one input, acknowledged or not
            p = pending[0]
            if seq_le(pending_end(p), seg.ack):
                inp = pending_input(p)
                if inp == RECV_SYN_ACK:
                    x.syn_acked = True
                self.move(s, inp, seg)
                x.pending = ()
            return
        keep = []
        for p in pending:
            if not seq_le(pending_end(p), seg.ack):
                keep.append(p)
                continue
            inp = pending_input(p)
            if inp == RECV_SYN_ACK:
                x.syn_acked = True
            self.move(s, inp, seg)
        x.pending = tuple(keep)

    def settle(self) -> None:
        """End of capture: a held RST that nothing contradicted took effect."""
        if self.held_rst is not None:
            t, rst = self.held_rst
            self.held_rst = None
            control.accept_rst(self, t, rst)
