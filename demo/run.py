"""`uvd demo`: sample inputs → build → validate → inspect → contact sheet, end to end in minutes."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from demo.samples import samples_dir
from uvd import codec

# Each: "module:function", function(workdir: Path, stack: ExitStack) -> list of dataset entries.
DEMO_INPUTS: list[str] = [
    "demo.run:image_inputs",
    "demo.laion:laion_inputs",
    "demo.objects:objects_inputs",
    "demo.video:video_inputs",
    "demo.coco:coco_inputs",
    "demo.dense_pairs:dense_pair_inputs",
]
# Each: "module:function", function(out: str, workdir: Path) -> None, run after the build.
DEMO_AFTER: list[str] = ["demo.tokenizer:tokenizer_step", "demo.train:train_step"]


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def image_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """Real photos as one class each folder, plus generated images in three classes."""
    root = workdir / "images"
    samples = samples_dir()
    for sub, pattern in (("photos", "images/*.jpg"), ("coco", "coco/*.jpg")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted(samples.glob(pattern)):
            shutil.copy(f, root / sub / f.name)
    rng = np.random.default_rng(0)
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 220)}
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(20):
            (root / name / f"{name}_{i:02d}.jpg").write_bytes(codec.encode(_shapes(rng, rgb)))
    (root / "photos" / "not_an_image.jpg").write_text("this is text, not a JPEG\n")
    return [
        {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
         "builder": "single", "items_per_unit": 32},
        {"name": "categories", "source": "image_folder", "source_args": {"root": str(root)},
         "builder": "category", "builder_args": {"images_per_sentence": 8}},
    ]


def _shapes(rng: np.random.Generator, rgb: tuple[int, int, int]) -> np.ndarray:
    """A class-coloured scene: a soft gradient with a few discs and boxes of the class colour."""
    h, w = int(rng.integers(200, 480)), int(rng.integers(200, 480))
    y, x = np.mgrid[0:h, 0:w]
    base = (90 + 80 * (x / w)[..., None] * rng.random(3) + 60 * (y / h)[..., None] * rng.random(3)).astype(np.uint8)
    img = np.ascontiguousarray(base)
    for _ in range(int(rng.integers(2, 6))):
        shade = tuple(int(c * rng.uniform(0.6, 1.0)) for c in rgb)
        cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(15, min(h, w) // 3))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, shade, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), shade, -1)
    return img


def _shown(path: str) -> str:
    """The build path as the user can type it: relative to the working directory when below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd demo", description=__doc__)
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", nargs="*", help="run only these input steps (function names)")
    p.add_argument("--skip-after", action="store_true", help="stop after the build (no tokenize/train steps)")
    args = p.parse_args(argv)

    from uvd.config import parse_model, BuildConfig
    from uvd.cli.inspect_cmd import inspect_path
    from uvd.shard_summary import contact_sheet
    from uvd.runner import build
    from uvd.validate import validate

    out = Path(args.out).resolve()
    workdir = out / "inputs"
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        datasets: list[dict[str, Any]] = []
        for spec in DEMO_INPUTS:
            if args.only and spec.split(":")[1] not in args.only:
                continue
            datasets += _load(spec)(workdir, stack)
        cfg = parse_model(BuildConfig, {"out": str(out / "build"), "seed": 0, "datasets": datasets}, "demo")
        # The same build can be rerun (or submitted to a cluster) with `uvd build <out>/demo-config.yaml`.
        (out / "demo-config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        summary = build(cfg, workers=args.workers)
    print(summary.report())
    problems = validate(cfg.out)
    print(f"\nvalidate: {'OK' if not problems else f'{len(problems)} problems'}")
    for prob in problems:
        print("  ", prob)
    print()
    print(inspect_path(cfg.out))
    sheet = out / "contact_sheet.png"
    contact_sheet(cfg.out, 0, str(sheet))
    for spec in [] if args.skip_after else DEMO_AFTER:
        _load(spec)(cfg.out, workdir)
    print(f"\ninputs:        {workdir}\nsentences:     {cfg.out}/sentences\naudit:         {cfg.out}/audit"
          f"\nmanifest:      {cfg.out}/manifest.json\ncontact sheet: {sheet}")
    print(f"\nlook at it in the browser:\n  uvd view {_shown(cfg.out)}")
    return 0 if not problems and summary.succeeded else 1
