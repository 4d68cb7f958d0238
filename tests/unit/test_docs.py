"""The documents a newcomer reads first: the README's picture shows its source, and no
document sends a reader outside the repository."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PICTURE = REPO / "docs" / "picture"


def test_the_readme_picture_was_drawn_from_its_source_as_it_is_now() -> None:
    """architecture.svg records the hash of the .dot it was drawn from: a changed source
    without `make picture` fails here."""
    source = hashlib.sha256((PICTURE / "architecture.dot").read_bytes()).hexdigest()
    drawn = re.search(r"sha256:([0-9a-f]{64})", (PICTURE / "architecture.svg").read_text())
    assert drawn is not None and drawn.group(1) == source, "run `make picture`"
    assert "docs/picture/architecture.svg" in (REPO / "README.md").read_text()


def test_no_document_links_outside_the_repository() -> None:
    """Every relative link of the README and docs/ resolves to a file of the repository."""
    outside, checked = [], 0
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", doc.read_text()):
            if "://" in target:
                continue
            checked += 1
            path = (doc.parent / target).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                outside.append(f"{doc.relative_to(REPO)}: {target}")
    assert checked > 20, "the reader finds the documents' links"
    assert outside == []
