"""Write a large, realistic, deterministic capture for benchmarking tcpflow-check.

    python bench/generate.py --connections 100000 --out /tmp/bench100k.pcap
        [--seed 1] [--format pcap|pcapng] [--concurrency 2000] [--duration-scale 1]
        [--shape open|flood|closing|window]

`--shape` writes one of the connection-cost shapes of shapes.py instead (1 M open at once, a
2 M-SYN flood, 500 k closing in 60 s, all in one 2 x MSL window).

The same arguments always give the same bytes: Ethernet, microsecond timestamps, whole frames,
as seen by a tap next to the servers (they answer within tens of microseconds; a client's
packets arrive one RTT later, log-normal around 20 ms per connection). `--concurrency N`
connections are in progress at every moment (N slots, each starting its next connection when
one ends), however many connections or however long the capture. Each connection draws its
ending from MIX; the counts are printed:

    four_way        FIN, ACK, FIN, ACK (the client closes first in 2 of 3)
    three_segment   FIN, FIN+ACK, ACK
    simultaneous    both FINs cross on the wire
    reset           an endpoint aborts with RST+ACK after its exchanges
    half_close      the client sends its request and FIN; the server answers after the FIN
    close_wait      the client closes, the server acknowledges and never closes (lingering)
    open            idle after its exchanges: still open when the capture ends
    unanswered      SYN and 1-6 retransmissions (Linux back-off: 1, 2, 4, ... s), no answer
    refused         SYN answered by RST+ACK

Established connections carry request/response exchanges (1 + geometric, mean 4.2) with think
times between them: requests of 100-1,400 bytes, a delayed ACK when the server takes over 40
ms, log-normal responses in MSS segments (1448 bytes on IPv4, 1428 on IPv6, with timestamps)
sent in slow-start flights that the client ACKs every second segment. 2 % retransmit their
SYN once, 3 % of responses lose their last segment downstream and retransmit it, 3 % send
keep-alives before closing; 10 % are IPv6, 15 % VLAN-tagged. 100,000 connections make about
2.2 M packets and 1.1 GB. `--duration-scale K` multiplies each connection's exchanges by K:
about K times the bytes and the capture time (packets a little less: handshakes, closes and
failed connections do not grow) with the same connections and the same number open at once.

ISNs are random (sequence numbers wrap past 2**32), seq/ack/FIN arithmetic is exact, IP IDs
count per direction, TSval follows each host's clock. Checksums are correct (Wireshark and Zeek
can validate them), summed from per-connection constants and prefix sums of the payload (every
payload is a prefix of one random 1448-byte block). Memory is bounded by the concurrency: a
heap holds one pending packet per running connection (a generator of its packets in time
order); records, packed with precompiled struct.Struct templates, are written in batches.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import struct
import sys
import time
from itertools import accumulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN
from analyzer.testing.synth import LINKTYPE_ETHERNET, PcapngWriter, PcapWriter

#: Ending of each connection and its share of all connections (sums to 1).
MIX = (("four_way", 0.50), ("three_segment", 0.20), ("simultaneous", 0.02), ("reset", 0.08),
       ("half_close", 0.04), ("close_wait", 0.03), ("open", 0.03), ("unanswered", 0.04),
       ("refused", 0.06))
IPV6_SHARE, VLAN_SHARE = 0.10, 0.15
SYN_RETX_SHARE, TAIL_LOSS_SHARE, KEEPALIVE_SHARE = 0.02, 0.03, 0.03
V6_CLIENTS = bytes.fromhex("20010db8000100000000")                  # 2001:db8:1::/80
V6_SERVERS = bytes.fromhex("20010db8002000000000000000000000")[:15]  # 2001:db8:20::1-15
SERVICES = ((443, 0.55), (80, 0.20), (5432, 0.10), (6379, 0.08), (8080, 0.07))
MEAN_EXTRA_EXCHANGES = 3.2     # exchanges per connection: 1 + geometric with this mean
THINK_MEAN_S = 1.2             # client think time between exchanges (exponential)
RESPONSE_MEDIAN, RESPONSE_SIGMA = 680, 1.45   # log-normal response size in bytes

C, S = 0, 1                    # the two sides: client (originator), server (responder)
MS, US = 1_000_000, 1_000      # nanoseconds
DELACK = 40 * MS               # delayed-ACK timer
M32 = 0xFFFFFFFF
MSS4, MSS6 = 1448, 1428
PAYLOAD = random.Random(0x7C9).randbytes(MSS4)
PSUM = [0]                     # PSUM[n]: one's-complement-able sum of PAYLOAD[:n] as 16-bit words
for _i, _b in enumerate(PAYLOAD):
    PSUM.append(PSUM[-1] + (_b << 8 if _i % 2 == 0 else _b))

# Options: none (RST), timestamps (NOP NOP TS: every other segment), Linux's SYN set
# (MSS, SACK-permitted, TS, NOP, window scale 7).
NO_OPT, TS_OPT, SYN_OPT = 0, 1, 2
_IP4, _IP6, _TCP = "BBHHHBBH4s4s", "IHBB16s16s", "HHIIHHHH"
_OPTS = ("", "BBBBII", "HHBBBBIIBBBB")
V4 = [struct.Struct("!" + _IP4 + _TCP + o).pack for o in _OPTS]
V6 = [struct.Struct("!" + _IP6 + _TCP + o).pack for o in _OPTS]
TCP_HLEN = (20, 32, 40)
PCAP_REC = struct.Struct("<IIII").pack
EPB_HEAD, EPB_TAIL = struct.Struct("<IIIIIII").pack, struct.Struct("<I").pack


def pcap_record(t: int, frame: bytes) -> bytes:
    """A classic pcap record (little-endian, microseconds), as synth.PcapWriter writes it."""
    n = len(frame)
    return PCAP_REC(t // 1_000_000_000, t % 1_000_000_000 // 1000, n, n) + frame


def pcapng_record(t: int, frame: bytes) -> bytes:
    """A pcapng Enhanced Packet Block on interface 0 (microseconds), as synth.PcapngWriter."""
    n, us = len(frame), t // 1000
    pad, total = -n % 4, 32 + n + -n % 4
    return EPB_HEAD(6, total, 0, us >> 32, us & M32, n, n) + frame + b"\0" * pad + EPB_TAIL(total)


def _fold(x: int) -> int:
    x = (x & 0xFFFF) + (x >> 16)
    return ~((x & 0xFFFF) + (x >> 16)) & 0xFFFF


class Conn:
    """One connection's addresses, both sides' sequence numbers and its clock (`t`, ns).
    `send()` builds the next packet of one side as a finished capture record."""

    __slots__ = ("t", "nxt", "isn", "rtt", "mss", "v6", "ports", "addrs", "prefix", "ttl",
                 "ipid", "win", "tsoff", "tsval", "tcpconst", "ipconst", "record")

    def __init__(self, rng: random.Random, t: int, client: bytes, server: bytes, sport: int,
                 dport: int, vlan: int, record) -> None:
        self.t, self.record = t, record
        self.isn = [rng.getrandbits(32), rng.getrandbits(32)]
        self.nxt = self.isn[:]
        self.rtt = int(min(max(rng.lognormvariate(math.log(20 * MS), 1.0), 150 * US), 400 * MS))
        self.v6 = len(client) == 16
        self.mss = MSS6 if self.v6 else MSS4
        self.ports = ((sport, dport), (dport, sport))
        self.addrs = ((client, server), (server, client))
        ethertype = b"\x86\xdd" if self.v6 else b"\x08\x00"
        tag = struct.pack("!HH", 0x8100, vlan) if vlan else b""
        router, host = b"\x00\x1c\x73\x00\x00\x01", b"\x52\x54\x00\x12\x34\x56"
        self.prefix = (host + router + tag + ethertype, router + host + tag + ethertype)
        self.ttl, self.ipid = (64 - rng.randrange(3, 20), 64), [rng.randrange(65536), 0]
        self.win = (rng.choice((502, 501, 1024, 2048)), rng.choice((509, 235, 1024)))   # x 128
        self.tsoff, self.tsval = (rng.getrandbits(32), rng.getrandbits(32)), [0, 0]
        words = client + server
        asum = sum(struct.unpack(f"!{len(words) // 2}H", words))
        self.tcpconst = asum + 6 + sport + dport
        self.ipconst = tuple(asum + 0x4500 + 0x4000 + (ttl << 8 | 6) for ttl in self.ttl)

    def send(self, side: int, flags: int, n: int = 0, seq=None, ack=None, opt: int = TS_OPT):
        """(time, record) of a segment from `side` at `self.t`. By default it carries the
        side's next sequence number (and consumes n bytes plus SYN/FIN) and acknowledges all
        the peer has sent; an explicit `seq` sends without consuming (a retransmission)."""
        t = self.t
        if seq is None:
            seq = self.nxt[side]
            self.nxt[side] = (seq + n + ((flags & SYN) >> 1) + (flags & FIN)) & M32
        if ack is None:
            ack = self.nxt[1 - side] if flags & ACK else 0
        hlen = TCP_HLEN[opt]
        offflags = (hlen << 10) | flags
        win = self.win[side] if not flags & SYN else 64240 if side == C else 65160   # unscaled
        tlen = hlen + n
        total = (self.tcpconst + tlen + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
                 + (ack & 0xFFFF) + offflags + win + PSUM[n])
        if opt:
            tsval = (t // MS + self.tsoff[side]) & M32
            tsecr = self.tsval[1 - side] if flags & ACK else 0
            self.tsval[side] = tsval
            total += (0x0101 + 0x080A + (tsval >> 16) + (tsval & 0xFFFF) + (tsecr >> 16)
                      + (tsecr & 0xFFFF))
            if opt == SYN_OPT:
                total += 0x0204 + self.mss + 0x0402 + 0x0103 + 0x0307 - 0x0101
        csum = _fold(total)
        sport, dport = self.ports[side]
        src, dst = self.addrs[side]
        tail = () if not opt else (1, 1, 8, 10, tsval, tsecr) if opt == TS_OPT else \
            (0x0204, self.mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, 7)
        if self.v6:
            hdr = V6[opt](0x60000000, tlen, 6, self.ttl[side], src, dst, sport, dport, seq, ack,
                          offflags, win, csum, 0, *tail)
        else:
            ipid = self.ipid[side]
            self.ipid[side] = (ipid + 1) & 0xFFFF
            ipcsum = _fold(self.ipconst[side] + 20 + tlen + ipid)
            hdr = V4[opt](0x45, 0, 20 + tlen, ipid, 0x4000, self.ttl[side], 6, ipcsum, src, dst,
                          sport, dport, seq, ack, offflags, win, csum, 0, *tail)
        return t, self.record(t, self.prefix[side] + hdr + PAYLOAD[:n])


class Plan:
    """The seeded random choices of one run (one generator, drawn in packet order)."""

    def __init__(self, seed: int, duration_scale: int) -> None:
        self.rng = random.Random(seed)
        self.scale = duration_scale
        self.kinds, self.kind_cum = [k for k, _ in MIX], list(accumulate(w for _, w in MIX))
        self.ports = [p for p, _ in SERVICES]
        self.port_cum = list(accumulate(w for _, w in SERVICES))

    def exchanges(self) -> int:
        n, p = 1, 1 / (1 + MEAN_EXTRA_EXCHANGES)
        while self.rng.random() > p:
            n += 1
        return n * self.scale

    def response(self) -> int:
        size = self.rng.lognormvariate(math.log(RESPONSE_MEDIAN), RESPONSE_SIGMA)
        return int(min(max(size, 60), 4 << 20))


def handshake(c: Conn, plan: Plan, retransmit: bool):
    """SYN (sent twice, 1 s apart, if `retransmit`), SYN-ACK, ACK."""
    yield c.send(C, SYN, opt=SYN_OPT)
    if retransmit:
        c.t += 1000 * MS
        yield c.send(C, SYN, seq=c.isn[C], opt=SYN_OPT)
    c.t += 30 * US
    yield c.send(S, SYN | ACK, opt=SYN_OPT)
    c.t += c.rtt
    yield c.send(C, ACK)


def respond(c: Conn, plan: Plan, size: int, side: int = S):
    """`side` sends `size` bytes in slow-start flights; the peer ACKs every second segment."""
    rng, peer, cwnd = plan.rng, 1 - side, 10
    tail_loss = rng.random() < TAIL_LOSS_SHARE
    while size > 0:
        sent = []
        while size > 0 and len(sent) < cwnd:
            n = min(size, c.mss)
            size -= n
            seq = c.nxt[side]
            yield c.send(side, (PSH | ACK) if size == 0 else ACK, n)
            sent.append((c.t, seq, n))
            c.t += n * 8 + 200          # ~1 Gbit/s on the wire
        lost = tail_loss and size == 0 and len(sent) > 1
        last = len(sent) - 1
        for i, (ts, seq, n) in enumerate(sent):
            if i % 2 or i == last:
                c.t = max(c.t, ts + c.rtt)
                end = seq if lost and i == last else (seq + n) & M32
                yield c.send(peer, ACK, ack=end)
        if lost:
            ts, seq, n = sent[last]
            c.t = max(c.t, ts + 2 * c.rtt + 10 * MS)
            yield c.send(side, PSH | ACK, n, seq=seq)
            c.t += c.rtt
            yield c.send(peer, ACK)
        c.t += 20 * US
        cwnd = min(cwnd * 2, 40)


def exchange(c: Conn, plan: Plan, think: bool):
    """[Think,] a request, the server's processing time (a delayed ACK if long), its response."""
    rng = plan.rng
    if think:
        c.t += int(rng.expovariate(1 / THINK_MEAN_S) * 1e9)
    yield c.send(C, PSH | ACK, rng.randrange(100, 1400))
    proc = int(rng.lognormvariate(math.log(3 * MS), 1.2))
    if proc > DELACK:
        c.t += DELACK
        yield c.send(S, ACK)
        proc -= DELACK
    c.t += proc
    yield from respond(c, plan, plan.response())


