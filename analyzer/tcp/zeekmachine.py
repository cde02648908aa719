"""Zeek's roles and state machine for one connection: who is the originator, the history
letters, UpdateStateMachine and the reassembler's AckReceived.

`ZeekMachine` is the part of Zeek's TCP analyzer that more than one packet path uses; zeek.py's
`ZeekView` feeds it packets (its fast path and TCPSessionAdapter::Process). Sources and the
letters are described in zeek.py's docstring.
"""

from __future__ import annotations

from typing import Dict, Final, Optional

from analyzer.common.native import i32, mypyc_attr, u8
from analyzer.decode.segment import SYN, ACK, FIN, RST
from analyzer.tcp.zeekstate import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT,
                                    SYN_SENT, ZeekEndpoint, clean)

_POW10: Final = frozenset(10 ** k for k in range(20))   # ScaledHistoryEntry thresholds, base 10

#: History -> letters -> the history with them at the end (`ZeekMachine.add`), for at most
#: `_NEXT_MAX` histories (a capture of every kind of odd connection stays bounded; real
#: traffic has a few hundred).
_NEXT: Final[Dict[str, Dict[str, str]]] = {}
_NEXT_MAX: Final = 4096


# History masks (TCP_Endpoint.h HistoryMasks); the responder's are shifted left by 16.
H_SYN: Final = 1
H_FIN: Final = 2
H_RST: Final = 4
H_FIN_RST: Final = 8
H_DATA: Final = 0x10
H_ACK: Final = 0x20
H_MULTI: Final = 0x40
SEQ_MASK: Final = 0xFFFFFFFF
TOO_LARGE_SEQ_DELTA: Final = 1048576     # (Zeek's name)

#: `ZeekMachine.first`: no packet yet, the first from our originator, from our responder.
NO_PACKET: Final = 0
FROM_ORIG: Final = 1
FROM_RESP: Final = 2


