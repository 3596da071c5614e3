"""`pairs`: n-shot analogies from one task, x1, y1, x2, y2, … (LVM's "pairs" layout).

Each item gives one (x, y) example through its task function (sentence_builders/tasks.py); an
item whose task fails (bad or empty annotation, undecodable photo) is audited on its own and does
not hold its group back. The sentence id hashes the item ids in order, the task and the recipe.

`grouping: dataset` (the default) is LVM's paired script (ytongbai/LVM,
tokenize_examples/tokenize_paired_dataset_muse.py: `np.random.permutation(total_images)
.reshape(-1, n_shots)` for each of `n_epochs`): the planner (uvd/regroup.py) draws a fresh seeded
permutation of the whole dataset every epoch, the first too, cuts it into groups of `pairs` and
leaves the remainder out of that epoch (audited as `remainder`); each unit gets its groups, so every
item is in exactly one sentence per epoch whatever the number of workers. A group whose items failed
to read or to make an example is shorter, never refilled from another group: it is a sentence if it
keeps `min_pairs` examples, else its good items are audited `too_few`. `remainder: tail` (default)
is LVM's: the last `total % pairs` items in sorted order are never used (LVM cuts `total_images`
before permuting); `remainder: fresh` leaves out a different random set each epoch instead.

`grouping: unit` is the earlier behaviour: consecutive good items of a unit (in the source's sorted
order) are grouped `pairs` at a time; a leftover group with at least `min_pairs` examples becomes a
shorter sentence, a smaller one is audited as `too_few`. With `epochs: K` > 1 each further epoch is
a seeded permutation of the unit's good examples (seeded by build seed, dataset, task, epoch and the
unit's item ids), redrawn (up to 16 times) when it would repeat a group of an earlier epoch; a group
that still repeats one is left out, and so is a later epoch's leftover group below `min_pairs`.

Epochs default to LVM's (`default_epochs`; docs/annotations.md has the table with the lines of
LVM's scripts that set them): 5 for every task LVM sends through its paired script (annotations,
pseudo-labels, real input/target pairs) and for inpainting, 2 for colorization, 1 for tasks LVM
does not have. Later epochs' sentence ids add `epoch` to the recipe.
"""
from __future__ import annotations

from typing import Any, Iterable, Literal, Union

import numpy as np
from pydantic import Field

from sentence_builders.tasks import TaskChoice, get_task
from uvd.api import Builder, BuildContext, Grouping
from uvd.errors import reason_of
from uvd.records import Failed, Item, VisualSentence
from sentence_builders.planned_groups import PlannedGroups


class PairsOptions(TaskChoice):
    pairs: int = Field(8, ge=1)  # examples per sentence: 8 pairs = 16 images
    min_pairs: int = Field(2, ge=1)  # a shorter leftover group still makes a sentence from this many
    epochs: int | None = Field(None, ge=1)  # contexts per item; None: default_epochs(task)
    # dataset: groups from a permutation of the whole dataset per epoch (LVM); unit: within a unit
    grouping: Literal["dataset", "unit"] = "dataset"
    # dataset grouping's left-out items: tail = the last total % pairs (LVM); fresh = random per epoch
    remainder: Literal["tail", "fresh"] = "tail"


# LVM's epochs (docs/annotations.md, "Epochs"): its paired script's n_epochs=5 for every task it
# runs (annotations rendered as images, Prismer pseudo-labels, real input/target pairs), its
# inpainting script's 5, its colorization script's 2. Tasks LVM does not have: 1.
PAIRED_SCRIPT_TASKS = ("detection", "pose", "segmentation", "semantic_segmentation", "depth", "normals", "edges",
                       "pseudo_label", "derain", "denoise", "lowlight", "deblur", "stereo", "style", "paired")
EPOCHS: dict[str, int] = {**{t: 5 for t in PAIRED_SCRIPT_TASKS}, "inpainting": 5, "colorization": 2}
REDRAWS = 16


def default_epochs(task: str) -> int:
    return EPOCHS.get(task, 1)


class PairsBuilder(Builder):
    name = "pairs"
    Options = PairsOptions

    def __init__(self, options: PairsOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        self.fn = get_task(options.task, options.task_args)
        self.per_sentence = _per_sentence(options, ctx)
        self.group: list[tuple[str, list[tuple[np.ndarray, bool]]]] = []
        self.epochs = _epochs(options)
        self.held: list[tuple[str, list[tuple[np.ndarray, bool]]]] = []  # every good example, when epochs > 1
        self.planned: PlannedGroups | None = None  # a regrouped unit's groups (start_unit)

    @classmethod
    def grouping(cls, options: PairsOptions, ctx: BuildContext) -> Grouping | None:
        if options.grouping != "dataset":
            return None
        return Grouping(size=_per_sentence(options, ctx), epochs=_epochs(options), key=options.task,
                        remainder=options.remainder)

    def start_unit(self, payload: dict[str, Any]) -> None:
        self.planned = PlannedGroups.of(payload)

    def _example(self, item: Item) -> list[tuple[np.ndarray, bool]]:
        example = self.fn(item, self.ctx, self.ctx.rng(item.item_id, "pairs", self.options.task))
        if len(example) != 2:
            raise ValueError(f"task {self.options.task!r} returned {len(example)} images; pairs needs exactly 2")
        return example

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        if self.planned is not None:
            yield from self.planned.process(item, self._example, self._planned_group)
            return
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

    def _planned_group(self, members: list[tuple[str, Any]], planned: int) -> Iterable[Union[VisualSentence, Failed]]:
        assert self.planned is not None
        epoch = self.planned.epoch
        if len(members) >= min(self.options.min_pairs, self.per_sentence):
            self.group = members
            yield self._sentence(epoch, grouped=True)
            return
        for item_id, _ in members:
            yield Failed(item_id, f"too_few: {len(members)} of the {planned} {self.options.task} "
                                  f"example(s) of its epoch-{epoch} group left < min_pairs={self.options.min_pairs}")

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        if self.planned is not None:
            yield from self.planned.finish(self._planned_group)
            return
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

    def _sentence(self, epoch: int = 0, grouped: bool = False) -> VisualSentence:
        ids = [g[0] for g in self.group]
        images = [img for _, ex in self.group for img, _ in ex]
        lossless = [flag for _, ex in self.group for _, flag in ex]
        self.group = []
        task = self.options.task
        recipe: dict[str, Any] = {"builder": "pairs", "task": task, **({"grouping": "dataset"} if grouped else {}),
                                  **({"epoch": epoch} if epoch else {})}
        return VisualSentence(
            sentence_id=self.ctx.sentence_id(ids, recipe),
            source=self.ctx.dataset, task=task, layout="pairs", images=images, lossless=lossless,
            meta={"dataset": self.ctx.dataset, "task": task, "item_ids": ids, "pairs": len(ids),
                  **({"grouping": "dataset"} if grouped else {}),
                  **({"epoch": epoch, "epochs": self.epochs} if self.epochs > 1 else {})},
            item_ids=ids,
        )


def _per_sentence(options: PairsOptions, ctx: BuildContext) -> int:
    return max(1, min(options.pairs, ctx.max_images // 2))  # never more than the build allows per sentence


def _epochs(options: PairsOptions) -> int:
    return options.epochs if options.epochs is not None else default_epochs(options.task)
