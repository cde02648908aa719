"""Segments that are not moves of the protocol: a frame captured twice, segments after the RST
that ended the connection, flag combinations no conforming stack sends.

The replay (conn.py) asks these first; each is a finding on the connection's record, and a
captured-twice frame is counted but never replayed (it is not a retransmission).
"""

from __future__ import annotations

from typing import Final

from analyzer.common.native import i64
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN, URG, Segment, flags_str
from analyzer.tcp.endpoint import SIDES, ConnectionCore

#: The six classic flags; a segment with none of them is a NULL scan.
CLASSIC: Final = FIN | SYN | RST | PSH | ACK | URG
#: Two or three of FIN, SYN, RST in one segment: flag combinations `odd_flags` reports.
MULTI_FLAGS: Final = frozenset({FIN | SYN, FIN | RST, SYN | RST, FIN | SYN | RST})
#: A frame identical to the one before it from the same side (same IPv4 ID and TCP checksum)
#: less than this far apart in time is the same packet captured twice (a SPAN of two ports).
DUP_NS: Final = 1_000_000


def duplicate(c: ConnectionCore, from_orig: bool, seg: Segment) -> bool:
    """Whether the frame is the connection's previous frame captured again: the same side,
    IPv4 ID, TCP checksum, flags, seq and ack, within `DUP_NS` (a SPAN of two ports copies
    frames so; the header fields count too, as offloaded checksums are not real ones).
    A duplicate is counted as a frame and a CAPTURE_DUPLICATE, never replayed (it is not a
    retransmission). Per frame this costs a few compares and three stores of ints."""
    dup = seg.dup
    if dup < 0:
        return False                # no IPv4 ID to compare (IPv6)
    # (a machine integer: the shifts inline, not calls on arbitrary-precision ints)
    key = i64(seg.flags) << 33 | i64(dup) << 1 | (0 if from_orig else 1)
    # (seq and ack stored less 2**31: they fit the record's 32-bit signed fields)
    seq, ack = seg.seq - 0x80000000, seg.ack - 0x80000000
    if key != c.last_dup or seq != c.last_dup_seq or ack != c.last_dup_ack \
            or not -DUP_NS < seg.ts - c.last_ts < DUP_NS \
            or (dup < 0x10000 and not seg.flags & (SYN | FIN) and not seg.paylen):
        # (ID 0, which RFC 6864 lets a sender repeat, on a bare ACK: identical duplicate
        # ACKs are the protocol's own)
        c.last_dup = key
        c.last_dup_seq = seq
        c.last_dup_ack = ack
        return False
    s = 0 if from_orig else 1
    x = c.endpoint(s)
    c.last_frame = seg.num
    x.pkts += 1
    x.bytes += seg.paylen
    x.ip_bytes += seg.iplen
    zeek = c.zeek_view()
    if zeek is not None:
        zeek.segment(from_orig, seg, not seg.cut, seg.bad_csum)
    c.repeat("CAPTURE_DUPLICATE") or c.note(
        "CAPTURE_DUPLICATE", seg, s, "frame %d is the frame before it captured again (same "
        "IP ID %d and bytes, %.3f ms later): counted apart, not as a retransmission"
        % (seg.num, dup >> 16, abs(seg.ts - c.last_ts) / 1e6))
    return True


def after_rst(c: ConnectionCore, s: int, seg: Segment) -> None:
    """A segment after the RST that ended the connection."""
    assert c.rst is not None
    rst_side, _, rst_frame = c.rst
    if seg.flags & (RST | SYN):
        return          # more RSTs (a closed socket answers every segment with one), or a
                        # new attempt (a refused connect retried with the same ISN)
    if s == rst_side and seg.paylen:
        c.note("DATA_AFTER_RST", seg, s, "%s sent %d bytes after its own RST (frame %d)"
                  % (SIDES[s], seg.paylen, rst_frame))
    else:
        c.note("PACKETS_AFTER_RST", seg, s, "%s sent [%s] after the RST in frame %d: in "
                  "flight when it was sent, or the RST was ignored"
                  % (SIDES[s], flags_str(seg.flags), rst_frame))

def odd_flags(c: ConnectionCore, s: int, seg: Segment) -> None:
    """Flag combinations no conforming stack sends."""
    flags = seg.flags
    for bits, code in ((SYN | FIN, "SYN_FIN"), (SYN | RST, "SYN_RST"), (FIN | RST, "FIN_RST")):
        if flags & bits == bits:
            c.note(code, seg, s, "%s sent a segment with flags [%s]"
                      % (SIDES[s], flags_str(flags)))
    if not flags & CLASSIC:
        c.note("NO_FLAGS", seg, s, "%s sent a segment with no control flags set"
                  % SIDES[s])
