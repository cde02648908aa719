"""Types of the compiled build's C module analyzer/decode/_flowkey.c (decode/flowkey.py in
Python)."""


def key_of(key: bytes) -> bytes: ...


def reverse_key(key: bytes) -> bytes: ...
