"""`video`: one `sequence` sentence per planned clip of a video (frames in time order)."""
from __future__ import annotations

from typing import Iterable

from uvd.api import Builder
from uvd.errors import BadInput
from uvd.records import Item, VisualSentence


class VideoClipBuilder(Builder):
    name = "video"

    def process(self, item: Item) -> Iterable[VisualSentence]:
        clips = item.annotations.get("clips")
        if not clips:
            raise BadInput("input", "video items need annotations['clips'] (use source: video)")
        position = {idx: k for k, idx in enumerate(item.annotations["frame_indices"])}
        for clip in clips:
            indices = clip["indices"]
            if len(indices) > self.ctx.max_images:
                raise BadInput("too_long", f"clip of {len(indices)} frames > max_images {self.ctx.max_images}")
            recipe = {"builder": "video", "stride": clip["requested_stride"], "start": clip["start"],
                      "indices": indices}
            yield VisualSentence(
                sentence_id=self.ctx.sentence_id([item.item_id], recipe),
                source=self.ctx.dataset, task=item.annotations.get("task", "video"), layout="sequence",
                images=[self.ctx.photo(item.images[position[i]]) for i in indices],
                meta={"dataset": self.ctx.dataset, "item_id": item.item_id, **item.provenance,
                      "frame_indices": indices, "stride": clip["stride"],
                      "requested_stride": clip["requested_stride"], "start": clip["start"], "seed": self.ctx.seed},
                item_ids=[item.item_id],
            )
