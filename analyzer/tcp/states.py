"""The reference TCP state machine of one endpoint (RFC 9293 §3.3.2, Figure 5), as data.

Everything that decides an endpoint's state lives in this module: the states, the inputs, and
`TRANSITIONS`, one flat table ``(state, input) -> next state``. `step()` is a pure function of
it. A pair missing from the table is a move the RFC does not allow from that state: `step()`
reports it as illegal and leaves the state unchanged, and the caller turns that into a finding.
No I/O, no clock, no packets: the connection tracker (`conn.py`) translates each observed
segment into inputs for the endpoint that sent it (`SEND_*`) and the endpoint that receives it
(`RECV_*`), using the sequence numbers to decide what an ACK acknowledges.

The table is the RFC's diagram with the moves a passive observer must also accept:
retransmissions (a SYN, SYN-ACK or FIN sent again leaves the state alone) and RST in any
synchronized state. `docs/states.md` is drawn from this table by `python -m analyzer.tcp.states`.

The replay works on codes, not on the enum members: each state and each input is also a small
int (its position in `State` or `Input`: `ESTABLISHED`, `RECV_FIN`, ...), an endpoint keeps its
state as its code (`Endpoint.state`), and `NEXT`, the same table flattened by code, gives the
next state with one read of a bytes object. (The compiled build reads an enum member's
attributes as Python code and looked the pair up in two dicts: most of a connection's moves
cost more than the rest of its bookkeeping.) `STATES` and `STATE_NAME` turn a code back into
the member and its name, for the report.
"""

from __future__ import annotations

import enum
from typing import Dict, Final, FrozenSet, Tuple


class State(enum.Enum):
    """RFC 9293 connection states, with the RFC's spelling."""

    #: No connection: before an active open, or after the connection ended.
    CLOSED = "CLOSED"
    #: Waiting for a connection request (passive open).
    LISTEN = "LISTEN"
    #: SYN sent, waiting for the peer's SYN (active open).
    SYN_SENT = "SYN_SENT"
    #: SYN received and SYN-ACK sent, waiting for the ACK of our SYN.
    SYN_RECEIVED = "SYN_RECEIVED"
    #: Open; data flows both ways.
    ESTABLISHED = "ESTABLISHED"
    #: We sent FIN (active close); waiting for its ACK or the peer's FIN.
    FIN_WAIT_1 = "FIN_WAIT_1"
    #: Our FIN was acknowledged; waiting for the peer's FIN.
    FIN_WAIT_2 = "FIN_WAIT_2"
    #: The peer's FIN arrived; waiting for our application to close (passive close).
    CLOSE_WAIT = "CLOSE_WAIT"
    #: Both FINs sent before either was acknowledged (simultaneous close).
    CLOSING = "CLOSING"
    #: We sent our FIN after the peer's; waiting for its ACK.
    LAST_ACK = "LAST_ACK"
    #: Both FINs exchanged and acknowledged; the active closer waits 2*MSL.
    TIME_WAIT = "TIME_WAIT"

    # Identity hashing in C: Enum's own __hash__ is Python code, and the replay looks
    # states up once or twice per packet.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


