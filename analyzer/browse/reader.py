"""A stream's ladder read in a child interpreter, so that the browser stays responsive.

A thread would share the interpreter lock with the browser: its keys would wait seconds behind
a long read. The child is a fresh `python` running `main()` below (not a fork of the browser's
threads, nor multiprocessing, whose children import the parent's `__main__` again): it reads
its request (paths, settings, result) pickled on stdin and writes pickled messages on stdout —
("frame", n) now and then, then ("rows", [LadderRow...]) or ("error", "one line"). The browser
kills it when another connection is selected. Its stderr goes nowhere: the screen is there.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
from typing import Any, Callable, List, Optional, Sequence

from analyzer.browse.stream import Cancelled, LadderError, stream_ladder
from analyzer.judge.result import ConnResult, LadderRow
from analyzer.settings import Settings

#: How often the parent looks whether it should stop waiting (seconds).
POLL = 0.05


def ladder_in_process(paths: Sequence[str], settings: Settings, r: ConnResult,
                      on_frame: Optional[Callable[[int], None]] = None,
                      cancelled: Callable[[], bool] = lambda: False) -> List[LadderRow]:
    """`stream_ladder` in a child interpreter; `Cancelled` (the child killed) once
    `cancelled()` says so, `LadderError` if the child fails."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    child = subprocess.Popen(
        [sys.executable, "-c", "from analyzer.browse.reader import main; main()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert child.stdin is not None and child.stdout is not None
    try:
        try:
            child.stdin.write(pickle.dumps((list(paths), settings, r)))
            child.stdin.close()
        except BrokenPipeError:
            pass                                    # it died at once: said below
        while True:
            if cancelled():
                raise Cancelled
            ready, _, _ = select.select([child.stdout], [], [], POLL)
            if not ready:
                continue
            try:
                kind, value = pickle.load(child.stdout)
            except (EOFError, pickle.UnpicklingError):
                raise LadderError("the ladder reader stopped (exit code %s)" % child.wait())
            if kind == "rows":
                return value
            if kind == "error":
                raise LadderError(value)
            if on_frame is not None:
                on_frame(value)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def main() -> None:
    """The child: one request on stdin, messages on stdout."""
    out = sys.stdout.buffer

    def send(message: Any) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        paths, settings, r = pickle.load(sys.stdin.buffer)
        send(("rows", stream_ladder(paths, settings, r, lambda n: send(("frame", n)))))
    except Exception as exc:                        # one line back, never a traceback
        send(("error", str(exc) if isinstance(exc, LadderError)
              else "%s: %s" % (type(exc).__name__, exc)))
