"""A connection's record: its two endpoints and the bookkeeping every replay step shares.

`Endpoint` is what is known of one side (its RFC 9293 state and the sequence numbers it used);
`ConnectionCore` holds both endpoints, the findings, and `move()`, the one way a state changes
(through the table in states.py). The replay (conn.py), the control-segment rules (control.py)
and the sequence analysis (seqanalysis.py) all work on this record, so none of them needs the
others' modules.

Sides are indexed 0 = originator (`orig`), 1 = responder (`resp`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Final, List, Optional, Tuple, Union

from analyzer.common.native import i32, mypyc_attr
from analyzer.common.findings import Finding
from analyzer.decode.segment import ACK, SYN, UNSET, Segment, addr_str, describe
from analyzer.tcp.states import (CLOSE_WAIT, CLOSED, ESTABLISHED, ILLEGAL, LISTEN, N_INPUTS, NEXT,
                                 RECV_FIN, RECV_SYN_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from analyzer.tcp.rare import WithRare
from analyzer.tcp.zeek import ZeekView

SIDES: Final = ("orig", "resp")

#: The findings of every connection that has none yet: one shared dict, never written (most
#: connections have none, and the only writer, `ConnectionCore.note_at`, makes its own).
NO_FINDINGS: Final[Dict[str, Finding]] = {}


def fin_entry(side: int, frame: int, acks_peer: bool) -> int:
    """One of `ConnectionCore.fins`: a FIN's frame, its side and whether it acknowledged the
    peer's FIN, as one int (a tuple of four with a boxed time and frame was 160 bytes a FIN,
    and the tuple of them 64 more, on every finished connection held for 2*MSL)."""
    return (frame << 2) | (side << 1) | (1 if acks_peer else 0)


def fin_side(fin: int) -> int:
    """The side that sent the FIN (`fin_entry`)."""
    return (fin >> 1) & 1


def fin_frame(fin: int) -> int:
    """The FIN's frame number (`fin_entry`)."""
    return fin >> 2


def fin_acks_peer(fin: int) -> bool:
    """Whether the FIN acknowledged the peer's FIN (`fin_entry`)."""
    return bool(fin & 1)


def pending_entry(inp: int, end: int) -> int:
    """One of `Endpoint.pending`: input `inp` (its code: below N_INPUTS, 16) held until the
    endpoint acknowledges sequence number `end`, as one int (a tuple of the input, the end and
    a time nothing read was a tuple and two int objects a SYN, SYN-ACK or FIN)."""
    return (end << 4) | inp


def pending_input(p: int) -> int:
    """The input's code of a `pending_entry`."""
    return p & 15


def pending_end(p: int) -> int:
    """The sequence number whose acknowledgement delivers a `pending_entry`."""
    return p >> 4


#: `ConnectionCore.fin_acked_by`'s four values, shared: [2 * side + ack came on its FIN].
#: (Typed Any: the compiled build would make a new tuple of an item typed Tuple[int, bool].)
ACKED_BY: Final[Tuple[Any, ...]] = ((0, False), (0, True), (1, False), (1, True))

#: The counters of a direction where nothing happened (one shared tuple).
NO_COUNTS: Final[Tuple[int, ...]] = (0,) * 7


@mypyc_attr(acyclic=True)
class Analysis:
    """Per-direction counters of the sequence analysis (JSON `analysis.<side>`)."""

    __slots__ = ("retransmissions", "out_of_order", "lost_segments", "acked_unseen",
                 "keepalives", "keepalive_acks", "zero_windows", "holes", "keepalive_open",
                 "zw_since", "resent", "resend_ack", "isns")

    FIELDS: ClassVar[Tuple[str, ...]] = (
        "retransmissions", "out_of_order", "lost_segments", "acked_unseen", "keepalives",
        "keepalive_acks", "zero_windows")

    def __init__(self) -> None:
        self.retransmissions = 0
        self.out_of_order = 0
        self.lost_segments = 0
        self.acked_unseen = 0
        self.keepalives = 0
        self.keepalive_acks = 0
        self.zero_windows = 0
        #: (start, end, ts) of missing bytes; None until the first (most connections have none).
        self.holes: Optional[List[Tuple[int, int, int]]] = None
        self.keepalive_open = False     # the last segment was a keep-alive awaiting its ACK
        self.zw_since = 0               # when this side's window closed (0: it is open)
        # The current episode of resends: how many, and the peer's ACK when it began (an
        # episode ends when the peer's ACK moves).
        self.resent = 0
        self.resend_ack = UNSET         # the peer's last ACK at the first resend
        #: The ISNs the side offered after its first (`Endpoint.offer`): rare, so kept here.
        self.isns: Tuple[int, ...] = ()

    def counts(self) -> Tuple[int, ...]:
        """The counters, in FIELDS order (what a finished connection keeps); `NO_COUNTS`
        itself when all are zero, as on most connections."""
        if not (self.retransmissions or self.out_of_order or self.lost_segments
                or self.acked_unseen or self.keepalives or self.keepalive_acks
                or self.zero_windows):
            return NO_COUNTS
        return (self.retransmissions, self.out_of_order, self.lost_segments, self.acked_unseen,
                self.keepalives, self.keepalive_acks, self.zero_windows)


