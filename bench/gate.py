"""What the CI gate costs: the policy's counters and the baseline's signatures per connection,
against the analysis that makes the connections.

    python bench/gate.py /tmp/bench10k.pcap [--policy examples/tcpflow-check.toml] [--repeat 5]

The capture is analysed once, in this process, keeping every result (pure Python or compiled,
whichever `analyzer` is imported); then an `Evaluation` of the policy, with baseline
`Signatures`, is fed every result `--repeat` times, and the best time is reported next to the
analysis time: what `--policy ... --baseline ...` adds to a run, per connection and in all.
Writing the JUnit report and the summary is done once per run and not measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from analyzer import analyze, build  # noqa: E402
from analyzer.gate.baseline import Signatures  # noqa: E402
from analyzer.gate.evaluate import Evaluation  # noqa: E402
from analyzer.gate.policy import load_policy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--policy", default=os.path.join(ROOT, "examples", "tcpflow-check.toml"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policy = load_policy(args.policy)
    start = time.perf_counter()
    report = analyze([args.capture])
    analysis = time.perf_counter() - start
    results = list(report.connections)
    best = float("inf")
    for _ in range(args.repeat):
        evaluation = Evaluation(policy, Signatures(policy.examples))
        start = time.perf_counter()
        for r in results:
            evaluation.add(r)
        outcome = evaluation.finish(report)
        best = min(best, time.perf_counter() - start)
    n = len(results)
    print("analyzer: %s (%s)" % (os.path.dirname(sys.modules["analyzer"].__file__), build()))
    print("%d connections; policy %s: %d rules, %d allow entries; %d violated"
          % (n, args.policy, len(policy.rules), len(policy.allows), len(outcome.violations)))
    print("analysis %.2f s (%.1f us a connection); gate %.3f s (%.1f us a connection, "
          "%.1f%% of the analysis)" % (analysis, 1e6 * analysis / n, best, 1e6 * best / n,
                                       100 * best / analysis))


if __name__ == "__main__":
    main()
