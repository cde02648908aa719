"""`--explain N`: the handshake and the close of one connection in plain words, arithmetic checked.

Read from the stream's ladder (`LadderRow`s, kept by the pipeline for traced streams) and its
result, never from the analysis' internals: each step names its frame and, where there is
arithmetic, checks it ("SYN-ACK ack = x+1 ✓"); a wrong number is shown next to the right one.
The steps are data (`Step`); renderers and the browser print them. The verdicts themselves
come from the judge: this only tells the story the packets tell.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

from analyzer.decode.options import options_text
from analyzer.judge.result import ConnResult, LadderRow

_MASK = 0xFFFFFFFF
OK = "✓"
WRONG = "✗"


class Step(NamedTuple):
    """One sentence of the explanation: the frame it is about (None for a conclusion), the
    text, and whether a checked number was right (None when nothing was checked)."""
    frame: Optional[int]
    text: str
    ok: Optional[bool] = None


def _other(side: str) -> str:
    return "resp" if side == "orig" else "orig"


def _check(name: str, got: Optional[int], want: int, formula: str) -> "tuple[str, bool]":
    if got == want:
        return "%s=%s = %d %s" % (name, formula, want, OK), True
    return "%s=%s %s (should be %s = %d)" % (name, got, WRONG, formula, want), False


def _seconds(ns: int) -> str:
    return "%.1f s" % (ns / 1e9)


def explain(r: ConnResult, rows: Sequence[LadderRow], msl: float) -> List[Step]:
    """The story of connection `r` from its ladder `rows`, with TIME_WAIT as 2 x `msl` s."""
    steps: List[Step] = []
    if not rows:
        return [Step(None, "No packets of stream %d were kept (trace it with --stream %d)."
                     % (r.id, r.id))]
    _handshake(r, rows, steps)
    if r.close is not None:
        _close(r, rows, steps, msl)
    else:
        steps.append(Step(None, "No connection was established, so there is no close."))
    return steps


def _handshake(r: ConnResult, rows: Sequence[LadderRow], steps: List[Step]) -> None:
    syns = [x for x in rows if x.side == "orig" and "S" in x.flags and "." not in x.flags]
    synacks = [x for x in rows if x.side == "resp" and "S" in x.flags and "." in x.flags]
    if r.handshake == "not_seen":
        steps.append(Step(rows[0].frame, "The capture began mid-connection (first packet [%s] "
                          "from %s): the handshake is not in it; numbers are relative to the "
                          "first ones seen." % (rows[0].flags, rows[0].side)))
        return
    x = syns[0].raw_seq if syns else None
    if syns:
        s = syns[0]
        opts = options_text(s.options)
        steps.append(Step(s.frame, "orig sends SYN seq=x (ISN x = %d)%s%s." % (
            s.raw_seq, "; options " + opts if opts else "",
            "; sent %d times in all" % len(syns) if len(syns) > 1 else "")))
    elif synacks:
        steps.append(Step(synacks[0].frame, "The SYN is not in the capture: its SYN-ACK is."))
    if r.handshake == "simultaneous_open":
        steps.append(Step(None, "Both sides sent a SYN: a simultaneous open (RFC 9293 §3.5); "
                          "each SYN-ACK acknowledges the other side's SYN."))
    if synacks:
        _synack_and_ack(rows, syns, synacks, x, steps)
    rst = next((row for row in rows if "R" in row.flags), None)
    if r.handshake == "refused" and rst is not None:
        steps.append(Step(rst.frame, "resp answers the SYN with RST: nothing listens on port "
                          "%d (or a firewall refused it) -> refused." % r.resp_raw[1]))
    elif r.handshake == "unanswered":
        span = rows[-1].ts - rows[0].ts
        steps.append(Step(None, "resp never answered: %d SYN(s) over %s -> unanswered."
                          % (len(syns), _seconds(span))))
    elif r.handshake == "half_open":
        steps.append(Step(None, "orig never acknowledged the SYN-ACK (sent %d time(s)) -> "
                          "half-open." % max(len(synacks), 1)))
    elif r.handshake == "reset" and rst is not None:
        steps.append(Step(rst.frame, "%s sent RST before the handshake completed -> reset."
                          % rst.side))
    steps.append(Step(None, "Handshake: %s." % r.handshake))


def _synack_and_ack(rows: Sequence[LadderRow], syns: List[LadderRow],
                    synacks: List[LadderRow], x: Optional[int], steps: List[Step]) -> None:
    """The SYN-ACK's ack checked against the SYN (x+1; with data on the SYN, TCP Fast Open,
    x+1+len when the data was accepted), then the third segment against both."""
    sa = synacks[0]
    data = syns[0].length if syns else 0
    text = "resp answers SYN-ACK seq=y (ISN y = %d)" % sa.raw_seq
    ok: Optional[bool] = None
    took_data = False
    if x is not None:
        if data and sa.raw_ack == (x + 1 + data) & _MASK:
            took_data = True
            part, ok = _check("ack", sa.raw_ack, (x + 1 + data) & _MASK, "x+1+%d" % data)
            part += ": the SYN and its %d bytes of data (TCP Fast Open)" % data
        else:
            part, ok = _check("ack", sa.raw_ack, (x + 1) & _MASK, "x+1")
            if data and ok:
                part += ": the SYN only, not its %d bytes of data (sent again)" % data
        text += ", " + part
    opts = options_text(sa.options)
    steps.append(Step(sa.frame, text + ("; options " + opts if opts else "") + (
        "; sent %d times in all" % len(synacks) if len(synacks) > 1 else "") + ".", ok))
    third = next((row for row in rows if row.side == "orig" and row.frame > sa.frame
                  and "S" not in row.flags and "R" not in row.flags
                  and row.raw_ack is not None), None)
    if third is None:
        return
    # The newest SYN-ACK before it counts (a responder may change its ISN, RFC 9293 §3.10.7.4).
    newest = [row for row in synacks if row.frame < third.frame][-1]
    y = newest.raw_seq
    parts, oks = [], []
    if x is not None:
        want, formula = ((x + 1 + data) & _MASK, "x+1+%d" % data) if took_data else (
            (x + 1) & _MASK, "x+1")
        part, good = _check("seq", third.raw_seq, want, formula)
        parts.append(part)
        oks.append(good)
    part, good = _check("ack", third.raw_ack, (y + 1) & _MASK, "y+1")
    if newest is not sa and newest.raw_seq != sa.raw_seq:
        part += " (y of the newest SYN-ACK, frame %d)" % newest.frame
    parts.append(part)
    oks.append(good)
    steps.append(Step(third.frame, "orig acknowledges: %s [%s] -> orig %s, resp %s." % (
        ", ".join(parts), third.flags, third.state_orig, third.state_resp), all(oks)))


def _fin_end(row: LadderRow) -> int:
    """The sequence number just past a FIN (relative): data, then the FIN's one number."""
    return (row.seq + row.length + 1) & _MASK