#: The counters of every side that has none yet: one shared object, never written (most
#: connections count nothing, and two Analysis objects were a tenth of a connection's
#: memory). `Endpoint.own_analysis()` gives a side its own before the first change.
QUIET: Final = Analysis()


@mypyc_attr(acyclic=True)
class Endpoint:
    """What is known of one side: its state and the sequence numbers it has used.

    Its `state` is a state's code (states.py: `STATES[state]` is the `State`, `STATE_NAME`
    its name)."""

    __slots__ = ("state", "since", "isn", "base_seq", "next_seq", "syn_count",
                 "synack_count", "syn_acked", "fin_seq", "fin_ts", "fin_acked", "pending",
                 "max_win", "wscale", "pkts", "bytes", "ip_bytes", "close_wait_since", "last_ack",
                 "analysis", "first_isn", "seq_exact", "last_data_ts", "sent_data",
                 "last_ts", "rsts")

    # The flags first and together: the compiled build lays attributes out in the order they
    # are declared, and a bool between two 8-byte fields takes 8 bytes; four in a row take 8
    # in all (32 bytes less an endpoint, with the allocator's rounding). The three counters
    # of SYNs, SYN-ACKs and RSTs in 32 bits each beside them (a count past 2**31 would take a
    # connection of 2**31 packets): 16 bytes less (208 -> 192).
    syn_acked: bool
    fin_acked: bool
    seq_exact: bool
    sent_data: bool
    rsts: i32
    syn_count: i32
    synack_count: i32

    def __init__(self, state: int, ts: int) -> None:
        # (Its address and port are the connection's: `ConnectionCore.addr` and `port`.)
        self.state = state
        self.since = ts                 # when the current state began (capture time, ns)
        # Sequence numbers are 0 .. 2**32-1; UNSET (-1) where not known yet (plain ints, not
        # Optional: the compiled build keeps them unboxed, which halves a connection's ints).
        self.isn = UNSET                # sequence number of this side's SYN
        self.base_seq = UNSET           # tshark's base: SYN seq, else first seq - 1
        self.next_seq = UNSET           # highest sequence number sent + 1
        self.syn_count = 0
        self.synack_count = 0
        self.syn_acked = False
        self.fin_seq = UNSET
        self.fin_ts = 0
        self.fin_acked = False
        # Received SYN/SYN-ACK/FIN not yet acknowledged by this side (`pending_entry`: the
        # input and the sequence number its ACK covers), one of each input at most. A tuple:
        # empty for most of a connection's life, and the empty tuple costs nothing.
        self.pending: Tuple[int, ...] = ()
        self.max_win = 0
        self.wscale = -1
        self.pkts = 0
        self.bytes = 0
        self.ip_bytes = 0               # IP lengths as the headers announce them (Zeek's count)
        self.close_wait_since = 0       # the peer's FIN time, for CLOSE_WAIT durations
        self.last_ack = UNSET           # ack number of the last ACK this side sent
        self.analysis = QUIET           # read freely; changed through own_analysis()
        # Every ISN this side offered (SYN, SYN-ACKs), at most MAX_ISNS (`offered`, `offer`):
        # the first as a plain int (UNSET: none yet), any others in `analysis.isns`, where
        # most connections have none (a tuple of one boxed ISN was a tenth of a connection).
        self.first_isn = UNSET
        # next_seq came from a segment that used sequence space (data, SYN, FIN); a bare ACK
        # only bounds it (a keep-alive probe carries SND.NXT - 1).
        self.seq_exact = False
        self.last_data_ts = 0           # when it last sent new data (if `sent_data`)
        self.sent_data = False
        self.last_ts = 0                # when it last sent anything
        self.rsts = 0                   # RSTs it sent

    def own_analysis(self) -> Analysis:
        """This side's counters, to change: its own, made on the first change (until then
        `analysis` is the shared, unchanging `QUIET`)."""
        a = self.analysis
        if a is QUIET:
            a = self.analysis = Analysis()
        return a

    def offered(self, seq: int) -> bool:
        """Whether this side offered `seq` as its ISN (a SYN or SYN-ACK of it was seen)."""
        if seq == self.first_isn:
            return True
        isns = self.analysis.isns
        return len(isns) > 0 and seq in isns

    def offer(self, seq: int, most: int) -> None:
        """Remember `seq` as an ISN this side offered, `most` ISNs at most in all."""
        if self.first_isn < 0:
            self.first_isn = seq
        elif len(self.analysis.isns) + 1 < most and not self.offered(seq):
            a = self.own_analysis()
            a.isns += (seq,)

    def take_pending(self, inp: int) -> int:
        """Remove input `inp` (its code) from what is pending; how many there were (0 or 1)."""
        pending = self.pending
        n = 0
        for p in pending:                   # (a loop, not sum() of a generator: no object)
            if pending_input(p) == inp:
                n += 1
        if n:
            self.pending = tuple([p for p in pending if pending_input(p) != inp])
        return n