@mypyc_attr(acyclic=True)
class ZeekMachine(ZeekEndpoint):
    """Both Zeek endpoints of one connection, their roles, and the history so far: the machine
    is itself the endpoint of our originator (`z0`, its inherited attributes) and holds our
    responder's flat, in its `r_` fields (`z1`: a packet's full replay works on an endpoint made
    of them, `resp`, and stores it back, `keep`; nothing shared between views), its rare facts
    in the originator's `ZeekRare` (`resp`); the roles are two flags, not references (80 + 112
    + 112 -> 144 bytes a view)."""

    __slots__ = ("seen", "r_start32", "first_seen", "partial", "flipped", "first",
                 "r_state", "r_prev", "r_skip", "r_fin", "r_last", "r_ack", "r_fin_seq",
                 "r_reassem", "r_trim", "history")

    # The flags and small numbers first and together: 16 bytes in the compiled build.
    seen: i32
    r_start32: i32
    first_seen: u8
    partial: bool
    flipped: bool
    first: u8
    r_state: u8
    r_prev: u8
    r_skip: bool
    r_fin: bool

    def __init__(self) -> None:
        """A connection before its first packet."""
        super().__init__()
        self.seen = 0              # Conn::hist_seen
        self.r_start32 = 0         # our responder's endpoint, as ZeekEndpoint's fields
        self.r_state = self.r_prev = INACTIVE
        self.r_skip = self.r_fin = False
        self.r_last = self.r_ack = self.r_fin_seq = 0
        self.r_reassem = self.r_trim = 1
        self.history = ""
        self.partial = False       # TCPSessionAdapter::is_partial
        self.first_seen = 0        # first_packet_seen: 1 = Zeek's orig, 2 = Zeek's resp
        self.first = NO_PACKET     # where the first packet came from (Zeek's orig is chosen)
        self.flipped = False       #: Zeek's originator is our responder

    @property
    def started(self) -> bool:
        """A packet came (Zeek's originator is chosen)."""
        return self.first != NO_PACKET

    @property
    def first_dir(self) -> bool:
        """The first packet came from our originator (once `started`)."""
        return self.first == FROM_ORIG

    def resp(self) -> ZeekEndpoint:
        """Our responder's endpoint, made of the `r_` fields to be worked on (`keep` stores it
        back; its rare facts shared, not copied)."""
        rare = self.rare
        return ZeekEndpoint(self.r_start32, self.r_state, self.r_prev, self.r_skip, self.r_fin,
                            self.r_last, self.r_ack, self.r_fin_seq, self.r_reassem,
                            self.r_trim, None if rare is None else rare.resp)

    def keep(self, r: ZeekEndpoint) -> None:
        """Our responder's endpoint `r` (from `resp`) stored back into this view; its rare
        facts, once it has some, in our originator's `ZeekRare` (a blank one reads as none)."""
        self.r_start32, self.r_state, self.r_prev = r.start32, r.state, r.prev
        self.r_skip, self.r_fin, self.r_last, self.r_ack = r.skip, r.fin, r.last, r.ack
        self.r_fin_seq, self.r_reassem, self.r_trim = r.fin_seq, r.reassem, r.trim
        if r.rare is not None:
            self._rare().resp = r.rare

    @property
    def z0(self) -> ZeekEndpoint:
        """Our originator's Zeek endpoint: this object."""
        return self

    @property
    def z1(self) -> ZeekEndpoint:
        """Our responder's Zeek endpoint: a copy (`resp`)."""
        return self.resp()

    @property
    def zorig(self) -> Optional[ZeekEndpoint]:
        """The endpoint Zeek calls the originator (a copy when it is our responder); None
        before the first packet."""
        if self.first == NO_PACKET:
            return None
        return self.z1 if self.flipped else self

    def is_zorig(self, e: ZeekEndpoint) -> bool:
        """Whether `e` (`z0` or `z1`) is the endpoint Zeek calls the originator."""
        return (e is self) != self.flipped

    # -- history -----------------------------------------------------------------------------

    def add(self, letters: str) -> None:
        """`letters` at the end of the history. Histories repeat from connection to connection
        ("ShADd", "ShADdFf", ...): the step from one to the next is looked up in `_NEXT`, so
        connections with the same history so far share one string (50-70 bytes less a
        connection), and a step seen before makes no string at all."""
        history = self.history
        steps = _NEXT.get(history)
        if steps is not None:
            known = steps.get(letters)
            if known is not None:
                self.history = known
                return
        longer = history + letters
        if steps is None:
            if len(_NEXT) >= _NEXT_MAX:
                self.history = longer       # (past the bound: a string of its own)
                return
            steps = _NEXT[history] = {}
        steps[letters] = longer
        self.history = longer

    def _check(self, is_orig: bool, mask: int, letter: str) -> bool:
        """Conn::CheckHistory: add `letter` (already in the case of its direction: lower from
        Zeek's responder) the first time; True if it was already seen."""
        if not is_orig:
            mask <<= 16
        if self.seen & mask:
            return True
        self.seen |= mask
        self.add(letter)
        return False

    def _scaled(self, count: int, is_orig: bool, code: str) -> None:
        """Conn::ScaledHistoryEntry: the letter at the 1st, 10th, 100th ... occurrence
        (`count` is the endpoint's count including this one)."""
        if count in _POW10:
            self.add(code if is_orig else code.lower())

    def _flip(self, rewrite: bool) -> None:
        """Connection::FlipRoles: swap originator and responder and add `^`; `rewrite` (the
        SYN-ACK flip) restates the history as if flipped from the first packet."""
        self.flipped = not self.flipped
        self.partial = False
        fs = self.first_seen
        self.first_seen = (2 if fs & 1 else 0) | (1 if fs & 2 else 0)
        if rewrite:
            self.history = "^" + self.history.swapcase()
            self.seen = (self.seen >> 16) | ((self.seen & 0xFFFF) << 16)
        else:
            self.add("^")

    # -- state machine and acknowledgements --------------------------------------------------

    def _machine(self, e: ZeekEndpoint, p: ZeekEndpoint, is_orig: bool, flags: int,
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

    def _acked(self, e: ZeekEndpoint, peer_clean: bool, seq: int) -> None:
        """TCP_Reassembler::AckReceived on the endpoint whose data `seq` acknowledges: each
        hole of never-delivered bytes below it is a content gap, a `G` while both sides are
        established or closing cleanly (TCP_Reassembler::Gap / Undelivered); `peer_clean`:
        the other endpoint is (`clean`)."""
        if e.fin and seq >= e.fin_seq:
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
            if holes and not e.skip and clean(e) and peer_clean:
                for _ in range(holes):
                    e.gap += 1
                    self._scaled(e.gap, self.is_zorig(e), "G")
            e.reassem = max(seq, pos)
        e.trim = seq
