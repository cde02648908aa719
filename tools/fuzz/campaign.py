"""A seeded fuzz campaign: mutate the seed captures, check every input, keep what fails.

    python -m tools.fuzz.campaign --inputs 1000000 --seed 1 --failures /tmp/fuzz-failures

Every `--cli-every`-th input also goes through the CLI's own entry in process (`--format`
chosen at random), every `--text-every`-th through the terminal renderer. The run prints
one line of counts at the end (and every `--every` inputs): inputs, outcomes (not a
capture / read with warnings / clean), CLI exit codes, and failures. Each failing input is
written to the failures directory as `<seed>-<n>.cap` with the property it broke in
`<seed>-<n>.txt`; tests/regressions/ keeps every such input (tests/test_fuzz.py runs them).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
from typing import Counter, Dict, List, Optional

from tools.fuzz.harness import Failure, check, scratch_dir, seeds
from tools.fuzz.mutators import mutate


def run(inputs: int, seed: int, failures: Optional[str] = None, cli_every: int = 50,
        text_every: int = 200, every: int = 0) -> Dict[str, object]:
    """Run `inputs` mutated captures from `seed`; the counts (and the failures' messages)."""
    rng = random.Random(seed)
    corpus = seeds()
    outcomes: Counter[str] = collections.Counter()
    exits: Counter[int] = collections.Counter()
    failed: List[str] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tcpflow-fuzz-", dir=scratch_dir()) as work:
        path = os.path.join(work, "input.cap")
        for n in range(inputs):
            data = mutate(rng.choice(corpus), rng)
            check_rng = random.Random(rng.getrandbits(32))
            try:
                outcome = check(data, path, check_rng, cli=cli_every > 0 and n % cli_every == 0,
                                text=text_every > 0 and n % text_every == 0)
            except Failure as exc:
                failed.append("input %d: %s" % (n, exc))
                if failures:
                    os.makedirs(failures, exist_ok=True)
                    stem = os.path.join(failures, "%d-%d" % (seed, n))
                    with open(stem + ".cap", "wb") as fh:
                        fh.write(data)
                    with open(stem + ".txt", "w") as fh:
                        fh.write(str(exc) + "\n")
                continue
            kind, _, code = outcome.partition(":")
            outcomes[kind] += 1
            if code:
                exits[int(code)] += 1
            if every and (n + 1) % every == 0:
                print(_line(n + 1, outcomes, exits, failed, start), file=sys.stderr, flush=True)
    return {"inputs": inputs, "outcomes": dict(outcomes), "exits": dict(sorted(exits.items())),
            "failures": failed, "seconds": round(time.monotonic() - start, 1)}


def _line(n: int, outcomes: Counter[str], exits: Counter[int], failed: List[str],
          start: float) -> str:
    return ("%d inputs in %.0f s: %s; CLI exits %s; %d failures"
            % (n, time.monotonic() - start, dict(outcomes), dict(sorted(exits.items())),
               len(failed)))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--failures", default=None, help="directory for failing inputs")
    ap.add_argument("--cli-every", type=int, default=50)
    ap.add_argument("--text-every", type=int, default=200)
    ap.add_argument("--every", type=int, default=100_000, help="progress line period")
    args = ap.parse_args(argv)
    result = run(args.inputs, args.seed, args.failures, args.cli_every, args.text_every,
                 args.every)
    for line in result["failures"]:           # type: ignore[union-attr]
        print(line)
    print("seed %d: %d inputs in %s s; outcomes %s; CLI exits %s; %d failures"
          % (args.seed, result["inputs"], result["seconds"], result["outcomes"],
             result["exits"], len(result["failures"])))   # type: ignore[arg-type]
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
