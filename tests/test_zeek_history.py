"""Zeek histories of odd flag sequences, against the histories the string-appending view wrote
(main at a8df600, before histories were a table's states: tcp/zeekmachine.py `add`).

`cases` makes the same connections every time (a seeded generator): every mix of SYN, SYN-ACK,
ACK, data, FIN, RST and their odd combinations (SYN+FIN, SYN+RST, FIN+RST, ...), from either
side, repeated at the same or another sequence number, retransmitted, with zero windows, bad
checksums and cut payloads, from a likely server port or not (flips, `^`). So the letters'
rules are all on it: S H F R again only at a new sequence number, A D I Q once a direction, T W
G C at the 1st, 10th, 100th ..., the case of each direction and the rewritten history of a late
flip. tests/data/zeek_histories.txt holds that code's (conn_state, history) of each, one line
each; the run is a fresh interpreter's, so that its table of histories starts empty and fills
past its bound (`_STATES_MAX`): the histories made beyond it are right too.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

from analyzer.decode.frames import decode_frame
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN
from analyzer.testing.synth import Dialog, frame
from analyzer.tcp.zeek import ZeekView

EXPECTED = Path(__file__).parent / "data" / "zeek_histories.txt"
#: Connections in the run, and the seed.
COUNT = 2500
SEED = 1608

#: The flags a packet may carry, with how often (weights).
_FLAGS = [(SYN, 3), (SYN | ACK, 3), (ACK, 8), (PSH | ACK, 8), (FIN | ACK, 4), (FIN, 1),
          (RST, 2), (RST | ACK, 2), (SYN | FIN, 1), (SYN | RST, 1), (FIN | RST, 1),
          (FIN | RST | ACK, 1), (SYN | FIN | ACK, 1), (PSH | ACK | FIN, 1), (0, 1)]


def _dialog(rng: random.Random, n: int) -> Tuple[Dialog, str, set, set]:
    d = Dialog(server=(("10.0.0.2", 80) if n % 3 else ("10.0.0.2", 5000)),
               isn=(rng.choice((1000, 0xFFFFFF00, 0x7FFFFFF0)), rng.choice((5000, 0xFFFFFFF0))))
    if n % 4:
        d.handshake()
    flags = [f for f, _ in _FLAGS]
    weights = [w for _, w in _FLAGS]
    for _ in range(rng.randrange(1, 24)):
        side = rng.choice("cs")
        f = rng.choices(flags, weights)[0]
        length = rng.choice((0, 0, 1, 100)) if f & (PSH | FIN | SYN | RST) or not f else 0
        if f == PSH | ACK and not length:
            length = 100
        r = rng.random()
        if r < 0.12:                                   # again, at the same sequence number
            d.send(side, f, length, seq=d.nxt[side] - length, advance=False)
        elif r < 0.2:                                  # at another one (a loss before it)
            d.send(side, f, length, seq=d.nxt[side] + rng.choice((40, 100000)))
        elif r < 0.26:                                 # a zero window
            d.send(side, f, length, win=0)
        elif r < 0.3:                                  # acknowledging old data
            d.send(side, f | ACK, length, ack=d.nxt["s" if side == "c" else "c"] - 200)
        else:
            d.send(side, f, length)
        if r > 0.97:                                   # a burst of retransmissions (T, t)
            for _ in range(rng.choice((9, 10, 11))):
                d.send(side, PSH | ACK, 10, seq=d.nxt[side] - 10, advance=False)
    orig = "c" if n % 5 else "s"
    cut = {i for i in range(len(d.packets)) if rng.random() < 0.04}
    bad = {i for i in range(len(d.packets)) if rng.random() < 0.03}
    return d, orig, cut, bad


def cases(count: int = COUNT, seed: int = SEED) -> Iterator[Tuple[Dialog, str, set, set]]:
    """The run's connections: (dialog, our originator's side, cut packets, bad checksums)."""
    rng = random.Random(seed)
    for n in range(count):
        yield _dialog(rng, n)


def labels() -> List[str]:
    """`conn_state history` of each of the run's connections, one text each."""
    out = []
    for d, orig, cut, bad in cases():
        view = ZeekView()
        for i, (_, ip, side) in enumerate(d.packets):
            seg = decode_frame(1, frame(ip))
            assert not isinstance(seg, str), seg
            view.segment(side == orig, seg, payload_captured=i not in cut,
                         bad_checksum=i in bad)
        state, history = view.finish(d.packets[0][2] == orig)
        out.append("%s %s" % (state, history))
    return out


if __name__ == "__main__":          # (how the expected file was written, and the test's run)
    sys.stdout.write("\n".join(labels()) + "\n")


def test_histories_of_odd_flag_sequences_are_the_appending_views():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    script = ("import sys, runpy; sys.path.insert(0, %r); "
              "m = runpy.run_path(%r); sys.stdout.write('\\n'.join(m['labels']()) + '\\n'); "
              "from analyzer.tcp import zeekmachine as z; "
              "sys.stderr.write(str(len(z._HISTORIES)))" % (str(Path(__file__).parent),
                                                            __file__))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    expected = EXPECTED.read_text().splitlines()
    assert len(got) == len(expected) == COUNT
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, (n, a, b)
    # The run filled the table of histories: some were written beyond its bound.
    from analyzer.tcp import zeekmachine
    assert int(done.stderr) == zeekmachine._STATES_MAX
