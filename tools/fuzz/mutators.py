"""Structure-aware mutators for pcap, pcapng and gzip captures.

Each mutator takes the bytes of a well-formed capture and a `random.Random`, and returns
bytes that keep most of the structure and break one thing in it: a field of a record header
or block (lengths, timestamps, link types, interface ids, options, byte order), the records'
order and number (splice, duplicate, drop, truncate), the frame inside a record (IP and TCP
header fields at their offsets), or the compression around it (a gzip member cut, flipped,
doubled or followed by garbage). Plain byte flips cover the rest. Everything here is
deterministic for a given seed, so a failing input is found again from its seed.
"""

from __future__ import annotations

import gzip
import random
import struct
import zlib
from typing import Callable, List, Tuple

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

#: Values that sit on the edges of 8-, 16-, 32- and 64-bit fields and of the readers' bounds.
EDGES = (0, 1, 2, 3, 4, 7, 8, 11, 12, 16, 20, 28, 31, 32, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF,
         0x8000, 0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0x40001, 0xFFFFFF, 0x1000000, 0x1000001,
         0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _le(data: bytes) -> bool:
    """Whether a pcap/pcapng capture is little-endian (by its magic)."""
    if data[:4] == PCAPNG_MAGIC:
        return data[8:12] == b"\x4d\x3c\x2b\x1a"
    return data[:4] in (PCAP_MAGICS[0], PCAP_MAGICS[2])


def _u32(rng: random.Random) -> int:
    return rng.choice(EDGES) if rng.random() < 0.7 else rng.getrandbits(32)


# ------------------------------------------------------------------- pcap

def pcap_records(data: bytes) -> Tuple[bytes, List[bytes]]:
    """A pcap capture's file header and its records (header + frame each), as far as they
    parse."""
    if len(data) < 24:
        return data, []
    bo = "<" if _le(data) else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(bo + "I", data, pos + 8)[0]
        end = pos + 16 + caplen
        if end > len(data):
            break
        out.append(data[pos:end])
        pos = end
    return data[:24], out


def pcap_mutate(data: bytes, rng: random.Random) -> bytes:
    head, recs = pcap_records(data)
    bo = "<" if _le(data) else ">"
    what = rng.randrange(11)
    if what == 0 and len(head) == 24:                        # file header field
        off = rng.choice((4, 6, 16, 20))
        size = 2 if off < 8 else 4
        val = _u32(rng) & (0xFFFF if size == 2 else 0xFFFFFFFF)
        head = head[:off] + struct.pack(bo + ("H" if size == 2 else "I"), val) + head[off + size:]
    elif what == 1:                                            # another magic (order, ns)
        head = rng.choice(PCAP_MAGICS) + head[4:]
    elif what == 2 and recs:                                   # a record header field
        i = rng.randrange(len(recs))
        off = rng.choice((0, 4, 8, 12))
        r = recs[i]
        recs[i] = r[:off] + struct.pack(bo + "I", _u32(rng)) + r[off + 4:]
    elif what == 3 and recs:                                   # timestamps jump around
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(recs))
            r = recs[i]
            sec = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)))
            recs[i] = struct.pack(bo + "II", sec, rng.choice((0, 999999, 1000000, 0xFFFFFFFF,
                                                               rng.getrandbits(32)))) + r[8:]
    elif what == 4 and recs:                                   # splice / duplicate / drop
        op = rng.randrange(3)
        i = rng.randrange(len(recs))
        if op == 0:
            recs.insert(rng.randrange(len(recs) + 1), recs[i])
        elif op == 1:
            del recs[i]
        else:
            rng.shuffle(recs)
    elif what == 5 and recs:                                   # a frame's bytes
        i = rng.randrange(len(recs))
        recs[i] = recs[i][:16] + frame_mutate(recs[i][16:], rng)
    elif what == 6:                                            # empty records
        n = rng.choice((1, 10, 100, 300))
        empty = struct.pack(bo + "IIII", 1, 0, 0, 0)
        recs.insert(rng.randrange(len(recs) + 1), empty * n)
    elif what == 7 and recs:                                   # caplen vs the frame
        i = rng.randrange(len(recs))
        r = recs[i]
        caplen = struct.unpack_from(bo + "I", r, 8)[0]
        new = max(0, caplen + rng.choice((-4, -1, 1, 4, 1000)))
        recs[i] = r[:8] + struct.pack(bo + "I", new) + r[12:]
    else:
        return bytes_mutate(head + b"".join(recs), rng)
    out = head + b"".join(recs)
    if rng.random() < 0.2:
        out = out[:rng.randrange(len(out) + 1)]
    return out


