"""Zeek's `conn_state` and `history` for one TCP connection, computed from its packets.

A replay of what Zeek's TCP analyzer does with each packet (zeek/zeek `src/packet_analysis/
protocol/tcp/TCPSessionAdapter.cc`: `Process`, `update_history`, `update_window`,
`update_last_seq`, `Update*State`; `src/analyzer/protocol/tcp/TCP_Endpoint.cc`,
`TCP_Reassembler.cc` and `src/Reassem.cc` for t/w/g/c; `src/Conn.cc` `CheckHistory`,
`ScaledHistoryEntry`, `FlipRoles`), independent of our RFC 9293 machine. `conn_state` is
main.zeek's `conn_state()` of the two Zeek endpoint states. No I/O, no clock.

Letters: upper case from Zeek's originator, lower case from its responder. S H A D F R: SYN,
SYN-ACK, pure ACK, payload, FIN, RST; A D I Q once per direction; S H F R again only when the
sequence number differs from the previous one of that kind. Q = SYN with FIN or RST, I = FIN
with RST. T (payload not beyond the highest sequence number sent), W (zero window), G (an ACK
covers bytes never captured, both sides established) and C (bad checksum) at the 1st, 10th,
100th ... occurrence.

Direction (`^`, `flipped`) and where we differ from Zeek (its timers and IsReuse split
connections we keep whole; `C` needs `--checksums`): docs/zeek.md.
"""
from __future__ import annotations

from typing import Final, Tuple

from analyzer.common.native import mypyc_attr
from analyzer.decode.segment import ACK, FIN, RST, SYN, Segment, seq_diff
from analyzer.tcp.zeekmachine import FROM_ORIG, FROM_RESP, NO_PACKET, ZeekMachine
from analyzer.tcp.zeekstate import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, STATE_NAMES,
                                    SYN_ACK_SENT, SYN_SENT, ZeekEndpoint, clean, conn_state,
                                    data_sent, size)

# History masks (TCP_Endpoint.h HistoryMasks); the responder's are shifted left by 16.
_H_SYN: Final = 1
_H_FIN: Final = 2
_H_RST: Final = 4
_H_FIN_RST: Final = 8
_H_DATA: Final = 0x10
_H_ACK: Final = 0x20
_H_MULTI: Final = 0x40
_MASK: Final = 0xFFFFFFFF
_TOO_LARGE: Final = 1048576                 # TOO_LARGE_SEQ_DELTA
_CTL: Final = SYN | FIN | RST | ACK
_FIN_ACK: Final = FIN | ACK
_SYN_ACK: Final = SYN | ACK
_NCTL: Final = (0, 1, 1, 2, 1, 2, 2, 3)     # how many of FIN (1), SYN (2), RST (4) a packet has

#: TCP ports of Zeek's default `likely_server_ports` (base/protocols: ftp, ssh, smtp, dns,
#: http, krb, dce-rpc, smb, imap, ldap, ssl, modbus, mysql, rdp, xmpp, postgresql, redis,
#: irc, mqtt, dnp3).
LIKELY_SERVER_PORTS: Final = frozenset({
    21, 2811, 22, 25, 587, 53, 80, 81, 631, 1080, 3128, 8000, 8080, 8888, 88, 135, 139, 445,
    143, 389, 3268, 443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223, 502, 3306,
    3389, 5222, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 1883, 20000})