def close(c: Conn, plan: Plan, kind: str):
    """The ending `kind` of an established connection (nothing for `open`)."""
    rng, rtt = plan.rng, c.rtt
    if kind == "four_way":      # a client's answer reaches the tap one RTT after the server's
        first = C if rng.random() < 2 / 3 else S
        yield c.send(first, FIN | ACK)
        c.t += rtt if first == S else 30 * US
        yield c.send(1 - first, ACK)
        c.t += int(rng.expovariate(1 / (5 * MS)))
        yield c.send(1 - first, FIN | ACK)
        c.t += rtt if first == C else 30 * US
        yield c.send(first, ACK)
    elif kind == "three_segment":
        yield c.send(C, FIN | ACK)
        c.t += 30 * US
        yield c.send(S, FIN | ACK)
        c.t += rtt
        yield c.send(C, ACK)
    elif kind == "simultaneous":
        before = c.nxt[S]
        yield c.send(S, FIN | ACK)
        c.t += rtt // 3
        yield c.send(C, FIN | ACK, ack=before)      # sent before the server's FIN arrived
        c.t += 30 * US
        yield c.send(S, ACK)
        c.t += rtt - rtt // 3
        yield c.send(C, ACK)
    elif kind == "reset":
        yield c.send(C if rng.random() < 0.6 else S, RST | ACK, opt=NO_OPT)
    elif kind == "close_wait":
        yield c.send(C, FIN | ACK)
        c.t += 30 * US
        yield c.send(S, ACK)


