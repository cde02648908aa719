"""Zeek's TCP endpoint: its states, its sequence bookkeeping and reassembly coverage, and the
connection label main.zeek's `conn_state()` makes of two of them (zeek.py and zeekmachine.py
replay the packets that move them)."""

from __future__ import annotations

import re
from typing import Final, List, Optional

from analyzer.common.native import i16, mypyc_attr
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
    """What few Zeek endpoints have: the last RST's sequence number, the counts of the scaled
    letters (T, W, G, C) and received ranges beyond a hole; made on the first of them."""

    __slots__ = ("hl_rst", "rxmt", "win0", "gap", "chk", "above")

    def __init__(self) -> None:
        self.hl_rst = 0
        self.rxmt = self.win0 = self.gap = self.chk = 0
        self.above: Optional[List[List[int]]] = None


@mypyc_attr(acyclic=True)
class ZeekEndpoint:
    """One Zeek TCPZeekEndpoint: state, sequence bookkeeping and reassembly coverage.

    `start` is the raw base sequence number; `last` and `ack` are unwrapped (they may pass
    2**32). Reassembly keeps coverage only: `reassem` (next byte to deliver, relative),
    `trim` (highest acknowledged) and `above` (received ranges beyond a hole). `hl_rst`, the
    counts `rxmt`, `win0`, `gap`, `chk` and `above` live in a `ZeekRare` made on the first
    (most endpoints have none; read and written as attributes all the same).
    """

    __slots__ = ("state", "prev", "start", "last", "ack", "fin_cnt", "fin_seq", "hl_syn",
                 "hl_fin", "reassem", "trim", "skip", "rare")

    # The states (0-6) and the flag first and together: one 8-byte word in the compiled
    # build, not three (128 -> 112 bytes an endpoint, two a connection).
    skip: bool
    state: i16
    prev: i16

    def __init__(self) -> None:
        """An endpoint Zeek has seen nothing from (TCP_ENDPOINT_INACTIVE)."""
        self.state = self.prev = INACTIVE
        self.start = self.last = self.ack = self.fin_cnt = self.fin_seq = 0
        self.hl_syn = self.hl_fin = 0
        self.reassem = self.trim = 1
        self.skip = False
        self.rare: Optional[ZeekRare] = None

    def _rare(self) -> ZeekRare:
        rare = self.rare
        if rare is None:
            rare = self.rare = ZeekRare()
        return rare

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
        self.start = self.ack = start
        self.last = start + seq_diff(last, start)

    def no_data_acked(self) -> bool:
        """TCPZeekEndpoint::NoDataAcked: nothing beyond the SYN acknowledged yet."""
        return self.ack - self.start in (0, 1)

    def size(self, peer: "ZeekEndpoint") -> int:
        """TCPZeekEndpoint::Size: bytes sent according to sequence numbers (no SYN, no FIN)."""
        if (self.prev == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and not self.no_data_acked()):
            return 0
        size = max(self.last, self.ack) - self.start
        size -= 1 if size else 0
        return size - 1 if self.fin_cnt and size else size


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
