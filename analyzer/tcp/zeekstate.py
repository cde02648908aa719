"""Zeek's TCP endpoint: its states, its sequence bookkeeping and reassembly coverage, and the
connection label main.zeek's `conn_state()` makes of two of them (zeek.py and zeekmachine.py
replay the packets that move them)."""

from __future__ import annotations

import re
from typing import Final, List, Optional

from analyzer.common.native import i32, i64, mypyc_attr, u8
from analyzer.decode.segment import seq_diff

#: Zeek's TCP endpoint states (TCP_Endpoint.h EndpointState); small ints on the hot path.
INACTIVE: Final = 0
SYN_SENT: Final = 1
SYN_ACK_SENT: Final = 2
PARTIAL: Final = 3
ESTABLISHED: Final = 4
CLOSED: Final = 5
RESET: Final = 6
STATE_NAMES: Final = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED",
                      "CLOSED", "RESET")

_RSTOS0: Final = re.compile(r"\^?S[^HAFGIQ]*R.*")   # main.zeek conn_state(), a full match


def conn_state(os: int, rs: int, osize: int, rsize: int, history: str) -> str:
    """main.zeek `conn_state()` for TCP: the label from both Zeek endpoint states."""
    o_inactive = os == INACTIVE or os == PARTIAL
    r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os == SYN_SENT or os == SYN_ACK_SENT or (os == RESET and not osize and not rsize):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


__all__ = ["INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET",
           "STATE_NAMES", "conn_state"]


_ABOVE_HOLE: Final = 16384                  # tcp_max_above_hole_without_any_acks (init-bare.zeek)


@mypyc_attr(acyclic=True)
class ZeekRare:
    """What few Zeek endpoints have: the last SYN's and RST's sequence numbers (a SYN's is 0
    but after an odd SYN), the last pure FIN's when a FIN with SYN or RST came after it
    (`hl_fin_kept`), the counts of the scaled letters (T, W, G, C) and received ranges beyond
    a hole; made on the first of them. A Zeek view's (its originator's endpoint's) also holds
    its responder's, `resp` (zeekmachine.py), and is made blank for them when only the
    responder has some: a blank one reads as none; and the view's history when the table of
    histories has no state for it (zeekmachine.py `OWN`; otherwise empty)."""

    __slots__ = ("hl_fin_kept", "hl_syn", "hl_rst", "hl_fin", "rxmt", "win0", "gap", "chk",
                 "above", "resp", "history")

    hl_fin_kept: bool

    def __init__(self) -> None:
        self.hl_fin_kept = False
        self.hl_syn = self.hl_rst = self.hl_fin = 0
        self.rxmt = self.win0 = self.gap = self.chk = 0
        self.above: Optional[List[List[int]]] = None
        self.resp: Optional[ZeekRare] = None
        self.history = ""


