"""Build the synthetic sample captures in this directory, deterministically.

    python samples/make_samples.py [--out samples/] [--check]

Every sample is a small capture named after what it shows; `samples/README.md` gives the
verdict a correct analyzer must reach for each. Initial sequence numbers and timestamps are
fixed, so re-running writes byte-identical files (`--check` verifies that instead of writing).

Conventions, unless a sample says otherwise:

* The capture runs on the client host, so a packet the server sends in answer to the client
  appears a round trip (`RTT`) after it, while the client's answers to the server appear at once
  (`GAP` is the spacing of back-to-back packets at the capture point).
* Linux-like numbers: SYN window 64240, SYN-ACK 65160, window scale 7 (so 502 after the
  handshake), MSS 1460 (1440 over IPv6), data in MSS-sized segments with PSH on the last one,
  an ACK for every second full segment.
* When a sample must show time passing after the last TCP packet (CLOSE_WAIT lingering,
  TIME_WAIT at the end), the capture ends with a DNS lookup (two UDP frames): the end of the
  capture is the timestamp of its last frame, whatever the frame carries.
"""

from __future__ import annotations

import argparse
import gzip
import io
import ipaddress
import struct
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.decode.segment import ACK, PSH  # noqa: E402
from analyzer.testing.synth import udp_packet  # noqa: E402
from analyzer.testing.synth import (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,  # noqa: E402
                            Dialog, PcapngWriter, PcapWriter, frame, syn_options, write_pcap)

Packet = Tuple[int, bytes, str]     # (ts_ns, IP packet, sending side "c"/"s"), as Dialog keeps them

T0 = 1_700_000_000.0                # 2023-11-14 22:13:20 UTC: every sample starts here
RTT = 0.004                         # client <-> internet server
LAN_RTT = 0.0003                    # client <-> server on the same LAN
GAP = 0.00002                       # back-to-back packets at the capture point
THINK = 0.0008                      # an application's time to answer
MSS = 1460
SECOND = 1_000_000_000
T0_NS = round(T0 * SECOND)

HOST = "192.168.1.23"               # the client host the captures are taken on
RESOLVER = "192.168.1.1"
WEB = "203.0.113.10"                # documentation addresses (RFC 5737, RFC 3849)
LAN_DB = "192.168.1.40"


# --------------------------------------------------------------------------- the moves

def dialog(client, server, isn, at=0.0, step=GAP) -> Dialog:
    """A Dialog whose clock starts `at` seconds after T0 (offsets keep nanosecond precision,
    which absolute float seconds near 1.7e9 would not)."""
    return Dialog(client, server, isn, t0=T0, step=step).wait(at)


def connect(client, server, isn, at=0.0, rtt=RTT, mss=MSS, step=GAP) -> Dialog:
    """A Dialog after a complete three-way handshake."""
    d = dialog(client, server, isn, at, step)
    d.syn(win=64240, options=syn_options(mss)).wait(rtt)
    d.synack(win=65160, options=syn_options(mss)).ack()
    d.win = 502                     # 502 << 7 = 64256 bytes once scaling is in force
    return d


