"""uvd.dedup.first_wins: the first occurrence of each key is kept whatever the partitioning,
the number of map tasks or the order of the inputs (in-process; the Ray path runs the same code)."""
from __future__ import annotations

import random

import pytest

from uvd.dedup import first_wins


def _keys(chunk: list[tuple[int, int, str]]):
    for order, row, key in chunk:
        yield key, (order, row), f"id-{order}-{row}"


def _brute(chunks):
    seen, dropped = {}, []
    for order, row, key in sorted(t for c in chunks for t in c):
        if key in seen:
            dropped.append(((order, row), f"id-{order}-{row}", seen[key], key))
        else:
            seen[key] = f"id-{order}-{row}"
    return dropped


@pytest.mark.parametrize("partitions, map_tasks", [(1, 1), (3, 2), (16, 5), (7, 64)])
def test_same_answer_for_any_partitioning_and_input_order(partitions, map_tasks):
    rng = random.Random(0)
    chunks = [[(c, r, f"k{rng.randrange(40)}") for r in range(10)] for c in range(12)]
    expected = _brute(chunks)
    assert expected  # there are repeats to find
    shuffled = chunks[:]
    rng.shuffle(shuffled)
    assert first_wins(shuffled, _keys, partitions, map_tasks) == expected