def connection(c: Conn, plan: Plan, kind: str):
    """All packets of one connection, in time order."""
    rng = plan.rng
    if kind == "refused":
        yield c.send(C, SYN, opt=SYN_OPT)
        c.t += 40 * US
        yield c.send(S, RST | ACK, seq=0, opt=NO_OPT)
        return
    if kind == "unanswered":
        yield c.send(C, SYN, opt=SYN_OPT)
        for k in range(rng.choice((1, 2, 2, 3, 3, 4, 5, 6))):
            c.t += (1 << k) * 1000 * MS
            yield c.send(C, SYN, seq=c.isn[C], opt=SYN_OPT)
        return
    yield from handshake(c, plan, rng.random() < SYN_RETX_SHARE)
    if kind == "half_close":
        c.t += 20 * US
        yield c.send(C, PSH | ACK, rng.randrange(100, 1400))
        c.t += 20 * US
        yield c.send(C, FIN | ACK)
        c.t += 30 * US
        yield c.send(S, ACK)
        c.t += int(rng.lognormvariate(math.log(3 * MS), 1.0))
        yield from respond(c, plan, plan.response() * plan.scale)
        yield c.send(S, FIN | ACK)
        c.t += c.rtt
        yield c.send(C, ACK)
        return
    for i in range(plan.exchanges()):
        c.t += 20 * US
        yield from exchange(c, plan, think=i > 0)
    if kind != "open" and rng.random() < KEEPALIVE_SHARE:
        for _ in range(rng.randrange(1, 4)):
            c.t += 5000 * MS
            yield c.send(C, ACK, seq=(c.nxt[C] - 1) & M32)
            c.t += 30 * US
            yield c.send(S, ACK)
    c.t += int(rng.expovariate(1 / (50 * MS)))
    yield from close(c, plan, kind)