@mypyc_attr(acyclic=True)
class ZeekEndpoint:
    """One Zeek TCPZeekEndpoint: state, sequence bookkeeping and reassembly coverage.

    `start` (kept in `start32`) is the base sequence number as a signed 32-bit number (the raw
    one, less 2**32 from 2**31 on), and `last` and `ack` are unwrapped from it (they may pass 2**32): every
    difference and every value modulo 2**32 is Zeek's. Reassembly keeps coverage only:
    `reassem` (next byte to deliver, relative), `trim` (highest acknowledged) and `above`
    (received ranges beyond a hole). `fin` says a FIN was sent (Zeek counts them; only
    whether there was one is read), `fin_seq` where the last one ends. `hl_syn`, `hl_rst`,
    `hl_fin` (the S, R and F history letters' last sequence numbers), the counts `rxmt`,
    `win0`, `gap`, `chk` and `above` live in a `ZeekRare` made on the first that is not
    nothing (most endpoints have none; read and written as attributes all the same);
    `hl_fin` is `fin_seq - 1` as long as the last FIN had neither SYN nor RST.
    """

    __slots__ = ("start32", "state", "prev", "skip", "fin", "last", "ack", "fin_seq", "reassem",
                 "trim", "rare")

    # The start, the states (0-6) and the flags first and together: one 8-byte word in the
    # compiled build (with hl_syn and hl_fin in ZeekRare: 112 -> 80 bytes an endpoint).
    start32: i32
    state: u8
    prev: u8
    skip: bool
    fin: bool

    def __init__(self, start32: i32 = 0, state: u8 = INACTIVE, prev: u8 = INACTIVE,
                 skip: bool = False, fin: bool = False, last: int = 0, ack: int = 0,
                 fin_seq: int = 0, reassem: int = 1, trim: int = 1,
                 rare: Optional[ZeekRare] = None) -> None:
        """An endpoint Zeek has seen nothing from (TCP_ENDPOINT_INACTIVE), or, given its
        fields, one made of them (a Zeek view's responder, zeekmachine.py's `resp`)."""
        self.start32 = start32
        self.state = state
        self.prev = prev
        self.skip = skip
        self.fin = fin
        self.last = last
        self.ack = ack
        self.fin_seq = fin_seq
        self.reassem = reassem
        self.trim = trim
        self.rare: Optional[ZeekRare] = rare

    @property
    def start(self) -> int:
        """`start32` as an int (arithmetic on the i32 field itself would be done in 32 bits,
        and the unwrapped numbers it meets pass them)."""
        return self.start32

    def _rare(self) -> ZeekRare:
        rare = self.rare
        if rare is None:
            rare = self.rare = ZeekRare()
        return rare

    @property
    def hl_syn(self) -> int:
        return 0 if self.rare is None else self.rare.hl_syn

    @hl_syn.setter
    def hl_syn(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().hl_syn = value

    @property
    def hl_fin(self) -> int:
        rare = self.rare
        if rare is not None and rare.hl_fin_kept:
            return rare.hl_fin
        return self.fin_seq - 1 if self.fin else 0

    def fin_sent(self, fin_seq: int, pure: bool) -> None:
        """A FIN ending at `fin_seq` (relative); `pure`: without SYN or RST, so that the
        history's last FIN (`hl_fin`, its payload's end) is `fin_seq - 1` from now on."""
        rare = self.rare
        if pure:
            if rare is not None:
                rare.hl_fin_kept = False
        elif rare is None or not rare.hl_fin_kept:
            last = self.hl_fin
            rare = self._rare()
            rare.hl_fin = last
            rare.hl_fin_kept = True
        self.fin = True
        self.fin_seq = fin_seq

    @property
    def hl_rst(self) -> int:
        return 0 if self.rare is None else self.rare.hl_rst

    @hl_rst.setter
    def hl_rst(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().hl_rst = value

    @property
    def rxmt(self) -> int:
        return 0 if self.rare is None else self.rare.rxmt

    @rxmt.setter
    def rxmt(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().rxmt = value

    @property
    def win0(self) -> int:
        return 0 if self.rare is None else self.rare.win0

    @win0.setter
    def win0(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().win0 = value

    @property
    def gap(self) -> int:
        return 0 if self.rare is None else self.rare.gap

    @gap.setter
    def gap(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().gap = value

    @property
    def chk(self) -> int:
        return 0 if self.rare is None else self.rare.chk

    @chk.setter
    def chk(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().chk = value

    @property
    def above(self) -> Optional[List[List[int]]]:
        return None if self.rare is None else self.rare.above

    @above.setter
    def above(self, value: Optional[List[List[int]]]) -> None:
        if value is not None or self.rare is not None:
            self._rare().above = value

    def set_state(self, state: int) -> None:
        """TCPZeekEndpoint::SetState: remember the previous state on a change."""
        if state != self.state:
            self.prev, self.state = self.state, state

    def init_seqs(self, start: int, last: int) -> None:
        """InitStartSeq/InitAckSeq(start) and InitLastSeq(last), raw 32-bit values."""
        d = seq_diff(last, start)
        if start >= 0x80000000:
            start -= 0x100000000
        self.start32 = start
        self.ack = start
        self.last = start + d

    def no_data_acked(self) -> bool:
        """TCPZeekEndpoint::NoDataAcked: nothing beyond the SYN acknowledged yet."""
        return self.ack - self.start in (0, 1)

    def size(self, peer: "ZeekEndpoint") -> int:
        """TCPZeekEndpoint::Size: bytes sent according to sequence numbers (no SYN, no FIN)."""
        return size(i64(self.start32), self.state, self.prev, self.last, self.ack, self.fin,
                    peer.state)


def size(start: i64, state: int, prev: int, last: i64, ack: i64, fin: bool,
         peer_state: int) -> i64:
    """TCPZeekEndpoint::Size of an endpoint given by its fields (`start` is `start32`) and its
    peer's state (a Zeek view's responder is fields, not an endpoint: zeekmachine.py). In
    machine integers (i64): the unwrapped sequence numbers are far inside 63 bits (as in
    zeeksides.py)."""
    if (prev == SYN_SENT and state == RESET and peer_state == INACTIVE
            and ack - start != 0 and ack - start != 1):     # (not NoDataAcked)
        return 0
    n = (last if last > ack else ack) - start
    if n:
        n -= 1
    return n - 1 if fin and n else n


def clean(e: ZeekEndpoint) -> bool:
    """TCP_Reassembler is_clean: established, or closed after being established."""
    return e.state == ESTABLISHED or (e.state == CLOSED and e.prev == ESTABLISHED)


def data_sent(e: ZeekEndpoint, seq: int, length: int) -> None:
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
