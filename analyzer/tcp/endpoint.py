"""A connection's record: its two endpoints and the bookkeeping every replay step shares.

`Endpoint` is what is known of one side (its RFC 9293 state and the sequence numbers it used);
`ConnectionCore` holds both endpoints, the findings, and `move()`, the one way a state changes
(through the table in states.py). The replay (conn.py), the control-segment rules (control.py)
and the sequence analysis (seqanalysis.py) all work on this record, so none of them needs the
others' modules.

Sides are indexed 0 = originator (`orig`), 1 = responder (`resp`).
"""

from __future__ import annotations

from typing import ClassVar, Dict, Final, List, Optional, Tuple

from analyzer.common.findings import Finding
from analyzer.decode.segment import ACK, SYN, UNSET, Segment, addr_str, describe
from analyzer.tcp.states import Input, State, step
from analyzer.tcp.zeek import ZeekView

SIDES: Final = ("orig", "resp")

#: The counters of a direction where nothing happened (one shared tuple).
NO_COUNTS: Final[Tuple[int, ...]] = (0,) * 7


class Analysis:
    """Per-direction counters of the sequence analysis (JSON `analysis.<side>`)."""

    __slots__ = ("retransmissions", "out_of_order", "lost_segments", "acked_unseen",
                 "keepalives", "keepalive_acks", "zero_windows", "holes", "keepalive_open",
                 "zw_since", "resent", "resend_ack")

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

    def counts(self) -> Tuple[int, ...]:
        """The counters, in FIELDS order (what a finished connection keeps); `NO_COUNTS`
        itself when all are zero, as on most connections."""
        if not (self.retransmissions or self.out_of_order or self.lost_segments
                or self.acked_unseen or self.keepalives or self.keepalive_acks
                or self.zero_windows):
            return NO_COUNTS
        return (self.retransmissions, self.out_of_order, self.lost_segments, self.acked_unseen,
                self.keepalives, self.keepalive_acks, self.zero_windows)


class Endpoint:
    """What is known of one side: its state and the sequence numbers it has used."""

    __slots__ = ("addr", "port", "state", "since", "isn", "base_seq", "next_seq", "syn_count",
                 "synack_count", "syn_acked", "fin_seq", "fin_ts", "fin_acked", "pending",
                 "max_win", "wscale", "pkts", "bytes", "ip_bytes", "close_wait_since", "last_ack",
                 "analysis", "isns", "seq_exact", "last_data_ts", "sent_data", "last_ts",
                 "rsts")

    def __init__(self, addr: bytes, port: int, state: State, ts: int) -> None:
        self.addr = addr
        self.port = port
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
        # Received SYN/SYN-ACK/FIN not yet acknowledged by this side: (input, end seq, ts).
        # A tuple: empty for most of a connection's life, and the empty tuple costs nothing.
        self.pending: Tuple[Tuple[Input, int, int], ...] = ()
        self.max_win = 0
        self.wscale = -1
        self.pkts = 0
        self.bytes = 0
        self.ip_bytes = 0               # IP lengths as the headers announce them (Zeek's count)
        self.close_wait_since = 0       # the peer's FIN time, for CLOSE_WAIT durations
        self.last_ack = UNSET           # ack number of the last ACK this side sent
        self.analysis = Analysis()
        # Every ISN this side offered (SYN, SYN-ACKs), at most MAX_ISNS: a tuple, as there
        # are one or two (a set would be the largest object of a connection).
        self.isns: Tuple[int, ...] = ()
        # next_seq came from a segment that used sequence space (data, SYN, FIN); a bare ACK
        # only bounds it (a keep-alive probe carries SND.NXT - 1).
        self.seq_exact = False
        self.last_data_ts = 0           # when it last sent new data (if `sent_data`)
        self.sent_data = False
        self.last_ts = 0                # when it last sent anything
        self.rsts = 0                   # RSTs it sent

    def take_pending(self, inp: Input) -> int:
        """Remove `inp` from what is pending; how many there were (0 or 1)."""
        n = sum(1 for p in self.pending if p[0] is inp)
        if n:
            self.pending = tuple(p for p in self.pending if p[0] is not inp)
        return n


