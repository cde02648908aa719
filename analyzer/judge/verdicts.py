"""Verdicts: how a finished connection opened, how it closed, and what it left behind.

A pure function of the connection's replayed facts and the capture time at which it was
finalized (`now`: the end of the capture, or the moment it left memory). The vocabulary is
defined here, one sentence per value, and is part of the output contract.
"""

from __future__ import annotations

from typing import Final, List, Optional, Tuple

from analyzer.common.nstime import tenths, whole_seconds
from analyzer.tcp.conn import Connection
from analyzer.tcp.endpoint import SIDES, Endpoint, fin_acks_peer, fin_frame, fin_side
from analyzer.judge.result import ConnResult, Lingering, lingering as make_lingering
from analyzer.tcp.seqanalysis import ZERO_WINDOW_STALL_NS
from analyzer.decode.segment import seq_diff, seq_lt
from analyzer.tcp.states import (CLOSE_WAIT, FIN_WAIT_2, STATE_NAME, TIME_WAIT, TIMEOUT_2MSL,
                                 next_state)

try:                # the compiled build's C join (setup.py); the pure build's is Python
    from analyzer.common._join import concat
except ImportError:
    from analyzer.common.join import concat
#: `"".join` of str pieces, in C when compiled (as a constant: called without looking it up)
_concat: Final = concat

#: Handshake outcomes.
HANDSHAKES: Final = {
    "complete": "The three-way handshake completed: SYN, SYN-ACK, and the ACK of the SYN-ACK "
                "(a part missing from the capture is inferred from the traffic that follows, "
                "and noted as an info finding).",
    "simultaneous_open": "Both sides sent a SYN (RFC 9293 §3.5, Figure 7) and both reached ESTABLISHED.",
    "refused": "The SYN was answered by RST from the responder.",
    "unanswered": "SYN(s) with no reply at all from the responder.",
    "half_open": "The SYN-ACK was never acknowledged by the originator.",
    "reset": "A RST ended the handshake before it completed (other than a refusal).",
    "not_seen": "The capture began after the handshake (no SYN or SYN-ACK seen).",
    "stray": "No connection: segments outside any, from a port with none (RFC 9293 "
             "§3.10.7.1): a probe (FIN, NULL, Xmas, a stray ACK) answered by RST, or a lone "
             "RST. Both sides are CLOSED throughout.",
}

#: Close shapes (null when no connection was established).
CLOSES: Final = {
    "four_way": "FIN, ACK, FIN, ACK: the passive side acknowledged the first FIN before sending its own.",
    "three_segment": "FIN, FIN+ACK, ACK: the passive side's ACK rode on its own FIN.",
    "simultaneous": "The FINs crossed: the second FIN did not acknowledge the first (CLOSING).",
    "reset": "Aborted by RST before both FINs were exchanged.",
    "half_closed": "Only one side sent FIN before the capture ended.",
    "open": "No FIN or RST seen: still open when the capture ended.",
    "unacknowledged": "Both sides sent FIN, but one FIN was sent again and again and never "
                      "acknowledged (PEER_UNRESPONSIVE): the close did not complete.",
}

#: A stray's final states.
_BOTH_CLOSED: Final = ("CLOSED", "CLOSED")
#: The close shapes that claim both FINs were exchanged.
_FIN_CLOSES: Final = frozenset({"four_way", "three_segment", "simultaneous"})

#: A CLOSE_WAIT younger than this at the end of the capture is listed as lingering but not
#: reported as stuck: the application may simply not have reacted yet.
CLOSE_WAIT_STUCK_NS: Final = 1_000_000_000
#: PEER_UNRESPONSIVE needs at least this many retransmissions of unacknowledged data.
UNANSWERED_RESENDS: Final = 3


#: Handshake outcomes after which the connection counts as established (and has a close).
ESTABLISHED_HANDSHAKES: Final = frozenset({"complete", "simultaneous_open", "not_seen"})


