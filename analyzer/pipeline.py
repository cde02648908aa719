"""The analysis from files to report: read -> decode -> flows -> verdicts.

`analyze()` is the library entry point the CLI calls; it streams the capture once and keeps
only live connections and compact results. Capture time flows in from the packets; nothing
here reads the wall clock.
"""

from __future__ import annotations

import contextlib
import gc
from array import array
from collections import Counter
from typing import Callable, Final, Iterator, List, NamedTuple, Optional, Sequence, Union

from analyzer.capture.files import CaptureStats, Cursor, open_captures
from analyzer.common.names import printable
from analyzer.decode.checksum import checksums_ok
from analyzer.tcp.conn import Connection
from analyzer.common.findings import Finding
from analyzer.decode.frames import FrameDecoder, QuotedTCP, decode_at
from analyzer.decode.reassembly import Reassembler
from analyzer.decode.shard import ShardTest, shard_at, shard_key
from analyzer.judge.floods import FloodDetector
from analyzer.judge.scans import ScanDetector
from analyzer.tcp.flows import FlowTable
from analyzer.judge.ladder import Tracer
from analyzer.report.model import CaptureSummary, Report, Summary
from analyzer.decode.segment import Segment
from analyzer.report.store import ResultSink, ResultStore
from analyzer.settings import Settings
from analyzer.judge.result import ConnResult
from analyzer.judge.verdicts import finalize

#: The settings `analyze()` runs with when given none.
DEFAULT_SETTINGS: Final = Settings()


class Shard(NamedTuple):
    """Shard `part` of `parts` (`--jobs`, analyzer/parallel/): `analyze()` reads every frame
    but analyses only the connections whose 4-tuple falls in this shard (decode/shard.py),
    numbers them by their first frame and appends every number taken to `starts`
    (tcp/flows.py). Frames that are not TCP segments are counted by shard 0 alone, so the
    shards' counts add up to the whole capture's. `notes` receives, at the end, what the
    parent needs for the flow table's warnings (`table_warnings`): the ICMP reservations
    forgotten and the parking error, if any."""
    part: int
    parts: int
    starts: array
    notes: list


class Tally:
    """Where each finished connection's result goes: the sink, the summary, and the
    capture-wide detectors (floods, scans); then the report."""

    def __init__(self, settings: Settings, sink: ResultSink) -> None:
        self.results = sink
        self.summary = Summary()
        self.floods = FloodDetector(settings.flood_threshold, settings.flood_window)
        self.scans = ScanDetector()
        #: One shard's: its report has no floods or scans, and its capture-wide findings
        #: are not counted (the parent finds and counts them once, from all shards' counts).
        self.partial = False

    def add(self, r: ConnResult) -> None:
        results = self.results
        if isinstance(results, ResultStore):
            results.add(r)              # (compiled: a direct call, not a method looked up)
        else:
            results.add(r)
        self.summary.add(r)
        self.floods.add(r)
        self.scans.add(r)

    def report(self, capture: CaptureSummary, found: List[Finding], msl: float,
               ladders: dict) -> Report:
        """The report, with the capture-wide findings: floods, scans, then `found`; a
        shard's (`partial`) with `found` only: the parent finds floods and scans once, from
        every shard's counts, and counts the findings."""
        if self.partial:
            return Report(capture, self.results, self.summary, msl, ladders, list(found))
        capture_findings = self.floods.findings() + self.scans.findings() + found
        for f in capture_findings:
            self.summary.count(f)
        return Report(capture, self.results, self.summary, msl, ladders, capture_findings)


