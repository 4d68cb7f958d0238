"""Draw docs/picture/architecture.svg from architecture.dot (`make picture`).

The SVG records the SHA-256 of the source it was drawn from, so a test can tell
a picture that no longer shows its source (tests/unit/test_docs.py).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "architecture.dot"
PICTURE = HERE / "architecture.svg"


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def stamp() -> str:
    return f"<!-- drawn from docs/picture/architecture.dot sha256:{source_hash()} -->"


def main() -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("Graphviz's dot is needed: apt-get install graphviz", file=sys.stderr)
        return 1
    drawn = subprocess.run([dot, "-Tsvg", str(SOURCE)], capture_output=True, text=True, check=True)
    head, sep, rest = drawn.stdout.partition("<svg")
    PICTURE.write_text(head + stamp() + "\n" + sep + rest)
    print(f"drew {PICTURE.relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
