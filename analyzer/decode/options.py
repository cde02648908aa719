"""Every TCP option of one segment, for the ladder of a traced stream (`--stream N`).

The per-packet decoders read only what the analysis needs (MSS and window scale, on SYNs);
a traced stream's ladder shows all of a segment's options, so its frame is read again here,
and only for the streams asked for: the hot path never parses an option it does not use.
The TCP header is found in the frame by its ports, sequence and acknowledgment numbers (the
decoded segment's), which precede the payload; options are parsed as Linux's
`tcp_parse_options` does (a malformed length ends them).
"""

from __future__ import annotations

from typing import Final, List, Tuple

from analyzer.decode.segment import Segment

#: One option: its name and value (an int, a pair, a list of pairs, bytes as hex, or None).
Option = Tuple[str, object]

#: Option kinds with a name (IANA "TCP Option Kind Numbers").
_NAMES: Final = {2: "mss", 3: "wscale", 4: "sack_perm", 5: "sack", 8: "timestamps", 34: "tfo",
                 28: "user_timeout", 29: "tcp_ao", 30: "mptcp", 19: "md5"}


def header_at(frame: bytes, seg: Segment) -> int:
    """Where `seg`'s TCP header starts in its frame; -1 if it cannot be found."""
    probe = seg.key[-4:] + seg.seq.to_bytes(4, "big") + seg.ack.to_bytes(4, "big")
    return frame.find(probe)


def tcp_options(frame: bytes, seg: Segment) -> Tuple[Option, ...]:
    """The options of `seg` as (name, value) pairs in the order sent; () when it has none
    or its header is not in the captured bytes."""
    t = header_at(frame, seg)
    if t < 0 or len(frame) < t + 20:
        return ()
    stop = min(t + (frame[t + 12] >> 4) * 4, len(frame))
    return parse_options(frame, t + 20, stop)


def parse_options(buf: bytes, i: int, stop: int) -> Tuple[Option, ...]:
    out: List[Option] = []
    while i < stop:
        kind = buf[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= stop:
            break
        size = buf[i + 1]
        if size < 2 or i + size > stop:
            out.append(("malformed", kind))
            break
        body = buf[i + 2:i + size]
        name = _NAMES.get(kind, "kind_%d" % kind)
        value: object = body.hex() if body else None
        if kind == 2 and size == 4:
            value = int.from_bytes(body, "big")
        elif kind == 3 and size == 3:
            value = body[0]
        elif kind == 4 and size == 2:
            value = None
        elif kind == 5 and size >= 10 and (size - 2) % 8 == 0:
            value = [(int.from_bytes(body[j:j + 4], "big"), int.from_bytes(body[j + 4:j + 8], "big"))
                     for j in range(0, size - 2, 8)]
        elif kind == 8 and size == 10:
            value = (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big"))
        out.append((name, value))
        i += size
    return tuple(out)


def options_text(options: Tuple[Option, ...]) -> str:
    """Wireshark's summary spelling: `MSS=1460 SACK_PERM TSval=1 TSecr=0 WS=128 TFO`."""
    parts = []
    for name, value in options:
        if name == "mss":
            parts.append("MSS=%s" % value)
        elif name == "wscale":
            parts.append("WS=%d" % (1 << value) if isinstance(value, int) and value <= 14
                         else "WS=2^%s" % value)
        elif name == "sack_perm":
            parts.append("SACK_PERM")
        elif name == "timestamps" and isinstance(value, tuple):
            parts.append("TSval=%d TSecr=%d" % value)
        elif name == "sack" and isinstance(value, list):
            parts.append("SACK=" + ",".join("%d-%d" % b for b in value))
        elif name == "tfo":
            parts.append("TFO" if value is None else "TFO=%s" % value)
        else:
            parts.append(name.upper() if value is None else "%s=%s" % (name.upper(), value))
    return " ".join(parts)