class ConnectionCore:
    """A connection's record: its two endpoints, its findings, and the moves of their states.

    `Connection` (conn.py) adds the replay; the control-segment rules (control.py) and the
    sequence analysis (seqanalysis.py) work on this record, so they need nothing above it."""

    __slots__ = ("id", "ep", "first_ts", "last_ts", "first_frame", "last_frame", "findings",
                 "midstream", "syn_seen", "synack_seen", "sim_open", "synack_win", "bad_ack",
                 "established_ts", "rst", "fins", "fin_acked_by", "half_close_data",
                 "reused_from", "syn_ts", "est_sides", "self_connect", "prev_ts", "tfo",
                 "steady", "zeek", "first_from_orig", "held_rst", "syn_data", "inferred_fin",
                 "rst_discards", "rst_undo", "reply_rsts", "last_dup", "last_dup_seq",
                 "last_dup_ack", "key", "rkey", "okey", "queued", "queued_ts", "e0", "e1", "tunnel",
                 "rtunnel")

    def __init__(self, stream_id: int, seg: Segment, orig_is_src: bool, key: bytes,
                 rkey: bytes) -> None:
        self.id = stream_id
        src = Endpoint(seg.src, seg.sport, State.CLOSED, seg.ts)
        #: A socket connected to itself (same address and port at both ends): both sides
        #: are one endpoint, which sends and receives every segment (a simultaneous open
        #: with itself). Modelled as one Endpoint object in both slots.
        self.self_connect = seg.src == seg.dst and seg.sport == seg.dport
        if self.self_connect:
            self.ep = [src, src]
        else:
            dst = Endpoint(seg.dst, seg.dport, State.CLOSED, seg.ts)
            self.ep = [src, dst] if orig_is_src else [dst, src]
        # The same two, as attributes: the fast path reads them without going through the list.
        self.e0, self.e1 = self.ep[0], self.ep[1]
        self.first_ts = self.last_ts = self.prev_ts = seg.ts
        self.tfo = False            # the SYN carried data (TCP Fast Open, RFC 7413)
        self.steady = False         # see on_segment: the fast path applies
        self.zeek = ZeekView()      # Zeek's conn_state and history, from the same segments
        self.held_rst: Optional[Tuple[int, Segment]] = None   # in-window, not at RCV.NXT
        self.syn_data = 0           # payload bytes on the originator's SYN (TCP Fast Open)
        self.inferred_fin: Optional[tuple] = None   # what infer_fin changed, to take it back
        self.rst_discards = False   # the RST threw away data its receiver had sent
        self.rst_undo: Optional[tuple] = None   # the states before the RST (ignored.py)
        self.reply_rsts = 0         # RSTs that answer the peer's last segment from CLOSED
        # The last frame, to tell it captured twice (oddities.py `duplicate`): its flags, IPv4 ID,
        # checksum and side (`flags << 33 | Segment.dup << 1 | side`; -1: none yet), seq, ack.
        self.last_dup = -1
        self.last_dup_seq = -1
        self.last_dup_ack = -1
        #: The flow table's keys: the 4-tuple as its first packet had it, and reversed; `okey`
        #: is the one of segments from the originator.
        self.key = key
        self.rkey = rkey
        self.okey = key if orig_is_src else rkey
        #: The tunnel context of its first segment (`Segment.tunnel`; empty outside tunnels):
        #: the table keys the connection by the 4-tuple and this.
        self.tunnel = seg.tunnel
        #: The replies' context where their tunnel ids differ (`FlowTable._bind`), else `tunnel`.
        self.rtunnel = seg.tunnel
        #: In the flow table's queue of finished connections (`queued`), since its last
        #: packet at `queued_ts` (a capture time: any integer, so not a flag as well).
        self.queued = False
        self.queued_ts = 0
        self.first_from_orig = orig_is_src or seg.src == seg.dst and seg.sport == seg.dport
        self.first_frame = self.last_frame = seg.num
        self.findings: Dict[str, Finding] = {}
        self.syn_seen = False
        self.synack_seen = False
        self.sim_open = False
        self.synack_win = -1        # the window of the last SYN-ACK (-1: none seen)
        self.bad_ack = UNSET        # the ack of the last unacceptable handshake ACK
        self.established_ts: Optional[int] = None
        self.rst: Optional[Tuple[int, int, int]] = None   # the accepted RST: (side, ts, frame)
        self.fins: List[Tuple[int, int, int, bool]] = []          # (side, ts, frame, acks_peer_fin)
        self.fin_acked_by: Optional[Tuple[int, bool]] = None     # (side, ack came on its FIN)
        self.half_close_data = False
        self.reused_from: Optional[int] = None
        self.syn_ts = 0
        self.est_sides = 0          # bit 1 << side once that side reached ESTABLISHED
        orig, resp = self.ep
        flags = seg.flags
        if self.self_connect:
            orig.state = State.CLOSED if flags & SYN and not flags & ACK else State.ESTABLISHED
            self.midstream = not flags & SYN
            self.note("SELF_CONNECT", seg, 0, "%s:%d connected to itself"
                      % (addr_str(seg.src), seg.sport))
        elif flags & SYN and not flags & ACK:
            orig.state, resp.state = State.CLOSED, State.LISTEN
            self.midstream = False
        elif flags & SYN:
            # The SYN-ACK came first: its SYN was sent before the capture began.
            orig.state, resp.state = State.SYN_SENT, State.SYN_RECEIVED
            self.midstream = False
            self.note("SYN_NOT_CAPTURED", seg, 1, "SYN-ACK seen without the SYN it answers")
        else:
            orig.state = resp.state = State.ESTABLISHED
            self.midstream = True
            self.note("MIDSTREAM_START", seg, None,
                      "first packet is %s, not a SYN: the handshake was not captured"
                      % describe(seg))

    # -- bookkeeping -------------------------------------------------------------------------

    def note(self, code: str, seg: Segment, side: Optional[int], message: str) -> None:
        """Record a finding at this segment (aggregated by code)."""
        self.note_at(code, seg.ts, seg.num, side, message)

    def repeat(self, code: str) -> bool:
        """Count one more occurrence of a finding already noted; False if it is new (the
        caller then builds its message once: per-packet findings stay cheap)."""
        f = self.findings.get(code)
        if f is None:
            return False
        f.count += 1
        return True

    def note_at(self, code: str, ts: int, frame: int, side: Optional[int], message: str) -> None:
        f = self.findings.get(code)
        if f is None:
            self.findings[code] = Finding(code, ts, frame,
                                          None if side is None else SIDES[side], message)
        else:
            f.count += 1

    def side_of(self, seg: Segment) -> int:
        return 0 if seg.key == self.okey else 1

    def move(self, side: int, inp: Input, seg: Segment) -> bool:
        e = self.ep[side]
        if inp is Input.RECV_FIN and e.state is State.TIME_WAIT:
            e.since = seg.ts            # RFC 9293 §3.10.7.4: ACK it, restart the 2 MSL timer
        nxt, legal = step(e.state, inp)
        if nxt is not e.state:
            if nxt is State.CLOSE_WAIT:
                peer = self.ep[1 - side]
                e.close_wait_since = peer.fin_ts if peer.fin_seq >= 0 else seg.ts
            if nxt is State.ESTABLISHED:
                self.est_sides |= 1 << side
                if self.established_ts is None:
                    self.established_ts = seg.ts
            e.state = nxt
            e.since = seg.ts
        return legal

    @staticmethod
    def hold(e: Endpoint, inp: Input, end: int, ts: int) -> None:
        for i, p in enumerate(e.pending):
            if p[0] is inp:
                if p[1] != end and inp is Input.RECV_SYN_ACK:   # a new ISN replaces it
                    e.pending = e.pending[:i] + ((inp, end, ts),) + e.pending[i + 1:]
                return                      # a retransmission of something already pending
        e.pending += ((inp, end, ts),)
