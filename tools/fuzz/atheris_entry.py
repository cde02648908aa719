"""Coverage-guided fuzzing with atheris (optional: `pip install atheris`; not a dependency).

    python -m tools.fuzz.atheris_entry -atheris_runs=1000000 [corpus_dir]

Without a corpus directory, it starts from the harness's seed captures (written to a new
temporary directory, which then gathers what the run finds).

Each input is a capture's bytes, checked by `tools.fuzz.harness.check` (the readers, the
truncation property, both decoder paths, the analysis and every renderer). A broken property
raises, and atheris keeps the input (crash-*) and stops.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["analyzer"]):
    from tools.fuzz.harness import check, seeds

_WORK = tempfile.mkdtemp(prefix="tcpflow-atheris-")
_PATH = os.path.join(_WORK, "input.cap")


def test_one_input(data: bytes) -> None:
    check(data, _PATH, random.Random(len(data)))


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="tcpflow-atheris-corpus-")
        for n, data in enumerate(seeds()):
            with open(os.path.join(corpus, "seed%d.cap" % n), "wb") as fh:
                fh.write(data)
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