def stray_code(c: Connection) -> Optional[str]:
    """CLOSED_PORT_PROBE or STRAY_RST when the connection never existed: no SYN on either side,
    one side sent only RSTs and the other nothing (a lone RST), or only segments without data
    or RST, each RST answering the segment before it as a port with no connection does
    (§3.10.7.1: <SEQ=SEG.ACK>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN>)."""
    if not c.midstream or c.syn_seen or c.synack_seen or c.self_connect:
        return None
    for r, p in ((c.endpoint(0), c.endpoint(1)), (c.endpoint(1), c.endpoint(0))):
        if r.pkts and int(r.rsts) == r.pkts:     # (int(): an i32 field, endpoint.py)
            if not p.pkts:
                return "STRAY_RST"
            if not p.rsts and not p.bytes and c.reply_rsts == int(r.rsts):
                return "CLOSED_PORT_PROBE"
    return None


def _handshake(c: Connection) -> str:
    o, r = c.e0, c.e1
    if c.midstream:
        return "stray" if stray_code(c) else "not_seen"
    if c.self_connect:
        return "simultaneous_open" if c.est_sides else ("reset" if c.rst else "unanswered")
    if c.sim_open and c.est_sides == 3:
        return "simultaneous_open"
    if r.syn_acked and not c.sim_open:
        return "complete"
    rst = c.rst
    if c.synack_seen or c.sim_open:
        return "reset" if rst is not None else "half_open"
    if rst is not None:
        return "refused" if rst[0] == 1 else "reset"
    return "unanswered"


