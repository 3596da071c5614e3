"""`pairs`: n-shot analogies from one task, x1, y1, x2, y2, … (LVM's "pairs" layout).

Consecutive good items of a unit (in the source's order, which is sorted by the dataset's own
ids) are grouped `pairs` at a time; each item gives one (x, y) example through its task
function (sentence_builders/tasks.py). An item whose task fails (bad or empty annotation,
undecodable photo) is audited on its own and does not hold its group back. At the end of the
unit, a leftover group with at least `min_pairs` examples becomes a shorter sentence; a
smaller one is audited as `too_few` (so inputs = ok + failed still holds).

The sentence id hashes the item ids in order, the task and the recipe, so it is stable.
"""
from __future__ import annotations

from typing import Any, Iterable, Union

import numpy as np
from pydantic import Field, field_validator

from sentence_builders.tasks import check_task_names, get_task
from uvd.api import Builder, BuildContext
from uvd.config import Strict
from uvd.errors import reason_of
from uvd.records import Failed, Item, VisualSentence


class PairsOptions(Strict):
    task: str  # a name in sentence_builders.tasks.TASKS (or "module:function")
    pairs: int = Field(8, ge=1)  # examples per sentence: 8 pairs = 16 images
    min_pairs: int = Field(2, ge=1)  # a shorter leftover group still makes a sentence from this many
    task_args: dict[str, Any] = Field(default_factory=dict)  # keyword options of the task function

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        check_task_names([v])
        return v


class PairsBuilder(Builder):
    name = "pairs"
    Options = PairsOptions

    def __init__(self, options: PairsOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        self.fn = get_task(options.task, options.task_args)
        # Never more pairs than the build allows images per sentence.
        self.per_sentence = max(1, min(options.pairs, ctx.max_images // 2))
        self.group: list[tuple[str, list[tuple[np.ndarray, bool]]]] = []

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        try:
            example = self.fn(item, self.ctx, self.ctx.rng(item.item_id, "pairs", self.options.task))
        except Exception as err:  # bad input ends in the audit; the group goes on
            yield Failed(item.item_id, reason_of(err))
            return
        if len(example) != 2:
            raise ValueError(f"task {self.options.task!r} returned {len(example)} images; pairs needs exactly 2")
        self.group.append((item.item_id, example))
        if len(self.group) == self.per_sentence:
            yield self._sentence()

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        if not self.group:
            return
        if len(self.group) >= min(self.options.min_pairs, self.per_sentence):
            yield self._sentence()
            return
        for item_id, _ in self.group:
            yield Failed(item_id, f"too_few: {len(self.group)} leftover {self.options.task} example(s) "
                                  f"< min_pairs={self.options.min_pairs}")
        self.group = []

    def _sentence(self) -> VisualSentence:
        ids = [g[0] for g in self.group]
        images = [img for _, ex in self.group for img, _ in ex]
        lossless = [flag for _, ex in self.group for _, flag in ex]
        self.group = []
        task = self.options.task
        return VisualSentence(
            sentence_id=self.ctx.sentence_id(ids, {"builder": "pairs", "task": task}),
            source=self.ctx.dataset, task=task, layout="pairs", images=images, lossless=lossless,
            meta={"dataset": self.ctx.dataset, "task": task, "item_ids": ids, "pairs": len(ids)},
            item_ids=ids,
        )
