"""Zeek's TCP endpoint states and the connection label main.zeek's `conn_state()` makes of
them (analyzer.zeek replays the packets that move the states)."""

from __future__ import annotations

import re
from typing import Final

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
