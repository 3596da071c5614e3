"""COCO tuple examples (photo + detection, pose, semantic and instance maps): ours vs render-then-resize.

    python benchmarks/bench_annotations.py [--rounds 10] [--scale 1.0]

Both run on the bundled COCO sample (4 real photos, 14 people), optionally rescaled, one core:
- ours: `TupleBuilder.process` with the four COCO tasks: the photo is decoded once per item and
  shared by the tasks; boxes and skeletons are drawn at 256×256 with mapped coordinates; masks
  are rasterised once at the photo's resized size (polygons scaled) and shared by the semantic
  and instance maps, which are coloured after cropping.
- baseline: the straightforward way with the same renderers: every task decodes the photo
  again and draws its annotation at the original size, then normalises it to 256×256.
The two outputs are not byte-identical (drawing after vs before resizing), only equivalent.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import cv2
import numpy as np

from renderers.boxes import draw_boxes
from renderers.masks import decode_segmentation, render_instances, render_semantic
from renderers.pose import render_pose
from sentence_builders import annotation_tasks
from sentence_builders.tuple import TupleBuilder, TupleOptions
from sources.coco import CocoOptions, CocoSource
from uvd.api import BuildContext
from uvd.image import decode_image, normalise

COCO = Path(__file__).resolve().parent.parent / "sample_data" / "coco"
TASKS = ["detection", "pose", "segmentation", "instance_segmentation"]


def load_items(ctx: BuildContext, scale: float) -> list:
    src = CocoSource(CocoOptions(annotations=[str(COCO / "test_coco.json")], images_dir=str(COCO)), ctx)
    items = [it for unit in src.plan(64) for it in src.read(unit)]
    if scale == 1.0:
        return items
    out = []
    for it in items:  # rescale photo and annotations together (masks: polygons only in this sample)
        img = cv2.imdecode(np.frombuffer(it.images[0], np.uint8), cv2.IMREAD_COLOR)
        w, h = round(it.annotations["width"] * scale), round(it.annotations["height"] * scale)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
        it = copy.deepcopy(it)
        it.images = [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()]
        it.annotations.update(width=w, height=h)
        for o in it.annotations["objects"]:
            o["bbox"] = [v * scale for v in o["bbox"]]
            o["segmentation"] = [[v * scale for v in poly] for poly in o["segmentation"]]
            if o["keypoints"] is not None:
                o["keypoints"] = o["keypoints"] * np.array([scale, scale, 1.0])
        out.append(it)
    return out


def ours(items: list, ctx: BuildContext) -> int:
    builder = TupleBuilder(TupleOptions(tasks=TASKS, max_images=16, min_images=5), ctx)
    return sum(len(s.images) for it in items for s in builder.process(it))


def baseline(items: list, ctx: BuildContext) -> int:
    n = 0
    for it in items:
        w, h = it.annotations["width"], it.annotations["height"]
        objs = it.annotations["objects"]
        for task in TASKS:
            photo = decode_image(it.images[0], ctx.image)
            if task == "detection":
                xywh = np.array([o["bbox"] for o in objs])
                target = normalise(draw_boxes(photo, np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]),
                                              [o["category_id"] for o in objs]), ctx.image)
            elif task == "pose":
                kp = np.array([o["keypoints"] for o in objs if o["keypoints"] is not None])
                target = normalise(render_pose(kp, h, w), ctx.image)
            else:
                masks = [decode_segmentation(o["segmentation"], h, w) for o in objs]
                rgb = (render_semantic(masks, [o["category_id"] for o in objs], h, w) if task == "segmentation"
                       else render_instances(masks, h, w))
                target = normalise(rgb, ctx.image, interpolation=cv2.INTER_NEAREST)
            n += 1 + (task == TASKS[0])  # the photo once, plus each target
            del target
        normalise(photo, ctx.image)
    return n


def timed(fn, items, ctx, rounds: int) -> tuple[float, int]:
    best, images = float("inf"), 0
    for _ in range(3):
        annotation_tasks._last = None  # no decode carried over between contenders
        t = time.perf_counter()
        for _ in range(rounds):
            images = fn(items, ctx)
        best = min(best, time.perf_counter() - t)
    return best, images * rounds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="passes over the 4 sample images (default 10)")
    p.add_argument("--scale", type=float, default=1.0, help="rescale the photos and annotations (2 = 1280 px wide)")
    args = p.parse_args()
    cv2.setNumThreads(1)
    ctx = BuildContext(dataset="bench")
    items = load_items(ctx, args.scale)
    t_base, n_base = timed(baseline, items, ctx, args.rounds)
    t_ours, n_ours = timed(ours, items, ctx, args.rounds)
    assert n_base == n_ours, (n_base, n_ours)
    ex = len(items) * args.rounds
    print(f"{ex} tuple examples ({n_ours} images), photos {items[0].annotations['width']} px wide, best of 3, one core")
    print(f"baseline (decode per task, render at original size, resize): {ex / t_base:8.1f} examples/s")
    print(f"ours     (shared decode, draw at 256, masks at 256 scale):     {ex / t_ours:8.1f} examples/s")
    print(f"ratio ours / baseline: {t_base / t_ours:.2f}")


if __name__ == "__main__":
    main()
