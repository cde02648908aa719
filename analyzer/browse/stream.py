"""One connection's packets again, on demand: the ladder of any stream without keeping packets.

The analysis keeps no packets (memory grows with the connections open at once), so the
browser gets a selected connection's ladder by reading the capture again, for that connection
only: frames before its first frame are stepped over without being decoded, frames from its
first to its last are decoded and those of its 4-tuple replayed through a table of their own,
and reading stops after its last frame. The rows are the pipeline's `Tracer`'s, the same the
analysis makes for `--stream N` (tests/test_browse_stream.py holds them equal on every sample
and corpus capture): a connection's states depend on its own packets alone, and between its
first and last frame every packet of its 4-tuple is its own (a reused 4-tuple starts a new
connection only after the old one's last frame).

The browser runs it in a child interpreter (`analyzer.browse.reader`).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

from analyzer.capture.files import CaptureStats, open_captures
from analyzer.decode.frames import FrameDecoder, QuotedTCP, decode_at
from analyzer.decode.segment import Segment
from analyzer.judge.ladder import LADDER_LIMIT, Tracer
from analyzer.judge.result import ConnResult, LadderRow
from analyzer.settings import Settings
from analyzer.tcp.conn import Connection
from analyzer.tcp.flows import FlowTable

#: `on_frame(n)` is called every this many frames while reading (progress, cancelling).
STEP = 1 << 16


class Cancelled(Exception):
    """`on_frame` raises it to stop reading (another connection was selected)."""


class LadderError(Exception):
    """The reading process failed; `str()` is one line."""


def keys_of(r: ConnResult) -> tuple:
    """The connection's 4-tuple as `Segment.key` spells it, both directions."""
    (oa, op), (ra, rp) = r.orig_raw, r.resp_raw
    return (oa + ra + ((op << 16) | rp).to_bytes(4, "big"),
            ra + oa + ((rp << 16) | op).to_bytes(4, "big"))


def stream_ladder(paths: Sequence[str], settings: Settings, r: ConnResult,
                  on_frame: Optional[Callable[[int], None]] = None) -> List[LadderRow]:
    """The ladder of connection `r` (at most `LADDER_LIMIT` rows), read again from `paths`;
    `LadderError` when a capture can no longer be read."""
    wanted = keys_of(r)
    tunnels = (r.tunnel, r.rtunnel)
    first, last = r.first_frame, r.last_frame
    # The pipeline's own decoder: tunnels opened as the analysis opened them.
    decoder = FrameDecoder(settings.udp_tunnel_ports)
    tracer = Tracer()
    table = FlowTable(_drop, settings.msl_ns, settings.idle_timeout_ns, settings.max_live,
                      settings.zeek_view, settings.max_parked)
    errors: List[str] = []
    frames = open_captures(paths, CaptureStats(), errors)
    num = 0
    rows: List[LadderRow] = []
    try:
        while frames.advance():
            num += 1
            if on_frame is not None and not num % STEP:
                on_frame(num)
            if num < first:
                continue
            if num > last or len(rows) >= LADDER_LIMIT:
                break
            seg: Union[Segment, str, None] = decode_at(frames.linktype, frames.buf,
                                                       frames.start, frames.end)
            if seg is None:
                seg = decoder.decode(frames.linktype, frames.buf[frames.start:frames.end],
                                     frames.ts, num)
            if not isinstance(seg, Segment) or isinstance(seg, QuotedTCP) \
                    or seg.key not in wanted or seg.tunnel not in tunnels:
                continue
            seg.ts = frames.ts
            seg.num = num
            conn = table.feed(seg)
            tracer.add(conn, seg, frames.buf[frames.start:frames.end])
            rows = tracer.ladders[conn.id]
    finally:
        frames.close()
    if errors:                          # changed or gone since the analysis read it
        raise LadderError("; ".join(errors))
    return rows


def _drop(conn: Connection, now: int) -> None:
    """The replay's finished connection: its result is the analysis's already."""

