"""Optional checksum validation (`--checksums`): IPv4 header and TCP checksums.

Off by default: captures taken on the sending host hold packets before the NIC computed their
checksums (offload), so most outgoing checksums look wrong. Only whole packets can be checked:
a frame cut by the snaplen, a fragment (the segment of a reassembled datagram), or an IPv6
packet with extension headers, is not judged.
"""

from __future__ import annotations

import struct
from typing import Final, Optional

_ETHERTYPE_IP: Final = {0x0800: 4, 0x86DD: 6}
_VLAN: Final = (0x8100, 0x88A8, 0x9100)


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`: 0 when `data` holds a right checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip_offset(linktype: int, buf: bytes) -> Optional[int]:
    """Where the IP header starts, for the link types where that is simple."""
    if linktype == 1:
        off, etype = 14, struct.unpack_from("!H", buf, 12)[0] if len(buf) >= 14 else 0
        while etype in _VLAN and len(buf) >= off + 4:
            etype = struct.unpack_from("!H", buf, off + 2)[0]
            off += 4
        return off if etype in _ETHERTYPE_IP else None
    if linktype in (0, 108):
        return 4
    if linktype in (12, 14, 101, 228, 229):
        return 0
    if linktype == 113:
        return 16
    if linktype == 276:
        return 20
    return None


def checksums_ok(linktype: int, buf: bytes) -> Optional[bool]:
    """True if the IPv4 header and TCP checksums are right, False if one is wrong, None when
    the frame cannot be judged (cut short, unusual layout)."""
    off = _ip_offset(linktype, buf)
    if off is None or len(buf) < off + 20:
        return None
    ver = buf[off] >> 4
    if ver == 4:
        ihl = (buf[off] & 15) * 4
        total = struct.unpack_from("!H", buf, off + 2)[0]
        if len(buf) < off + total or buf[off + 9] != 6 or total < ihl + 20 or \
                buf[off + 6] & 0x3F or buf[off + 7]:    # a fragment: not the whole segment
            return None
        if inet_checksum(buf[off:off + ihl]) != 0:
            return False
        tcp = buf[off + ihl:off + total]
        pseudo = buf[off + 12:off + 20] + struct.pack("!BBH", 0, 6, len(tcp))
    elif ver == 6:
        if len(buf) < off + 40 or buf[off + 6] != 6:
            return None
        plen = struct.unpack_from("!H", buf, off + 4)[0]
        if len(buf) < off + 40 + plen:
            return None
        tcp = buf[off + 40:off + 40 + plen]
        pseudo = buf[off + 8:off + 40] + struct.pack("!IxxxB", len(tcp), 6)
    else:
        return None
    return inet_checksum(pseudo + tcp) == 0