def _close(r: ConnResult, rows: Sequence[LadderRow], out: List[Step], msl: float) -> None:
    steps: List[Step] = []
    _packets(r, rows, steps)
    # The packets' steps in frame order (the FINs' stories interleave), then the conclusions.
    out.extend(sorted((s for s in steps if s.frame is not None), key=lambda s: s.frame or 0))
    out.extend(s for s in steps if s.frame is None)
    _ending(r, out, msl)


def _packets(r: ConnResult, rows: Sequence[LadderRow], steps: List[Step]) -> None:
    fins = []
    for side in ("orig", "resp"):
        first = next((row for row in rows if row.side == side and "F" in row.flags), None)
        if first is not None:
            fins.append(first)
    fins.sort(key=lambda row: row.frame)
    for fin in fins:
        peer = _other(fin.side)
        end = _fin_end(fin)
        data = " after %d bytes of data" % fin.length if fin.length else ""
        steps.append(Step(fin.frame, "%s sends FIN seq=%d%s: a FIN consumes one sequence "
                          "number, so the ACK that covers it is %d." % (
                              fin.side, (fin.seq + fin.length) & _MASK, data, end)))
        acker = next((row for row in rows if row.side == peer and row.frame > fin.frame
                      and row.ack is not None
                      and ((row.ack - end) & _MASK) < 0x80000000), None)
        if acker is None:
            steps.append(Step(None, "%s never acknowledged that FIN in the capture." % peer))
            continue
        got = acker.ack if acker.ack is not None else end
        ok: Optional[bool]
        if got == end:
            part, ok = _check("ack", got, end, "%d+1" % ((end - 1) & _MASK))
        else:       # the ACK also covers what its sender sent after its FIN
            part, ok = "ack=%d, %d past the FIN's %d (data sent after the FIN)" % (
                got, (got - end) & _MASK, end), None
        text = "%s's %s covers the FIN: %s" % (
            peer, "FIN" if "F" in acker.flags else "ACK [%s]" % acker.flags, part)
        if "F" in acker.flags and acker is fins[-1] and fin is fins[0]:
            text += "; the FIN carries the ACK of the peer's FIN: a three-segment close"
        steps.append(Step(acker.frame, text + " -> orig %s, resp %s." % (
            acker.state_orig, acker.state_resp), ok))
    if len(fins) == 2 and r.close == "simultaneous":
        steps.append(Step(None, "The second FIN did not acknowledge the first: the FINs "
                          "crossed, a simultaneous close (both ends pass through CLOSING)."))
    rst = next((row for row in rows if "R" in row.flags), None)
    if rst is not None:
        steps.append(Step(rst.frame, "%s sends RST%s." % (
            rst.side, ": the connection is aborted" if r.close == "reset"
            else " after the FIN exchange")))


def _ending(r: ConnResult, steps: List[Step], msl: float) -> None:
    two_msl = 2 * msl
    for lg in r.lingering:
        if lg.state == "TIME_WAIT" and lg.remaining is not None:
            left = lg.remaining / 1e9
            spent = lg.seconds / 1e9
            ok = abs(spent + left - two_msl) < 1e-6
            steps.append(Step(None, "%s is in TIME_WAIT, which lasts 2×MSL = %g s; %.1f s "
                              "passed and %.1f s were left when the capture ended (%.1f + %.1f "
                              "= %g %s)." % (lg.side, two_msl, spent, left, spent, left,
                                             two_msl, OK if ok else WRONG), ok))
        elif lg.state == "CLOSE_WAIT":
            steps.append(Step(None, "%s was still in CLOSE_WAIT when the capture ended, %.1f s "
                              "after the peer's FIN: its application never closed the socket."
                              % (lg.side, lg.seconds / 1e9)))
    for side, state in zip(("orig", "resp"), r.final_state):
        if state == "CLOSED" and r.close in ("four_way", "three_segment") and not any(
                lg.side == side for lg in r.lingering) and side == r.closed_first:
            steps.append(Step(None, "%s's TIME_WAIT (2×MSL = %g s) ran out before the capture "
                              "ended -> CLOSED." % (side, two_msl)))
    first = "" if r.closed_first is None else ", closed first by %s" % r.closed_first
    steps.append(Step(None, "Close: %s%s." % (r.close, first)))


def explain_text(steps: Sequence[Step]) -> str:
    """The steps as plain lines (`frame N: text`)."""
    return "\n".join(("frame %d: " % s.frame if s.frame is not None else "") + s.text
                     for s in steps)
