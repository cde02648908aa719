"""What few connections have: the facts of rare events, in one side object made on the first.

A held RST, an inferred FIN, a RST taken back, an unacceptable handshake ACK, a reused
4-tuple, data on a SYN, RSTs from a closed port, a tunnel: most connections have none of them,
so their record keeps one pointer (`rare`, None until the first) instead of nine fields. `WithRare`,
the base of a connection's record (endpoint.py), gives them as the record's own attributes:
reading one where there is none gives its default; setting one to its default where there is
none makes nothing.
"""

from __future__ import annotations

from typing import Optional, Tuple

from analyzer.common.native import mypyc_attr
from analyzer.decode.segment import UNSET, Segment


@mypyc_attr(acyclic=True)
class RareFacts:
    """The rare facts of one connection (the defaults are what a connection without them has)."""

    __slots__ = ("held_rst", "syn_data", "inferred_fin", "rst_undo", "reply_rsts", "bad_ack",
                 "reused_from", "tunnel", "rtunnel")

    def __init__(self) -> None:
        self.held_rst: Optional[Tuple[int, Segment]] = None   # in-window, not at RCV.NXT
        self.syn_data = 0           # payload bytes on the originator's SYN (TCP Fast Open)
        self.inferred_fin: Optional[tuple] = None   # what infer_fin changed, to take it back
        self.rst_undo: Optional[tuple] = None   # the states before the RST (ignored.py)
        self.reply_rsts = 0         # RSTs that answer the peer's last segment from CLOSED
        self.bad_ack = UNSET        # the ack of the last unacceptable handshake ACK
        self.reused_from: Optional[int] = None  # the stream whose 4-tuple this one reused
        #: The tunnel context of its first segment (`Segment.tunnel`; empty outside tunnels):
        #: the flow table keys the connection by the 4-tuple and this.
        self.tunnel = b""
        #: The replies' context where their tunnel ids differ (`FlowTable._bind`), else `tunnel`.
        self.rtunnel = b""


@mypyc_attr(acyclic=True)
class WithRare:
    """A record with `RareFacts`, read and written as its own attributes."""

    __slots__ = ("rare",)

    def __init__(self) -> None:
        self.rare: Optional[RareFacts] = None

    def _rare(self) -> RareFacts:
        rare = self.rare
        if rare is None:
            rare = self.rare = RareFacts()
        return rare

    @property
    def held_rst(self) -> Optional[Tuple[int, Segment]]:
        return None if self.rare is None else self.rare.held_rst

    @held_rst.setter
    def held_rst(self, value: Optional[Tuple[int, Segment]]) -> None:
        if value is not None or self.rare is not None:
            self._rare().held_rst = value

    @property
    def syn_data(self) -> int:
        return 0 if self.rare is None else self.rare.syn_data

    @syn_data.setter
    def syn_data(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().syn_data = value

    @property
    def inferred_fin(self) -> Optional[tuple]:
        return None if self.rare is None else self.rare.inferred_fin

    @inferred_fin.setter
    def inferred_fin(self, value: Optional[tuple]) -> None:
        if value is not None or self.rare is not None:
            self._rare().inferred_fin = value

    @property
    def rst_undo(self) -> Optional[tuple]:
        return None if self.rare is None else self.rare.rst_undo

    @rst_undo.setter
    def rst_undo(self, value: Optional[tuple]) -> None:
        if value is not None or self.rare is not None:
            self._rare().rst_undo = value

    @property
    def reply_rsts(self) -> int:
        return 0 if self.rare is None else self.rare.reply_rsts

    @reply_rsts.setter
    def reply_rsts(self, value: int) -> None:
        if value != 0 or self.rare is not None:
            self._rare().reply_rsts = value

    @property
    def bad_ack(self) -> int:
        return UNSET if self.rare is None else self.rare.bad_ack

    @bad_ack.setter
    def bad_ack(self, value: int) -> None:
        if value != UNSET or self.rare is not None:
            self._rare().bad_ack = value

    @property
    def reused_from(self) -> Optional[int]:
        return None if self.rare is None else self.rare.reused_from

    @reused_from.setter
    def reused_from(self, value: Optional[int]) -> None:
        if value is not None or self.rare is not None:
            self._rare().reused_from = value

    @property
    def tunnel(self) -> bytes:
        return b"" if self.rare is None else self.rare.tunnel

    @tunnel.setter
    def tunnel(self, value: bytes) -> None:
        if len(value) or self.rare is not None:
            self._rare().tunnel = value

    @property
    def rtunnel(self) -> bytes:
        return b"" if self.rare is None else self.rare.rtunnel

    @rtunnel.setter
    def rtunnel(self, value: bytes) -> None:
        if len(value) or self.rare is not None:
            self._rare().rtunnel = value
