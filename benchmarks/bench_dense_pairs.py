"""Dense-map and pair tasks: ours (map the annotation to 256×256 first, then render/degrade) vs the
straightforward render-or-degrade at the original size, then normalise.

    python benchmarks/bench_dense_pairs.py [--n 12] [--side 1280] [--rounds 3]

Inputs: the bundled real photos rescaled so the long side is `--side` (real datasets: NYU
640×480, ADE20K ~683×512, KITTI 1242×375, DIV2K/phone photos 2K+), with a synthetic depth map
and label map of the same size. One core, best of `--rounds`. Both sides decode the photo the
same way (`uvd.image.decode_image` at full size for dense maps, `ctx.photo` for photos) so the
difference is only where the work happens. Outputs are equivalent, not byte-identical.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from renderers import degrade
from renderers.depth import colour_depth
from renderers.palette import colorize
from sentence_builders import generated_tasks as gt
from uvd import codec
from uvd.api import BuildContext
from uvd.image import decode_image, normalise
from uvd.records import Item

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def make_items(n: int, side: int) -> list[Item]:
    photos = sorted(SAMPLES.glob("images/*.jpg")) + sorted(SAMPLES.glob("coco/*.jpg"))
    items = []
    for i in range(n):
        img = cv2.imread(str(photos[i % len(photos)]))[:, :, ::-1]
        s = side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
        depth = (np.add.outer(np.arange(h), np.arange(w)).astype(np.float32) / (h + w) * 9 + 1)
        labels = ((np.add.outer(np.arange(h) // 40, np.arange(w) // 40)) % 7).astype(np.int32)
        items.append(Item(f"{i}", "bench", images=[codec.encode(img)], annotations={"depth": depth, "label_map": labels}))
    return items


def baseline(task: str, it: Item, ctx: BuildContext, rng: np.random.Generator) -> list[np.ndarray]:
    full = decode_image(it.images[0], ctx.image)
    if task == "depth":
        y = normalise(colour_depth(it.annotations["depth"]), ctx.image, interpolation=cv2.INTER_NEAREST)
    elif task == "semantic_segmentation":
        y = normalise(colorize(it.annotations["label_map"]), ctx.image, interpolation=cv2.INTER_NEAREST)
    else:
        fn = {"colorization": lambda x, r: degrade.grayscale(x), "denoise": degrade.noise,
              "derain": degrade.rain, "deblur": degrade.blur}[task]
        return [normalise(fn(full, rng), ctx.image), normalise(full, ctx.image)]
    return [normalise(full, ctx.image), y]


def timed(fn, items, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--side", type=int, default=1280)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cv2.setNumThreads(1)
    ctx = BuildContext(dataset="bench")
    items = make_items(args.n, args.side)
    print(f"{args.n} items, long side {args.side}px, best of {args.rounds}, examples/s (one core)")
    print(f"{'task':24s} {'ours':>8s} {'baseline':>9s} {'ratio':>6s}")
    for task in ("depth", "semantic_segmentation", "colorization", "denoise", "derain", "deblur"):
        fn = getattr(gt, task)
        ours = timed(lambda it: fn(it, ctx, np.random.default_rng(0)), items, args.rounds)
        base = timed(lambda it: baseline(task, it, ctx, np.random.default_rng(0)), items, args.rounds)
        print(f"{task:24s} {ours:8.1f} {base:9.1f} {ours / base:6.2f}")


if __name__ == "__main__":
    main()
