"""`single`: one photo per sentence ({image, EOS}), 88.5% of UVDv1."""
from __future__ import annotations

from typing import Iterable

from uvd.api import Builder
from uvd.records import Item, VisualSentence


class SingleBuilder(Builder):
    name = "single"

    def process(self, item: Item) -> Iterable[VisualSentence]:
        image = self.ctx.photo(item.images[0])
        yield VisualSentence(
            sentence_id=self.ctx.sentence_id([item.item_id], {"builder": "single"}),
            source=self.ctx.dataset, task="image", layout="single", images=[image],
            meta={"dataset": self.ctx.dataset, "item_id": item.item_id, **item.provenance},
            item_ids=[item.item_id],
        )
