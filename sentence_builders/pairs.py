"""`pairs`: n-shot analogies from one task, x1, y1, x2, y2, … (LVM's "pairs" layout).

Consecutive good items of a unit (in the source's order, which is sorted by the dataset's own
ids) are grouped `pairs` at a time; each item gives one (x, y) example through its task
function (sentence_builders/tasks.py). An item whose task fails (bad or empty annotation,
undecodable photo) is audited on its own and does not hold its group back. At the end of the
unit, a leftover group with at least `min_pairs` examples becomes a shorter sentence; a
smaller one is audited as `too_few` (so inputs = ok + failed still holds).

The sentence id hashes the item ids in order, the task and the recipe, so it is stable.

Re-shuffled contexts (`epochs: K`, as LVM's scripts re-permuted each paired dataset): epoch 0
is the grouping above; each further epoch is a seeded permutation of the unit's good examples
(seeded by build seed, dataset, task, epoch and the unit's item ids, so independent of workers
and order), cut into groups the same way, so an item appears in K sentences with K partner
sets. A permutation that would repeat a group of an earlier epoch is redrawn (up to 16 times,
still seeded); a group that still repeats one (a unit of at most `pairs` items has only one)
is left out. Later epochs' sentence ids add `epoch` to the recipe; epoch 0 keeps the ids of
a one-epoch build. Defaults follow LVM's scripts (our reading of them): 5 for tasks learnt
from real input/target pairs and for inpainting, 2 for colorization, 1 elsewhere. With K > 1
the unit's examples are held until its end (K = 1 streams as before); a leftover group of a
later epoch smaller than `min_pairs` is left out (its items are in every other epoch).
"""
from __future__ import annotations

from typing import Any, Iterable, Union

import numpy as np
from pydantic import Field, field_validator, model_validator

from sentence_builders.tasks import check_task_args, check_task_names, get_task
from uvd.api import Builder, BuildContext
from uvd.config import Strict
from uvd.errors import reason_of
from uvd.records import Failed, Item, VisualSentence


class PairsOptions(Strict):
    task: str  # a name in sentence_builders.tasks.TASKS (or "module:function")
    pairs: int = Field(8, ge=1)  # examples per sentence: 8 pairs = 16 images
    min_pairs: int = Field(2, ge=1)  # a shorter leftover group still makes a sentence from this many
    task_args: dict[str, Any] = Field(default_factory=dict)  # keyword options of the task function
    epochs: int | None = Field(None, ge=1)  # contexts per item; None: default_epochs(task)

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        check_task_names([v])
        return v

    @model_validator(mode="after")
    def _args(self) -> "PairsOptions":
        check_task_args(self.task, self.task_args)  # a missing model file is found when planning
        return self


# LVM's scripts: paired datasets and inpainting 5 epochs, colorization 2, others 1.
EPOCHS: dict[str, int] = {**{t: 5 for t in ("derain", "denoise", "lowlight", "deblur", "stereo", "style", "paired",
                                            "inpainting")}, "colorization": 2}
REDRAWS = 16


def default_epochs(task: str) -> int:
    return EPOCHS.get(task, 1)


class PairsBuilder(Builder):
    name = "pairs"
    Options = PairsOptions

    def __init__(self, options: PairsOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        self.fn = get_task(options.task, options.task_args)
        # Never more pairs than the build allows images per sentence.
        self.per_sentence = max(1, min(options.pairs, ctx.max_images // 2))
        self.group: list[tuple[str, list[tuple[np.ndarray, bool]]]] = []
        self.epochs = options.epochs if options.epochs is not None else default_epochs(options.task)
        self.held: list[tuple[str, list[tuple[np.ndarray, bool]]]] = []  # every good example, when epochs > 1

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        try:
            example = self.fn(item, self.ctx, self.ctx.rng(item.item_id, "pairs", self.options.task))
        except Exception as err:  # bad input ends in the audit; the group goes on
            yield Failed(item.item_id, reason_of(err))
            return
        if len(example) != 2:
            raise ValueError(f"task {self.options.task!r} returned {len(example)} images; pairs needs exactly 2")
        if self.epochs > 1:
            self.held.append((item.item_id, example))
            return
        self.group.append((item.item_id, example))
        if len(self.group) == self.per_sentence:
            yield self._sentence()

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        if self.epochs > 1:
            yield from self._epochs()
            return
        if not self.group:
            return
        if len(self.group) >= min(self.options.min_pairs, self.per_sentence):
            yield self._sentence()
            return
        for item_id, _ in self.group:
            yield Failed(item_id, f"too_few: {len(self.group)} leftover {self.options.task} example(s) "
                                  f"< min_pairs={self.options.min_pairs}")
        self.group = []

    def _epochs(self) -> Iterable[Union[VisualSentence, Failed]]:
        held, self.held = self.held, []
        n, size = len(held), self.per_sentence
        floor = min(self.options.min_pairs, size)
        seen: set[frozenset[str]] = set()
        used: set[str] = set()
        sentences: list[VisualSentence] = []
        unit_key = ",".join(h[0] for h in held)
        for epoch in range(self.epochs):
            order = list(range(n))
            if epoch:
                rng = self.ctx.rng(unit_key, "pairs-epoch", self.options.task, epoch)
                for _ in range(REDRAWS):  # a permutation that repeats an earlier group is drawn again
                    order = rng.permutation(n).tolist()
                    if not any(frozenset(held[i][0] for i in order[s:s + size]) in seen for s in range(0, n, size)):
                        break
            for start in range(0, n, size):
                members = [held[i] for i in order[start:start + size]]
                key = frozenset(m[0] for m in members)
                if len(members) < floor or key in seen:  # the same partners again teach nothing new
                    continue
                seen.add(key)
                used.update(m[0] for m in members)
                self.group = members
                sentences.append(self._sentence(epoch))
        yield from sentences
        for item_id, _ in held:
            if item_id not in used:
                yield Failed(item_id, f"too_few: {n % size} leftover {self.options.task} example(s) "
                                      f"< min_pairs={self.options.min_pairs}")

    def _sentence(self, epoch: int = 0) -> VisualSentence:
        ids = [g[0] for g in self.group]
        images = [img for _, ex in self.group for img, _ in ex]
        lossless = [flag for _, ex in self.group for _, flag in ex]
        self.group = []
        task = self.options.task
        recipe: dict[str, Any] = {"builder": "pairs", "task": task, **({"epoch": epoch} if epoch else {})}
        return VisualSentence(
            sentence_id=self.ctx.sentence_id(ids, recipe),
            source=self.ctx.dataset, task=task, layout="pairs", images=images, lossless=lossless,
            meta={"dataset": self.ctx.dataset, "task": task, "item_ids": ids, "pairs": len(ids),
                  **({"epoch": epoch, "epochs": self.epochs} if self.epochs > 1 else {})},
            item_ids=ids,
        )