def analyze(paths: Sequence[str], settings: Settings = DEFAULT_SETTINGS, *,
            sink: Optional[ResultSink] = None,
            on_frame: Optional[Callable[[int], None]] = None,
            tracer: Optional[Callable[[Connection, Segment], bool]] = None,
            shard: Optional[Shard] = None, tally: Optional[Tally] = None) -> Report:
    """Analyse one capture, or several files as one time-ordered capture.

    Files that cannot be read are listed in `report.capture.errors` (exit code 3); everything
    readable is still analysed. Every finished connection's `ConnResult` goes to `sink`; by
    default that is a `ResultStore`, which keeps them all in bounded memory (spilling to disk)
    and gives them back in stream order as `report.connections`. A renderer that keeps
    something else (the JSON writer's lines, the terminal's connections needing attention)
    passes its own sink, and `report.connections` is that sink. The summary and the
    capture-wide findings count every connection whatever the sink keeps.
    `on_frame(n)` is called every 65536 frames (progress). With `tracer`, each packet of the
    streams in `settings.ladders` goes to `tracer(conn, seg)` (after the connection has taken
    it) instead of into a ladder; the read stops when it returns True (the diagrams' second
    read, render/packets.py). With `shard`, one shard of the analysis (`Shard`); its report's
    capture summary leaves out the flow table's warnings (the parent says them once for all
    shards, `table_warnings`); `tally`: where the results go (its sink, instead of
    `sink`), when the caller reads its counts afterwards (a shard sends them to the parent).
    """
    stats = CaptureStats()
    errors: List[str] = []
    frames = open_captures(paths, stats, errors) if paths else Cursor()

    msl_ns = settings.msl_ns
    checksums = settings.checksums
    trace = settings.ladders
    into = tally if tally is not None else Tally(
        settings, ResultStore(settings.result_budget) if sink is None else sink)

    def done(conn: Connection, now: int) -> None:
        into.add(finalize(conn, now, msl_ns))

    count = 0 if shard is None else shard.parts
    mine = 0 if shard is None else shard.part
    table = FlowTable(done, msl_ns, settings.idle_timeout_ns, settings.max_live,
                      settings.zeek_view, settings.max_parked,
                      starts=None if shard is None else shard.starts)
    decoder = FrameDecoder(settings.udp_tunnel_ports)
    skipped: Counter = Counter()
    tcp = 0
    num = 0
    ladder = Tracer()
    ladders = ladder.ladders
    end_ts = 0
    backwards = 0           # frames stamped before the frame before them
    # A shard's reader steps over the other shards' frames itself when it can, keeping the
    # frame count and the timestamps' order for us.
    test = None if count == 0 else ShardTest(frames.linktype, count, mine)
    if test is not None and not frames.skip(test):
        test = None
    with cyclic_gc_off():
        while frames.advance():
            ts = frames.ts
            if test is None:
                num += 1
                if ts < end_ts and num > 1:
                    backwards += 1
            else:
                num = frames.count
            end_ts = ts
            if on_frame is not None and not num & 0xFFFF:
                on_frame(num - 1)           # the frames before this one are analysed
            linktype = frames.linktype
            part = -1
            if test is not None:
                part = test.part
            elif count != 0:
                part = shard_at(linktype, frames.buf, frames.start, frames.end, count)
            if part >= 0 and part != mine:
                continue                    # another shard's
            # The common layouts are decoded where the frame lies in the reader's buffer; any
            # other frame (and every frame whose checksums are checked) is copied out first.
            seg: Union[Segment, str, None] = (
                None if checksums else decode_at(linktype, frames.buf, frames.start, frames.end))
            if seg is None:
                buf = frames.buf[frames.start:frames.end]
                seg = decoder.decode(linktype, buf, ts, num)
            if isinstance(seg, str):
                if mine == 0:
                    skipped[seg] += 1
            elif isinstance(seg, QuotedTCP):
                if count == 0 or shard_key(seg.key, count) == mine:
                    skipped["icmp_quoted_tcp"] += 1
                    seg.num = num
                    table.reserve(seg)
            elif part < 0 and count != 0 and shard_key(seg.key, count) != mine:
                continue
            else:
                seg.ts = ts
                seg.num = num
                tcp += 1
                if checksums and checksums_ok(linktype, buf) is False:
                    seg.bad_csum = True
                conn = table.feed(seg)
                if seg.bad_csum:
                    conn.note("BAD_CHECKSUM", seg, conn.side_of(seg),
                              "frame %d has a wrong IPv4 or TCP checksum" % num)
                if trace and conn.id in trace:
                    if tracer is not None:          # the caller's own (render/packets.py)
                        if tracer(conn, seg):
                            break
                    else:   # the ladder; the frame is read again for its TCP options
                        ladder.add(conn, seg, frames.buf[frames.start:frames.end])
        if test is not None:                # the frames after the last one handed out
            num, backwards, end_ts = frames.count, frames.back, frames.ts
        # The end of the capture is its last frame (not the largest timestamp: one corrupt
        # record dated decades ahead must not make every CLOSE_WAIT decades long).
        table.flush(end_ts)
    warnings = list(stats.warnings)
    fragments = decoder.fragments
    if fragments is not None:
        fragments.finish()
        if fragments.incomplete:
            warnings.append("%d fragmented IP datagrams never completed (fragments missing from "
                            "the capture, or dropped past the reassembly limits)"
                            % fragments.incomplete)
    cut = skipped.get("truncated_tcp", 0) + skipped.get("truncated_ip", 0)
    if cut:
        warnings.append("%d packets were cut inside their IP or TCP header (snaplen too small?) "
                        "and could not be analysed" % cut)
    if backwards:
        warnings.append("%d frame%s stamped earlier than the frame before (timestamps out of "
                        "order: merged interfaces or a clock step); frames are taken in file "
                        "order, as Wireshark numbers them, and times from the timestamps"
                        % (backwards, "s are" if backwards > 1 else " is"))
    bound = table.parked.bound
    if shard is None:
        warnings += table_warnings(table.forgotten, table.evicted_early, bound,
                                   table.parked.error, settings)
    else:                           # the parent says it once for all shards
        shard.notes.extend((table.forgotten, table.parked.error))

    capture = CaptureSummary(
        files=tuple(printable(p) for p in paths), packets=num, tcp_packets=tcp, skipped=dict(skipped),
        truncated=stats.truncated, warnings=tuple(warnings), errors=tuple(errors),
        first_ts=stats.first_ts, last_ts=stats.last_ts, linktypes=dict(stats.linktypes),
        evicted_early=table.evicted_early, interrupted=stats.interrupted,
        memory_bound=bound, parked=table.parked.parks)
    found = []
    if fragments is not None and fragments.first_malformed is not None:
        found.append(malformed_fragments(fragments))
    return into.report(capture, found, settings.msl, ladders)


