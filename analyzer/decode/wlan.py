"""Wi-Fi: 802.11 frames, bare or behind a radiotap, PPI, Prism or AVS capture header, down
to the LLC/SNAP ethertype (then `analyzer.decode.linklayer` reads on).

Rule: only data frames carry TCP. Management and control frames and null-data frames are
`not_ip`; a frame with the Protected bit is encrypted (WEP, WPA, WPA2/3 data) and skipped as
`wlan_protected`: its payload cannot be read without the keys. Of an A-MSDU (several subframes
in one QoS data frame) the first subframe is read: one frame is one segment.

The radiotap header is read with dpkt (`dpkt.radiotap`): its present-field bitmaps can be
extended and each field has its own alignment, which dpkt already walks; only the Flags field
matters here (bit 0x20: padding between the 802.11 header and the payload). dpkt's silent
fallbacks are guarded: a header dpkt cannot read (or whose Flags field would lie past the
header length it states) is `bad_link_header`, never a guess. The 802.11 frame itself is read
by `ieee80211_at` here: dpkt's `ieee80211` raises on QoS data with an HT Control field,
A-MSDUs and several data subtypes, and keeps undecoded LLC payloads as raw bytes, while the
data-frame header is a few fixed fields.

Link types: 105 IEEE802_11, 119 PRISM_HEADER (also AVS headers, as Wireshark reads them),
127 IEEE802_11_RADIOTAP, 163 IEEE802_11_AVS, 192 PPI (802.11 or Ethernet inside).
"""

from __future__ import annotations

from typing import Final

from analyzer.decode.iptcp import Layer
from analyzer.decode.linklayer import ethernet_at, ethertype_at

_DATAPAD: Final = 0x20      # radiotap Flags: the 802.11 header is padded to 32 bits
_AVS_MAGIC: Final = b"\x80\x21\x10\x01"


def ieee80211_at(buf: bytes, off: int, datapad: bool) -> Layer:
    """An 802.11 frame at `off` (without capture header): a data frame's LLC/SNAP payload."""
    n = len(buf)
    if n < off + 24:
        return "truncated_link"
    fc, flags = buf[off], buf[off + 1]
    if fc & 3:
        return "bad_link_header"                # protocol version other than 0
    if fc >> 2 & 3 != 2:
        return "not_ip"                         # management, control, extension
    subtype = fc >> 4
    if subtype & 4:
        return "not_ip"                         # null data, QoS null: no payload
    hl = 30 if flags & 3 == 3 else 24           # four addresses between access points
    amsdu = False
    if subtype & 8:                             # QoS data: QoS control, HT control
        if n < off + hl + 2:
            return "truncated_link"
        amsdu = bool(buf[off + hl] & 0x80)
        hl += 6 if flags & 0x80 else 2
    if flags & 0x40:
        return "wlan_protected"
    p = off + ((hl + 3) & ~3 if datapad else hl)
    if amsdu:
        p += 14                                 # the first subframe's DA, SA and length
    return llc_at(buf, p)


def llc_at(buf: bytes, p: int) -> Layer:
    """An 802.2 LLC header with SNAP (AA AA 03, OUI 0 or 00-00-F8) and its ethertype."""
    if len(buf) < p + 8:
        return "truncated_link"
    if buf[p] != 0xAA or buf[p + 1] != 0xAA or buf[p + 2] != 3:
        return "not_ip"
    return ethertype_at(buf, buf[p + 6] << 8 | buf[p + 7], p + 8)


def ieee80211(buf: bytes) -> Layer:
    """LINKTYPE_IEEE802_11 (105): 802.11 frames without a capture header (no FCS)."""
    return ieee80211_at(buf, 0, False)


def radiotap(buf: bytes) -> Layer:
    """LINKTYPE_IEEE802_11_RADIOTAP (127): a radiotap header, then the 802.11 frame."""
    if len(buf) < 8:
        return "truncated_link"
    length = buf[2] | buf[3] << 8
    if buf[0] or length < 8:
        return "bad_link_header"
    if len(buf) < length:
        return "truncated_link"
    flags = radiotap_flags(buf[:length])
    if flags < 0:
        return "bad_link_header"
    return ieee80211_at(buf, length, bool(flags & _DATAPAD))


def radiotap_flags(header: bytes) -> int:
    """The radiotap Flags field of a whole radiotap header (0 when absent), read by dpkt;
    -1 when dpkt cannot read the header or places the field outside it. (dpkt is imported
    here, when a radiotap capture is read: importing it costs 35 ms.)"""
    import dpkt
    from dpkt.radiotap import Radiotap
    try:
        rt = Radiotap(header)
    except (dpkt.Error, ValueError, IndexError, KeyError):
        return -1
    if not rt.flags_present:
        return 0
    # dpkt reads fields from the bytes after the bitmaps without checking the header length
    # it was given: the field must lie inside the header (the TSFT field, 8 bytes aligned to 8,
    # may come first).
    start = 4 + len(rt.present_flags)
    if rt.tsft_present:
        start = ((start + 7) & ~7) + 8
    if start >= len(header) or not isinstance(getattr(rt, "flags", None), Radiotap.Flags):
        return -1
    return rt.flags.val


def ppi(buf: bytes) -> Layer:
    """LINKTYPE_PPI (192): version 0, flags, header length, then the link type inside
    (105 802.11, 1 Ethernet); lengths little-endian."""
    if len(buf) < 8:
        return "truncated_link"
    length = buf[2] | buf[3] << 8
    dlt = buf[4] | buf[5] << 8 | buf[6] << 16 | buf[7] << 24
    if buf[0] or length < 8:
        return "bad_link_header"
    if len(buf) < length:
        return "truncated_link"
    if dlt == 105:
        return ieee80211_at(buf, length, False)
    if dlt == 1:
        return ethernet_at(buf, length)
    return "unsupported_linktype"


def prism(buf: bytes) -> Layer:
    """LINKTYPE_PRISM_HEADER (119): a 144-byte Prism header (its length at offset 4, little-
    endian), or an AVS header, then the 802.11 frame."""
    if buf[:4] == _AVS_MAGIC:
        return avs(buf)
    if len(buf) < 8:
        return "truncated_link"
    length = buf[4] | buf[5] << 8 | buf[6] << 16 | buf[7] << 24
    if length < 8 or length > 4096:
        return "bad_link_header"
    return ieee80211_at(buf, length, False)


def avs(buf: bytes) -> Layer:
    """LINKTYPE_IEEE802_11_AVS (163): AVS header (version, then its length, big-endian)."""
    if len(buf) < 8:
        return "truncated_link"
    length = buf[4] << 24 | buf[5] << 16 | buf[6] << 8 | buf[7]
    if length < 8 or length > 4096:
        return "bad_link_header"
    return ieee80211_at(buf, length, False)
