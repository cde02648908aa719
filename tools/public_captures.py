"""Extract the public captures `tests/test_public_captures.py` compares with tshark, from git
mirrors of their repositories, into one directory (never into this repository).

    python tools/public_captures.py DEST MIRROR_ROOT

MIRROR_ROOT holds one clone (or bare mirror) per repository, named `owner+name/repo` or
`owner/name`; each capture is read at the commit `tests/public_captures.tsv` pins, with
`git show COMMIT:PATH`. Then: TCPFLOW_PUBLIC_CAPTURES=DEST python -m pytest
tests/test_public_captures.py
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

LIST = Path(__file__).resolve().parents[1] / "tests" / "public_captures.tsv"


def _mirror(root: Path, repo: str) -> Path:
    for cand in (root / repo.replace("/", "+") / "repo", root / repo.replace("/", "+"),
                 root / repo):
        if cand.exists():
            return cand
    raise SystemExit("no mirror of %s under %s" % (repo, root))


def main(dest: str, root: str) -> None:
    with open(LIST, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        out = Path(dest) / row["local_path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(["git", "-C", str(_mirror(Path(root), row["repo"])), "show",
                               "%s:%s" % (row["commit"], row["path"])],
                              check=True, capture_output=True).stdout
        out.write_bytes(data)
    print("%d captures in %s" % (len(rows), dest), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
