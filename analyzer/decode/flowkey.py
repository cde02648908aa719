"""`key_of(key)` (a segment's 4-tuple key as the decoder sliced it) and `reverse_key(key)` (the
same 4-tuple seen from the other end), in Python: what the pure-Python build runs. The compiled
build has them in C (analyzer/decode/_flowkey.c, where the reasons are), which returns one
object per 4-tuple where this returns the key it is given or a new one: equal bytes, so the
same results (tests/test_flowkey.py)."""

from __future__ import annotations


def key_of(key: bytes) -> bytes:
    return key


def reverse_key(key: bytes) -> bytes:
    n = (len(key) - 4) >> 1
    return key[n:2 * n] + key[:n] + key[2 * n + 2:] + key[2 * n:2 * n + 2]
