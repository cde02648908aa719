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

from typing import Final, List, Optional, Tuple

from analyzer.segment import ACK, FIN, RST, SYN, Segment, seq_diff
from analyzer.zeekstate import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, STATE_NAMES,
                                SYN_ACK_SENT, SYN_SENT, conn_state)

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
_ABOVE_HOLE: Final = 16384                  # tcp_max_above_hole_without_any_acks (init-bare.zeek)
_CTL: Final = SYN | FIN | RST | ACK
_NCTL: Final = (0, 1, 1, 2, 1, 2, 2, 3)     # how many of FIN (1), SYN (2), RST (4) a packet has
_POW10: Final = frozenset(10 ** k for k in range(20))   # ScaledHistoryEntry thresholds, base 10

#: TCP ports of Zeek's default `likely_server_ports` (base/protocols: ftp, ssh, smtp, dns,
#: http, krb, dce-rpc, smb, imap, ldap, ssl, modbus, mysql, rdp, xmpp, postgresql, redis,
#: irc, mqtt, dnp3).
LIKELY_SERVER_PORTS: Final = frozenset({
    21, 2811, 22, 25, 587, 53, 80, 81, 631, 1080, 3128, 8000, 8080, 8888, 88, 135, 139, 445,
    143, 389, 3268, 443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223, 502, 3306,
    3389, 5222, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 1883, 20000})


class _Endpoint:
    """One Zeek TCP_Endpoint: state, sequence bookkeeping and reassembly coverage.

    `start` is the raw base sequence number; `last` and `ack` are unwrapped (they may pass
    2**32). Reassembly keeps coverage only: `reassem` (next byte to deliver, relative),
    `trim` (highest acknowledged) and `above` (received ranges beyond a hole).
    """

    __slots__ = ("state", "prev", "start", "last", "ack", "fin_cnt", "fin_seq", "hl_syn",
                 "hl_fin", "hl_rst", "rxmt", "win0", "gap", "chk", "reassem", "trim", "above",
                 "skip")

    def __init__(self) -> None:
        """An endpoint Zeek has seen nothing from (TCP_ENDPOINT_INACTIVE)."""
        self.state = self.prev = INACTIVE
        self.start = self.last = self.ack = self.fin_cnt = self.fin_seq = 0
        self.hl_syn = self.hl_fin = self.hl_rst = 0
        self.rxmt = self.win0 = self.gap = self.chk = 0       # counts of the scaled letters
        self.reassem = self.trim = 1
        self.above: Optional[List[List[int]]] = None
        self.skip = False

    def set_state(self, state: int) -> None:
        """TCP_Endpoint::SetState: remember the previous state on a change."""
        if state != self.state:
            self.prev, self.state = self.state, state

    def init_seqs(self, start: int, last: int) -> None:
        """InitStartSeq/InitAckSeq(start) and InitLastSeq(last), raw 32-bit values."""
        self.start = self.ack = start
        self.last = start + seq_diff(last, start)

    def no_data_acked(self) -> bool:
        """TCP_Endpoint::NoDataAcked: nothing beyond the SYN acknowledged yet."""
        return self.ack - self.start in (0, 1)

    def size(self, peer: "_Endpoint") -> int:
        """TCP_Endpoint::Size: bytes sent according to sequence numbers (no SYN, no FIN)."""
        if (self.prev == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and not self.no_data_acked()):
            return 0
        size = max(self.last, self.ack) - self.start
        size -= 1 if size else 0
        return size - 1 if self.fin_cnt and size else size


def _clean(e: _Endpoint) -> bool:
    """TCP_Reassembler is_clean: established, or closed after being established."""
    return e.state == ESTABLISHED or (e.state == CLOSED and e.prev == ESTABLISHED)


