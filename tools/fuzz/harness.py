"""What one fuzz input must satisfy, and the seed captures the mutators start from.

`check(data, ...)` runs one input through every entry a hostile capture reaches and returns
its outcome, or raises `Failure` naming the property broken:

* **Readers never raise.** Opening gives a source or `CaptureError`; reading gives frames,
  then at most warnings.
* **Truncation is a prefix.** The frames read from any prefix of the file are a prefix of the
  frames read from the whole file (the readers are streaming: damage or an early end never
  changes what came before it).
* **Both decoder paths agree.** For every frame, `decode_at` where the frame lies in a larger
  buffer gives the segment `decode_frame` gives for the frame alone (or leaves it to it).
* **The analysis never raises** and its report renders in every format as strict UTF-8
  (the terminal report and the library's `to_dict()` on every 200th input of a campaign).
* **The CLI, in process, exits with a documented code** (0, 1 or 3) and never says "internal
  error".
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import random
from typing import List, Optional, Tuple

from analyzer.capture.files import open_capture
from analyzer.capture.source import CaptureError, CaptureStats
from analyzer.decode.frames import decode_at, decode_frame
from analyzer.decode.iptcp import QuotedTCP
from analyzer.decode.segment import Segment
from analyzer.pipeline import analyze
from analyzer.render import render
from analyzer.testing import synth

Frame = Tuple[int, int, bytes]


class Failure(Exception):
    """A property broken by an input (the message names it)."""


def read_frames(path: str) -> Optional[List[Frame]]:
    """Every frame of the capture at `path`; None when it is not a capture at all."""
    stats = CaptureStats()
    try:
        source = open_capture(path, stats)
    except CaptureError:
        return None
    try:
        return list(source)
    finally:
        source.close()


def _fields(seg: Segment) -> tuple:
    return (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.win,
            seg.paylen, seg.mss, seg.wscale, seg.key, seg.cut)


def decoders_agree(linktype: int, frame: bytes) -> bool:
    """decode_at (the frame inside a larger buffer) agrees with decode_frame."""
    buf = b"\xa5" * 5 + frame + b"\x5a" * 61
    got = decode_at(linktype, buf, 5, 5 + len(frame))
    if got is None:
        decode_frame(linktype, frame)            # must not raise either
        return True
    want = decode_frame(linktype, frame)
    return (isinstance(want, Segment) and not isinstance(want, QuotedTCP)
            and _fields(got) == _fields(want))


def check(data: bytes, path: str, rng: random.Random, cli: bool = False,
          text: bool = False) -> str:
    """Run the properties above on `data` (written to `path`); the outcome: "not_capture",
    "damaged" (read with warnings) or "clean", and with `cli` the exit code as ":<code>"."""
    with open(path, "wb") as fh:
        fh.write(data)
    frames = read_frames(path)
    outcome = "not_capture"
    if frames is not None:
        cut = rng.randrange(len(data) + 1)
        with open(path, "wb") as fh:
            fh.write(data[:cut])
        part = read_frames(path) or []
        if part != frames[:len(part)]:
            raise Failure("truncation at byte %d: %d frames, not a prefix of the %d of the "
                          "whole file" % (cut, len(part), len(frames)))
        seen = set()
        for i, (_, linktype, frame) in enumerate(frames):
            if (linktype, frame) not in seen and not decoders_agree(linktype, frame):
                raise Failure("decode_at and decode_frame differ on frame %d" % (i + 1))
            seen.add((linktype, frame))
        with open(path, "wb") as fh:
            fh.write(data)
    try:
        report = analyze([path])
    except Exception as exc:
        raise Failure("analyze raised %s: %s" % (type(exc).__name__, exc)) from exc
    try:
        for fmt in ("json", "zeek") + (("text",) if text else ()):
            out = io.StringIO()
            render(fmt, report, out, width=120)
            out.getvalue().encode("utf-8")          # strict: no lone surrogate
        if text:                                    # the library's dict, as JSON
            json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    except Exception as exc:
        raise Failure("rendering raised %s: %s" % (type(exc).__name__, exc)) from exc
    if frames is not None:
        outcome = "damaged" if report.capture.warnings else "clean"
    if cli:
        outcome += ":%d" % run_cli([path, "-f", rng.choice(("text", "json", "zeek")),
                                    "-o", path + ".out"])
    return outcome


def run_cli(args: List[str]) -> int:
    """The CLI's own entry, in this process: its exit code (0, 1 or 3, else `Failure`)."""
    from analyzer.cli import main
    err = io.StringIO()
    code: object = 0
    was_enabled = gc.isenabled()
    try:
        with contextlib.redirect_stderr(err):
            main.main(args=args, prog_name="tcpflow-check", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:
        raise Failure("CLI raised %s: %s" % (type(exc).__name__, exc)) from exc
    finally:
        if was_enabled:
            gc.enable()
    code = 0 if code is None else code
    if "internal error" in err.getvalue() or code not in (0, 1, 3):
        raise Failure("CLI exit %s: %s" % (code, err.getvalue().strip()[-300:]))
    if any(line and not line.startswith("tcpflow-check: ")
           for line in err.getvalue().split("\n")):
        raise Failure("CLI wrote a stderr line that is not one of its own: %r"
                      % err.getvalue()[-300:])
    return int(code)   # type: ignore[call-overload]


def seeds() -> List[bytes]:
    """Small well-formed captures of every layout the readers and decoders know: pcap (µs and
    ns, both byte orders, Ethernet/VLAN/SLL/SLL2/raw, IPv4 and IPv6) and pcapng (one and two
    interfaces, µs and ns resolution)."""
    d4 = synth.Dialog().handshake().data("c", 30).data("s", 60).fin("c").ack("s").fin("s")
    d4.ack("c")
    d6 = synth.Dialog(client=("2001:db8::1", 40001), server=("2001:db8::2", 443))
    d6.handshake().data("c", 10).rst("s")
    reset = synth.Dialog(client=("10.0.0.9", 40009)).syn().rst("s")
    packets = synth.merge(d4, d6, reset)
    out = []
    for link in ("ether", "sll", "sll2", "raw"):
        for nano, big in ((False, False), (True, True)):
            buf = io.BytesIO()
            synth.write_pcap(buf, packets, link=link, nano=nano, big_endian=big)
            out.append(buf.getvalue())
    buf = io.BytesIO()
    synth.write_pcap(buf, packets, vlans=[7])
    out.append(buf.getvalue())
    for ifaces, big in ((((1, 6),), False), (((1, 9), (113, 6)), True)):
        buf = io.BytesIO()
        w = synth.PcapngWriter(buf, ifaces, big_endian=big)
        for n, (ts, ip, side) in enumerate(packets):
            link = "sll" if len(ifaces) > 1 and n % 2 else "ether"
            w.write(ts, synth.frame(ip, link, outbound=side == "c"), interface=n % len(ifaces))
        out.append(buf.getvalue())
    return out


def scratch_dir() -> Optional[str]:
    """Where a campaign writes each input: memory (/dev/shm) where there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
