"""The per-side paths of Zeek's replay (tcp/zeek.py `ZeekView.segment`): the segments most
connections are made of, taken on the view's own fields, once for each side.

Our originator's Zeek endpoint is the view itself (`ZeekMachine` is a `ZeekEndpoint`); our
responder's is the view's `r_` fields. The full replay of a packet (`ZeekView._packet`) works
on two endpoints, so for the responder it makes a working endpoint from those fields and stores
it back (`resp`, `keep`). These paths do the same steps as `_packet` for what they take (a
steady ACK or data segment, a FIN from an established side, the first SYN and the SYN-ACK to
it) directly on the fields, once written for the originator and once for the responder: a
compiled field access cannot be chosen at run time without making that endpoint, which is what
they save. Each returns False (nothing done) where `_packet` must take the segment; tests
(tests/test_zeek.py) check every fact of both endpoints against the full replay after every
packet.
"""
from __future__ import annotations

from analyzer.common.native import i32, i64, mypyc_attr
from analyzer.decode.segment import Segment
from analyzer.tcp.zeekmachine import (FROM_ORIG, H_ACK, H_DATA, H_FIN, H_SYN, L_A, L_D, L_F,
                                      L_H, L_S, L_T, LOWER, SEQ_MASK, TOO_LARGE_SEQ_DELTA,
                                      ZeekMachine)
from analyzer.tcp.zeekstate import CLOSED, ESTABLISHED, INACTIVE, SYN_SENT, clean, data_sent


