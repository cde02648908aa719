"""Build TCP conversations as real bytes and write them as pcap or pcapng.

Used by the sample generator (`samples/make_samples.py`), the benchmark generator and the
tests: every packet is a complete IPv4/IPv6 + TCP packet with correct header lengths and
checksums, framed in the requested link layer. A `Dialog` keeps each side's sequence numbers
so that handshakes, data and closes carry the arithmetic a real stack would produce, and
every field can be overridden to build broken traffic on purpose.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import BinaryIO, Iterable, List, Optional, Sequence, Tuple

from analyzer.decode.checksum import inet_checksum
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKS = {
    "ether": LINKTYPE_ETHERNET, "null": LINKTYPE_NULL, "loop": LINKTYPE_LOOP,
    "raw": LINKTYPE_RAW, "sll": LINKTYPE_LINUX_SLL, "sll2": LINKTYPE_LINUX_SLL2,
    "ipv4": LINKTYPE_IPV4, "ipv6": LINKTYPE_IPV6,
}

_MAC_A = b"\x02\x00\x00\x00\x00\x01"
_MAC_B = b"\x02\x00\x00\x00\x00\x02"


def tcp_packet(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int = 0,
               payload: bytes = b"", win: int = 65535, options: bytes = b"",
               checksum: bool = True, ttl: int = 64, ipid: int = 0) -> bytes:
    """An IPv4 or IPv6 packet (chosen by the address family) carrying one TCP segment (IPv4
    with identification `ipid`)."""
    if len(options) % 4:
        options += b"\x01" * (4 - len(options) % 4)   # NOP padding
    off = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (off << 12) | (flags & 0x1FF), win, 0, 0) + options + payload
    s = ipaddress.ip_address(src).packed
    d = ipaddress.ip_address(dst).packed
    if len(s) == 4:
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    else:
        pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
    if checksum:
        csum = inet_checksum(pseudo + tcp)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    if len(s) == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ipid, 0x4000, ttl, 6, 0, s, d)
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
        return hdr + tcp
    return struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, ttl, s, d) + tcp


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying one UDP datagram, with both checksums (samples end with one
    to move the capture's end without TCP)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = inet_checksum(s + d + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, s, d)
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:] + udp


def syn_options(mss: int = 1460, wscale: Optional[int] = 7) -> bytes:
    """MSS, SACK-permitted and (optionally) window-scale options as a Linux SYN carries them."""
    opts = struct.pack("!BBH", 2, 4, mss) + b"\x04\x02"
    if wscale is not None:
        opts += b"\x01" + struct.pack("!BBB", 3, 3, wscale)
    return opts


def frame(ip: bytes, link: str = "ether", vlans: Sequence[int] = (), outbound: bool = True) -> bytes:
    """Wrap an IP packet in a link-layer header. `vlans` adds 802.1Q tags (two make QinQ)."""
    v6 = (ip[0] >> 4) == 6
    ethertype = 0x86DD if v6 else 0x0800
    if link == "ether":
        hdr = (_MAC_B + _MAC_A) if outbound else (_MAC_A + _MAC_B)
        tags = b""
        for i, vid in enumerate(vlans):
            tpid = 0x88A8 if (i == 0 and len(vlans) > 1) else 0x8100
            tags += struct.pack("!HH", tpid, vid & 0x0FFF)   # TPID, then its TCI
        return hdr + tags + struct.pack("!H", ethertype) + ip
    if link in ("null", "loop"):
        family = (30 if v6 else 2)
        fmt = "<I" if link == "null" else "!I"
        return struct.pack(fmt, family) + ip
    if link in ("raw", "ipv4", "ipv6"):
        return ip
    if link == "sll":
        return struct.pack("!HHH8sH", 4 if outbound else 0, 772, 6, _MAC_A + b"\x00\x00",
                           ethertype) + ip
    if link == "sll2":
        return struct.pack("!HHIHBB8s", ethertype, 0, 1, 772, 4 if outbound else 0, 6,
                           _MAC_A + b"\x00\x00") + ip
    raise ValueError("unknown link %r" % link)


def _ts_split(ts_ns: int, nano: bool) -> Tuple[int, int]:
    sec, frac = divmod(ts_ns, 1_000_000_000)
    return sec, (frac if nano else frac // 1000)


class PcapWriter:
    """Classic pcap: microsecond or nanosecond, little- or big-endian."""

    def __init__(self, fh: BinaryIO, linktype: int = LINKTYPE_ETHERNET, nano: bool = False,
                 big_endian: bool = False, snaplen: int = 262144) -> None:
        self.fh = fh
        self.nano = nano
        self.snaplen = snaplen
        self.bo = ">" if big_endian else "<"
        magic = 0xA1B23C4D if nano else 0xA1B2C3D4
        fh.write(struct.pack(self.bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts_ns: int, data: bytes, orig_len: Optional[int] = None) -> None:
        sec, frac = _ts_split(ts_ns, self.nano)
        cap = data[: self.snaplen]
        self.fh.write(struct.pack(self.bo + "IIII", sec, frac, len(cap),
                                  len(data) if orig_len is None else orig_len) + cap)


class PcapngWriter:
    """pcapng with one section and any number of interfaces, each with its own link type and
    timestamp resolution (`tsresol` as the if_tsresol option byte: 6 = µs, 9 = ns)."""

    def __init__(self, fh: BinaryIO, interfaces: Sequence[Tuple[int, int]] = ((LINKTYPE_ETHERNET, 6),),
                 big_endian: bool = False) -> None:
        self.fh = fh
        self.bo = ">" if big_endian else "<"
        self.resol = []
        self._block(0x0A0D0D0A, struct.pack(self.bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        for linktype, tsresol in interfaces:
            opts = b""
            if tsresol != 6:
                opts = struct.pack(self.bo + "HH", 9, 1) + bytes([tsresol]) + b"\x00" * 3
                opts += struct.pack(self.bo + "HH", 0, 0)
            self._block(1, struct.pack(self.bo + "HHI", linktype, 0, 262144) + opts)
            self.resol.append(tsresol)

    def _block(self, btype: int, body: bytes) -> None:
        pad = (-len(body)) % 4
        total = 12 + len(body) + pad
        self.fh.write(struct.pack(self.bo + "II", btype, total) + body + b"\x00" * pad
                      + struct.pack(self.bo + "I", total))

    def write(self, ts_ns: int, data: bytes, interface: int = 0) -> None:
        resol = self.resol[interface]
        units = ts_ns // 10 ** (9 - resol) if resol <= 9 else ts_ns * 10 ** (resol - 9)
        self._block(6, struct.pack(self.bo + "IIIII", interface, units >> 32, units & 0xFFFFFFFF,
                                   len(data), len(data)) + data)


class Dialog:
    """A TCP conversation between a client and a server with both sides' sequence numbers.

    Each call appends one packet and advances the clock by `step` seconds. By default a segment
    carries the sender's next sequence number and acknowledges everything the peer has sent;
    `seq=` and `ack=` override either, and `advance=False` sends without consuming sequence
    space (a retransmission).
    """

    def __init__(self, client: Tuple[str, int] = ("10.0.0.1", 40000),
                 server: Tuple[str, int] = ("10.0.0.2", 80), isn: Tuple[int, int] = (1000, 5000),
                 t0: float = 1_700_000_000.0, step: float = 0.001, win: int = 65535) -> None:
        self.ends = {"c": client, "s": server}
        self.nxt = {"c": isn[0], "s": isn[1]}
        self.seen_peer = {"c": False, "s": False}
        self.t = int(round(t0 * 1e9))
        self.step = int(round(step * 1e9))
        self.win = win
        self.packets: List[Tuple[int, bytes, str]] = []   # (ts_ns, ip bytes, sending side)

    @staticmethod
    def _peer(side: str) -> str:
        return "s" if side == "c" else "c"

    def wait(self, seconds: float) -> "Dialog":
        self.t += int(round(seconds * 1e9))
        return self

    def send(self, side: str, flags: int, length: int = 0, seq: Optional[int] = None,
             ack: Optional[int] = None, advance: bool = True, options: bytes = b"",
             win: Optional[int] = None, ipid: int = 0) -> "Dialog":
        src, dst = self.ends[side], self.ends[self._peer(side)]
        s = self.nxt[side] if seq is None else seq
        if ack is None:
            ack = self.nxt[self._peer(side)] if flags & ACK else 0
        payload = bytes((i * 7 + 13) & 0xFF for i in range(length))
        ip = tcp_packet(src[0], dst[0], src[1], dst[1], flags, s, ack, payload,
                        self.win if win is None else win, options, ipid=ipid)
        self.packets.append((self.t, ip, side))
        self.t += self.step
        if advance:
            used = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            end = (s + used) & 0xFFFFFFFF
            if used and ((end - self.nxt[side]) & 0xFFFFFFFF) < 0x80000000:
                self.nxt[side] = end
        return self

    # The common moves, named the way a ladder diagram reads.
    def syn(self, side: str = "c", **kw) -> "Dialog":
        return self.send(side, SYN, options=kw.pop("options", syn_options()), **kw)

    def synack(self, side: str = "s", **kw) -> "Dialog":
        return self.send(side, SYN | ACK, options=kw.pop("options", syn_options()), **kw)

    def ack(self, side: str = "c", **kw) -> "Dialog":
        return self.send(side, ACK, **kw)

    def data(self, side: str, length: int, **kw) -> "Dialog":
        return self.send(side, PSH | ACK, length, **kw)

    def fin(self, side: str, **kw) -> "Dialog":
        return self.send(side, FIN | ACK, **kw)

    def rst(self, side: str, ack: bool = True, **kw) -> "Dialog":
        return self.send(side, RST | (ACK if ack else 0), **kw)

    def handshake(self) -> "Dialog":
        return self.syn().synack().ack()

    def again(self, after: float = 0.00002) -> "Dialog":
        """The last packet captured a second time, `after` seconds later (a SPAN of two ports
        duplicates frames so): same bytes, same IP ID."""
        ts, ip, side = self.packets[-1]
        self.packets.append((ts + int(round(after * 1e9)), ip, side))
        return self

    def frames(self, link: str = "ether", vlans: Sequence[int] = ()) -> List[Tuple[int, bytes]]:
        return [(ts, frame(ip, link, vlans, outbound=(side == "c"))) for ts, ip, side in self.packets]


def merge(*dialogs: Dialog) -> List[Tuple[int, bytes, str]]:
    """All packets of several dialogs in time order (stable for equal times)."""
    allp: List[Tuple[int, bytes, str]] = []
    for d in dialogs:
        allp.extend(d.packets)
    allp.sort(key=lambda p: p[0])
    return allp


def write_pcap(path_or_fh, packets: Iterable[Tuple[int, bytes, str]], link: str = "ether",
               vlans: Sequence[int] = (), nano: bool = False, big_endian: bool = False,
               snaplen: int = 262144) -> None:
    """Write (ts_ns, ip, side) packets (e.g. `Dialog.packets`) as a classic pcap file."""
    fh = open(path_or_fh, "wb") if isinstance(path_or_fh, (str, bytes)) or hasattr(path_or_fh, "__fspath__") else path_or_fh
    try:
        w = PcapWriter(fh, LINKS[link], nano=nano, big_endian=big_endian, snaplen=snaplen)
        for ts, ip, side in packets:
            w.write(ts, frame(ip, link, vlans, outbound=(side == "c")))
    finally:
        if fh is not path_or_fh:
            fh.close()
