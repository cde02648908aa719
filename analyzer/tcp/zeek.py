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

from analyzer.common.native import i32, i64, mypyc_attr
from analyzer.decode.segment import ACK, FIN, RST, SYN, Segment, seq_diff
from analyzer.tcp.zeekmachine import (FROM_ORIG, FROM_RESP, H_ACK, H_DATA, H_FIN, H_FIN_RST,
                                      H_MULTI, H_RST, H_SYN, L_A, L_C, L_D, L_F, L_H, L_I, L_Q,
                                      L_R, L_S, L_T, L_W, LOWER, NO_PACKET, SEQ_MASK,
                                      TOO_LARGE_SEQ_DELTA)
from analyzer.tcp.zeeksides import ZeekSides
from analyzer.tcp.zeekstate import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, STATE_NAMES,
                                    SYN_ACK_SENT, SYN_SENT, ZeekEndpoint, clean, conn_state,
                                    data_sent, size)

# Literals (SYN | FIN | RST | ACK, FIN | ACK, SYN | ACK), so that the compiled build inlines them.
_CTL: Final = 0x17
_FIN_ACK: Final = 0x11
_SYN_ACK: Final = 0x12
_NCTL: Final = (0, 1, 1, 2, 1, 2, 2, 3)     # how many of FIN (1), SYN (2), RST (4) a packet has

#: TCP ports of Zeek's default `likely_server_ports` (base/protocols: ftp, ssh, smtp, dns,
#: http, krb, dce-rpc, smb, imap, ldap, ssl, modbus, mysql, rdp, xmpp, postgresql, redis,
#: irc, mqtt, dnp3).
LIKELY_SERVER_PORTS: Final = frozenset({
    21, 2811, 22, 25, 587, 53, 80, 81, 631, 1080, 3128, 8000, 8080, 8888, 88, 135, 139, 445,
    143, 389, 3268, 443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223, 502, 3306,
    3389, 5222, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 1883, 20000})


@mypyc_attr(acyclic=True)
class ZeekView(ZeekSides):
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
        ctl = i64(seg.flags) & _CTL
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
            self._scaled(e.chk, from_orig != self.flipped, L_C)
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
        end = (seq + seg_len) & SEQ_MASK
        st = e.state                             # init_endpoint
        if st == INACTIVE:
            if flags & SYN:
                e.init_seqs(seq, end)
            else:
                e.init_seqs((seq - 1) & SEQ_MASK, seq)  # as if after a SYN; first byte not old
        elif flags & SYN and (st == ESTABLISHED or st == PARTIAL
                              or (st in (SYN_SENT, SYN_ACK_SENT) and seq != e.start & SEQ_MASK)
                              or (st == RESET and e.prev == INACTIVE)):
            e.init_seqs(seq, end)
        rel_seq = e.last + seq_diff(seq, e.last & SEQ_MASK) - e.start

        n = _NCTL[flags & 7]                     # update_history
        if n > 1:
            if flags & FIN and flags & RST:
                self._check(is_orig, H_FIN_RST, L_I if is_orig else L_I + LOWER)
            else:
                self._check(is_orig, H_MULTI, L_Q if is_orig else L_Q + LOWER)
        elif n:
            # (the letter in its direction's case: its code + LOWER from Zeek's responder)
            if flags & SYN:
                code: i32 = L_H if flags & ACK else L_S
                mask, last, now = H_SYN, e.hl_syn, rel_seq
                e.hl_syn = now
            elif flags & FIN:                    # (e.fin_sent below makes it hl_fin)
                code, mask, last, now = L_F, H_FIN, e.hl_fin, rel_seq + paylen
            else:
                code, mask, last, now = L_R, H_RST, e.hl_rst, rel_seq
                e.hl_rst = now
            if not is_orig:
                code += LOWER
            if self._check(is_orig, mask, code) and now != last:
                self.add(code)
        elif paylen:
            self._check(is_orig, H_DATA, L_D if is_orig else L_D + LOWER)
        elif flags & ACK:
            self._check(is_orig, H_ACK, L_A if is_orig else L_A + LOWER)

        if not seg.win and not flags & RST and p.state != CLOSED and e.state != RESET:
            e.win0 += 1                          # update_window
            self._scaled(e.win0, is_orig, L_W)
        if flags & FIN:
            e.fin_sent(rel_seq + seg_len, n == 1)

        rel_ack = 0
        if flags & ACK:
            ack = seg.ack
            if p.state == INACTIVE:              # init_peer
                rel_ack = 1
                p.init_seqs((ack - 1) & SEQ_MASK, (ack - 1) & SEQ_MASK)
            else:
                d = seq_diff(ack, p.ack & SEQ_MASK)
                rel_ack = p.ack + d - p.start
                if rel_ack < 0:
                    rel_ack = 0                  # TCP_ack_underflow_or_misorder
                elif not flags & RST and d > 0 and (ack or d <= TOO_LARGE_SEQ_DELTA):
                    p.ack += d                   # update_ack_seq

        d = seq_diff(end, e.last & SEQ_MASK)        # update_last_seq
        if flags & (SYN | RST) and not -TOO_LARGE_SEQ_DELTA <= d <= TOO_LARGE_SEQ_DELTA:
            pass
        elif flags & FIN and e.last & SEQ_MASK == (e.start + 1) & SEQ_MASK:
            e.last += d
        elif e.state == RESET:
            pass
        elif d > 0:
            e.last += d
        elif paylen:
            e.rxmt += 1
            self._scaled(e.rxmt, is_orig, L_T)

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
        osize = size(i64(self.start32), st, self.prev, self.last, self.ack, self.fin, rst)
        rsize = size(i64(self.r_start32), rst, self.r_prev, self.r_last, self.r_ack, self.r_fin,
                     st)
        history = self.history
        if self.flipped:
            return conn_state(rst, st, rsize, osize, history), history
        return conn_state(st, rst, osize, rsize, history), history


__all__ = ["ZeekView", "conn_state", "LIKELY_SERVER_PORTS", "STATE_NAMES"]
