"""Coverage-guided fuzzing with atheris (optional: `pip install atheris`; not a dependency).

    python -m tools.fuzz.atheris_entry -atheris_runs=1000000 [corpus_dir]

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
    from tools.fuzz.harness import check

_WORK = tempfile.mkdtemp(prefix="tcpflow-atheris-")
_PATH = os.path.join(_WORK, "input.cap")


def test_one_input(data: bytes) -> None:
    check(data, _PATH, random.Random(len(data)))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