def table_warnings(forgotten: int, evicted_early: int, bound: int, error: Optional[str],
                   settings: Settings) -> List[str]:
    """The capture's warnings about the flow table's bounds: ICMP reservations forgotten,
    connections finalized early by the idle timeout or a memory bound (tcp/parked.py)."""
    warnings = []
    if forgotten:
        warnings.append("%d stream numbers taken by TCP headers quoted in ICMP errors were "
                        "forgotten (more than %d 4-tuples quoted before any packet of theirs, "
                        "--max-connections): a connection that follows on one of them is "
                        "numbered as a new one, and from there on stream numbers may differ "
                        "from Wireshark's" % (forgotten, settings.max_live))
    if evicted_early > bound:
        warnings.append("%d connections were finalized after %g s of silence (--idle-timeout), "
                        "before they ended; a later packet of one starts a new connection"
                        % (evicted_early - bound, settings.idle_timeout or 0))
    if bound:
        warnings.append("%d connections were finalized before they ended (finding MEMORY_BOUND): "
                        "more than %d were in memory at once (--max-connections) and %s"
                        % (bound, settings.max_live, "parking them on disk failed: %s"
                           % error if error is not None else
                           "%d were parked on disk already (--max-parked)" % settings.max_parked))
    return warnings


def malformed_fragments(fragments: Reassembler) -> Finding:
    """The capture's IP_FRAGMENTS_MALFORMED finding: how many datagrams, and the first."""
    assert fragments.first_malformed is not None
    ts, frame, why = fragments.first_malformed
    f = Finding("IP_FRAGMENTS_MALFORMED", ts, frame, None,
                "%d fragmented IP datagram%s discarded; the first at frame %d: %s"
                % (fragments.malformed, "" if fragments.malformed == 1 else "s", frame, why))
    f.count = fragments.malformed
    return f


@contextlib.contextmanager
def cyclic_gc_off() -> Iterator[None]:
    """The analysis makes no reference cycles (a whole run leaves about ten cyclic objects):
    reference counting frees everything, while the cyclic collector's scans of the millions of
    live objects cost a third of the run. Off for the loop, back as it was after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