class Input(enum.Enum):
    """What one observed segment means for one endpoint."""

    __hash__ = object.__hash__

    SEND_SYN = "send SYN"
    SEND_SYN_ACK = "send SYN+ACK"
    #: A segment without SYN, FIN or RST: a bare ACK or data.
    SEND_ACK = "send ACK/data"
    SEND_FIN = "send FIN"
    SEND_RST = "send RST"
    RECV_SYN = "receive SYN"
    RECV_SYN_ACK = "receive SYN+ACK"
    #: An ACK that acknowledges nothing of ours that changes state.
    RECV_ACK = "receive ACK/data"
    #: An ACK covering our SYN (SEG.ACK > ISS).
    RECV_ACK_OF_SYN = "receive ACK of SYN"
    #: An ACK covering our FIN (SEG.ACK > FIN sequence number).
    RECV_ACK_OF_FIN = "receive ACK of FIN"
    RECV_FIN = "receive FIN"
    #: An acceptable RST (RFC 9293 §3.10.7).
    RECV_RST = "receive RST"
    #: 2*MSL passed in TIME_WAIT (capture time).
    TIMEOUT_2MSL = "2MSL timeout"
    # An observer's corrections: what the capture showed did not happen at the endpoint.
    #: The endpoint sent its FIN again after the capture showed the ACK of it: that ACK was lost.
    FIN_ACK_LOST = "FIN resent: its ACK was lost"
    #: The responder sent its SYN-ACK again after the capture showed the ACK of it.
    SYNACK_ACK_LOST = "SYN-ACK resent: its ACK was lost"
    #: A new SYN on the 4-tuple ended this TIME_WAIT early (RFC 6191).
    NEW_INCARNATION = "new SYN on the 4-tuple"


# The codes: each state and input by its position in its enum, written out as literals (the
# compiled build puts a literal Final in the code that reads it; `_check_codes` holds them to
# the enums' order when the module is loaded).
CLOSED: Final = 0
LISTEN: Final = 1
SYN_SENT: Final = 2
SYN_RECEIVED: Final = 3
ESTABLISHED: Final = 4
FIN_WAIT_1: Final = 5
FIN_WAIT_2: Final = 6
CLOSE_WAIT: Final = 7
CLOSING: Final = 8
LAST_ACK: Final = 9
TIME_WAIT: Final = 10

SEND_SYN: Final = 0
SEND_SYN_ACK: Final = 1
SEND_ACK: Final = 2
SEND_FIN: Final = 3
SEND_RST: Final = 4
RECV_SYN: Final = 5
RECV_SYN_ACK: Final = 6
RECV_ACK: Final = 7
RECV_ACK_OF_SYN: Final = 8
RECV_ACK_OF_FIN: Final = 9
RECV_FIN: Final = 10
RECV_RST: Final = 11
TIMEOUT_2MSL: Final = 12
FIN_ACK_LOST: Final = 13
SYNACK_ACK_LOST: Final = 14
NEW_INCARNATION: Final = 15

#: Each state by its code, and each input.
STATES: Final[Tuple[State, ...]] = tuple(State)
INPUTS: Final[Tuple[Input, ...]] = tuple(Input)
#: Each state's code, and each input's (for the enum-level `step` and the tests).
STATE_CODE: Final[Dict[State, int]] = {s: i for i, s in enumerate(STATES)}
INPUT_CODE: Final[Dict[Input, int]] = {inp: i for i, inp in enumerate(INPUTS)}


def _check_codes() -> None:
    """The literal codes above are the members' positions (a member added or moved in an enum
    without its code fails here, at import, not in a replay)."""
    names = globals()
    for members in (STATES, INPUTS):
        for i, m in enumerate(members):
            if names.get(m.name) != i:
                raise ImportError("analyzer.tcp.states: the code of %s is not %d" % (m, i))


_check_codes()

S = State
I = Input

#: States in which the connection is synchronized (RFC 9293 §3.5.2).
SYNCHRONIZED: Final = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING,
                          S.LAST_ACK, S.TIME_WAIT})
