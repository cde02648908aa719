"""Capture shapes that stress what a connection costs, for `generate.py --shape NAME`.

Each shape is deterministic (seeded) and streams: connections start at a fixed rate, each
connection's packets are pushed on a heap when it starts and written once no connection that
starts later can send before them, so the heap holds only the connections in flight.

    open       N connections (default 1,000,000) open at once: handshake, one request and its
               response, never closed (every connection is live at the end).
    flood      N spoofed SYNs (default 2,000,000) at 200 k/s to one server port from random
               sources, none answered (every one a half-open connection).
    closing    N connections (default 500,000) that open, exchange and close (four-way, the
               client first) within 60 s: all held in TIME_WAIT (2 x MSL = 60 s) at once.
    window     the ordinary mix of generate.py with every connection running at once
               (`--concurrency` = N, default 100,000): all of them end within one 2 x MSL.
"""

from __future__ import annotations

import heapq
import random
from typing import Callable, Dict, Iterator, List, Tuple

from generate import ACK, C, FIN, MS, PSH, S, SYN, SYN_OPT, US, Conn

#: Shape name -> (default connections, capture seconds over which connections start).
SHAPES: Dict[str, Tuple[int, float]] = {
    "open": (1_000_000, 50.0), "flood": (2_000_000, 10.0), "closing": (500_000, 59.0),
    "window": (100_000, 4.0)}


def _open(c: Conn, rng: random.Random) -> Iterator[Tuple[int, bytes]]:
    yield c.send(C, SYN, opt=SYN_OPT)
    c.t += 30 * US
    yield c.send(S, SYN | ACK, opt=SYN_OPT)
    c.t += c.rtt
    yield c.send(C, ACK)
    c.t += 20 * US
    yield c.send(C, PSH | ACK, rng.randrange(100, 400))
    c.t += 2 * MS
    yield c.send(S, PSH | ACK, rng.randrange(200, 1400))
    c.t += c.rtt
    yield c.send(C, ACK)


def _flood(c: Conn, rng: random.Random) -> Iterator[Tuple[int, bytes]]:
    yield c.send(C, SYN, opt=SYN_OPT)


def _closing(c: Conn, rng: random.Random) -> Iterator[Tuple[int, bytes]]:
    yield from _open(c, rng)
    c.t += int(rng.expovariate(1 / (50 * MS)))
    yield c.send(C, FIN | ACK)
    c.t += 30 * US
    yield c.send(S, ACK)
    c.t += 2 * MS
    yield c.send(S, FIN | ACK)
    c.t += c.rtt
    yield c.send(C, ACK)


KINDS: Dict[str, Callable[[Conn, random.Random], Iterator[Tuple[int, bytes]]]] = {
    "open": _open, "flood": _flood, "closing": _closing}


def generate_shape(out, shape: str, connections: int, seed: int, record,
                   t0: float = 1_700_000_000.0) -> dict:
    """Write the packets of `shape` (not `window`: generate.py runs that one) to `out`."""
    rng = random.Random(seed)
    kind = KINDS[shape]
    span = SHAPES[shape][1]
    step = int(span * 1e9 / max(connections, 1))
    start = int(t0 * 1e9)
    heap: List[Tuple[int, int, bytes]] = []
    batch: List[bytes] = []
    packets, serial, last = 0, 0, start
    server = bytes((192, 0, 2, 10))
    for i in range(connections):
        t = start + i * step
        while heap and heap[0][0] <= t:
            ts, _, rec = heapq.heappop(heap)
            batch.append(rec)
            last = ts
        if len(batch) >= 8192:
            out.write(b"".join(batch))
            packets += len(batch)
            batch.clear()
        # Distinct 4-tuples: a client address per 50,000 connections, its ports in turn.
        j = i // 50_000
        client = bytes((10, 1 + j // 250 % 250, 1 + j % 250, 7 if shape == "flood" else 9))
        c = Conn(rng, t, client, server, 1024 + i % 50_000, 80 if shape == "flood" else 443, 0,
                 record)
        for ts, rec in kind(c, rng):
            serial += 1
            heapq.heappush(heap, (ts, serial, rec))
    while heap:
        ts, _, rec = heapq.heappop(heap)
        batch.append(rec)
        last = ts
    out.write(b"".join(batch))
    packets += len(batch)
    return {"connections": connections, "packets": packets,
            "capture_seconds": (last - start) / 1e9, "kinds": {shape: connections}}
