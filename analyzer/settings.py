"""One frozen `Settings`: every knob of an analysis, in one value.

The CLI builds it from its options; tests and library users build it directly
(`Settings(msl=60.0)`). Times are seconds as floats here and become integer nanoseconds at
the stage that uses them. Each field is checked when the value is made: a `Settings` that
exists is one the analysis can run with (`ValueError` otherwise, with the field's name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

from analyzer.decode.tunnels import UDP_KINDS
from analyzer.judge.floods import DEFAULT_THRESHOLD, DEFAULT_WINDOW
from analyzer.report.store import DEFAULT_BUDGET
from analyzer.tcp.flows import DEFAULT_MAX_LIVE
from analyzer.tcp.parked import DEFAULT_MAX_PARKED

#: Default MSL: 30 s, so that TIME_WAIT lasts 60 s as on Linux (RFC 793 says 2 minutes).
DEFAULT_MSL = 30.0
#: The largest time setting accepted, in seconds (about 292 years: what fits in 63 bits of
#: nanoseconds, the range of capture times).
MAX_SECONDS = 9.2e9


@dataclass(frozen=True)
class Settings:
    """What an analysis does; every field has the default the CLI has."""

    #: Maximum segment lifetime, seconds; TIME_WAIT lasts 2 x msl (30 = Linux's 60 s).
    msl: float = DEFAULT_MSL
    #: Finish a connection silent this long (capture seconds); None: never, as Wireshark.
    idle_timeout: Optional[float] = None
    #: Validate IPv4 and TCP checksums (offload makes most captured checksums wrong).
    checksums: bool = False
    #: Connections held in memory at once; past it some are parked on disk until their next
    #: packet (the report is the same).
    max_live: int = DEFAULT_MAX_LIVE
    #: Connections parked on disk at once; past it (or when the disk fails) a connection is
    #: finalized early instead, with the finding MEMORY_BOUND.
    max_parked: int = DEFAULT_MAX_PARKED
    #: A server with this many unanswered or uncompleted SYNs within `flood_window`
    #: seconds gets a HALF_OPEN_FLOOD finding.
    flood_threshold: int = DEFAULT_THRESHOLD
    flood_window: float = DEFAULT_WINDOW
    #: Results kept in memory before the result store spills to disk.
    result_budget: int = DEFAULT_BUDGET
    #: Stream ids (Wireshark's tcp.stream) whose packets are kept as a ladder (`--stream`).
    ladders: FrozenSet[int] = field(default_factory=frozenset)
    #: More UDP ports opened as tunnels, (port, kind) pairs (`--udp-tunnel PORT=KIND`; kinds
    #: in `analyzer.decode.tunnels.UDP_KINDS`), besides the standard ports.
    udp_tunnels: Tuple[Tuple[int, str], ...] = ()
    #: Compute Zeek's conn_state and history for every connection (JSON, conn.log and the
    #: filter fields `conn_state`/`history` read them). False skips that replay, a quarter
    #: of the state machine's work, and leaves them None: the CLI turns it off when no
    #: output it writes and no --filter/--sort/--group-by, policy or baseline reads them.
    zeek_view: bool = True

    def __post_init__(self) -> None:
        _seconds("msl", self.msl, zero_ok=True)
        if self.idle_timeout is not None:
            _seconds("idle_timeout", self.idle_timeout, zero_ok=False)
        _seconds("flood_window", self.flood_window, zero_ok=False)
        if isinstance(self.max_parked, bool) or not isinstance(self.max_parked, int) \
                or self.max_parked < 0:
            raise ValueError("max_parked must be a whole number (0: park none), not %r"
                             % (self.max_parked,))
        for name in ("max_live", "flood_threshold", "result_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a whole number of at least 1, not %r" % (name, value))
        if not isinstance(self.zeek_view, bool):
            raise ValueError("zeek_view must be True or False, not %r" % (self.zeek_view,))
        if not isinstance(self.ladders, frozenset):
            object.__setattr__(self, "ladders", frozenset(self.ladders))
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in self.ladders):
            raise ValueError("ladders must hold stream ids (whole numbers from 0)")

        object.__setattr__(self, "udp_tunnels", tuple(tuple(p) for p in self.udp_tunnels))
        for pair in self.udp_tunnels:
            if len(pair) != 2 or isinstance(pair[0], bool) or not isinstance(pair[0], int) \
                    or not 0 < pair[0] < 65536 or pair[1] not in UDP_KINDS:
                raise ValueError("udp_tunnels must hold (port 1-65535, kind) pairs, the kind one "
                                 "of %s; not %r" % (", ".join(sorted(UDP_KINDS)), pair))

    @property
    def udp_tunnel_ports(self) -> Dict[int, int]:
        """`udp_tunnels` as the decoder takes them: port -> tunnel kind."""
        return {port: UDP_KINDS[kind] for port, kind in self.udp_tunnels}

    @property
    def msl_ns(self) -> int:
        return int(self.msl * 1e9)

    @property
    def idle_timeout_ns(self) -> Optional[int]:
        return None if self.idle_timeout is None else int(self.idle_timeout * 1e9)


def _seconds(name: str, value: float, zero_ok: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not (0 <= value <= MAX_SECONDS) or (value == 0 and not zero_ok):
        raise ValueError("%s must be a number of seconds %s %g, not %r"
                         % (name, "from 0 to" if zero_ok else "above 0, up to", MAX_SECONDS,
                            value))