#: States after this endpoint sent its FIN.
FIN_SENT: Final = frozenset({S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
#: The codes of the states in which nothing more is expected from this endpoint.
END_STATES: Final[FrozenSet[int]] = frozenset({CLOSED, TIME_WAIT})


def ended(state: int) -> bool:
    """`state in END_STATES` (a state's code), without a set lookup: the flow table asks after
    most packets."""
    return state == CLOSED or state == TIME_WAIT


#: Each state's name by its code (`State.value` runs Python code: an enum property).
STATE_NAME: Final[Tuple[str, ...]] = tuple(s.value for s in State)


def _build() -> Dict[Tuple[State, Input], State]:
    t: Dict[Tuple[State, Input], State] = {
        # Opening (RFC 9293 Figure 5).
        (S.CLOSED, I.SEND_SYN): S.SYN_SENT,               # active open
        (S.CLOSED, I.SEND_RST): S.CLOSED,                 # no listener: RST answers
        (S.CLOSED, I.RECV_RST): S.CLOSED,                 # RST to a closed port is dropped
        (S.LISTEN, I.RECV_SYN): S.SYN_RECEIVED,
        (S.LISTEN, I.SEND_SYN): S.SYN_SENT,               # "send" from LISTEN
        (S.LISTEN, I.RECV_RST): S.LISTEN,                 # ignored in LISTEN
        (S.LISTEN, I.SEND_RST): S.CLOSED,                 # refused: nobody listens
        (S.SYN_SENT, I.SEND_SYN): S.SYN_SENT,             # SYN retransmission
        (S.SYN_SENT, I.RECV_SYN_ACK): S.ESTABLISHED,
        (S.SYN_SENT, I.RECV_SYN): S.SYN_RECEIVED,         # simultaneous open
        (S.SYN_SENT, I.RECV_ACK): S.SYN_SENT,             # unacceptable ACK: answered by RST
        (S.SYN_SENT, I.RECV_RST): S.CLOSED,               # refused
        (S.SYN_SENT, I.SEND_RST): S.CLOSED,               # aborted by the application
        (S.SYN_RECEIVED, I.SEND_SYN_ACK): S.SYN_RECEIVED,   # (re)transmitted SYN-ACK
        (S.SYN_RECEIVED, I.RECV_SYN): S.SYN_RECEIVED,       # the peer retransmitted its SYN
        (S.SYN_RECEIVED, I.RECV_ACK_OF_SYN): S.ESTABLISHED,
        (S.SYN_RECEIVED, I.RECV_SYN_ACK): S.ESTABLISHED,    # simultaneous open completes
        (S.SYN_RECEIVED, I.RECV_ACK): S.SYN_RECEIVED,
        (S.SYN_RECEIVED, I.SEND_ACK): S.SYN_RECEIVED,
        (S.SYN_RECEIVED, I.SEND_FIN): S.FIN_WAIT_1,         # close before the handshake ended
        (S.SYN_RECEIVED, I.RECV_RST): S.CLOSED,
        (S.SYN_RECEIVED, I.SEND_RST): S.CLOSED,
        # Data transfer.
        (S.ESTABLISHED, I.SEND_ACK): S.ESTABLISHED,
        (S.ESTABLISHED, I.RECV_ACK): S.ESTABLISHED,
        (S.ESTABLISHED, I.SEND_FIN): S.FIN_WAIT_1,        # active close
        (S.ESTABLISHED, I.RECV_FIN): S.CLOSE_WAIT,        # passive close
        # Active close.
        (S.FIN_WAIT_1, I.RECV_ACK_OF_FIN): S.FIN_WAIT_2,
        (S.FIN_WAIT_1, I.RECV_FIN): S.CLOSING,            # FINs crossed
        (S.FIN_WAIT_2, I.RECV_FIN): S.TIME_WAIT,
        (S.CLOSING, I.RECV_ACK_OF_FIN): S.TIME_WAIT,
        (S.TIME_WAIT, I.TIMEOUT_2MSL): S.CLOSED,
        # Passive close.
        (S.CLOSE_WAIT, I.SEND_FIN): S.LAST_ACK,
        (S.LAST_ACK, I.RECV_ACK_OF_FIN): S.CLOSED,
        # Corrections: an ACK the capture saw never reached the endpoint.
        (S.CLOSED, I.FIN_ACK_LOST): S.LAST_ACK,
        (S.TIME_WAIT, I.FIN_ACK_LOST): S.CLOSING,
        (S.FIN_WAIT_2, I.FIN_ACK_LOST): S.FIN_WAIT_1,
        (S.ESTABLISHED, I.SYNACK_ACK_LOST): S.SYN_RECEIVED,
        (S.TIME_WAIT, I.NEW_INCARNATION): S.CLOSED,
    }
    # Moves that leave the state alone once synchronized: ACKs and data both ways (data after a
    # FIN is judged elsewhere), retransmitted SYN-ACKs/SYNs/FINs, duplicate ACKs of our SYN/FIN.
    for state in SYNCHRONIZED:
        for inp in (I.SEND_ACK, I.RECV_ACK, I.RECV_ACK_OF_SYN, I.SEND_SYN_ACK, I.RECV_SYN,
                    I.RECV_SYN_ACK):
            t.setdefault((state, inp), state)
        # RST aborts any synchronized connection (RFC 9293 §3.10.7.4; TIME_WAIT: RFC 1337's
        # "TIME-WAIT assassination", which Linux allows by default).
        t[(state, I.SEND_RST)] = S.CLOSED
        t[(state, I.RECV_RST)] = S.CLOSED
    for state in FIN_SENT:
        t.setdefault((state, I.SEND_FIN), state)          # FIN retransmission
        t.setdefault((state, I.RECV_ACK_OF_FIN), state)   # duplicate ACK of our FIN
    for state in (S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT):
        t.setdefault((state, I.RECV_FIN), state)          # the peer retransmitted its FIN
    return t


#: The whole machine: (state, input) -> next state. A missing pair is an illegal move.
TRANSITIONS: Final[Dict[Tuple[State, Input], State]] = _build()


#: How many input codes a state's row of `NEXT` holds.
N_INPUTS: Final = 16
#: In `NEXT`, a move the table does not have (not a state's code).
ILLEGAL: Final = 255


def _flatten() -> bytes:
    if len(INPUTS) != N_INPUTS or len(STATES) >= ILLEGAL:
        raise ImportError("analyzer.tcp.states: NEXT's rows are %d inputs wide" % N_INPUTS)
    rows = bytearray([ILLEGAL]) * (len(STATES) * N_INPUTS)
    for (state, inp), nxt in TRANSITIONS.items():
        rows[STATE_CODE[state] * N_INPUTS + INPUT_CODE[inp]] = STATE_CODE[nxt]
    return bytes(rows)


#: The same table by code: `NEXT[state * N_INPUTS + input]` is the next state's code, or
#: ILLEGAL where `TRANSITIONS` has no entry.
NEXT: Final[bytes] = _flatten()


def next_state(state: int, inp: int) -> int:
    """The code of the state after input `inp` in state `state` (codes), or ILLEGAL."""
    return NEXT[state * N_INPUTS + inp]


def step(state: State, inp: Input) -> Tuple[State, bool]:
    """Apply one input. Returns (next state, legal); an illegal input leaves the state alone.

    (The members' level, for the documentation and the tests; the replay moves codes with
    `next_state`, through the same table.)"""
    nxt = next_state(STATE_CODE[state], INPUT_CODE[inp])
    if nxt == ILLEGAL:
        return state, False
    return STATES[nxt], True


def state_diagram() -> str:
    """The table as Markdown, one row per state: the documentation is drawn from the code."""
    lines = ["# Endpoint state machine", "",
             "Generated by `python -m analyzer.tcp.states` from `analyzer/tcp/states.py`; do not edit.",
             "Any (state, input) pair not listed is an illegal move: the state stays and the move",
             "is reported as a finding.", "",
             "| state | input | next state |", "|---|---|---|"]
    for state in State:
        for inp in Input:
            nxt = TRANSITIONS.get((state, inp))
            if nxt is not None:
                lines.append("| %s | %s | %s |" % (state.value, inp.value,
                                                   "(stays)" if nxt is state else nxt.value))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(state_diagram(), end="")