def new_connection(plan: Plan, t: int, record, live: set):
    """A connection starting at `t` with a 4-tuple not in use by a running connection."""
    rng = plan.rng
    v6 = rng.random() < IPV6_SHARE
    vlan = rng.randrange(2, 4000) if rng.random() < VLAN_SHARE else 0
    while True:
        dport = rng.choices(plan.ports, cum_weights=plan.port_cum)[0]
        if v6:
            client = V6_CLIENTS + rng.randbytes(6)
            server = V6_SERVERS + bytes((rng.randrange(1, 16),))
        else:
            client = bytes((10, rng.randrange(1, 255), rng.randrange(256), rng.randrange(1, 255)))
            server = bytes((192, 0, 2, rng.randrange(1, 16)))
        key = (client, server, rng.randrange(32768, 61000), dport)
        if key not in live:
            break
    live.add(key)
    kind = rng.choices(plan.kinds, cum_weights=plan.kind_cum)[0]
    c = Conn(rng, t, client, server, key[2], dport, vlan, record)
    return key, kind, connection(c, plan, kind)


def generate(out, connections: int, seed: int = 1, fmt: str = "pcap", concurrency: int = 2000,
             duration_scale: int = 1, t0: float = 1_700_000_000.0) -> dict:
    """Write the capture to the binary stream `out`; return its statistics."""
    if fmt == "pcap":
        PcapWriter(out, LINKTYPE_ETHERNET)
        record = pcap_record
    else:
        PcapngWriter(out, ((LINKTYPE_ETHERNET, 6),))
        record = pcapng_record
    plan = Plan(seed, duration_scale)
    rng, live, heap, kinds = plan.rng, set(), [], {k: 0 for k, _ in MIX}
    started = packets = 0

    def start(t: int) -> None:   # heap entries: (next packet's time, serial, record, gen, key)
        nonlocal started
        if started < connections:
            key, kind, gen = new_connection(plan, t, record, live)
            started += 1
            kinds[kind] += 1
            ts, rec = next(gen)
            heapq.heappush(heap, (ts, started, rec, gen, key))

    for _ in range(min(concurrency, connections)):      # slots open over the first 4 s
        start(int(t0 * 1e9) + int(rng.random() * 4e9))
    first_ts = last_ts = heap[0][0] if heap else 0
    batch, write = [], out.write
    while heap:
        ts, k, rec, gen, key = heap[0]
        batch.append(rec)
        packets += 1
        if len(batch) >= 8192:
            write(b"".join(batch))
            batch.clear()
        nxt = next(gen, None)
        if nxt is not None:
            heapq.heapreplace(heap, (nxt[0], k, nxt[1], gen, key))
            continue
        heapq.heappop(heap)
        live.discard(key)
        last_ts = ts
        start(ts + int(rng.expovariate(1 / (10 * MS))))
    write(b"".join(batch))
    return {"connections": started, "packets": packets,
            "capture_seconds": (last_ts - first_ts) / 1e9, "kinds": kinds}


