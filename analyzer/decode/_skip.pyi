"""Types of the compiled build's C module analyzer/decode/_skip.c (the protocol is stated there)."""

from typing import Final, Tuple

MAX_COUNT: Final[int]


class Skipper:
    frames: int
    last: int
    back: int
    lo: int
    hi: int

    def __init__(self, linktype: int, count: int, mine: int, le: bool, limit: int,
                 frac_ns: int) -> None: ...

    def run(self, buf: bytes, pos: int, span: int) -> Tuple[bytes, int, int, bool]: ...

    def sync(self, frames: int, last: int) -> None: ...


def part(linktype: int, buf: bytes, start: int, end: int, count: int) -> int: ...
