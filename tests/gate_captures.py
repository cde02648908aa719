"""Captures for the CI gate's tests, built as real bytes: each connection kind a rule counts."""

from __future__ import annotations

from pathlib import Path
from typing import List

from analyzer.testing.synth import Dialog, merge, write_pcap

DB = ("10.0.0.5", 5432)
WEB = ("10.0.1.7", 443)
HEALTH = ("10.0.2.9", 8080)
T0 = 1_700_000_000.0


def clean(n: int, server=DB, t: float = 0.0) -> Dialog:
    """Handshake, a request and an answer, a close (three segments: the server's FIN carries
    its ACK of the client's)."""
    return (Dialog(client=("10.0.0.1", 40000 + n), server=server, t0=T0 + t)
            .handshake().data("c", 10).data("s", 20).fin("c").fin("s").ack("c"))


def reset(n: int, server=DB, t: float = 0.0) -> Dialog:
    """Established, then aborted by the server's RST: CONNECTION_RESET, close reset."""
    return (Dialog(client=("10.0.0.1", 40000 + n), server=server, t0=T0 + t)
            .handshake().data("c", 10).rst("s"))


def refused(n: int, server=DB, t: float = 0.0) -> Dialog:
    """SYN answered by RST: handshake refused, CONNECTION_REFUSED."""
    from analyzer.decode.segment import ACK, RST
    return (Dialog(client=("10.0.0.1", 40000 + n), server=server, t0=T0 + t)
            .syn().send("s", RST | ACK, seq=0))


def syn_retried(n: int, server=DB, t: float = 0.0, retries: int = 1) -> Dialog:
    """The SYN sent again `retries` times before the answer: SYN_RETRANSMITTED."""
    d = Dialog(client=("10.0.0.1", 40000 + n), server=server, t0=T0 + t).syn()
    for _ in range(retries):
        d.wait(1.0).syn(seq=1000)
    return d.synack().ack().data("c", 10).fin("c").fin("s").ack("c")


def close_wait(n: int, server=DB, t: float = 0.0) -> Dialog:
    """The client closes; the server acknowledges and never closes: CLOSE_WAIT at the end."""
    return (Dialog(client=("10.0.0.1", 40000 + n), server=server, t0=T0 + t)
            .handshake().data("c", 10).fin("c").ack("s"))


def write(path: Path, dialogs: List[Dialog], end: float = 0.0) -> Path:
    """The dialogs as one pcap; with `end`, a last (UDP) frame at that many seconds after T0:
    the capture's end, which lingering states last until."""
    from conftest import _append_udp
    write_pcap(path, merge(*dialogs))
    if end:
        _append_udp(path, int((T0 + end) * 1e9))
    return path