def transfer(d: Dialog, side: str, nbytes: int, rtt=RTT, mss=MSS) -> Dialog:
    """`side` sends `nbytes` in MSS-sized segments (PSH on the last); the peer ACKs every second
    segment and the last. The server's segments arrive with the client's ACKs in between; the
    client's segments leave back to back and the server's ACKs come back a round trip later."""
    peer = "s" if side == "c" else "c"
    sizes = [mss] * (nbytes // mss) + ([nbytes % mss] if nbytes % mss else [])
    acked = []
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        d.send(side, (PSH | ACK) if last else ACK, size)
        if i % 2 or last:
            acked.append(d.nxt[side])
            if side == "s":
                d.ack(peer)
    if side == "c":
        d.wait(rtt)
        for ack in acked:
            d.ack(peer, ack=ack)
    return d


def exchange(d: Dialog, request: int, response: int, rtt=RTT, mss=MSS) -> Dialog:
    """A request from the client, and a round trip plus think time later the server's response,
    whose first segment acknowledges the request."""
    d.data("c", request).wait(rtt + THINK)
    return transfer(d, "s", response, rtt, mss)


def close(d: Dialog, first: str, three_segment: bool = False, rtt=RTT) -> Dialog:
    """`first` sends FIN. Four-way: the peer ACKs it, sends its own FIN `THINK` later, and
    `first` sends the final ACK. Three-segment: the peer's FIN+ACK acknowledges the first FIN."""
    second = "s" if first == "c" else "c"

    def answer(side: str) -> float:   # how long `side` takes to answer, seen from the client
        return rtt if side == "s" else 0.0

    d.fin(first)
    if three_segment:
        d.wait(answer(second) + THINK).fin(second)
    else:
        d.wait(answer(second)).ack(second).wait(THINK).fin(second)
    return d.wait(answer(first)).ack(first)


def repeat_at(d: Dialog, start_ns: int, offsets: Sequence[float], move: Callable[[], object]):
    """Call `move` (e.g. one retransmission) at each offset, in seconds after `start_ns`."""
    for offset in offsets:
        d.t = start_ns + round(offset * SECOND)
        move()
    return d


def dns_message(qid: int, name: str, answer: str = "") -> bytes:
    """A DNS query for `name`'s A record, or (with `answer`) its response."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    msg = struct.pack("!HHHHHH", qid, 0x8180 if answer else 0x0100, 1, 1 if answer else 0, 0, 0)
    msg += qname + struct.pack("!HH", 1, 1)
    if answer:
        msg += struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + ipaddress.ip_address(answer).packed
    return msg


def capture_ends_after(packets: List[Packet], seconds: float) -> List[Packet]:
    """`packets`, then a DNS lookup (query, answer) whose answer is the capture's last frame,
    exactly `seconds` after the last of `packets`."""
    end = packets[-1][0] + round(seconds * SECOND)
    query = udp_packet(HOST, RESOLVER, 53124, 53, dns_message(0x5C1D, "updates.example.com"))
    answer = udp_packet(RESOLVER, HOST, 53, 53124,
                        dns_message(0x5C1D, "updates.example.com", "198.51.100.80"))
    return packets + [(end - round(LAN_RTT * SECOND), query, "c"), (end, answer, "s")]


def as_server(packets: Iterable[Packet]) -> List[Packet]:
    """Swap the sending sides, for connections in which the capture host is the server (the
    side decides only which MAC address is the source)."""
    return [(ts, ip, "s" if side == "c" else "c") for ts, ip, side in packets]


def interleave(*packet_lists: Iterable[Packet]) -> List[Packet]:
    """All packets in time order (stable for equal times)."""
    return sorted((p for packets in packet_lists for p in packets), key=lambda p: p[0])


# --------------------------------------------------------------------------- the connections
# Each returns a Dialog (or a list of them) so that `mixed` can reuse it on other 4-tuples.

def four_way_close(at=0.0, client=(HOST, 51724), server=(WEB, 443), isn=(0x5A3C9E01, 0xC1D2E3F4)):
    """HTTPS request and response; the client closes first: FIN, ACK, FIN, ACK."""
    d = connect(client, server, isn, at)
    exchange(d, 517, 5120).wait(0.250)
    return close(d, "c")


def three_segment_close(at=0.0, client=(HOST, 49302), server=(WEB, 80), isn=(0x0B16F00D, 0x7E5742A9)):
    """HTTP with `Connection: close`: the server closes right behind its response, the client's
    FIN+ACK acknowledges that FIN, the server sends the final ACK."""
    d = connect(client, server, isn, at)
    exchange(d, 389, 3620)
    return close(d, "s", three_segment=True)


def simultaneous_close(at=0.0, client=(HOST, 40418), server=("198.51.100.30", 5222),
                       isn=(0x3D0A11C7, 0xA4E0B812)):
    """XMPP: both sides end the stream and close at the same moment. The server's FIN left
    before the client's FIN reached it, so it does not acknowledge it; then both ACK."""
    d = connect(client, server, isn, at)
    exchange(d, 240, 310).wait(0.120)
    client_fin = d.nxt["c"]
    d.fin("c")
    d.wait(RTT / 4).fin("s", ack=client_fin)       # crossed in flight: ack stops short of the FIN
    d.ack("c")                                      # client ACKs the server's FIN (CLOSING)
    return d.wait(RTT * 3 / 4).ack("s")             # server ACKs the client's FIN


def half_close_data_after_fin(at=0.0, client=(HOST, 45870), server=("198.51.100.61", 9000),
                              isn=(0x6E1F0A33, 0x19C7D402)):
    """The client sends its request and shuts down its sending side (`nc -N`); the server ACKs
    the FIN, then keeps sending its reply, which the client ACKs, and closes."""
    d = connect(client, server, isn, at)
    d.data("c", 600).fin("c")
    d.wait(RTT).ack("s").wait(0.003)
    transfer(d, "s", 5320)
    return d.fin("s").ack("c")


def refused(at=0.0, client=(HOST, 38112), server=(LAN_DB, 5432), isn=(0x2C9B7E10, 0)):
    """Nothing listens on the port: the SYN is answered by RST+ACK, seq 0, ack ISN+1."""
    d = dialog(client, server, isn, at)
    return d.syn(win=64240).wait(LAN_RTT).rst("s", seq=0, win=0)


def unanswered_syn_retransmissions(at=0.0, client=(HOST, 41566), server=("203.0.113.99", 8443),
                                   isn=(0x71D3A5E2, 0)):
    """A SYN into a firewall that drops it, retransmitted with the same ISN after 1, 2, 4, 8 and
    16 s of backoff (at 1, 3, 7, 15, 31 s); no answer ever comes."""
    d = dialog(client, server, isn, at)
    start = d.t
    d.syn(win=64240)
    return repeat_at(d, start, (1, 3, 7, 15, 31), lambda: d.syn(seq=isn[0], win=64240))


def reset_mid_transfer(at=0.0, client=(HOST, 52044), server=(WEB, 443), isn=(0x48A1C3E5, 0xD20B9F77)):
    """The server's response is flowing (four full segments so far) when the server aborts the
    connection with RST+ACK at its next sequence number."""
    d = connect(client, server, isn, at)
    d.data("c", 517).wait(RTT + THINK)
    transfer(d, "s", 4 * MSS)
    return d.rst("s")


def lingering_close_wait(at=0.0, client=(HOST, 57310), server=(LAN_DB, 8080),
                         isn=(0x1A2B3C4D, 0x5E6F7081)):
    """The client closes; the server's kernel ACKs the FIN, but its application never closes
    the socket: the server stays in CLOSE_WAIT and sends nothing more."""
    d = connect(client, server, isn, at, rtt=LAN_RTT)
    exchange(d, 420, 2900, rtt=LAN_RTT).wait(0.200)
    return d.fin("c").wait(LAN_RTT).ack("s")


def time_wait_close(at=0.0, client=(HOST, 50990), server=(WEB, 443), isn=(0x0F1E2D3C, 0x4B5A6978)):
    """A complete connection closed by the client (four-way); the client enters TIME_WAIT."""
    d = connect(client, server, isn, at)
    exchange(d, 517, 2200).wait(0.080)
    return close(d, "c")


def reuse_from_time_wait(at=0.0, client=(HOST, 40100), server=(LAN_DB, 5432),
                         isn=(0x30C0FFEE, 0x8BADF00D), isn2=(0x356917B6, 0x1337C0DE)):
    """A connection closed by the client (client in TIME_WAIT); 5 s later the client sends a
    new SYN on the same 4-tuple with a higher ISN (Linux's clock-driven ISN moves on by one
    per 64 ns: 78,125,000 in 5 s), and a second complete connection follows, closed by the
    server."""
    first = connect(client, server, isn, at, rtt=LAN_RTT)
    exchange(first, 280, 1200, rtt=LAN_RTT).wait(0.050)
    close(first, "c", rtt=LAN_RTT)
    reopen = (first.packets[-1][0] - T0_NS) / SECOND + 5.0
    second = connect(client, server, isn2, reopen, rtt=LAN_RTT)
    exchange(second, 310, 2600, rtt=LAN_RTT).wait(0.020)
    close(second, "s", three_segment=True, rtt=LAN_RTT)
    return [first, second]


def mid_connection_start(at=0.0, client=(HOST, 48122), server=(WEB, 443), seqs=(0x2B7F0C45, 0x9E3A7711)):
    """The capture starts in the middle of a download (no SYN): server data segments and the
    client's ACKs, one more request and response, then the client closes (four-way)."""
    d = dialog(client, server, seqs, at)
    d.win = 502
    transfer(d, "s", 6 * MSS).wait(0.040)
    exchange(d, 120, 900).wait(0.300)
    return close(d, "c")


def simultaneous_open(at=0.0, a=(HOST, 6881), b=("198.51.100.44", 6881), isn=(0x0C0FFEE0, 0x5EED5EED)):
    """Peer-to-peer hole punching: both peers send SYN, each answers the other's SYN with a
    SYN+ACK that repeats its own SYN, and each answers the SYN+ACK with an ACK (the SYN in it
    is a duplicate, RFC 9293 §3.10.7.4). Then a little data, and `a` closes (four-way)."""
    half = RTT / 2
    d = dialog(a, b, isn, at)
    d.syn("c", win=64240).wait(half)
    d.syn("s", win=64240)                            # b's SYN crossed a's in flight
    d.synack("c", seq=isn[0], win=64240).wait(half)
    d.synack("s", seq=isn[1], win=64240)             # b's answer to a's SYN
    d.win = 502
    d.ack("c").wait(half)
    d.ack("s")
    exchange(d, 68, 68).wait(0.500)
    return close(d, "c")


def half_open(at=0.0, client=("198.51.100.200", 61433), server=(HOST, 22), isn=(0x66A4F001, 0x3F81C2D4)):
    """Seen from the server: a SYN (from a spoofed or vanished client), the SYN-ACK, and the
    SYN-ACK retransmitted after 1, 2, 4, 8, 16 s (Linux tcp_synack_retries=5); never ACKed."""
    d = dialog(client, server, isn, at)
    start = d.t
    d.syn(win=64240).synack(win=65160)
    return repeat_at(d, start, (1, 3, 7, 15, 31), lambda: d.synack(seq=isn[1], win=65160))


def bad_handshake_ack(at=0.0, client=(HOST, 53310), server=(WEB, 443), isn=(0x4D2C1B0A, 0x99887766)):
    """The SYN-ACK acknowledges the client's ISN instead of ISN+1 (a broken middlebox). The
    client, in SYN-SENT, answers the unacceptable ACK with <SEQ=SEG.ACK><CTL=RST> (no ACK bit),
    which falls outside the server's window and is ignored. At 1 s the client retransmits its
    SYN; the server, still in SYN-RECEIVED, repeats the same SYN-ACK; the client resets again."""
    d = dialog(client, server, isn, at)
    start = d.t

    def attempt():
        d.syn(seq=isn[0], win=64240).wait(RTT)
        d.synack(seq=isn[1], ack=isn[0], win=65160)
        d.rst("c", ack=False, seq=isn[0], win=0)

    return repeat_at(d, start, (0, 1), attempt)


def ipv6(at=0.0, client=("2001:db8:1::23", 50118), server=("2001:db8:2::10", 443),
         isn=(0x7A6B5C4D, 0x0E1F2A3B)):
    """The same HTTPS exchange over IPv6 (MSS 1440); the client closes first (four-way)."""
    d = connect(client, server, isn, at, mss=1440)
    exchange(d, 517, 4000, mss=1440).wait(0.150)
    return close(d, "c")


def postgres_on_loopback(at=0.0, client=("127.0.0.1", 43562), server=("127.0.0.1", 5432),
                         isn=(0x1C2D3E4F, 0x6A7B8C9D)):
    """A local client and a local PostgreSQL over 127.0.0.1; the client closes (three-segment)."""
    rtt = 0.00003
    d = connect(client, server, isn, at, rtt=rtt, mss=65495, step=0.000005)
    exchange(d, 98, 1024, rtt=rtt, mss=65483).wait(0.002)
    return close(d, "c", three_segment=True, rtt=rtt)


def sequence_wraparound(at=0.0, client=(HOST, 46610), server=(WEB, 443), isn=(0xFFFFFF00, 0xFFFFF000)):
    """Both ISNs sit just below 2**32: the client's sequence numbers wrap during its request,
    the server's during its response. Client closes first (four-way)."""
    d = connect(client, server, isn, at)
    exchange(d, 517, 8000).wait(0.100)
    return close(d, "c")


def redis_quit_10g(at=0.123456789, client=("10.0.5.21", 38770), server=("10.0.5.22", 6379),
                   isn=(0x51F0A2B3, 0xC4D5E6F7)):
    """A Redis QUIT on a 10 GbE LAN with a 41 µs round trip, timed to the nanosecond: the
    server answers +OK and closes (three-segment, server first)."""
    rtt = 0.000041293
    d = connect(client, server, isn, at, rtt=rtt, step=0.000001237).wait(0.000250731)
    exchange(d, 14, 5, rtt=rtt)
    return close(d, "s", three_segment=True, rtt=rtt)


def ssh_session_in_progress(at=0.0, every=4.9, count=16, client=("192.168.1.50", 51022),
                            server=(HOST, 22), seqs=(0x10293847, 0x56473829)):
    """An interactive SSH session into the host, already open when the capture starts: every
    `every` seconds a keystroke, its echo and the ACK of the echo; never closed."""
    d = dialog(client, server, seqs, at)
    d.win = 501
    offsets = [every * k for k in range(count)]
    return repeat_at(d, d.t, offsets, lambda: d.data("c", 36).data("s", 36).wait(LAN_RTT).ack("c"))


# --------------------------------------------------------------------------- the files

def pcap(packets: Iterable[Packet], **kw) -> bytes:
    buf = io.BytesIO()
    write_pcap(buf, packets, **kw)
    return buf.getvalue()


def frames_file(frames: Iterable[Tuple[int, bytes]], linktype: int) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf, linktype)
    for ts, data in sorted(frames, key=lambda f: f[0]):
        w.write(ts, data)
    return buf.getvalue()


