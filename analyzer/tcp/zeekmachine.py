"""Zeek's roles and state machine for one connection: who is the originator, the history
letters, UpdateStateMachine and the reassembler's AckReceived.

`ZeekMachine` is the part of Zeek's TCP analyzer that more than one packet path uses; zeek.py's
`ZeekView` feeds it packets (its fast path and TCPSessionAdapter::Process). Sources and the
letters are described in zeek.py's docstring.
"""

from __future__ import annotations

from typing import Dict, Final, List, Optional

from analyzer.common.native import i32, i64, mypyc_attr, u8
from analyzer.decode.segment import SYN, ACK, FIN, RST
from analyzer.tcp.zeekstate import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT,
                                    SYN_SENT, ZeekEndpoint, clean)

_POW10: Final = frozenset(10 ** k for k in range(20))   # ScaledHistoryEntry thresholds, base 10

#: The history letters, by code (`ZeekMachine.add` takes codes): Zeek's originator's upper
#: case ones below `LOWER`, its responder's each at its upper case one's code + `LOWER`; `^`.
L_S: Final = 0
L_H: Final = 1
L_A: Final = 2
L_D: Final = 3
L_F: Final = 4
L_R: Final = 5
L_I: Final = 6
L_Q: Final = 7
L_T: Final = 8
L_W: Final = 9
L_G: Final = 10
L_C: Final = 11
L_FLIP: Final = 12
LOWER: Final = 16
_UPPER: Final = "SHADFRIQTWGC^"
LETTERS: Final = _UPPER.ljust(LOWER, "?") + _UPPER.lower().ljust(LOWER, "?")

#: The histories met so far, as a trie's states (a history's state is its number in
#: `_HISTORIES`; 0 is the empty one): `_STEPS[state << 5 | code]` is the state of that history
#: with the letter of `code` at its end, 0 while not met yet (no letter leads back to the empty
#: history), so that a letter is one list item, not a string made or looked up; `_STATE` finds
#: a history's state from its text. At most `_STATES_MAX` states (a capture of every kind of
#: odd connection stays bounded; real traffic has a few hundred); a view whose history has no
#: state (met once the table was full) keeps its own text (`ZeekRare.history`, `OWN`).
#: Never emptied: views hold states.
_HISTORIES: Final[List[str]] = [""]
_STEPS: Final[List[int]] = [0] * (LOWER * 2)
_STATE: Final[Dict[str, int]] = {"": 0}
_STATES_MAX: Final = 4096
#: `ZeekMachine.hstate` of a view whose history is its own text (`ZeekRare.history`): not a
#: state.
OWN: Final = -1


def history_state(text: str) -> int:
    """The state of the history `text`, added to the table if new; `OWN` when the table is
    full and has no state for it."""
    state = _STATE.get(text)
    if state is not None:
        return state
    state = len(_HISTORIES)
    if state >= _STATES_MAX:
        return OWN
    _HISTORIES.append(text)
    _STEPS.extend([0] * (LOWER * 2))
    _STATE[text] = state
    return state


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
                 "r_reassem", "r_trim", "hstate")

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
    hstate: i32

    def __init__(self) -> None:
        """A connection before its first packet."""
        # (ZeekEndpoint.__init__'s fields of an INACTIVE endpoint, written here: no call)
        self.start32 = 0
        self.state = self.prev = INACTIVE
        self.skip = self.fin = False
        self.last = self.ack = self.fin_seq = 0
        self.reassem = self.trim = 1
        self.rare = None
        self.seen = 0              # Conn::hist_seen
        self.r_start32 = 0         # our responder's endpoint, as ZeekEndpoint's fields
        self.r_state = self.r_prev = INACTIVE
        self.r_skip = self.r_fin = False
        self.r_last = self.r_ack = self.r_fin_seq = 0
        self.r_reassem = self.r_trim = 1
        self.hstate = 0            # the history's state (`_HISTORIES`): empty
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

    @property
    def history(self) -> str:
        """The history so far (its state's text, or the view's own: `OWN`)."""
        state = self.hstate
        if state != OWN:
            return _HISTORIES[state]
        rare = self.rare
        assert rare is not None
        return rare.history

    def _set_history(self, text: str) -> None:
        """The history made `text`: its state, or the view's own text past the table's
        bound (`ZeekRare.history`)."""
        state = history_state(text)
        self.hstate = state
        if state == OWN:
            self._rare().history = text

    def add(self, code: i32) -> None:
        """The letter of `code` (`LETTERS`) at the end of the history: one step in the table
        of histories (`_STEPS`); the step's first time, or a history past the table's
        bound, in `_add`."""
        state = self.hstate
        if state != OWN:
            step = _STEPS[(state << 5) | code]
            if step:
                self.hstate = step
                return
        self._add(code)

    def _add(self, code: i32) -> None:
        """`add` for a step not in the table yet, or a history of the view's own."""
        state = self.hstate
        if state == OWN:
            rare = self._rare()
            rare.history += LETTERS[code]
            return
        self._set_history(_HISTORIES[state] + LETTERS[code])
        step = self.hstate
        if step != OWN:
            _STEPS[(state << 5) | code] = step

    def _check(self, is_orig: bool, mask: i32, code: i32) -> bool:
        """Conn::CheckHistory: add the letter of `code` (already in the case of its direction:
        lower from Zeek's responder) the first time; True if it was already seen. (`add`'s
        table step inline.)"""
        if not is_orig:
            mask <<= 16
        seen = self.seen
        if seen & mask:
            return True
        self.seen = seen | mask
        state = self.hstate
        if state != OWN:
            step = _STEPS[(i64(state) << 5) | i64(code)]     # (an i64 index: no tagged int)
            if step:
                self.hstate = step
                return False
        self._add(code)
        return False

    def _scaled(self, count: int, is_orig: bool, code: i32) -> None:
        """Conn::ScaledHistoryEntry: the letter at the 1st, 10th, 100th ... occurrence
        (`count` is the endpoint's count including this one)."""
        if count in _POW10:
            self.add(code if is_orig else code + LOWER)

    def _flip(self, rewrite: bool) -> None:
        """Connection::FlipRoles: swap originator and responder and add `^`; `rewrite` (the
        SYN-ACK flip) restates the history as if flipped from the first packet."""
        self.flipped = not self.flipped
        self.partial = False
        fs = self.first_seen
        self.first_seen = (2 if fs & 1 else 0) | (1 if fs & 2 else 0)
        if rewrite:
            self._set_history("^" + self.history.swapcase())
            self.seen = (self.seen >> 16) | ((self.seen & 0xFFFF) << 16)
        else:
            self.add(L_FLIP)

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
                    self._scaled(e.gap, self.is_zorig(e), L_G)
            e.reassem = max(seq, pos)
        e.trim = seq
