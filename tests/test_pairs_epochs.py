"""`pairs` re-shuffles a unit into K epochs: each item in K sentences with K different partner sets."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from sentence_builders.pairs import PairsBuilder, PairsOptions, default_epochs
from uvd.api import BuildContext
from uvd.records import Failed, Item, VisualSentence


def items(n: int) -> list[Item]:
    out = []
    for i in range(n):
        x = np.full((32, 32, 3), i, np.uint8)
        out.append(Item(f"img{i:03d}", "p", images=[x, 255 - x], annotations={"paired_task": "derain"}))
    return out


def build(n: int, seed: int = 0, **opts) -> list[VisualSentence | Failed]:
    ctx = BuildContext(dataset="p", seed=seed)
    b = PairsBuilder(PairsOptions(task="derain", **opts), ctx)
    out: list = []
    for it in items(n):
        out += list(b.process(it))
    return out + list(b.finish())


def test_every_item_is_in_five_sentences_with_five_different_partner_sets() -> None:
    out = build(32, pairs=4, epochs=5)
    assert not [o for o in out if isinstance(o, Failed)]
    partners: dict[str, list[frozenset[str]]] = defaultdict(list)
    for s in out:
        assert len(s.item_ids) == 4 and len(s.images) == 8
        for i in s.item_ids:
            partners[i].append(frozenset(s.item_ids) - {i})
    assert len(partners) == 32
    for item_id, sets in partners.items():
        assert len(sets) == 5 and len(set(sets)) == 5, item_id
    assert len({s.sentence_id for s in out}) == len(out) == 40
    assert sorted({s.meta["epoch"] for s in out}) == [0, 1, 2, 3, 4]


def test_epochs_are_deterministic_and_epoch_zero_is_the_one_epoch_build() -> None:
    a, b = build(20, pairs=4, epochs=3), build(20, pairs=4, epochs=3)
    assert [s.sentence_id for s in a] == [s.sentence_id for s in b]
    assert all((x == y).all() for s, t in zip(a, b) for x, y in zip(s.images, t.images))
    one = build(20, pairs=4, epochs=1)
    assert [s.sentence_id for s in one] == [s.sentence_id for s in a if s.meta["epoch"] == 0]
    assert [s.item_ids for s in a if s.meta["epoch"] == 1] != [s.item_ids for s in build(20, seed=1, pairs=4, epochs=3)
                                                               if s.meta["epoch"] == 1]


def test_defaults_follow_lvm_and_a_too_small_unit_gives_no_repeated_group() -> None:
    assert (default_epochs("derain"), default_epochs("inpainting"), default_epochs("colorization"),
            default_epochs("pose"), default_epochs("depth"), default_epochs("instance_segmentation")) == (5, 5, 2, 5, 5, 1)
    out = build(3, pairs=8)  # derain: 5 epochs by default, but 3 items make only one group
    assert len(out) == 1 and out[0].item_ids == ["img000", "img001", "img002"]
    # A leftover below min_pairs is audited only when the item is in no sentence of any epoch.
    out = build(9, pairs=4, min_pairs=2, epochs=2)
    assert not [o for o in out if isinstance(o, Failed)]
    assert {i for s in out for i in s.item_ids} == {f"img{i:03d}" for i in range(9)}