def vlan_file() -> bytes:
    """A trunk port: one connection tagged 802.1Q VLAN 100, one QinQ (outer 200, inner 300)."""
    tagged = four_way_close(client=("10.100.0.15", 44810), server=("10.100.0.5", 443))
    qinq = three_segment_close(0.003, client=("10.30.0.15", 52000), server=("10.30.0.80", 80))
    return frames_file(tagged.frames("ether", (100,)) + qinq.frames("ether", (200, 300)),
                       LINKTYPE_ETHERNET)


def sll2_file() -> bytes:
    """`tcpdump -i any` on a host: Linux cooked v2 headers. On `lo` every packet is listed once,
    as received ("In", packet type 0), like real captures of loopback traffic."""
    d = postgres_on_loopback()
    return frames_file([(ts, frame(ip, "sll2", outbound=False)) for ts, ip, _ in d.packets],
                       LINKTYPE_LINUX_SLL2)


def pcapng_two_interfaces_file() -> bytes:
    """Interface 0: Ethernet, microsecond timestamps, an HTTP connection. Interface 1: a raw-IP
    tunnel (WireGuard-like, LINKTYPE_RAW), nanosecond timestamps, a PostgreSQL connection.
    Their packets interleave in time."""
    web = three_segment_close(client=(HOST, 51000), server=(WEB, 80))
    tunnel = four_way_close(0.001234567, client=("10.8.0.2", 39012), server=("10.8.0.1", 5432),
                            isn=(0x2468ACE0, 0x13579BDF))
    blocks = [(ts, data, 0) for ts, data in web.frames("ether")]
    blocks += [(ts, data, 1) for ts, data in tunnel.frames("raw")]
    buf = io.BytesIO()
    w = PcapngWriter(buf, interfaces=((LINKTYPE_ETHERNET, 6), (LINKTYPE_RAW, 9)))
    for ts, data, interface in sorted(blocks, key=lambda b: b[0]):
        w.write(ts, data, interface)
    return buf.getvalue()