@mypyc_attr(acyclic=True)
class ConnectionCore(WithRare):
    """A connection's record: its two endpoints, its findings, and the moves of their states.

    `Connection` (conn.py) adds the replay; the control-segment rules (control.py) and the
    sequence analysis (seqanalysis.py) work on this record, so they need nothing above it.
    The facts of rare events (`held_rst`, `syn_data`, `inferred_fin`, `rst_undo`,
    `reply_rsts`, `bad_ack`, `reused_from`) and a tunnelled connection's contexts (`tunnel`,
    `rtunnel`) live in a side object made on the first (rare.py)."""

    __slots__ = ("id", "first_ts", "last_ts", "first_frame", "last_frame", "findings",
                 "midstream", "syn_seen", "synack_seen", "sim_open", "synack_win",
                 "rst", "fin_a", "fin_b", "acked_by", "half_close_data",
                 "syn_ts", "est_sides", "self_connect", "prev_ts", "tfo",
                 "steady", "zeek", "first_from_orig",
                 "rst_discards", "last_dup", "last_dup_seq",
                 "last_dup_ack", "key", "rkey", "queued", "queued_ts", "e0", "e1")

    # The flags first and together (as in Endpoint): eleven bools in 16 bytes, not 88; and
    # five numbers of 32 bits in 20, not 40: the SYN-ACK's window (16 bits, -1: none), the
    # established sides (two bits), the last frame's seq and ack less 2**31 (oddities.py),
    # and `fin_acked_by` as its index in ACKED_BY (-1: None).
    synack_win: i32
    est_sides: i32
    last_dup_seq: i32
    last_dup_ack: i32
    acked_by: i32
    midstream: bool
    syn_seen: bool
    synack_seen: bool
    sim_open: bool
    half_close_data: bool
    self_connect: bool
    tfo: bool
    steady: bool
    first_from_orig: bool
    rst_discards: bool
    queued: bool

    def __init__(self, stream_id: int, seg: Segment, orig_is_src: bool, key: bytes,
                 rkey: bytes, zeek: bool = True) -> None:
        self.rare = None
        self.id = stream_id
        src = Endpoint(CLOSED, seg.ts)
        #: A socket connected to itself (same address and port at both ends): both sides
        #: are one endpoint, which sends and receives every segment (a simultaneous open
        #: with itself). Modelled as one Endpoint object in both slots.
        self.self_connect = seg.src == seg.dst and seg.sport == seg.dport
        #: Its endpoints by side (`endpoint(side)`; `ep` gives both): the originator, the
        #: responder.
        self.e0 = self.e1 = src
        if not self.self_connect:
            dst = Endpoint(CLOSED, seg.ts)
            if orig_is_src:
                self.e1 = dst
            else:
                self.e0 = dst
        self.first_ts = self.last_ts = self.prev_ts = seg.ts
        self.tfo = False            # the SYN carried data (TCP Fast Open, RFC 7413)
        self.steady = False         # see on_segment: the fast path applies
        #: Zeek's conn_state and history, from the same segments (`zeek_view()`); None when
        #: no output reads them (`Settings.zeek_view`). Until the connection's second packet
        #: it holds the first packet instead (one slot for both: a connection of one packet,
        #: a SYN of a flood, a stray RST, keeps only that), which `zeek_view()` replays into
        #: the view when it is made.
        self.zeek: Union[ZeekView, Segment, None] = seg if zeek else None
        self.rst_discards = False   # the RST threw away data its receiver had sent
        # The last frame, to tell it captured twice (oddities.py `duplicate`): its flags, IPv4 ID,
        # checksum and side (`flags << 33 | Segment.dup << 1 | side`; -1: none yet), seq and
        # ack less 2**31 (32-bit signed fields).
        self.last_dup = -1
        self.last_dup_seq = -1
        self.last_dup_ack = -1
        # (The 32-bit fields all set before anything is called on self: mypyc then knows
        # them always defined and keeps no bitmap of them, 8 bytes with the alignment.)
        self.synack_win = -1        # the window of the last SYN-ACK (-1: none seen)
        self.est_sides = 0          # bit 1 << side once that side reached ESTABLISHED
        self.acked_by = -1          # `fin_acked_by` (side, ack came on its FIN), by index
        #: The flow table's keys: the 4-tuple as its first packet had it, and reversed (`okey`
        #: is the one of segments from the originator).
        self.key = key
        self.rkey = rkey
        if len(seg.tunnel):
            self.tunnel = self.rtunnel = seg.tunnel     # (rare.py: empty outside tunnels)
        #: In the flow table's queue of finished connections (`queued`), since its last
        #: packet at `queued_ts` (a capture time: any integer, so not a flag as well).
        self.queued = False
        self.queued_ts = 0
        self.first_from_orig = orig_is_src or seg.src == seg.dst and seg.sport == seg.dport
        self.first_frame = self.last_frame = seg.num
        #: By code; the shared empty NO_FINDINGS until the first (`note_at` makes its own).
        self.findings: Dict[str, Finding] = NO_FINDINGS
        self.syn_seen = False
        self.synack_seen = False
        self.sim_open = False
        self.rst: Optional[Tuple[int, int, int]] = None   # the accepted RST: (side, ts, frame)
        # Its FINs in frame order, each one int (`fin_entry`: frame, side, whether it acked
        # the peer's FIN; -1: none), read and written as the tuple `fins`. Two at most: a
        # side's FIN is noted once (control.py: while its `fin_seq` is unset).
        self.fin_a = -1
        self.fin_b = -1
        self.half_close_data = False
        self.syn_ts = 0
        orig, resp = self.e0, self.e1
        flags = seg.flags
        if self.self_connect:
            orig.state = CLOSED if flags & SYN and not flags & ACK else ESTABLISHED
            self.midstream = not flags & SYN
            self.note("SELF_CONNECT", seg, 0, "%s:%d connected to itself"
                      % (addr_str(seg.src), seg.sport))
        elif flags & SYN and not flags & ACK:
            orig.state, resp.state = CLOSED, LISTEN
            self.midstream = False
        elif flags & SYN:
            # The SYN-ACK came first: its SYN was sent before the capture began.
            orig.state, resp.state = SYN_SENT, SYN_RECEIVED
            self.midstream = False
            self.note("SYN_NOT_CAPTURED", seg, 1, "SYN-ACK seen without the SYN it answers")
        else:
            orig.state = resp.state = ESTABLISHED
            self.midstream = True
            self.note("MIDSTREAM_START", seg, None,
                      "first packet is %s, not a SYN: the handshake was not captured"
                      % describe(seg))

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def fin_acked_by(self) -> Optional[Tuple[int, bool]]:
        """(side, the ACK came on its FIN) of the first ACK of a FIN; None before it."""
        return None if self.acked_by < 0 else ACKED_BY[self.acked_by]

    @fin_acked_by.setter
    def fin_acked_by(self, by: Optional[Tuple[int, bool]]) -> None:
        self.acked_by = -1 if by is None else 2 * by[0] + (1 if by[1] else 0)

    @property
    def okey(self) -> bytes:
        """The 4-tuple of segments from the originator (`key` or `rkey`)."""
        return self.key if self.first_from_orig else self.rkey

    @property
    def fins(self) -> Tuple[int, ...]:
        """Its FINs in frame order (`fin_entry`), none, one or two."""
        if self.fin_a < 0:
            return ()
        return (self.fin_a,) if self.fin_b < 0 else (self.fin_a, self.fin_b)

    @fins.setter
    def fins(self, fins: Tuple[int, ...]) -> None:
        if len(fins) > 2:
            raise ValueError("a connection has two FINs at most, one a side")
        self.fin_a = fins[0] if len(fins) > 0 else -1
        self.fin_b = fins[1] if len(fins) > 1 else -1

    def add_fin(self, fin: int) -> None:
        """Note a FIN (`fin_entry`) after those noted: `fins += (fin,)` without the tuples."""
        if self.fin_a < 0:
            self.fin_a = fin
        elif self.fin_b < 0:
            self.fin_b = fin
        else:
            raise ValueError("a connection has two FINs at most, one a side")

    def endpoint(self, side: int) -> Endpoint:
        """The endpoint of `side` (0 = orig, 1 = resp)."""
        return self.e0 if side == 0 else self.e1

    @property
    def ep(self) -> Tuple[Endpoint, Endpoint]:
        """Both endpoints, (orig, resp): the same object twice for a self-connection."""
        return self.e0, self.e1

    def addr(self, side: int) -> bytes:
        """The packed address of `side` (from the originator's 4-tuple, `okey`)."""
        okey = self.okey
        n = (len(okey) - 4) >> 1
        return okey[:n] if side == 0 else okey[n:n + n]

    def port(self, side: int) -> int:
        """The port of `side`."""
        okey = self.okey
        i = len(okey) - 4 + 2 * side
        return (okey[i] << 8) | okey[i + 1]

    def zeek_view(self) -> Optional[ZeekView]:
        """The Zeek view, made now (with the first packet replayed into it) if it was still
        to come; None when it is off."""
        zeek = self.zeek
        if zeek is None or isinstance(zeek, ZeekView):
            return zeek
        first = zeek                        # the first packet, held
        view = self.zeek = ZeekView()
        view.segment(first.key == self.okey, first, not first.cut, first.bad_csum)
        return view

    def note(self, code: str, seg: Segment, side: Optional[int], message: str) -> None:
        """Record a finding at this segment (aggregated by code)."""
        self.note_at(code, seg.ts, seg.num, side, message)

    def repeat(self, code: str) -> bool:
        """Count one more occurrence of a finding already noted; False if it is new (the
        caller then builds its message once: per-packet findings stay cheap)."""
        findings = self.findings
        if not findings:                    # (most connections: no lookup in an empty dict)
            return False
        f = findings.get(code)
        if f is None:
            return False
        f.count += 1
        return True

    def note_at(self, code: str, ts: int, frame: int, side: Optional[int], message: str) -> None:
        findings = self.findings
        f = findings.get(code) if findings else None
        if f is None:
            if findings is NO_FINDINGS:
                findings = self.findings = {}
            findings[code] = Finding(code, ts, frame, None if side is None else SIDES[side],
                                     message)
        else:
            f.count += 1

    def side_of(self, seg: Segment) -> int:
        return 0 if seg.key == self.okey else 1

    def move(self, side: int, inp: int, seg: Segment) -> bool:
        """Apply input `inp` (its code) to the endpoint of `side`; False if the table has no
        such move (the state stays)."""
        e = self.e0 if side == 0 else self.e1
        state = e.state
        if inp == RECV_FIN and state == TIME_WAIT:
            e.since = seg.ts            # RFC 9293 §3.10.7.4: ACK it, restart the 2 MSL timer
        nxt = NEXT[state * N_INPUTS + inp]      # (states.next_state, without the call)
        if nxt == ILLEGAL:
            return False
        if nxt != state:
            if nxt == CLOSE_WAIT:
                peer = self.e1 if side == 0 else self.e0
                e.close_wait_since = peer.fin_ts if peer.fin_seq >= 0 else seg.ts
            elif nxt == ESTABLISHED:
                self.est_sides |= 1 << side
            e.state = nxt
            e.since = seg.ts
        return True

    @staticmethod
    def hold(e: Endpoint, inp: int, end: int) -> None:
        """Hold input `inp` for `e` until it acknowledges `end` (`pending_entry`)."""
        if not e.pending:                   # (the commonest: nothing pending yet)
            e.pending = (pending_entry(inp, end),)
            return
        for i, p in enumerate(e.pending):
            if pending_input(p) == inp:
                if pending_end(p) != end and inp == RECV_SYN_ACK:   # a new ISN replaces it
                    e.pending = e.pending[:i] + (pending_entry(inp, end),) + e.pending[i + 1:]
                return                      # a retransmission of something already pending
        e.pending += (pending_entry(inp, end),)
