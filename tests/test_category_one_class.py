"""`category`: every sentence holds images of one class only, whatever order the items arrive in."""
from __future__ import annotations

import numpy as np

from sentence_builders.category import CategoryBuilder, CategoryOptions
from uvd.api import BuildContext
from uvd.records import Failed, Item, VisualSentence

LABELS = {"cat": 37, "dog": 16, "fox": 5, "owl": 1}


def _items() -> list[Item]:
    out = []
    for label, n in LABELS.items():
        for i in range(n):
            # each image's colour encodes its class, so the pixels themselves say which class they are
            img = np.full((40, 40, 3), (list(LABELS).index(label) + 1) * 50, np.uint8)
            out.append(Item(f"{label}/{i:03d}.jpg", "imagenet", images=[img], label=label))
    order = np.random.default_rng(3).permutation(len(out))  # classes interleaved, as a unit may hold them
    return [out[i] for i in order]


def test_every_category_sentence_holds_one_class() -> None:
    b = CategoryBuilder(CategoryOptions(images_per_sentence=8, min_images=2), BuildContext(dataset="imagenet"))
    out: list = []
    for it in _items():
        out += list(b.process(it))
    out += list(b.finish())
    sentences = [o for o in out if isinstance(o, VisualSentence)]
    failed = [o for o in out if isinstance(o, Failed)]
    assert sentences and all(s.task == "category" and s.layout == "sequence" for s in sentences)
    for s in sentences:
        labels = {i.split("/")[0] for i in s.item_ids}
        assert labels == {s.meta["label"]}, s.sentence_id
        colours = {int(img[128, 128, 0]) for img in s.images}
        assert colours == {(list(LABELS).index(s.meta["label"]) + 1) * 50}
        assert 2 <= len(s.images) <= 8
    # every image used once or audited: 37 = 4×8 + 5, 16 = 2×8, 5 → one of 5, the lone owl is too few
    used = [i for s in sentences for i in s.item_ids]
    assert len(used) == len(set(used)) == 37 + 16 + 5
    assert [f.item_id for f in failed] == ["owl/000.jpg"] and failed[0].kind == "too_few"
