"""`category`: sequences of up to 16 images of the same class, as LVM built from ImageNet."""
from __future__ import annotations

from typing import Iterable, Union

import numpy as np
from pydantic import Field

from uvd.api import Builder
from uvd.config import Strict
from uvd.records import Failed, Item, VisualSentence


class CategoryOptions(Strict):
    images_per_sentence: int = Field(16, ge=2)
    min_images: int = Field(2, ge=1)  # a class with fewer good images makes no sentence


class CategoryBuilder(Builder):
    """Collects a unit's images by label, shuffles each class with a generator seeded by the
    label (not by order), and cuts it into sentences; every image is used once."""

    name = "category"
    Options = CategoryOptions

    def __init__(self, options: CategoryOptions, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(options, ctx)
        self.by_label: dict[str, list[tuple[str, np.ndarray]]] = {}

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        if not item.label:
            yield Failed(item.item_id, "no_label: category sentences need a class label (a sub-folder)")
            return
        self.by_label.setdefault(item.label, []).append((item.item_id, self.ctx.photo(item.images[0])))

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        n = min(self.options.images_per_sentence, self.ctx.max_images)
        for label in sorted(self.by_label):
            members = sorted(self.by_label[label], key=lambda m: m[0])
            if len(members) < self.options.min_images:
                for item_id, _ in members:
                    yield Failed(item_id, f"too_few: class {label!r} has {len(members)} < {self.options.min_images} images")
                continue
            order = self.ctx.rng(f"category:{label}:" + ",".join(m[0] for m in members)).permutation(len(members))
            shuffled = [members[i] for i in order]
            for start in range(0, len(shuffled), n):
                group = shuffled[start:start + n]
                if len(group) < self.options.min_images:  # a lone leftover joins no sentence
                    for item_id, _ in group:
                        yield Failed(item_id, f"too_few: leftover of class {label!r} after full sentences")
                    continue
                ids = [g[0] for g in group]
                yield VisualSentence(
                    sentence_id=self.ctx.sentence_id(ids, {"builder": "category", "label": label}),
                    source=self.ctx.dataset, task="category", layout="sequence",
                    images=[g[1] for g in group],
                    meta={"dataset": self.ctx.dataset, "label": label, "item_ids": ids},
                    item_ids=ids,
                )
        self.by_label.clear()