def mixed_packets() -> List[Packet]:
    """One busy host over 73.5 s: many kinds of connection at once, on distinct 4-tuples. The
    SSH session's last ACK (73.50034 s) ends the capture; the last connection is timed so that
    its client enters TIME_WAIT exactly 10 s before that (its final ACK is 93.8 ms after its SYN)."""
    reuse = reuse_from_time_wait(58.0, client=(HOST, 40102), isn=(0x30C0FFEE, 0x8BADF00D))
    return interleave(
        as_server(ssh_session_in_progress().packets),
        four_way_close(0.100, client=(HOST, 51730)).packets,
        refused(0.350, client=(HOST, 38120)).packets,
        reset_mid_transfer(0.600, client=(HOST, 52050), server=("203.0.113.20", 443)).packets,
        unanswered_syn_retransmissions(1.200, client=(HOST, 41570)).packets,
        lingering_close_wait(2.000, client=(HOST, 57320)).packets,
        half_close_data_after_fin(2.500, client=(HOST, 45880)).packets,
        three_segment_close(3.000, client=(HOST, 49310)).packets,
        as_server(half_open(4.300, client=("198.51.100.201", 62001)).packets),
        simultaneous_close(5.600, client=(HOST, 40420)).packets,
        ipv6(6.400, client=("2001:db8:1::23", 50120)).packets,
        bad_handshake_ack(7.700, client=(HOST, 53320)).packets,
        simultaneous_open(9.200, a=(HOST, 6882), b=("198.51.100.45", 6882)).packets,
        reuse[0].packets, reuse[1].packets,
        time_wait_close(63.40654, client=(HOST, 50998)).packets,
    )


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


