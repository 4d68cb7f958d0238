"""Where a store starts reading its changelog partition (its checkpoint against the
partition's first and end offsets), without a broker; restore and standby copies on a
broker are in tests/integration/test_stage.py."""

from __future__ import annotations

import pytest

from streams.core.recovery import Start, where_to_start


@pytest.mark.parametrize(
    ("checkpoint", "first", "end", "start"),
    [
        (0, 0, 0, Start.RESUME),  # a new store, an empty changelog
        (0, 0, 120, Start.RESUME),  # a new store reads it all
        (57, 0, 120, Start.RESUME),  # a store behind reads on
        (120, 0, 120, Start.RESUME),  # at the end: nothing to read
        (120, 120, 120, Start.RESUME),  # everything deleted, but nothing it lacks
        (121, 0, 120, Start.AHEAD),  # past the end: a re-created changelog
        (57, 80, 120, Start.TRUNCATED),  # records it never applied were deleted
        (0, 1, 120, Start.TRUNCATED),  # a new store, the first record gone
    ],
)
def test_a_store_reads_on_only_from_inside_its_changelog(
    checkpoint: int, first: int, end: int, start: Start
) -> None:
    """A checkpoint inside [first, end] resumes; past the end the store is ahead of a
    re-created changelog; before the first offset the records it lacks are gone."""
    assert where_to_start(checkpoint, first, end) is start
