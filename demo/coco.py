"""Demo step for COCO annotations: the bundled sample → detection, pose, segmentation pairs and a tuple.

`coco_inputs` is registered in demo/run.py DEMO_INPUTS. Running this module regenerates the
contact sheets of docs/tasks/ from the same sample:

    python -m demo.coco docs/tasks
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from demo.samples import samples_dir
from renderers.palette import PALETTE

PAIR_TASKS = ("detection", "pose", "segmentation")
TUPLE_TASKS = ["detection", "pose", "segmentation", "instance_segmentation"]


def coco_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """Copy the 4 COCO photos and their JSON under workdir; one dataset per task plus a tuple."""
    root = workdir / "coco"
    (root / "images").mkdir(parents=True, exist_ok=True)
    sample = samples_dir() / "coco"
    for f in sorted(sample.glob("*.jpg")):
        shutil.copy(f, root / "images" / f.name)
    shutil.copy(sample / "test_coco.json", root / "person_keypoints.json")
    args = {"annotations": [str(root / "person_keypoints.json")], "images_dir": str(root / "images")}
    datasets = [{"name": f"coco_{task}", "source": "coco", "source_args": args, "builder": "pairs",
                 # 4 photos make no full group of 8: the demo keeps the per-unit grouping (a shorter sentence)
                 "builder_args": {"task": task, "pairs": 8, "min_pairs": 2, "grouping": "unit", "epochs": 1}}
                for task in PAIR_TASKS]
    datasets.append({"name": "coco_tuple", "source": "coco", "source_args": args, "builder": "tuple",
                     "builder_args": {"tasks": TUPLE_TASKS}})
    return datasets


def write_task_sheets(out_dir: Path, tile: int = 192) -> list[Path]:
    """One contact sheet per task (x1 y1 x2 y2 / x3 y3 x4 y4), one for tuples, and the palette."""
    from sentence_builders.tasks import get_task
    from sentence_builders.tuple import TupleBuilder, TupleOptions
    from sources.coco import CocoOptions, CocoSource
    from uvd.api import BuildContext
    from uvd.contact_sheet import grid, save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(dataset="coco_demo")
    sample = samples_dir() / "coco"
    src = CocoSource(CocoOptions(annotations=[str(sample / "test_coco.json")], images_dir=str(sample)), ctx)
    items = [it for unit in src.plan(64) for it in src.read(unit)]
    written = []
    for task in TUPLE_TASKS:
        fn = get_task(task)
        images, labels = [], []
        for it in items:
            (x, _), (y, _) = fn(it, ctx, ctx.rng(it.item_id, task))
            images += [x, y]
            labels += [f"x {it.item_id}", f"y {task}"]
        path = out_dir / f"{task}.png"
        save_png(str(path), grid(images, columns=4, labels=labels, tile=tile, title=f"{task}: pairs from COCO val2017"))
        written.append(path)
    builder = TupleBuilder(TupleOptions(tasks=TUPLE_TASKS), ctx)
    images, labels = [], []
    for it in items:
        for s in builder.process(it):
            names = ["photo"] + TUPLE_TASKS
            images += s.images + [np.full_like(s.images[0], 255)] * (5 - len(s.images))
            labels += [f"{it.item_id} {names[i]}" for i in s.meta["chosen"]] + [""] * (5 - len(s.images))
    path = out_dir / "tuple.png"
    save_png(str(path), grid(images, columns=5, labels=labels, tile=tile,
                             title="tuple: a random m-subset of the photo and its 4 annotations (one row per image)"))
    written.append(path)
    swatch = np.repeat(np.repeat(PALETTE.reshape(16, 16, 3), 16, axis=0), 16, axis=1)
    path = out_dir / "palette.png"
    save_png(str(path), grid([swatch], columns=1, labels=["PALETTE[16*row + col]"], tile=256, title="palette"))
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the COCO task contact sheets")
    p.add_argument("out_dir", nargs="?", default="docs/tasks")
    for path in write_task_sheets(Path(p.parse_args(argv).out_dir)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