@mypyc_attr(acyclic=True)
class ZeekView(ZeekMachine):
    """Zeek's view of one connection. Feed every segment in capture order, then `finish()`;
    most take the fast path: an ACK or data segment while both are established or closed
    (the ACKs of a close: no state changes, the same steps as `_packet` takes for them)."""

    __slots__ = ()

    def segment(self, from_orig: bool, seg: Segment, payload_captured: bool = True,
                bad_checksum: bool = False) -> None:
        """One segment, `from_orig` relative to tcpflow-check's orig/resp (the SYN sender; see
        flows.py). `payload_captured` is false when the snaplen cut the payload (Zeek then
        reassembles nothing: a content gap); `bad_checksum` makes the segment only a `C`, as
        Zeek drops it (pass it only when checksums are validated)."""
        st, rst = self.state, self.r_state
        ctl = seg.flags & _CTL
        if (ctl == ACK and (st == ESTABLISHED or st == CLOSED)
                and (rst == ESTABLISHED or rst == CLOSED)
                and self.first_seen == 3 and seg.win and not bad_checksum):
            if (self._steady_orig(seg, payload_captured) if from_orig
                    else self._steady_resp(seg, payload_captured)):
                return
        elif (ctl == _FIN_ACK and self.first_seen == 3 and seg.win and not bad_checksum
              and ((st == ESTABLISHED and (rst == ESTABLISHED or rst == CLOSED)) if from_orig
                   else (rst == ESTABLISHED and (st == ESTABLISHED or st == CLOSED)))):
            if (self._fin_orig(seg, payload_captured) if from_orig
                    else self._fin_resp(seg, payload_captured)):
                return
        elif ctl == SYN and from_orig and self.first == NO_PACKET and seg.win \
                and not seg.paylen and not bad_checksum:
            self._syn_first(seg)
            return
        elif (ctl == _SYN_ACK and not from_orig and rst == INACTIVE and st == SYN_SENT
              and not self.flipped and seg.win and not seg.paylen and not bad_checksum):
            if self._synack_resp(seg):
                return
        r = self.resp()
        if from_orig:
            self._packet(self, r, True, seg, payload_captured, bad_checksum)
        else:
            self._packet(r, self, False, seg, payload_captured, bad_checksum)
        self.keep(r)

    # -- the fast path, once per side --------------------------------------------------------
    # An ACK or data segment while both are established or closed: update_history's D or A,
    # update_ack_seq, update_last_seq and the reassembler's coverage, the same steps `_packet`
    # takes for it. Written for each side on the fields themselves (our responder's are the
    # view's `r_` fields), so that most segments load and store no endpoint; False (nothing
    # done) when the ACK is below the peer's start, which `_packet` then takes.

    def _steady_orig(self, seg: Segment, payload_captured: bool) -> bool:
        """The fast path of a segment from our originator (this object) to our responder."""
        is_orig = not self.flipped
        estart: int = self.start32               # (as ints: the i32 fields' arithmetic is
        pstart: int = self.r_start32             # ... 32-bit, and these numbers pass 2**32)
        paylen = seg.paylen
        ack, pack = seg.ack, self.r_ack
        d = (ack - pack) & _MASK                         # seq_diff, inlined
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            return False
        bit = (_H_DATA if paylen else _H_ACK) << (0 if is_orig else 16)
        if not self.seen & bit:                  # update_history: the first D or A this way
            self._check(is_orig, bit if is_orig else bit >> 16,
                        ("D" if is_orig else "d") if paylen else ("A" if is_orig else "a"))
        if d > 0 and (ack or d <= _TOO_LARGE):
            self.r_ack = pack + d
        seq, last = seg.seq, self.last
        rel_seq = (seq - last) & _MASK
        if rel_seq >= 0x80000000:
            rel_seq -= 0x100000000
        d = rel_seq + paylen                              # update_last_seq
        rel_seq += last - estart
        if d > 0:
            self.last = last + d
        elif paylen:
            self.rxmt += 1
            self._scaled(self.rxmt, is_orig, "T")
        if rel_ack > self.r_trim:               # AckReceived: the trim when no hole is below
            top = rel_ack                       # (its FIN's end caps it)
            if self.r_fin and top >= self.r_fin_seq:
                top = self.r_fin_seq - 1
            if top <= self.r_reassem:
                if top > self.r_trim:
                    self.r_trim = top
            else:                               # (holes: AckReceived in full)
                r = self.resp()
                self._acked(r, clean(self), rel_ack)
                self.keep(r)
        if paylen and payload_captured and rel_seq >= 0 and not self.skip:
            if rel_seq == self.reassem and self.above is None and rel_seq >= self.trim \
                    and rel_seq >= self.ack - estart:
                self.reassem += paylen
            else:
                data_sent(self, rel_seq, paylen)
        return True

    def _steady_resp(self, seg: Segment, payload_captured: bool) -> bool:
        """The fast path of a segment from our responder (the `r_` fields) to our originator."""
        is_orig = self.flipped
        estart: int = self.r_start32
        pstart: int = self.start32
        paylen = seg.paylen
        ack, pack = seg.ack, self.ack
        d = (ack - pack) & _MASK
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            return False
        bit = (_H_DATA if paylen else _H_ACK) << (0 if is_orig else 16)
        if not self.seen & bit:
            self._check(is_orig, bit if is_orig else bit >> 16,
                        ("D" if is_orig else "d") if paylen else ("A" if is_orig else "a"))
        if d > 0 and (ack or d <= _TOO_LARGE):
            self.ack = pack + d
        seq, last = seg.seq, self.r_last
        rel_seq = (seq - last) & _MASK
        if rel_seq >= 0x80000000:
            rel_seq -= 0x100000000
        d = rel_seq + paylen
        rel_seq += last - estart
        if d > 0:
            self.r_last = last + d
        elif paylen:
            r = self.resp()
            r.rxmt += 1
            self._scaled(r.rxmt, is_orig, "T")
            self.keep(r)
        if rel_ack > self.trim:
            top = rel_ack
            if self.fin and top >= self.fin_seq:
                top = self.fin_seq - 1
            if top <= self.reassem:
                if top > self.trim:
                    self.trim = top
            else:
                rst = self.r_state
                self._acked(self, rst == ESTABLISHED or (rst == CLOSED
                                                         and self.r_prev == ESTABLISHED),
                            rel_ack)
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

    # -- a FIN, once per side -----------------------------------------------------------------
    # A FIN (with ACK, maybe data) from an established endpoint to an established or closed
    # one: update_history's F, the FIN's end, update_ack_seq, update_last_seq, the state
    # (CLOSED, after ESTABLISHED), the peer's AckReceived and the data's coverage, the steps
    # `_packet` takes for it, on the fields themselves; False (nothing done) when the ACK is
    # below the peer's start, which `_packet` then takes.

    def _fin_orig(self, seg: Segment, payload_captured: bool) -> bool:
        """A FIN from our originator (this object) to our responder."""
        is_orig = not self.flipped
        estart: int = self.start32
        pstart: int = self.r_start32
        paylen = seg.paylen
        ack, pack = seg.ack, self.r_ack
        d = (ack - pack) & _MASK
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            return False
        seq, last = seg.seq, self.last
        rel = (seq - last) & _MASK
        if rel >= 0x80000000:
            rel -= 0x100000000
        rel_seq = last + rel - estart
        code = "F" if is_orig else "f"
        if self._check(is_orig, _H_FIN, code) and rel_seq + paylen != self.hl_fin:
            self.add(code)
        self.fin_sent(rel_seq + paylen + 1, True)
        if d > 0 and (ack or d <= _TOO_LARGE):
            self.r_ack = pack + d
        d = rel + paylen + 1                              # update_last_seq
        if last & _MASK == (estart + 1) & _MASK or d > 0:
            self.last = last + d
        elif paylen:
            self.rxmt += 1
            self._scaled(self.rxmt, is_orig, "T")
        self.prev, self.state = ESTABLISHED, CLOSED
        if rel_ack > self.r_trim:                # AckReceived (as in _steady_orig)
            top = rel_ack
            if self.r_fin and top >= self.r_fin_seq:
                top = self.r_fin_seq - 1
            if top <= self.r_reassem:
                if top > self.r_trim:
                    self.r_trim = top
            else:
                r = self.resp()
                self._acked(r, True, rel_ack)
                self.keep(r)
        if paylen and payload_captured and rel_seq >= 0 and not self.skip:
            data_sent(self, rel_seq, paylen)
        return True

    def _fin_resp(self, seg: Segment, payload_captured: bool) -> bool:
        """A FIN from our responder (the `r_` fields) to our originator."""
        is_orig = self.flipped
        estart: int = self.r_start32
        pstart: int = self.start32
        paylen = seg.paylen
        ack, pack = seg.ack, self.ack
        d = (ack - pack) & _MASK
        if d >= 0x80000000:
            d -= 0x100000000
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            return False
        seq, last = seg.seq, self.r_last
        rel = (seq - last) & _MASK
        if rel >= 0x80000000:
            rel -= 0x100000000
        rel_seq = last + rel - estart
        rare = self.rare
        rr = None if rare is None else rare.resp
        if rr is not None and rr.hl_fin_kept:            # (ZeekEndpoint.hl_fin)
            hl = rr.hl_fin
        else:
            hl = self.r_fin_seq - 1 if self.r_fin else 0
        code = "F" if is_orig else "f"
        if self._check(is_orig, _H_FIN, code) and rel_seq + paylen != hl:
            self.add(code)
        if rr is not None:                               # (ZeekEndpoint.fin_sent, pure)
            rr.hl_fin_kept = False
        self.r_fin = True
        self.r_fin_seq = rel_seq + paylen + 1
        if d > 0 and (ack or d <= _TOO_LARGE):
            self.ack = pack + d
        d = rel + paylen + 1
        if last & _MASK == (estart + 1) & _MASK or d > 0:
            self.r_last = last + d
        elif paylen:
            r = self.resp()
            r.rxmt += 1
            self._scaled(r.rxmt, is_orig, "T")
            self.keep(r)
        self.r_prev, self.r_state = ESTABLISHED, CLOSED
        if rel_ack > self.trim:                  # AckReceived (as in _steady_resp)
            top = rel_ack
            if self.fin and top >= self.fin_seq:
                top = self.fin_seq - 1
            if top <= self.reassem:
                if top > self.trim:
                    self.trim = top
            else:
                self._acked(self, True, rel_ack)
        if paylen and payload_captured and rel_seq >= 0 and not self.r_skip:
            r = self.resp()
            data_sent(r, rel_seq, paylen)
            self.keep(r)
        return True

    # -- the handshake, on the fields --------------------------------------------------------
    # The steps `_packet` takes for a connection's first packet when it is a SYN from our
    # originator, and for our responder's SYN-ACK to it, both without data and with a window
    # (no W, T or coverage to count), so that a handshake makes no working endpoint.

    def _syn_first(self, seg: Segment) -> None:
        """The connection's first packet, a SYN from our originator (not flipped: no SYN-ACK;
        our responder stays INACTIVE and untouched)."""
        self.first = FROM_ORIG
        self.partial = False                     # SetPartialStatus of a SYN
        seq = seg.seq
        end = (seq + 1) & _MASK
        self.init_seqs(seq, end)
        last = self.last
        estart: int = self.start32               # (an int: i32 arithmetic would be 32-bit)
        rel_seq = last + seq_diff(seq, last & _MASK) - estart
        hl = self.hl_syn
        self.hl_syn = rel_seq
        if self._check(True, _H_SYN, "S") and rel_seq != hl:
            self.add("S")
        d = seq_diff(end, self.last & _MASK)      # update_last_seq
        if -_TOO_LARGE <= d <= _TOO_LARGE and d > 0:
            self.last += d
        self.set_state(SYN_SENT)                 # UpdateInactiveState
        self.first_seen |= 1

    def _synack_resp(self, seg: Segment) -> bool:
        """Our responder's SYN-ACK (its endpoint INACTIVE, the `r_` fields) to our originator's
        SYN (SYN_SENT, this object, not flipped); False (nothing done) when its SYN's letter
        would need a `ZeekRare` the view does not have yet, which `_packet` then takes."""
        seq, ack = seg.seq, seg.ack
        end = (seq + 1) & _MASK
        start = seq - 0x100000000 if seq >= 0x80000000 else seq      # init_seqs
        last = start + seq_diff(end, seq)
        rel_seq = last + seq_diff(seq, last & _MASK) - start
        rare = self.rare
        rr = None if rare is None else rare.resp
        if rr is None and rel_seq != 0:
            return False
        self.r_start32 = start
        self.r_ack = start
        self.r_last = last
        hl = 0
        if rr is not None:                       # (its hl_syn)
            hl = rr.hl_syn
            rr.hl_syn = rel_seq
        if self._check(False, _H_SYN, "h") and rel_seq != hl:
            self.add("h")
        pack: int = self.ack                     # update_ack_seq on our originator
        pstart: int = self.start32               # (an int: i32 arithmetic would be 32-bit)
        d = seq_diff(ack, pack & _MASK)
        rel_ack = pack + d - pstart
        if rel_ack < 0:
            rel_ack = 0
        elif d > 0 and (ack or d <= _TOO_LARGE):
            self.ack = pack + d
        d = seq_diff(end, last & _MASK)           # update_last_seq
        if -_TOO_LARGE <= d <= _TOO_LARGE and d > 0:
            self.r_last = last + d
        self.set_state(ESTABLISHED)              # UpdateInactiveState: both established
        self.r_prev, self.r_state = INACTIVE, ESTABLISHED
        self._acked(self, True, rel_ack)
        self.first_seen |= 2
        return True

    # -- the full replay of one packet -------------------------------------------------------

    def _packet(self, e: ZeekEndpoint, p: ZeekEndpoint, from_orig: bool, seg: Segment,
                payload_captured: bool, bad_checksum: bool) -> None:
        """TCPSessionAdapter::Process, step by step (checksum first, as TCPAnalyzer does), on
        the sender's endpoint `e` and its peer's `p` (one of them this view, the other the
        responder's loaded by `resp`; the caller stores it back)."""
        flags, seq, paylen = seg.flags, seg.seq, seg.paylen
        if self.first == NO_PACKET:              # a new connection (WantConnection's flip)
            self.first, self.flipped = FROM_ORIG if from_orig else FROM_RESP, not from_orig
            if (not flags & SYN or flags & ACK) and seg.sport in LIKELY_SERVER_PORTS and (
                    seg.dport not in LIKELY_SERVER_PORTS
                    or (not flags & SYN and seg.sport < seg.dport)):
                self._flip(False)
        if bad_checksum:
            e.chk += 1
            self._scaled(e.chk, from_orig != self.flipped, "C")
            return
        zorig = e if from_orig else p
        zresp = p if from_orig else e
        if self.flipped:
            zorig, zresp = zresp, zorig
        if (zorig.state == SYN_ACK_SENT and zresp.state == INACTIVE
                and not flags & (SYN | RST) and (flags & ACK or paylen)):
            self._flip(True)                     # the SYN-ACK sender is the server
        is_orig = from_orig != self.flipped
        if is_orig:                              # SetPartialStatus
            if not self.first_seen & 1:
                self.partial = not flags & SYN or bool(flags & ACK)
        elif not self.first_seen & 2 and not self.partial:
            self.partial = not flags & SYN

        seg_len = (paylen if not flags & RST else 0) + (flags & SYN) // SYN + (flags & FIN)
        end = (seq + seg_len) & _MASK
        st = e.state                             # init_endpoint
        if st == INACTIVE:
            if flags & SYN:
                e.init_seqs(seq, end)
            else:
                e.init_seqs((seq - 1) & _MASK, seq)  # as if after a SYN; first byte not old
        elif flags & SYN and (st == ESTABLISHED or st == PARTIAL
                              or (st in (SYN_SENT, SYN_ACK_SENT) and seq != e.start & _MASK)
                              or (st == RESET and e.prev == INACTIVE)):
            e.init_seqs(seq, end)
        rel_seq = e.last + seq_diff(seq, e.last & _MASK) - e.start

        n = _NCTL[flags & 7]                     # update_history
        if n > 1:
            if flags & FIN and flags & RST:
                self._check(is_orig, _H_FIN_RST, "I" if is_orig else "i")
            else:
                self._check(is_orig, _H_MULTI, "Q" if is_orig else "q")
        elif n:
            # (the letter in its direction's case, chosen here: no call to lower())
            if flags & SYN:
                code = ("H" if is_orig else "h") if flags & ACK else ("S" if is_orig else "s")
                mask, last, now = _H_SYN, e.hl_syn, rel_seq
                e.hl_syn = now
            elif flags & FIN:                    # (e.fin_sent below makes it hl_fin)
                code, mask, last, now = "F" if is_orig else "f", _H_FIN, e.hl_fin, rel_seq + paylen
            else:
                code, mask, last, now = "R" if is_orig else "r", _H_RST, e.hl_rst, rel_seq
                e.hl_rst = now
            if self._check(is_orig, mask, code) and now != last:
                self.add(code)
        elif paylen:
            self._check(is_orig, _H_DATA, "D" if is_orig else "d")
        elif flags & ACK:
            self._check(is_orig, _H_ACK, "A" if is_orig else "a")

        if not seg.win and not flags & RST and p.state != CLOSED and e.state != RESET:
            e.win0 += 1                          # update_window
            self._scaled(e.win0, is_orig, "W")
        if flags & FIN:
            e.fin_sent(rel_seq + seg_len, n == 1)

        rel_ack = 0
        if flags & ACK:
            ack = seg.ack
            if p.state == INACTIVE:              # init_peer
                rel_ack = 1
                p.init_seqs((ack - 1) & _MASK, (ack - 1) & _MASK)
            else:
                d = seq_diff(ack, p.ack & _MASK)
                rel_ack = p.ack + d - p.start
                if rel_ack < 0:
                    rel_ack = 0                  # TCP_ack_underflow_or_misorder
                elif not flags & RST and d > 0 and (ack or d <= _TOO_LARGE):
                    p.ack += d                   # update_ack_seq

        d = seq_diff(end, e.last & _MASK)        # update_last_seq
        if flags & (SYN | RST) and not -_TOO_LARGE <= d <= _TOO_LARGE:
            pass
        elif flags & FIN and e.last & _MASK == (e.start + 1) & _MASK:
            e.last += d
        elif e.state == RESET:
            pass
        elif d > 0:
            e.last += d
        elif paylen:
            e.rxmt += 1
            self._scaled(e.rxmt, is_orig, "T")

        if flags & (SYN | FIN | RST) or e.state == INACTIVE:
            self._machine(e, p, is_orig, flags, paylen)
        if flags & ACK:
            self._acked(p, clean(e), rel_ack)
        self.first_seen |= 1 if is_orig else 2   # CheckPIA_FirstPacket
        if paylen and payload_captured and not flags & RST and rel_seq >= 0 and not e.skip:
            data_sent(e, rel_seq + 1 if flags & SYN else rel_seq, paylen)

    # -- the result --------------------------------------------------------------------------

    def finish(self, first_from_orig: bool) -> Tuple[str, str]:
        """(conn_state, history) at the end; `first_from_orig` says whether the connection's
        first packet came from our orig — when it did not, Zeek would have flipped the
        connection, so history starts with '^' (the module docstring gives Zeek's flipping
        rules and where ours differ). ValueError if the view missed the first segment."""
        if self.first == NO_PACKET:
            return "OTH", ""
        if first_from_orig != (self.first == FROM_ORIG):
            raise ValueError("ZeekView was not fed the connection's first segment")
        st, rst = self.state, self.r_state               # (no endpoint made for the responder)
        osize = size(self.start32, st, self.prev, self.last, self.ack, self.fin, rst)
        rsize = size(self.r_start32, rst, self.r_prev, self.r_last, self.r_ack, self.r_fin, st)
        if self.flipped:
            return conn_state(rst, st, rsize, osize, self.history), self.history
        return conn_state(st, rst, osize, rsize, self.history), self.history


__all__ = ["ZeekView", "conn_state", "LIKELY_SERVER_PORTS", "STATE_NAMES"]