# ------------------------------------------------------------------- pcapng

def pcapng_blocks(data: bytes) -> List[bytes]:
    """A pcapng capture's blocks, as far as they parse (byte order of the first section)."""
    bo = "<" if _le(data) else ">"
    out, pos = [], 0
    while pos + 12 <= len(data):
        blen = struct.unpack_from(bo + "I", data, pos + 4)[0]
        if blen < 12 or pos + blen > len(data):
            break
        out.append(data[pos:pos + blen])
        pos += blen
    return out


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def pcapng_mutate(data: bytes, rng: random.Random) -> bytes:
    blocks = pcapng_blocks(data)
    bo = "<" if _le(data) else ">"
    if not blocks:
        return bytes_mutate(data, rng)
    what = rng.randrange(11)
    i = rng.randrange(len(blocks))
    b = blocks[i]
    if what == 0:                                              # a length, leading or trailing
        off = rng.choice((4, len(b) - 4))
        blocks[i] = b[:off] + struct.pack(bo + "I", _u32(rng)) + b[off + 4:]
    elif what == 1:                                            # the block type
        blocks[i] = struct.pack(bo + "I", rng.choice((0, 1, 2, 3, 4, 5, 6, 0xBAD, 0x0A0D0D0A,
                                                      _u32(rng)))) + b[4:]
    elif what == 2:                                            # an IDB with odd options
        resol = rng.choice((0, 3, 6, 9, 10, 12, 19, 20, 0x80, 0x81, 0x9E, 0xBF, 0xFF,
                            rng.randrange(256)))
        offset = rng.choice((0, -1, -(1 << 31), (1 << 31), -(1 << 63), (1 << 63) - 1,
                             rng.getrandbits(64) - (1 << 63)))
        opts = struct.pack(bo + "HHB3x", 9, 1, resol)
        if rng.random() < 0.7:
            opts += struct.pack(bo + "HHq", 14, 8, offset)
        opts += struct.pack(bo + "HH", 0, 0)
        body = struct.pack(bo + "HHI", rng.choice((1, 0, 101, 113, 276, 228, 229, 0xFFFF)), 0,
                           rng.choice((0, 64, 65535, 262144))) + opts
        blocks.insert(rng.randrange(1, len(blocks) + 1), _block(bo, 1, body))
    elif what == 3 and len(b) >= 28 and struct.unpack_from(bo + "I", b)[0] == 6:
        off = rng.choice((8, 12, 16, 20, 24))                  # EPB: ifid, ts hi/lo, lens
        blocks[i] = b[:off] + struct.pack(bo + "I", _u32(rng)) + b[off + 4:]
    elif what == 4:                                            # a Simple Packet Block
        frame = rng.choice(blocks)[28:28 + rng.randrange(100)]
        body = struct.pack(bo + "I", rng.choice((len(frame), 0, 0xFFFFFFFF))) + frame
        blocks.insert(rng.randrange(len(blocks) + 1), _block(bo, 3, body))
    elif what == 5:                                            # a new section, either order
        obo = rng.choice("<>")
        shb = _block(obo, 0x0A0D0D0A, struct.pack(obo + "IHHq", 0x1A2B3C4D,
                                                  rng.choice((1, 1, 2)), 0, -1))
        blocks.insert(rng.randrange(len(blocks) + 1), shb)
    elif what == 6:                                            # splice / duplicate / drop
        op = rng.randrange(3)
        if op == 0:
            blocks.insert(rng.randrange(len(blocks) + 1), b)
        elif op == 1 and len(blocks) > 1:
            del blocks[i]
        else:
            head, rest = blocks[:1], blocks[1:]
            rng.shuffle(rest)
            blocks = head + rest
    elif what == 7 and len(b) > 28 and struct.unpack_from(bo + "I", b)[0] == 6:
        caplen = struct.unpack_from(bo + "I", b, 20)[0]
        frame = frame_mutate(b[28:28 + caplen], rng)
        blocks[i] = _block(bo, 6, b[8:20] + struct.pack(bo + "II", len(frame), len(frame))
                           + frame)
    elif what == 8 and len(b) >= 28 and struct.unpack_from(bo + "I", b)[0] == 6:
        hi = rng.choice((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32)))
        blocks[i] = b[:12] + struct.pack(bo + "II", hi, rng.getrandbits(32)) + b[20:]
    else:
        return bytes_mutate(b"".join(blocks), rng)
    out = b"".join(blocks)
    if rng.random() < 0.2:
        out = out[:rng.randrange(len(out) + 1)]
    return out


