"""A segment's 4-tuple key: decode/_flowkey.c (the compiled build's, one object per 4-tuple)
and decode/flowkey.py (the pure build's) give the bytes a slice gives, and the key seen from
the other end, whatever the C one's cache holds."""

from __future__ import annotations

import random

import pytest

from analyzer.decode import flowkey
from analyzer.decode.iptcp import ip4, ip6
from analyzer.decode.segment import Segment

try:                        # the compiled build's C keys; the pure build has none
    from analyzer.decode import _flowkey
except ImportError:
    _flowkey = None


def _impl(name):
    if name == "c" and _flowkey is None:
        pytest.skip("the pure-Python build has no C keys")
    return flowkey if name == "python" else _flowkey


def _reversed(key: bytes) -> bytes:
    n = (len(key) - 4) // 2
    return key[n:2 * n] + key[:n] + key[2 * n + 2:2 * n + 4] + key[2 * n:2 * n + 2]


@pytest.mark.parametrize("impl", ["python", "c"])
def test_keys_are_themselves_and_their_reverse_through_a_full_cache(impl):
    # 300,000 keys (the C cache holds 65,536), IPv4 and IPv6 sizes, each given again later
    # (in the cache or evicted since) and reversed: always the same bytes.
    m = _impl(impl)
    rng = random.Random(16)
    keys = [rng.randbytes(rng.choice((12, 36))) for _ in range(150_000)]
    keys += keys[:1000]
    keys += [k[:-4] + bytes(4) for k in keys[:50_000]]        # same addresses, other ports
    for i, key in enumerate(keys):
        buf = rng.randbytes(i % 7) + key + rng.randbytes(3)
        got = m.key_of(buf[i % 7:i % 7 + len(key)])
        assert type(got) is bytes and got == key
        rev = m.reverse_key(got)
        assert type(rev) is bytes and rev == _reversed(key)
        assert m.reverse_key(rev) == key
    for key in keys[:-200_000:-7]:                           # again, from the end
        assert m.key_of(bytes(key)) == key


@pytest.mark.parametrize("impl", ["python", "c"])
def test_what_is_no_4_tuple_key_is_what_slices_give(impl):
    # Another type, longer bytes (given back as they are); lengths that are no two addresses
    # and two ports (reversed as decode/flowkey.py's slices reverse them).
    m = _impl(impl)
    data = bytes(range(100))
    for key in (bytearray(data[:12]), data, data[:40], b""):
        assert m.key_of(key) == key and type(m.key_of(key)) is type(key)
    for size in range(0, 60):
        assert m.reverse_key(data[:size]) == flowkey.reverse_key(data[:size]), size


def test_the_c_keys_are_one_object_per_4_tuple():
    # What the flow table gains (its dict finds the key by identity, its hash already made):
    # equal bytes give the same object, from a packet or from the reverse of its reply's.
    m = _impl("c")
    a = bytes((10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 80))
    b = bytes((10, 0, 0, 2, 10, 0, 0, 1, 0, 80, 0x30, 0x39))
    k = m.key_of((b"xx" + a)[2:])
    assert m.key_of((b"y" + a)[1:]) is k
    assert m.reverse_key(b) is k
    assert m.reverse_key(k) == b and m.reverse_key(k) is m.key_of(bytes(b))


@pytest.mark.parametrize("version", [4, 6])
def test_the_decoders_key_is_the_4_tuple_and_its_reply_the_reverse(version):
    # The fast paths' key (`_key_at`) against the key Segment makes from the fields.
    if version == 4:
        ip = bytes((0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7))
        src, dst = ip[12:16], ip[16:20]
    else:
        src = bytes.fromhex("20010db8000000000000000000000001")
        dst = bytes.fromhex("20010db8000000000000000000000002")
        ip = bytes((0x60, 0, 0, 0, 0, 20, 6, 64)) + src + dst
    tcp = bytes((0xC0, 0x01, 0x01, 0xBB)) + bytes(8) + bytes((0x50, 0x12, 0xFF, 0xFF)) + bytes(4)
    seg = (ip4 if version == 4 else ip6)(b"\xee" * 5 + ip + tcp, 5)
    assert isinstance(seg, Segment)
    want = Segment(src, dst, 0xC001, 443, 0, 0, 0x12, 0xFFFF, 0).key
    assert seg.key == want and (seg.src, seg.dst, seg.sport, seg.dport) == (src, dst, 0xC001, 443)
    rev = Segment(dst, src, 443, 0xC001, 0, 0, 0x10, 0xFFFF, 0).key
    assert flowkey.reverse_key(seg.key) == rev