def main(argv=None) -> int:
    from shapes import KINDS, SHAPES, generate_shape     # (shapes.py builds on this module)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=None,
                    help="default 100,000; with --shape, the shape's own (shapes.py)")
    ap.add_argument("--out", required=True, help="file to write (outside the repository)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--concurrency", type=int, default=2000, help="connections open at once")
    ap.add_argument("--duration-scale", type=int, default=1, metavar="K",
                    help="K times the exchanges per connection: K times longer, same concurrency")
    ap.add_argument("--shape", choices=sorted(SHAPES),
                    help="a connection-cost shape instead of the mix (shapes.py)")
    a = ap.parse_args(argv)
    if a.connections is None:
        a.connections = SHAPES[a.shape][0] if a.shape else 100_000
    if a.shape == "window":
        a.concurrency = a.connections
    if a.connections < 0 or a.concurrency < 1 or a.duration_scale < 1:
        ap.error("--connections >= 0, --concurrency >= 1, --duration-scale >= 1")
    began = time.perf_counter()
    try:
        fh = open(a.out, "wb")
    except OSError as e:
        ap.error(f"--out {a.out}: {e.strerror}")
    with fh:
        if a.shape in KINDS:
            if a.format == "pcap":
                PcapWriter(fh, LINKTYPE_ETHERNET)
            else:
                PcapngWriter(fh, ((LINKTYPE_ETHERNET, 6),))
            record = pcap_record if a.format == "pcap" else pcapng_record
            st = generate_shape(fh, a.shape, a.connections, a.seed, record)
        else:
            st = generate(fh, a.connections, a.seed, a.format, a.concurrency, a.duration_scale)
    took = time.perf_counter() - began
    size = os.path.getsize(a.out)
    print(f"{a.out}: {st['connections']:,} connections, {st['packets']:,} packets, {size:,} bytes "
          f"({size / 2**30:.2f} GiB), {st['capture_seconds']:.1f} s of capture time; "
          f"written in {took:.1f} s ({st['packets'] / max(took, 1e-9):,.0f} packets/s)",
          file=sys.stderr)
    print("endings: " + ", ".join(f"{k} {n:,}" for k, n in st["kinds"].items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