def _close(c: Connection, handshake: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(close, closed_first, reset_by) from the FINs and the RST."""
    if handshake not in ESTABLISHED_HANDSHAKES:
        return None, None, (SIDES[c.rst[0]] if c.rst is not None else None)
    rst = c.rst
    reset_by = SIDES[rst[0]] if rst is not None else None
    first, second = c.fin_a, c.fin_b        # (`fins` without its tuple; -1: none)
    if c.self_connect and first >= 0:
        return "simultaneous", "both", reset_by      # its own FIN crossed itself
    if second >= 0:
        # Which came first is frame order (timestamps may run backwards).
        if rst is not None and (rst[2] < fin_frame(second) or c.rst_discards):
            return "reset", SIDES[fin_side(first)], reset_by
        if not fin_acks_peer(second):
            return "simultaneous", "both", reset_by
        by = c.fin_acked_by
        if by is not None and by[0] == fin_side(second) and by[1]:
            return "three_segment", SIDES[fin_side(first)], reset_by
        return "four_way", SIDES[fin_side(first)], reset_by
    if rst is not None:
        by_fin = first >= 0 and fin_frame(first) <= rst[2]
        return "reset", SIDES[fin_side(first)] if by_fin else SIDES[rst[0]], reset_by
    if first >= 0:
        return "half_closed", SIDES[fin_side(first)], reset_by
    return "open", None, reset_by


def finalize(c: Connection, now: int, msl_ns: int) -> ConnResult:
    """The verdicts for a connection as of capture time `now` (ns)."""
    c.settle()
    now = max(now, c.last_ts)
    two_msl = msl_ns + msl_ns       # (compiled: a product past 2**31 takes the slow multiply)
    lingering: List[Lingering] = []
    final0 = final1 = ""                    # the final states (no list made for them)
    fin_unanswered = False
    for i in range(2):                      # (a native loop: no tuple, no iterator)
        e = c.e0 if i == 0 else c.e1
        state = e.state
        if state == TIME_WAIT:
            elapsed = now - e.since
            if elapsed >= two_msl:              # 2*MSL ran out before the capture ended
                state = next_state(state, TIMEOUT_2MSL)
            else:
                lingering.append(make_lingering(SIDES[i], "TIME_WAIT", e.since, elapsed,
                                           two_msl - elapsed))
                if not c.repeat("TIME_WAIT_AT_END"):     # ("%.1f"-like text, no float)
                    c.note_at("TIME_WAIT_AT_END", now, c.last_frame, i, _concat(
                        SIDES[i], " in TIME_WAIT for ", tenths(elapsed), " s, ",
                        tenths(two_msl - elapsed), " s of ", whole_seconds(two_msl), " s left"))
        elif state == CLOSE_WAIT:
            elapsed = now - e.close_wait_since
            lingering.append(make_lingering(SIDES[i], "CLOSE_WAIT", e.close_wait_since, elapsed,
                                            None))
            # Stuck: silent since the peer's FIN, or since its last data (a half-duplex reply
            # still streaming is not stuck).
            quiet = now - (max(e.close_wait_since, e.last_data_ts) if e.sent_data
                           else e.close_wait_since)
            peer = c.endpoint(1 - i)
            # Not "stuck" when the capture cannot tell: the peer acknowledged data of this
            # side the capture never showed (it may have carried this side's FIN), or the
            # capture began with the peer's FIN (this side may have closed before it).
            unsure = peer.analysis.acked_unseen or (c.midstream and
                                                    e.close_wait_since == c.first_ts)
            if quiet >= CLOSE_WAIT_STUCK_NS and not unsure:
                c.note_at("CLOSE_WAIT_LINGERING", now, c.last_frame, i,
                          "%s in CLOSE_WAIT for %.1f s when the capture ended%s: its "
                          "application had not closed the socket since the peer's FIN" % (
                              SIDES[i], elapsed / 1e9, "" if quiet == elapsed else
                              " (last data %.1f s before the end)" % (quiet / 1e9)))
        elif state == FIN_WAIT_2 and now - _last(e.since, c.endpoint(1 - i)) >= CLOSE_WAIT_STUCK_NS:
            peer_fin = [fin_frame(f) for f in c.fins if fin_side(f) != i]
            c.note_at("FIN_WAIT_2_LINGERING", now, c.last_frame, i,
                      "%s in FIN_WAIT_2 for %.1f s when the capture ended: its FIN was "
                      "acknowledged, %s" % (SIDES[i], (now - e.since) / 1e9,
                                            "and it never acknowledged the peer's FIN (frame "
                                            "%d)" % peer_fin[0] if peer_fin else
                                            "the peer had not sent its own"))
        if _check_unanswered(c, i, now):
            fin_unanswered = True
        zw = e.analysis.zw_since
        if zw and now - zw >= ZERO_WINDOW_STALL_NS and (i == 0 or e is not c.endpoint(0)):
            c.note_at("ZERO_WINDOW_STALL", zw, c.last_frame, i,
                      "%s's receive window was still zero at the end, %.1f s after it closed"
                      % (SIDES[i], (now - zw) / 1e9))
        if i == 0:
            final0 = STATE_NAME[state]
        else:
            final1 = STATE_NAME[state]
    final = (final0, final1)
    handshake = _handshake(c)
    close, closed_first, reset_by = _close(c, handshake)
    if fin_unanswered and close in _FIN_CLOSES:
        close = "unacknowledged"
    if handshake == "stray":
        final, reset_by = _BOTH_CLOSED, None
    _note_outcome(c, handshake, close)
    return ConnResult.from_connection(c, handshake, close, closed_first, reset_by,
                                      c.half_close_data, final, lingering)


def _check_unanswered(c: Connection, i: int, now: int) -> bool:
    """PEER_UNRESPONSIVE: side `i` resent data or its FIN again and again and the peer's ACK
    never moved from where it was at the first resend, until the end of the capture. True
    when what went unacknowledged includes the FIN (that close did not complete)."""
    e, peer = c.endpoint(i), c.endpoint(1 - i)
    a = e.analysis
    if e is peer or a.resent < UNANSWERED_RESENDS or e.next_seq < 0:
        return False
    if peer.last_ack != a.resend_ack:
        return False                    # the peer acknowledged something since
    end = e.next_seq
    acked = peer.last_ack
    if acked >= 0 and not seq_lt(acked, end):
        return False                    # everything was acknowledged in the end
    fin = e.fin_seq >= 0 and end == (e.fin_seq + 1) & 0xFFFFFFFF
    data_end = e.fin_seq if fin else end
    since: Optional[int]
    if fin and acked >= 0 and not seq_lt(acked, data_end):
        what, since = "its FIN", e.fin_ts
    else:
        what = ("%d bytes" % seq_diff(data_end, acked)) if acked >= 0 else "data"
        what += " and its FIN" if fin else ""
        since = e.last_data_ts if e.sent_data else None
    c.note_at("PEER_UNRESPONSIVE", e.last_ts, c.last_frame, i,
              "%s sent %s again %d times over %.1f s; %s never acknowledged %s" % (
                  SIDES[i], what, a.resent, (now - since) / 1e9 if since is not None else 0.0,
                  SIDES[1 - i], "it" if what == "its FIN" else "any of it"))
    return fin


#: SYN_UNANSWERED's message for one SYN and nothing after it (a SYN of a flood), made once.
_ONE_SYN: Final = "SYN sent %d time(s) over %.1f s, never answered" % (1, 0.0)


def _note_outcome(c: Connection, handshake: str, close: Optional[str]) -> None:
    o = c.endpoint(0)
    if handshake == "stray":
        _note_stray(c)
    elif handshake == "unanswered":
        c.note_at("SYN_UNANSWERED", c.syn_ts, c.first_frame, 0,
                  _ONE_SYN if o.syn_count == 1 and c.last_ts <= c.syn_ts else
                  "SYN sent %d time(s) over %.1f s, never answered"
                  % (o.syn_count, max(c.last_ts - c.syn_ts, 0) / 1e9))
    elif handshake == "refused" and c.rst is not None:
        c.note_at("CONNECTION_REFUSED", c.rst[1], c.rst[2], 1,
                  "SYN to port %d answered by RST" % c.port(1))
    elif handshake == "half_open":
        c.note_at("HANDSHAKE_HALF_OPEN", c.last_ts, c.last_frame, 0,
                  "SYN-ACK sent %d time(s), %s" % (
                      c.endpoint(1).synack_count,
                      "the originator's ACK of it was not acceptable (HANDSHAKE_ACK_BAD)"
                      if "HANDSHAKE_ACK_BAD" in c.findings else "never acknowledged" if not c.est_sides & 1 else
                      "and sent again after the originator's ACK: that ACK never arrived"))
    elif handshake == "reset" and c.rst is not None:
        rst = c.rst
        c.note_at("HANDSHAKE_RESET", rst[1], rst[2], rst[0],
                  "%s sent RST before the handshake completed" % SIDES[rst[0]])
    if close == "reset" and c.rst is not None:
        c.note_at("CONNECTION_RESET", c.rst[1], c.rst[2], c.rst[0],
                  "%s aborted the connection with RST" % SIDES[c.rst[0]])
    elif c.rst is not None and close in ("four_way", "three_segment", "simultaneous"):
        c.note_at("RST_AFTER_FIN", c.rst[1], c.rst[2], c.rst[0],
                  "%s sent RST after the FIN exchange" % SIDES[c.rst[0]])


def _last(since: int, peer: Endpoint) -> int:
    """The later of `since` and the peer's last new data (when it sent any)."""
    return max(since, peer.last_data_ts) if peer.sent_data else since


def _note_stray(c: Connection) -> None:
    """No connection: what the capture shows instead of a handshake joined mid-way."""
    c.findings.pop("MIDSTREAM_START", None)
    code = stray_code(c)
    r = 0 if c.endpoint(0).pkts and int(c.endpoint(0).rsts) == c.endpoint(0).pkts else 1
    if code == "STRAY_RST":
        c.note_at(code, c.first_ts, c.first_frame, r, "%s sent %s alone: no connection on this "
                  "4-tuple in the capture for it to end" % (
                      SIDES[r], "a RST" if c.endpoint(r).rsts == 1 else "%d RSTs" % c.endpoint(r).rsts))
    else:
        c.note_at("CLOSED_PORT_PROBE", c.first_ts, c.first_frame, r, "%s's port %d has no "
                  "connection: it answered %s with RST (RFC 9293 §3.10.7.1)" % (
                      SIDES[r], c.port(r), "a probe" if c.endpoint(1 - r).pkts == 1 else
                      "%d probes" % c.endpoint(1 - r).pkts))