SAMPLES: Dict[str, Callable[[], bytes]] = {
    "four_way_close.pcap": lambda: pcap(four_way_close().packets),
    "three_segment_close.pcap": lambda: pcap(three_segment_close().packets),
    "simultaneous_close.pcap": lambda: pcap(simultaneous_close().packets),
    "half_close_data_after_fin.pcap": lambda: pcap(half_close_data_after_fin().packets),
    "refused.pcap": lambda: pcap(refused().packets),
    "unanswered_syn_retransmissions.pcap": lambda: pcap(unanswered_syn_retransmissions().packets),
    "reset_mid_transfer.pcap": lambda: pcap(reset_mid_transfer().packets),
    "lingering_close_wait.pcap": lambda: pcap(capture_ends_after(lingering_close_wait().packets, 45)),
    "time_wait_at_end.pcap": lambda: pcap(capture_ends_after(time_wait_close().packets, 10)),
    "time_wait_expired.pcap": lambda: pcap(capture_ends_after(time_wait_close().packets, 70)),
    "reuse_from_time_wait.pcap": lambda: pcap(interleave(*(d.packets for d in reuse_from_time_wait()))),
    "mid_connection_start.pcap": lambda: pcap(mid_connection_start().packets),
    "simultaneous_open.pcap": lambda: pcap(simultaneous_open().packets),
    "half_open.pcap": lambda: pcap(half_open().packets),
    "bad_handshake_ack.pcap": lambda: pcap(bad_handshake_ack().packets),
    "sequence_wraparound.pcap": lambda: pcap(sequence_wraparound().packets),
    "ipv6.pcap": lambda: pcap(ipv6().packets),
    "vlan.pcap": vlan_file,
    "sll2.pcap": sll2_file,
    "pcapng_two_interfaces.pcapng": pcapng_two_interfaces_file,
    "nanosecond_big_endian.pcap": lambda: pcap(redis_quit_10g().packets, nano=True, big_endian=True),
    "gzip_compressed.pcap.gz": lambda: gzipped(pcap(four_way_close(client=(HOST, 57002)).packets)),
    "mixed.pcap": lambda: pcap(mixed_packets()),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="directory to write into (default: this script's directory)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any file in --out differs from what would be written")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, build in SAMPLES.items():
        data = build()
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
            print("%-38s %6d bytes" % (name, len(data)))
    for name in stale:
        print("differs: %s" % name, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
