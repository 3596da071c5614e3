"""`multitask`: LVM's multi-task sentences (ytongbai/LVM, tokenize_examples/tokenize_multi_datasets_muse.py).

LVM matched, per image, its photo and four Prismer pseudo-labels (normal, edge, depth, coloured
segmentation; only images with all five), drew `np.random.permutation(total_images)
.reshape(-1, n_shots)` with n_shots=3 for each of n_epochs=5, and with `shuffle_tasks` permuted the
modality order once per sentence, the same order for all its shots: a sentence is
shot1 (m_a, m_b, …), shot2 (m_a, m_b, …), shot3 (…), 15 images.

Here each item's modalities are its photo (`photo: true`) and one image of each listed task
(`tasks: [{name, task, task_args, image}]`: its target by default, e.g. four `pseudo_label`
models or ground-truth tasks; `image: 0` takes a generated input such as colorization's grey); a
task that fails for an image leaves that modality out for it (its reason in the sentence meta).
Groups come from the planner's dataset-wide permutation per epoch (`grouping: dataset`, as
`pairs`; uvd/regroup.py), or consecutive items of a unit (`grouping: unit`). A sentence uses the
modalities every shot of its group has, in an order drawn per sentence from a generator seeded by
(build seed, dataset, the group's item ids, epoch); with fewer than `min_modalities` common ones its
items are audited `too_few`. Layout `multitask`, task column `multitask`.
"""
from __future__ import annotations

from typing import Any, Iterable, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from sentence_builders.planned_groups import PlannedGroups
from sentence_builders.tasks import TaskChoice, get_task
from uvd.api import Builder, BuildContext, Grouping
from uvd.config import Strict
from uvd.errors import reason_of
from uvd.records import Failed, Item, VisualSentence

Modalities = dict[str, tuple[np.ndarray, bool]]  # name → (image, lossless)


class ModalityTask(TaskChoice):
    """A task of sentence_builders/tasks.py whose target (its second image) is the modality."""
    name: str  # the modality's name in meta and in the order (depth, normals, edges, segmentation, …)
    # which of the task's two images is the modality: 1 = its target (a label: pseudo_label, edges,
    # detection, …), 0 = its input (a generated degradation: colorization's grey, lowlight, …)
    image: int = Field(1, ge=0, le=1)


class MultitaskOptions(Strict):
    tasks: list[ModalityTask] = Field(min_length=1)
    photo: bool = True  # the photo itself is a modality (LVM's first input folder)
    shots: int = Field(3, ge=1)  # LVM's n_shots
    epochs: int = Field(5, ge=1)  # LVM's n_epochs
    shuffle_modalities: bool = True  # LVM's shuffle_tasks: one order per sentence, for all its shots
    min_modalities: int = Field(2, ge=1)
    grouping: Literal["dataset", "unit"] = "dataset"
    remainder: Literal["tail", "fresh"] = "tail"  # as `pairs` (sentence_builders/pairs.py)

    @model_validator(mode="after")
    def _names(self) -> "MultitaskOptions":
        names = [t.name for t in self.tasks] + (["image"] if self.photo else [])
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must differ (the photo is 'image'): {names}")
        return self


def _shots(options: MultitaskOptions, ctx: BuildContext) -> int:
    per_shot = len(options.tasks) + int(options.photo)
    return max(1, min(options.shots, ctx.max_images // per_shot))  # never more images than the build allows


class MultitaskBuilder(Builder):
    name = "multitask"
    Options = MultitaskOptions

    def __init__(self, options: MultitaskOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        if len(options.tasks) + int(options.photo) > ctx.max_images:
            raise ValueError(f"multitask: {len(options.tasks) + int(options.photo)} modalities > max_images_per_sentence")
        self.fns = [(t.name, get_task(t.task, t.task_args), t.image) for t in options.tasks]
        self.order = (["image"] if options.photo else []) + [t.name for t in options.tasks]
        self.shots = _shots(options, ctx)
        self.planned: PlannedGroups | None = None
        self.held: list[tuple[str, tuple[Modalities, dict[str, str]]]] = []  # grouping: unit

    @classmethod
    def grouping(cls, options: MultitaskOptions, ctx: BuildContext) -> Grouping | None:
        if options.grouping != "dataset":
            return None
        return Grouping(size=_shots(options, ctx), epochs=options.epochs,
                        key="multitask:" + ",".join(t.name for t in options.tasks), remainder=options.remainder)

    def start_unit(self, payload: dict[str, Any]) -> None:
        self.planned = PlannedGroups.of(payload)

    def _modalities(self, item: Item) -> tuple[Modalities, dict[str, str]]:
        got: Modalities = {}
        missing: dict[str, str] = {}
        if self.options.photo:
            got["image"] = (self.ctx.photo(item.images[0]), False)
        for name, fn, which in self.fns:
            try:
                example = fn(item, self.ctx, self.ctx.rng(item.item_id, "multitask", name))
                if len(example) != 2:
                    raise ValueError(f"task for {name!r} returned {len(example)} images; multitask needs 2")
                got[name] = example[which]
            except Exception as err:  # this modality is left out for this image only
                missing[name] = reason_of(err)
        if len(got) < self.options.min_modalities:
            raise ValueError(f"too_few: {len(got)} modalities < min_modalities={self.options.min_modalities} "
                             f"({'; '.join(f'{k}: {v}' for k, v in missing.items())})")
        return got, missing

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        if self.planned is not None:
            yield from self.planned.process(item, self._modalities, self._group)
            return
        self.held.append((item.item_id, self._modalities(item)))
        if len(self.held) == self.shots:
            members, self.held = self.held, []
            yield from self._group(members, self.shots)

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        if self.planned is not None:
            yield from self.planned.finish(self._group)
            return
        members, self.held = self.held, []
        if members:
            yield from self._group(members, self.shots)

    def _group(self, members: list[tuple[str, Any]], planned: int) -> Iterable[Union[VisualSentence, Failed]]:
        epoch = self.planned.epoch if self.planned is not None else 0
        ids = [m[0] for m in members]
        common = [n for n in self.order if all(n in m[1][0] for m in members)]
        if len(common) < self.options.min_modalities or (len(members) < 2 <= planned):
            for item_id in ids:
                yield Failed(item_id, f"too_few: {len(members)} of {planned} shot(s) with {len(common)} common "
                                      f"modalities ({', '.join(common) or 'none'}) < min_modalities="
                                      f"{self.options.min_modalities} or fewer than 2 shots")
            return
        order = common
        if self.options.shuffle_modalities:
            rng = self.ctx.rng(",".join(ids), "multitask-order", epoch)
            order = [common[i] for i in rng.permutation(len(common))]
        images = [m[1][0][n][0] for m in members for n in order]
        lossless = [m[1][0][n][1] for m in members for n in order]
        recipe: dict[str, Any] = {"builder": "multitask", "modalities": self.order,
                                  **({"grouping": "dataset"} if self.planned is not None else {}),
                                  **({"epoch": epoch} if epoch else {})}
        missing = {m[0]: m[1][1] for m in members if m[1][1]}
        yield VisualSentence(
            sentence_id=self.ctx.sentence_id(ids, recipe), source=self.ctx.dataset, task="multitask",
            layout="multitask", images=images, lossless=lossless, item_ids=ids,
            meta={"dataset": self.ctx.dataset, "task": "multitask", "item_ids": ids, "shots": len(ids),
                  "order": order, "epoch": epoch, "epochs": self.options.epochs,
                  **({"missing": missing} if missing else {})})