# ------------------------------------------------------------------- frames and bytes

def frame_mutate(frame: bytes, rng: random.Random) -> bytes:
    """A frame with one header field changed where Ethernet + IPv4/IPv6 + TCP would have it
    (type, IHL, lengths, protocol, fragment bits, data offset, flags, options), or cut."""
    if not frame:
        return frame
    b = bytearray(frame)
    offsets = (12, 13, 14, 16, 17, 20, 21, 23, 18, 19, 46, 47, 54, 55, 58)
    for _ in range(rng.randrange(1, 4)):
        off = rng.choice(offsets) if rng.random() < 0.7 else rng.randrange(len(b))
        if off < len(b):
            b[off] = rng.choice((0, 1, 0x40, 0x45, 0x4F, 0x60, 0x81, 0x86, 0xDD, 0xFF, 6, 17,
                                 41, 4, 47, 0x50, 0xF0, rng.randrange(256)))
    if rng.random() < 0.3:
        del b[rng.randrange(len(b) + 1):]
    return bytes(b)


def bytes_mutate(data: bytes, rng: random.Random) -> bytes:
    """Unstructured: flip bits, set bytes, insert or delete a run, cut."""
    b = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        if not b:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            continue
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        elif op == 3:
            del b[i:i + rng.randrange(1, 64)]
        else:
            del b[i:]
    return bytes(b)


# ------------------------------------------------------------------- gzip

def gzip_mutate(data: bytes, rng: random.Random) -> bytes:
    """The (already mutated) capture compressed, then the gzip stream damaged."""
    gz = gzip.compress(data, compresslevel=rng.choice((1, 6, 9)), mtime=0)
    what = rng.randrange(7)
    if what == 0:
        return gz[:rng.randrange(len(gz) + 1)]                 # cut short
    if what == 1:
        return bytes_mutate(gz, rng)                           # damaged
    if what == 2:
        return gz[:-8] + struct.pack("<II", rng.getrandbits(32), len(data))   # bad CRC
    if what == 3:
        return gz + gzip.compress(data[24:], mtime=0)          # a second member
    if what == 4:
        return gz + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    if what == 5:                                              # a bomb: zeros behind a header
        zeros = zlib.compress(data[:24] + bytes(rng.choice((16, 1024, 4096))))
        return gzip.compress(zlib.decompress(zeros), mtime=0)
    return gz


Mutator = Callable[[bytes, random.Random], bytes]


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """One mutation of `seed` (a pcap or pcapng capture), compressed now and then."""
    fmt = pcapng_mutate if seed[:4] == PCAPNG_MAGIC else pcap_mutate
    data = fmt(seed, rng)
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        data = fmt(data, rng) if len(data) >= 24 else bytes_mutate(data, rng)
    if rng.random() < 0.15:
        data = gzip_mutate(data, rng)
    return data