class ZeekView:
    """Zeek's view of one connection. Feed every segment in capture order, then `finish()`;
    most take the fast path: an ACK or data segment while both are established."""

    __slots__ = ("ours", "zorig", "history", "seen", "partial", "first_seen", "first_dir",
                 "flipped")

    def __init__(self) -> None:
        """A connection before its first packet."""
        self.ours = (_Endpoint(), _Endpoint())   # by our side: 0 = our orig, 1 = our resp
        self.zorig: Optional[_Endpoint] = None   # the endpoint Zeek calls the originator
        self.history = ""
        self.seen = 0              # Conn::hist_seen
        self.partial = False       # TCPSessionAdapter::is_partial
        self.first_seen = 0        # first_packet_seen: 1 = Zeek's orig, 2 = Zeek's resp
        self.first_dir: Optional[bool] = None
        self.flipped = False       #: Zeek's originator is our responder

    def segment(self, from_orig: bool, seg: Segment, payload_captured: bool = True,
                bad_checksum: bool = False) -> None:
        """One segment, `from_orig` relative to tcpflow-check's orig/resp (the SYN sender; see
        flows.py). `payload_captured` is false when the snaplen cut the payload (Zeek then
        reassembles nothing: a content gap); `bad_checksum` makes the segment only a `C`, as
        Zeek drops it (pass it only when checksums are validated)."""
        if from_orig:
            e, p = self.ours
        else:
            p, e = self.ours
        if (seg.flags & _CTL == ACK and e.state == ESTABLISHED and p.state == ESTABLISHED
                and self.first_seen == 3 and seg.win and not bad_checksum):
            is_orig = e is self.zorig
            paylen = seg.paylen
            bit = (_H_DATA if paylen else _H_ACK) << (0 if is_orig else 16)
            ack, pack = seg.ack, p.ack
            d = (ack - pack) & _MASK                     # seq_diff, inlined
            if d >= 0x80000000:
                d -= 0x100000000
            rel_ack = pack + d - p.start
            if rel_ack >= 0:
                if not self.seen & bit:          # update_history: the first D or A this way
                    self._check(is_orig, bit if is_orig else bit >> 16, "D" if paylen else "A")
                if d > 0 and (ack or d <= _TOO_LARGE):
                    p.ack = pack + d
                seq, last = seg.seq, e.last
                rel_seq = (seq - last) & _MASK
                if rel_seq >= 0x80000000:
                    rel_seq -= 0x100000000
                d = rel_seq + paylen                      # update_last_seq
                rel_seq += last - e.start
                if d > 0:
                    e.last = last + d
                elif paylen:
                    e.rxmt += 1
                    self._scaled(e.rxmt, is_orig, "T")
                if rel_ack > p.trim:
                    if rel_ack <= p.reassem:
                        p.trim = rel_ack
                    else:
                        self._acked(p, rel_ack)
                if paylen and payload_captured and rel_seq >= 0 and not e.skip:
                    if rel_seq == e.reassem and e.above is None and rel_seq >= e.trim \
                            and rel_seq >= e.ack - e.start:
                        e.reassem += paylen
                    else:
                        self._data(e, rel_seq, paylen)
                return
        self._packet(e, p, from_orig, seg, payload_captured, bad_checksum)

    # -- history -----------------------------------------------------------------------------

    def _check(self, is_orig: bool, mask: int, code: str) -> bool:
        """Conn::CheckHistory: add `code` the first time; True if it was already seen."""
        if not is_orig:
            mask <<= 16
            code = code.lower()
        if self.seen & mask:
            return True
        self.seen |= mask
        self.history += code
        return False

    def _scaled(self, count: int, is_orig: bool, code: str) -> None:
        """Conn::ScaledHistoryEntry: the letter at the 1st, 10th, 100th ... occurrence
        (`count` is the endpoint's count including this one)."""
        if count in _POW10:
            self.history += code if is_orig else code.lower()

    def _flip(self, rewrite: bool) -> None:
        """Connection::FlipRoles: swap originator and responder and add `^`; `rewrite` (the
        SYN-ACK flip) restates the history as if flipped from the first packet."""
        a, b = self.ours
        self.zorig = b if self.zorig is a else a
        self.flipped = self.zorig is b
        self.partial = False
        fs = self.first_seen
        self.first_seen = (2 if fs & 1 else 0) | (1 if fs & 2 else 0)
        if rewrite:
            self.history = "^" + self.history.swapcase()
            self.seen = (self.seen >> 16) | ((self.seen & 0xFFFF) << 16)
        else:
            self.history += "^"

    # -- the full replay of one packet -------------------------------------------------------

    def _packet(self, e: _Endpoint, p: _Endpoint, from_orig: bool, seg: Segment,
                payload_captured: bool, bad_checksum: bool) -> None:
        """TCPSessionAdapter::Process, step by step (checksum first, as TCPAnalyzer does)."""
        flags, seq, paylen = seg.flags, seg.seq, seg.paylen
        if self.zorig is None:                   # a new connection (WantConnection's flip)
            self.zorig, self.first_dir, self.flipped = e, from_orig, not from_orig
            if (not flags & SYN or flags & ACK) and seg.sport in LIKELY_SERVER_PORTS and (
                    seg.dport not in LIKELY_SERVER_PORTS
                    or (not flags & SYN and seg.sport < seg.dport)):
                self._flip(False)
        if bad_checksum:
            e.chk += 1
            self._scaled(e.chk, e is self.zorig, "C")
            return
        zorig = self.zorig
        zresp = self.ours[1] if zorig is self.ours[0] else self.ours[0]
        if (zorig.state == SYN_ACK_SENT and zresp.state == INACTIVE
                and not flags & (SYN | RST) and (flags & ACK or paylen)):
            self._flip(True)                     # the SYN-ACK sender is the server
        is_orig = e is self.zorig
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
                              or (st in (SYN_SENT, SYN_ACK_SENT) and seq != e.start)
                              or (st == RESET and e.prev == INACTIVE)):
            e.init_seqs(seq, end)
        rel_seq = e.last + seq_diff(seq, e.last & _MASK) - e.start

        n = _NCTL[flags & 7]                     # update_history
        if n > 1:
            if flags & FIN and flags & RST:
                self._check(is_orig, _H_FIN_RST, "I")
            else:
                self._check(is_orig, _H_MULTI, "Q")
        elif n:
            if flags & SYN:
                code, mask, last, now = "H" if flags & ACK else "S", _H_SYN, e.hl_syn, rel_seq
                e.hl_syn = now
            elif flags & FIN:
                code, mask, last, now = "F", _H_FIN, e.hl_fin, rel_seq + paylen
                e.hl_fin = now
            else:
                code, mask, last, now = "R", _H_RST, e.hl_rst, rel_seq
                e.hl_rst = now
            if self._check(is_orig, mask, code) and now != last:
                self.history += code if is_orig else code.lower()
        elif paylen:
            self._check(is_orig, _H_DATA, "D")
        elif flags & ACK:
            self._check(is_orig, _H_ACK, "A")

        if not seg.win and not flags & RST and p.state != CLOSED and e.state != RESET:
            e.win0 += 1                          # update_window
            self._scaled(e.win0, is_orig, "W")
        if flags & FIN:
            e.fin_cnt += 1
            e.fin_seq = rel_seq + seg_len

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
            self._acked(p, rel_ack)
        self.first_seen |= 1 if is_orig else 2   # CheckPIA_FirstPacket
        if paylen and payload_captured and not flags & RST and rel_seq >= 0 and not e.skip:
            self._data(e, rel_seq + 1 if flags & SYN else rel_seq, paylen)

    def _machine(self, e: _Endpoint, p: _Endpoint, is_orig: bool, flags: int,
                 paylen: int) -> None:
        """TCPSessionAdapter::UpdateStateMachine (UpdateInactiveState ... UpdateClosedState);
        a RESET endpoint never changes."""
        st = e.state
        if st == INACTIVE:
            if flags & SYN:
                if is_orig:
                    e.set_state(SYN_ACK_SENT if flags & ACK else SYN_SENT)
                else:
                    if not flags & ACK and p.state == SYN_ACK_SENT:
                        self._flip(False)        # SYN/SYN-ACK reversal
                        p.set_state(ESTABLISHED)
                        self.first_seen |= 1
                    if p.state == SYN_SENT:
                        p.set_state(ESTABLISHED)
                    e.set_state(ESTABLISHED)
            if flags & FIN:
                e.set_state(CLOSED)
            if flags & RST:
                e.set_state(RESET)
            if e.state == INACTIVE:
                if not is_orig and not paylen and p.state == SYN_SENT:
                    pass                         # an ACK of the SYN before the SYN-ACK
                elif flags & ACK and p.state == ESTABLISHED:
                    e.set_state(ESTABLISHED)     # the SYN was missed
                    self.partial = False
                    self.first_seen |= 1 if is_orig else 2
                else:
                    e.set_state(PARTIAL)
        elif st == SYN_SENT or st == SYN_ACK_SENT:
            if flags & FIN:
                e.set_state(CLOSED)
            if flags & RST:
                e.set_state(RESET)
        elif st == ESTABLISHED or st == PARTIAL:
            if flags & SYN and st == PARTIAL and p.state == INACTIVE and not flags & ACK:
                e.set_state(SYN_SENT)
            if flags & FIN and not flags & RST:
                e.set_state(CLOSED)
                if p.state == RESET and p.prev == CLOSED:
                    p.set_state(CLOSED)          # FIN then RST was a normal close
            if flags & RST:
                e.set_state(RESET)
        elif st == CLOSED and flags & RST and p.state != CLOSED:
            e.set_state(RESET)

    def _acked(self, e: _Endpoint, seq: int) -> None:
        """TCP_Reassembler::AckReceived on the endpoint whose data `seq` acknowledges: each
        hole of never-delivered bytes below it is a content gap, a `G` while both sides are
        established or closing cleanly (TCP_Reassembler::Gap / Undelivered)."""
        if e.fin_cnt and seq >= e.fin_seq:
            seq = e.fin_seq - 1
        if seq <= e.trim:
            return
        if seq > e.reassem and not (seq <= 2 and self.partial):
            holes, above, pos = 0, e.above, e.reassem
            while above and above[0][0] < seq:
                holes += 1
                pos = max(pos, above.pop(0)[1])
                while above and above[0][0] <= pos:
                    pos = max(pos, above.pop(0)[1])
            holes += seq > pos
            if holes and not e.skip and _clean(e) and _clean(self.ours[e is self.ours[0]]):
                for _ in range(holes):
                    e.gap += 1
                    self._scaled(e.gap, e is self.zorig, "G")
            e.reassem = max(seq, pos)
        e.trim = seq

    def _data(self, e: _Endpoint, seq: int, length: int) -> None:
        """TCP_Reassembler::DataSent and Reassembler::NewBlock, as coverage."""
        upper, acked = seq + length, e.ack - e.start
        if upper <= acked or upper <= e.trim:
            return
        seq = max(seq, acked, e.trim)
        above = e.above
        if seq <= e.reassem:
            if upper > e.reassem:
                e.reassem = upper
                while above and above[0][0] <= e.reassem:
                    e.reassem = max(e.reassem, above.pop(0)[1])
        else:
            if above is None:
                above = e.above = []
            i = 0
            while i < len(above) and above[i][1] < seq:
                i += 1
            j = i
            while j < len(above) and above[j][0] <= upper:
                seq, upper = min(seq, above[j][0]), max(upper, above[j][1])
                j += 1
            above[i:j] = [[seq, upper]]
        if above and above[-1][1] - e.reassem > _ABOVE_HOLE and e.no_data_acked():
            e.above, e.skip = None, True         # above_hole_data_without_any_acks

    # -- the result --------------------------------------------------------------------------

    def finish(self, first_from_orig: bool) -> Tuple[str, str]:
        """(conn_state, history) at the end; `first_from_orig` says whether the connection's
        first packet came from our orig — when it did not, Zeek would have flipped the
        connection, so history starts with '^' (the module docstring gives Zeek's flipping
        rules and where ours differ). ValueError if the view missed the first segment."""
        if self.zorig is None:
            return "OTH", ""
        if first_from_orig != self.first_dir:
            raise ValueError("ZeekView was not fed the connection's first segment")
        o = self.zorig
        r = self.ours[o is self.ours[0]]
        return conn_state(o.state, r.state, o.size(r), r.size(o), self.history), self.history


__all__ = ["ZeekView", "conn_state", "LIKELY_SERVER_PORTS", "STATE_NAMES"]