@mypyc_attr(acyclic=True)
class ZeekSides(ZeekMachine):
    """`ZeekMachine` with the per-side paths (above); `ZeekView` (tcp/zeek.py) chooses them."""

    __slots__ = ()

    # -- the fast path, once per side --------------------------------------------------------
    # An ACK or data segment while both are established or closed: update_history's D or A,
    # update_ack_seq, update_last_seq and the reassembler's coverage, the same steps `_packet`
    # takes for it. Written for each side on the fields themselves (our responder's are the
    # view's `r_` fields), so that most segments load and store no endpoint; False (nothing
    # done) when the ACK is below the peer's start, which `_packet` then takes.

    def _steady_orig(self, seg: Segment, payload_captured: bool) -> bool:
        """The fast path of a segment from our originator (this object) to our responder."""
        is_orig = not self.flipped
        estart = i64(self.start32)               # (i64: i32 arithmetic would be 32-bit)
        paylen: i64 = seg.paylen
        rel_ack = self._orig_acks(seg)
        if rel_ack < 0:
            return False
        bit: i32 = H_DATA if paylen else H_ACK
        code: i32 = L_D if paylen else L_A
        if not is_orig:
            bit <<= 16
            code += LOWER
        if not self.seen & bit:                  # update_history: the first D or A this way
            self._check(is_orig, bit if is_orig else bit >> 16, code)
        last: i64 = self.last
        seq: i64 = seg.seq
        rel_seq = (seq - last) & SEQ_MASK        # seq_diff(seq, last), inline
        if rel_seq >= 0x80000000:
            rel_seq -= 0x100000000
        d = rel_seq + paylen                              # update_last_seq
        rel_seq += last - estart
        if d > 0:
            self.last = last + d
        elif paylen:
            self.rxmt += 1
            self._scaled(self.rxmt, is_orig, L_T)
        if rel_ack > self.r_trim:
            self._resp_ack_received(rel_ack)
        if paylen and payload_captured and rel_seq >= 0 and not self.skip:
            rare = self.rare                     # (ZeekEndpoint.above)
            if rel_seq == self.reassem and (rare is None or rare.above is None) \
                    and rel_seq >= self.trim \
                    and rel_seq >= self.ack - estart:
                self.reassem += paylen
            else:
                data_sent(self, rel_seq, paylen)
        return True

    def _steady_resp(self, seg: Segment, payload_captured: bool) -> bool:
        """The fast path of a segment from our responder (the `r_` fields) to our originator."""
        is_orig = self.flipped
        estart = i64(self.r_start32)
        paylen: i64 = seg.paylen
        rel_ack = self._resp_acks(seg)
        if rel_ack < 0:
            return False
        bit: i32 = H_DATA if paylen else H_ACK
        code: i32 = L_D if paylen else L_A
        if not is_orig:
            bit <<= 16
            code += LOWER
        if not self.seen & bit:
            self._check(is_orig, bit if is_orig else bit >> 16, code)
        last: i64 = self.r_last
        seq: i64 = seg.seq
        rel_seq = (seq - last) & SEQ_MASK
        if rel_seq >= 0x80000000:
            rel_seq -= 0x100000000
        d = rel_seq + paylen
        rel_seq += last - estart
        if d > 0:
            self.r_last = last + d
        elif paylen:
            r = self.resp()
            r.rxmt += 1
            self._scaled(r.rxmt, is_orig, L_T)
            self.keep(r)
        if rel_ack > self.trim:
            self._orig_ack_received(rel_ack)
        if paylen and payload_captured and rel_seq >= 0 and not self.r_skip:
            rare = self.rare
            holes = None if rare is None or rare.resp is None else rare.resp.above
            if rel_seq == self.r_reassem and holes is None and rel_seq >= self.r_trim \
                    and rel_seq >= self.r_ack - estart:
                self.r_reassem += paylen
            else:
                r = self.resp()
                data_sent(r, rel_seq, paylen)
                self.keep(r)
        return True

    # -- a FIN, once per side ----------------------------------------------------------------
    # A FIN (with ACK, maybe data) from an established endpoint to an established or closed
    # one: update_history's F, the FIN's end, update_ack_seq, update_last_seq, the state
    # (CLOSED, after ESTABLISHED), the peer's AckReceived and the data's coverage, the steps
    # `_packet` takes for it, on the fields themselves; False (nothing done) when the ACK is
    # below the peer's start, which `_packet` then takes.

    def _fin_orig(self, seg: Segment, payload_captured: bool) -> bool:
        """A FIN from our originator (this object) to our responder."""
        is_orig = not self.flipped
        estart = i64(self.start32)
        paylen: i64 = seg.paylen
        rel_ack = self._orig_acks(seg)
        if rel_ack < 0:
            return False
        last: i64 = self.last
        seq: i64 = seg.seq
        rel = (seq - last) & SEQ_MASK            # seq_diff(seq, last), inline
        if rel >= 0x80000000:
            rel -= 0x100000000
        rel_seq = last + rel - estart
        code: i32 = L_F if is_orig else L_F + LOWER
        if self._check(is_orig, H_FIN, code) and rel_seq + paylen != self.hl_fin:
            self.add(code)
        rare = self.rare                                 # (ZeekEndpoint.fin_sent, pure)
        if rare is not None:
            rare.hl_fin_kept = False
        self.fin = True
        self.fin_seq = rel_seq + paylen + 1
        d = rel + paylen + 1                              # update_last_seq
        if last & SEQ_MASK == (estart + 1) & SEQ_MASK or d > 0:
            self.last = last + d
        elif paylen:
            self.rxmt += 1
            self._scaled(self.rxmt, is_orig, L_T)
        self.prev, self.state = ESTABLISHED, CLOSED
        if rel_ack > self.r_trim:
            self._resp_ack_received(rel_ack)
        if paylen and payload_captured and rel_seq >= 0 and not self.skip:
            data_sent(self, rel_seq, paylen)
        return True

    def _fin_resp(self, seg: Segment, payload_captured: bool) -> bool:
        """A FIN from our responder (the `r_` fields) to our originator."""
        is_orig = self.flipped
        estart = i64(self.r_start32)
        paylen: i64 = seg.paylen
        rel_ack = self._resp_acks(seg)
        if rel_ack < 0:
            return False
        last: i64 = self.r_last
        seq: i64 = seg.seq
        rel = (seq - last) & SEQ_MASK
        if rel >= 0x80000000:
            rel -= 0x100000000
        rel_seq = last + rel - estart
        rare = self.rare
        rr = None if rare is None else rare.resp
        if rr is not None and rr.hl_fin_kept:            # (ZeekEndpoint.hl_fin)
            hl = rr.hl_fin
        else:
            hl = self.r_fin_seq - 1 if self.r_fin else 0
        code: i32 = L_F if is_orig else L_F + LOWER
        if self._check(is_orig, H_FIN, code) and rel_seq + paylen != hl:
            self.add(code)
        if rr is not None:                               # (ZeekEndpoint.fin_sent, pure)
            rr.hl_fin_kept = False
        self.r_fin = True
        self.r_fin_seq = rel_seq + paylen + 1
        d = rel + paylen + 1
        if last & SEQ_MASK == (estart + 1) & SEQ_MASK or d > 0:
            self.r_last = last + d
        elif paylen:
            r = self.resp()
            r.rxmt += 1
            self._scaled(r.rxmt, is_orig, L_T)
            self.keep(r)
        self.r_prev, self.r_state = ESTABLISHED, CLOSED
        if rel_ack > self.trim:
            self._orig_ack_received(rel_ack)
        if paylen and payload_captured and rel_seq >= 0 and not self.r_skip:
            r = self.resp()
            data_sent(r, rel_seq, paylen)
            self.keep(r)
        return True

    # -- update_ack_seq, once per side -------------------------------------------------------

    def _orig_acks(self, seg: Segment) -> i64:
        """update_ack_seq of a segment from our originator, on our responder's fields: its ACK
        relative to our responder's start, taken when not negative (below the start: nothing
        done, and `_packet` takes the segment)."""
        pstart = i64(self.r_start32)             # (i64: i32 arithmetic would be 32-bit)
        ack: i64 = seg.ack
        pack: i64 = self.r_ack
        d = (ack - pack) & SEQ_MASK              # seq_diff(ack, pack), inline
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack >= 0 and d > 0 and (ack or d <= TOO_LARGE_SEQ_DELTA):
            self.r_ack = pack + d
        return rel_ack

    def _resp_acks(self, seg: Segment) -> i64:
        """`_orig_acks` for a segment from our responder, on our originator's fields."""
        pstart = i64(self.start32)
        ack: i64 = seg.ack
        pack: i64 = self.ack
        d = (ack - pack) & SEQ_MASK
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack >= 0 and d > 0 and (ack or d <= TOO_LARGE_SEQ_DELTA):
            self.ack = pack + d
        return rel_ack

    # -- AckReceived, once per side ----------------------------------------------------------

    def _resp_ack_received(self, rel_ack: i64) -> None:
        """An ACK from our originator above our responder's trim (`rel_ack`, relative to our
        responder's start), on the fields: the trim moved when no hole is below it (its FIN's
        end caps it), AckReceived in full (`_acked`) otherwise. Our originator is clean here
        whenever the ACK came with its FIN (the caller closed it first)."""
        top = rel_ack
        if self.r_fin and top >= self.r_fin_seq:
            top = self.r_fin_seq - 1
        if top <= self.r_reassem:
            if top > self.r_trim:
                self.r_trim = top
        else:
            r = self.resp()
            self._acked(r, clean(self), rel_ack)
            self.keep(r)

    def _orig_ack_received(self, rel_ack: i64) -> None:
        """`_resp_ack_received` for an ACK from our responder above our originator's trim."""
        top = rel_ack
        if self.fin and top >= self.fin_seq:
            top = self.fin_seq - 1
        if top <= self.reassem:
            if top > self.trim:
                self.trim = top
        else:
            rst = self.r_state
            self._acked(self, rst == ESTABLISHED or (rst == CLOSED and self.r_prev == ESTABLISHED),
                        rel_ack)

    # -- the handshake, on the fields --------------------------------------------------------
    # The steps `_packet` takes for a connection's first packet when it is a SYN from our
    # originator, and for our responder's SYN-ACK to it, both without data and with a window
    # (no W, T or coverage to count), so that a handshake makes no working endpoint.

    def _syn_first(self, seg: Segment) -> None:
        """The connection's first packet, a SYN from our originator (not flipped: no SYN-ACK;
        our responder stays INACTIVE and untouched)."""
        self.first = FROM_ORIG
        self.partial = False                     # SetPartialStatus of a SYN
        # init_seqs(seq, its end), inline: the start, and the last one past it (the end is
        # seq + 1 in sequence space: seq_diff(end, seq) == 1)
        seq: i64 = seg.seq
        start = seq - 0x100000000 if seq >= 0x80000000 else seq
        self.start32 = i32(start)                # (in [-2**31, 2**31))
        self.ack = start
        self.last = start + 1
        # update_history: the SYN's sequence number relative to the start is 0 (seq_diff(seq,
        # start + 1) == -1); update_last_seq moves nothing (the SYN's end is the last already)
        hl = self.hl_syn
        self.hl_syn = 0
        if self._check(True, H_SYN, L_S) and hl != 0:
            self.add(L_S)
        self.set_state(SYN_SENT)                 # UpdateInactiveState
        self.first_seen |= 1

    def _synack_resp(self, seg: Segment) -> bool:
        """Our responder's SYN-ACK (its endpoint INACTIVE, the `r_` fields) to our originator's
        SYN (SYN_SENT, this object, not flipped); False (nothing done) when its SYN's letter
        would need a `ZeekRare` the view does not have yet, which `_packet` then takes."""
        seq: i64 = seg.seq
        ack: i64 = seg.ack
        start = seq - 0x100000000 if seq >= 0x80000000 else seq      # init_seqs
        last = start + 1                         # (seq_diff(end, seq) == 1)
        rel_seq: i64 = 0                         # (seq_diff(seq, last) == -1: the start)
        rare = self.rare
        rr = None if rare is None else rare.resp
        if rr is None and rel_seq != 0:
            return False
        self.r_start32 = i32(start)              # (in [-2**31, 2**31))
        self.r_ack = start
        self.r_last = last
        hl = 0
        if rr is not None:                       # (its hl_syn)
            hl = rr.hl_syn
            rr.hl_syn = rel_seq
        if self._check(False, H_SYN, L_H + LOWER) and rel_seq != hl:
            self.add(L_H + LOWER)
        pack: i64 = self.ack                     # update_ack_seq on our originator
        pstart = i64(self.start32)               # (i64: i32 arithmetic would be 32-bit)
        d = (ack - pack) & SEQ_MASK
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            rel_ack = 0
        elif d > 0 and (ack or d <= TOO_LARGE_SEQ_DELTA):
            self.ack = pack + d
        # update_last_seq moves nothing: the SYN's end is the last already
        self.set_state(ESTABLISHED)              # UpdateInactiveState: both established
        self.r_prev, self.r_state = INACTIVE, ESTABLISHED
        self._acked(self, True, rel_ack)
        self.first_seen |= 2
        return True
