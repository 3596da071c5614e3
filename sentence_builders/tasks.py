"""The task table: task name -> the function that renders ONE example of that task.

A task function has the signature

    function(item: Item, ctx: BuildContext, rng: np.random.Generator) -> list[tuple[np.ndarray, bool]]

and returns the images of one example, each already normalised to ctx.image.size
(size×size×3 uint8), paired with its `lossless` flag: `[(input_photo, False),
(annotation_or_target, True), ...]`. For the `pairs` builder a task returns exactly two
images (x, y); for the `tuple` builder it returns 1 + k images (the photo and its k
annotations). A bad annotation raises `uvd.errors.BadInput`, whose text is the audit reason.

Entries are "module:function" strings so nothing is imported until a task is used.
Tasks from parts A (COCO-style annotations) and B (dense maps, low-level pairs) share this table.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

import numpy as np
from pydantic import Field, field_validator, model_validator

from uvd.api import BuildContext
from uvd.config import Strict
from uvd.errors import ConfigError
from uvd.records import Item

TaskFn = Callable[[Item, BuildContext, np.random.Generator], list[tuple[np.ndarray, bool]]]

TASKS: dict[str, str] = {
    "detection": "sentence_builders.annotation_tasks:detection",
    "pose": "sentence_builders.annotation_tasks:pose",
    "segmentation": "sentence_builders.annotation_tasks:segmentation",
    "instance_segmentation": "sentence_builders.annotation_tasks:instance_segmentation",
    **{t: f"sentence_builders.generated_tasks:{t}" for t in ("semantic_segmentation", "depth", "normals", "edges", "colorization", "inpainting", "denoise", "lowlight", "derain", "deblur", "paired", "pseudo_label")},  # dense maps, generated pairs
    "stereo": "sentence_builders.generated_tasks:paired", "style": "sentence_builders.generated_tasks:paired",  # real pairs
}


def get_task(name: str, args: dict[str, Any] | None = None) -> TaskFn:
    """The task function for `name` (a name not in TASKS may be a dotted "module:function"),
    with `args` bound as its keyword options (e.g. Canny thresholds for `edges`)."""
    spec = TASKS.get(name, name if ":" in name else None)
    if spec is None:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"task {name!r}: cannot import {spec} ({err})") from None
    if not args:
        return fn
    accepted = set(inspect.signature(fn).parameters) - {"item", "ctx", "rng"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ConfigError(f"task {name!r}: unknown option(s) {unknown}; it takes {sorted(accepted) or 'none'}")
    return functools.partial(fn, **args)


def check_task_args(name: str, args: dict[str, Any] | None) -> None:
    """For builder options, at plan time: the options bind to the task function, and the task's own
    `check_args(args)` hook (when it has one, e.g. `pseudo_label` needs its model file) passes."""
    fn = get_task(name)
    get_task(name, args)
    hook = getattr(fn, "check_args", None)
    if hook is not None:
        hook(dict(args or {}))


def check_task_names(names: list[str]) -> None:
    """For builder options: every name is in TASKS or a dotted "module:function"."""
    bad = [t for t in names if t not in TASKS and ":" not in t]
    if bad:
        raise ValueError(f"unknown task(s) {bad}; known: {', '.join(sorted(TASKS))}")


class TaskChoice(Strict):
    """Options naming one task of this table and its keyword options, checked when the config loads
    (a missing model file is found when planning). Builder options that run a task extend it."""
    task: str  # a name in TASKS (or "module:function")
    task_args: dict[str, Any] = Field(default_factory=dict)  # keyword options of the task function

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        check_task_names([v])
        return v

    @model_validator(mode="after")
    def _args(self) -> "TaskChoice":
        check_task_args(self.task, self.task_args)
        return self
