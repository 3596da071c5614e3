"""`tuple`: for one image with k annotations, a random m-subset of the 1 + k images (m ≤ 16).

The annotations are the targets of the tasks listed in `tasks` (each task function returns
the photo first, then its annotation images; the photo is kept once). A task with nothing to
render for this image (BadInput kind `empty`, e.g. pose on a photo without people) is skipped;
any other failure fails the item. With the 1 + k images in canonical order (photo, then the
tasks in the order listed), m is drawn uniformly from [min_images, min(1 + k, max_images)]
and an m-subset chosen, both from ctx.rng(item_id, "tuple"); the subset keeps canonical order
so that the photo, when drawn, comes first. An image with fewer than `min_images` images in
all is audited as `too_few`.

The `task` column is the names of the tasks whose annotations made it into the sentence,
joined by "+" in the listed order (e.g. "detection+pose"); "image" when only the photo did.
"""
from __future__ import annotations

from typing import Any, Iterable, Union

import numpy as np
from pydantic import Field, field_validator, model_validator

from sentence_builders.tasks import check_task_args, check_task_names, get_task
from uvd.api import Builder, BuildContext
from uvd.config import Strict
from uvd.errors import BadInput
from uvd.records import Failed, Item, VisualSentence


class TupleOptions(Strict):
    tasks: list[str] = Field(min_length=1)
    max_images: int = Field(16, ge=1, le=16)
    min_images: int = Field(2, ge=1)
    task_args: dict[str, dict[str, Any]] = Field(default_factory=dict)  # task name → its keyword options

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_task_names(v)
        if len(set(v)) != len(v):
            raise ValueError(f"tasks listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _args(self) -> "TupleOptions":
        for t in self.tasks:  # a missing model file is found when planning
            check_task_args(t, self.task_args.get(t))
        return self


class TupleBuilder(Builder):
    name = "tuple"
    Options = TupleOptions

    def __init__(self, options: TupleOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        self.fns = [(t, get_task(t, options.task_args.get(t))) for t in options.tasks]
        self.max_images = min(options.max_images, ctx.max_images)

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        photo: np.ndarray | None = None
        images: list[tuple[np.ndarray, bool, str]] = []  # (image, lossless, task) after the photo
        skipped: dict[str, str] = {}
        for task, fn in self.fns:
            try:
                example = fn(item, self.ctx, self.ctx.rng(item.item_id, "tuple", task))
            except BadInput as err:
                if err.kind == "empty":
                    skipped[task] = str(err)
                    continue
                raise
            if photo is None:
                photo = example[0][0]
            images += [(img, flag, task) for img, flag in example[1:]]
        pool = ([(photo, False, "")] if photo is not None else []) + images
        if len(pool) < max(2, self.options.min_images) or photo is None:
            why = "; ".join(f"{t}: {r}" for t, r in skipped.items()) or "no annotations"
            yield Failed(item.item_id, f"too_few: {len(pool)} image(s) < min_images={self.options.min_images} ({why})")
            return
        rng = self.ctx.rng(item.item_id, "tuple")
        hi = min(len(pool), self.max_images)
        lo = min(self.options.min_images, hi)
        m = int(rng.integers(lo, hi + 1))
        chosen = sorted(int(i) for i in rng.choice(len(pool), size=m, replace=False))
        picked = [pool[i] for i in chosen]
        tasks_in = [t for t in self.options.tasks if any(p[2] == t for p in picked)]
        task = "+".join(tasks_in) or "image"
        yield VisualSentence(
            sentence_id=self.ctx.sentence_id([item.item_id], {"builder": "tuple", "tasks": self.options.tasks,
                                                              "max_images": self.max_images,
                                                              "min_images": self.options.min_images}),
            source=self.ctx.dataset, task=task, layout="tuple",
            images=[p[0] for p in picked], lossless=[p[1] for p in picked],
            meta={"dataset": self.ctx.dataset, "item_id": item.item_id, "tasks": tasks_in,
                  "chosen": chosen, "available": ["photo"] + [p[2] for p in images], "skipped": sorted(skipped),
                  **item.provenance},
            item_ids=[item.item_id],
        )
