"""The transition table alone: no packets, no I/O."""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st

from analyzer.tcp.states import (END_STATES, ILLEGAL, INPUT_CODE, INPUTS, NEXT, STATE_CODE,
                                 STATE_NAME, STATES, SYNCHRONIZED, TRANSITIONS, Input, State,
                                 next_state, state_diagram, ended, step)
from analyzer.tcp import states

S, I = State, Input


def run(state, *inputs):
    for inp in inputs:
        state, legal = step(state, inp)
        assert legal, (state, inp)
    return state


def test_active_open_and_passive_open():
    assert run(S.CLOSED, I.SEND_SYN, I.RECV_SYN_ACK) is S.ESTABLISHED
    assert run(S.LISTEN, I.RECV_SYN, I.SEND_SYN_ACK, I.RECV_ACK_OF_SYN) is S.ESTABLISHED


def test_simultaneous_open():
    # Both: SYN_SENT -> (peer SYN) SYN_RECEIVED -> (peer SYN-ACK) ESTABLISHED
    assert run(S.CLOSED, I.SEND_SYN, I.RECV_SYN, I.SEND_SYN_ACK, I.RECV_SYN_ACK) is S.ESTABLISHED


def test_active_close_four_way_and_three_segment():
    assert run(S.ESTABLISHED, I.SEND_FIN, I.RECV_ACK_OF_FIN, I.RECV_FIN, I.SEND_ACK) is S.TIME_WAIT
    assert run(S.ESTABLISHED, I.RECV_FIN, I.SEND_ACK, I.SEND_FIN, I.RECV_ACK_OF_FIN) is S.CLOSED


def test_simultaneous_close_goes_through_closing():
    st_ = run(S.ESTABLISHED, I.SEND_FIN, I.RECV_FIN)
    assert st_ is S.CLOSING
    assert run(st_, I.SEND_ACK, I.RECV_ACK_OF_FIN) is S.TIME_WAIT


def test_half_close_lets_the_passive_side_send_data():
    assert run(S.ESTABLISHED, I.RECV_FIN, I.SEND_ACK, I.SEND_ACK, I.RECV_ACK) is S.CLOSE_WAIT
    assert run(S.ESTABLISHED, I.SEND_FIN, I.RECV_ACK_OF_FIN, I.RECV_ACK, I.SEND_ACK) is S.FIN_WAIT_2


def test_time_wait_expires():
    assert run(S.TIME_WAIT, I.TIMEOUT_2MSL) is S.CLOSED


def test_rst_closes_every_synchronized_state():
    for state in SYNCHRONIZED | {S.SYN_SENT, S.SYN_RECEIVED}:
        assert step(state, I.RECV_RST) == (S.CLOSED, True)
        assert step(state, I.SEND_RST) == (S.CLOSED, True)
    assert step(S.LISTEN, I.RECV_RST) == (S.LISTEN, True)      # ignored in LISTEN


def test_retransmissions_leave_the_state_alone():
    assert step(S.SYN_SENT, I.SEND_SYN) == (S.SYN_SENT, True)
    assert step(S.SYN_RECEIVED, I.SEND_SYN_ACK) == (S.SYN_RECEIVED, True)
    for state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT):
        assert step(state, I.SEND_FIN) == (state, True)


def test_illegal_moves_are_reported_and_change_nothing():
    assert step(S.CLOSED, I.SEND_ACK) == (S.CLOSED, False)        # data after RST
    assert step(S.CLOSED, I.SEND_FIN) == (S.CLOSED, False)
    assert step(S.SYN_SENT, I.SEND_FIN) == (S.SYN_SENT, False)
    assert step(S.ESTABLISHED, I.SEND_SYN) == (S.ESTABLISHED, False)
    assert step(S.LISTEN, I.RECV_FIN) == (S.LISTEN, False)


def test_every_state_is_reachable_from_the_two_opens():
    seen = {S.CLOSED, S.LISTEN}
    frontier = list(seen)
    while frontier:
        state = frontier.pop()
        for inp in Input:
            nxt, legal = step(state, inp)
            if legal and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(State)


def test_end_states_only_leave_by_timeout_or_rst():
    for (state, inp), nxt in TRANSITIONS.items():
        if STATE_CODE[state] in END_STATES and nxt is not state:
            assert inp in (I.TIMEOUT_2MSL, I.SEND_SYN, I.SEND_RST, I.RECV_RST, I.FIN_ACK_LOST,
                           I.NEW_INCARNATION), (state, inp, nxt)


def test_step_is_the_table_for_every_pair():
    # (step goes through the flattened table by code: it must say what the table says)
    for state in State:
        for inp in Input:
            assert step(state, inp) == (TRANSITIONS.get((state, inp), state),
                                        (state, inp) in TRANSITIONS), (state, inp)


@given(st.sampled_from(list(State)), st.sampled_from(list(Input)))
def test_every_pair_is_defined_or_illegal(state, inp):
    nxt, legal = step(state, inp)
    assert isinstance(nxt, State)
    assert legal == ((state, inp) in TRANSITIONS)
    if not legal:
        assert nxt is state


@given(st.lists(st.sampled_from(list(Input)), max_size=40), st.sampled_from([S.CLOSED, S.LISTEN]))
def test_any_sequence_stays_inside_the_machine(inputs, start):
    state = start
    for inp in inputs:
        state, _ = step(state, inp)
        assert isinstance(state, State)


def test_table_covers_all_pairs_exhaustively():
    # Every pair either has an entry or is illegal: nothing raises, nothing returns None.
    for state, inp in itertools.product(State, Input):
        nxt, _ = step(state, inp)
        assert nxt in State


def test_diagram_is_drawn_from_the_table():
    doc = state_diagram()
    assert doc.count("\n| ") == len(TRANSITIONS) + 1   # header row + one per entry
    assert "| FIN_WAIT_1 | receive FIN | CLOSING |" in doc


def test_ended_is_membership_of_end_states():
    # The flow table asks `ended` after most packets instead of looking END_STATES up.
    assert [s for s in State if ended(STATE_CODE[s])] == [S.CLOSED, S.TIME_WAIT]
    assert [s for s in State if ended(STATE_CODE[s])] == [
        s for s in State if STATE_CODE[s] in END_STATES]


def test_codes_are_the_members_positions():
    # The replay moves codes: each named code is its member's position, and back.
    for members in (State, Input):
        for i, m in enumerate(members):
            assert getattr(states, m.name) == i, m
    assert STATES == tuple(State) and INPUTS == tuple(Input)
    assert all(STATE_CODE[s] == i for i, s in enumerate(State))
    assert all(INPUT_CODE[inp] == i for i, inp in enumerate(Input))
    assert STATE_NAME == tuple(s.value for s in State)
    assert ILLEGAL not in STATE_CODE.values()
    assert states.N_INPUTS == 16        # endpoint.pending_entry keeps an input in 4 bits


def test_next_state_is_the_table_by_code():
    # Every pair, legal or not, in the flattened table the replay reads.
    moves = 0
    for state, inp in itertools.product(State, Input):
        nxt = next_state(STATE_CODE[state], INPUT_CODE[inp])
        if (state, inp) in TRANSITIONS:
            assert STATES[nxt] is TRANSITIONS[(state, inp)], (state, inp)
            moves += 1
        else:
            assert nxt == ILLEGAL, (state, inp)
    assert moves == len(TRANSITIONS)
    assert len(NEXT) == len(State) * states.N_INPUTS
