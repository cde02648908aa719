"""Encapsulations as real bytes, for the tests: outer IP headers, UDP, GRE, the tunnel headers,
IP fragments, BIG TCP packets and Wi-Fi frames around the packets `analyzer.testing.synth`
builds. Each builder writes the fields its RFC names; lengths are computed, checksums that
the decoders do not read are left 0, and every field can be overridden to build broken input.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import List, Optional

from analyzer.decode.checksum import inet_checksum

MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"


def ether(payload: bytes, etype: int) -> bytes:
    """An Ethernet II frame."""
    return MAC + struct.pack("!H", etype) + payload


def ether_ip(ip: bytes) -> bytes:
    """An Ethernet frame carrying an IP packet (the ethertype from its version)."""
    return ether(ip, 0x86DD if ip[0] >> 4 == 6 else 0x0800)


def ip(src: str, dst: str, proto: int, payload: bytes, ident: int = 0, frag: int = 0x4000,
       total: Optional[int] = None) -> bytes:
    """An IPv4 or IPv6 packet (by the address family) with the protocol `proto`."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 16:
        plen = len(payload) if total is None else total
        return struct.pack("!IHBB16s16s", 0x60000000, plen, proto, 64, s, d) + payload
    tot = 20 + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, ident, frag, 64, proto, 0, s, d)
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:] + payload


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IP packet carrying a UDP datagram (checksum 0)."""
    return ip(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def vxlan(vni: int, inner: bytes) -> bytes:
    """A VXLAN header (I flag) and the inner Ethernet frame."""
    return struct.pack("!II", 0x08000000, vni << 8) + inner


def geneve(vni: int, inner: bytes, options: bytes = b"", ptype: int = 0x6558) -> bytes:
    """A Geneve header with `options` (a multiple of 4 bytes) and the inner frame/packet."""
    return struct.pack("!BBHI", len(options) >> 2, 0, ptype, vni << 8) + options + inner


def gre(ptype: int, inner: bytes, key: Optional[int] = None, seq: Optional[int] = None,
        checksum: bool = False) -> bytes:
    """A GRE version 0 header with the optional checksum, key and sequence number."""
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0) | \
        (0x1000 if seq is not None else 0)
    out = struct.pack("!HH", flags, ptype)
    if checksum:
        out += b"\x00" * 4
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out + inner


def erspan2(session: int, inner: bytes) -> bytes:
    """An ERSPAN type II header (version 1) and the mirrored frame (GRE carries it with a
    sequence number, protocol 0x88be)."""
    return struct.pack("!HHI", 0x1000, session & 0x3FF, 0) + inner


def erspan3(session: int, inner: bytes, frame_type: int = 0) -> bytes:
    """An ERSPAN type III header (version 2, no optional subheader), GRE protocol 0x22eb."""
    return struct.pack("!HHIHBB", 0x2000, session & 0x3FF, 0, 0, frame_type << 2, 0) + inner


def gtpu(teid: int, inner: bytes, ext: bytes = b"", msg: int = 0xFF) -> bytes:
    """A GTPv1-U header (with the optional fields and one extension header chain `ext` when
    given: `ext` ends with a next-type byte of 0) and the inner IP packet."""
    if ext:
        opt = struct.pack("!HBB", 0, 0, 0x85) + ext
        return struct.pack("!BBHI", 0x34, msg, len(opt) + len(inner), teid) + opt + inner
    return struct.pack("!BBHI", 0x30, msg, len(inner), teid) + inner


def teredo_origin(inner: bytes) -> bytes:
    """A Teredo origin indication, then the IPv6 packet."""
    return b"\x00\x00" + b"\x12\x34" + b"\xc0\x00\x02\x01" + inner


def ayiya(inner: bytes, next_header: int = 41) -> bytes:
    """An AYIYA forward message with a 16-byte identity and a 20-byte signature."""
    return bytes((0x41, 0x52, 0x11, next_header)) + b"\x00" * 4 + b"\x01" * 16 + \
        b"\x02" * 20 + inner


def l2tp2(tunnel: int, session: int, ppp: bytes) -> bytes:
    """An L2TPv2 data message with the length field, then PPP (FF 03 and the protocol)."""
    body = struct.pack("!HH", tunnel, session) + b"\xff\x03" + ppp
    return struct.pack("!HH", 0x4002, 6 + len(body) - 4 + 4) + body


def fragments(packet: bytes, sizes: List[int]) -> List[bytes]:
    """An IPv4 packet split into fragments whose payloads have the `sizes` given (the last
    takes the rest), in order; each a complete IPv4 packet with the same identification."""
    ihl = (packet[0] & 15) << 2
    hdr, body = packet[:ihl], packet[ihl:]
    out, at = [], 0
    for i, size in enumerate(sizes + [len(body)]):
        part = body[at:at + size] if i < len(sizes) else body[at:]
        more = at + len(part) < len(body)
        frag = (0x2000 if more else 0) | (at >> 3)
        h = hdr[:2] + struct.pack("!HHH", ihl + len(part), 0x1234, frag) + hdr[8:10] + \
            b"\x00\x00" + hdr[12:ihl]
        out.append(h[:10] + struct.pack("!H", inet_checksum(h)) + h[12:] + part)
        at += len(part)
        if not more:
            break
    return out


def fragment6(packet: bytes, offset: int, size: int, more: bool, ident: int = 0x1234) -> bytes:
    """One fragment of an IPv6 packet without extension headers: `size` payload bytes from
    `offset`."""
    nxt, body = packet[6], packet[40:]
    part = body[offset:offset + size]
    fh = struct.pack("!BBHI", nxt, 0, offset | (1 if more else 0), ident)
    return packet[:4] + struct.pack("!HB", 8 + len(part), 44) + packet[7:40] + fh + part


def radiotap(frame: bytes, flags: int = 0) -> bytes:
    """A radiotap header with the Flags field (present bit 1), then the 802.11 frame."""
    return struct.pack("<BBHIB", 0, 0, 9, 0x2, flags) + frame


def dot11_data(payload: bytes, qos: bool = False, protected: bool = False,
               from_ds: bool = True, htc: bool = False, amsdu: bool = False) -> bytes:
    """An 802.11 data frame (QoS data with `qos`), then LLC/SNAP and `payload` (an IP
    packet, its ethertype from the version)."""
    subtype = 8 if qos else 0
    flags = (0x02 if from_ds else 0x01) | (0x40 if protected else 0) | (0x80 if htc else 0)
    hdr = bytes((0x08 | subtype << 4, flags)) + b"\x00\x00" + b"\x02\x00\x00\x00\x00\x01" * 3 + \
        b"\x00\x00"
    if qos:
        hdr += bytes((0x80 if amsdu else 0, 0))
        if htc:
            hdr += b"\x00" * 4
    etype = 0x86DD if payload[0] >> 4 == 6 else 0x0800
    body = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype) + payload
    if amsdu:
        body = MAC + struct.pack("!H", len(body)) + body
    return hdr + body
