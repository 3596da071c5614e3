"""`uvd pseudo-label`: label a folder of photos offline into files the `depth` and
`segmentation` sources read (depth .npy, normals PNG, class-id PNG), mirroring its tree."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from renderers.labeler import KINDS, Labeler, resize_prediction
from uvd.errors import BadInput, ConfigError
from uvd.image import decode_image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd pseudo-label", description=__doc__)
    p.add_argument("images", help="folder of photos (searched recursively)")
    p.add_argument("out", help="folder for the predictions, same relative names")
    p.add_argument("--model", required=True, help="local TorchScript (.pt), exported program (.pt2) or state dict")
    p.add_argument("--kind", required=True, choices=[k for k in KINDS if k not in ("keypoints", "edges")])
    p.add_argument("--arch", help="architecture for a state dict (registered name or module:factory)")
    p.add_argument("--arch-args", default="{}", help="JSON keyword arguments of the architecture")
    p.add_argument("--mean", type=float, nargs=3, default=(0.0, 0.0, 0.0))
    p.add_argument("--std", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    p.add_argument("--inverse-output", action="store_true", help="depth models predicting disparity: store 1/output")
    p.add_argument("--input-size", type=int, default=0, help="resize the short side to this for the model (0: as is)")
    args = p.parse_args(argv)
    try:
        labeler = Labeler.load(args.model, args.kind, args.arch, json.loads(args.arch_args), mean=args.mean, std=args.std)
    except ConfigError as err:
        print(f"uvd pseudo-label: {err}", file=sys.stderr)
        return 2
    root, out = Path(args.images), Path(args.out)
    photos = sorted(q for q in root.rglob("*") if q.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"))
    done, failed = 0, []
    for path in photos:
        rel = path.relative_to(root).with_suffix("")
        try:
            rgb = decode_image(path.read_bytes())
        except (OSError, BadInput) as err:
            failed.append(f"{rel}: {err}")
            continue
        h, w = rgb.shape[:2]
        x = rgb
        if args.input_size:
            s = args.input_size / min(h, w)
            x = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        pred = resize_prediction(labeler(x), args.kind, w, h)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if args.kind == "depth":
            if args.inverse_output:
                with np.errstate(divide="ignore"):
                    pred = np.where(pred > 0, 1.0 / pred, 0.0)  # no disparity: no depth (invalid)
            np.save(dest.with_suffix(".npy"), pred.astype(np.float32))
        elif args.kind == "normals":
            n = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
            rgb8 = np.clip(np.rint((n + 1) / 2 * 255), 0, 255).astype(np.uint8)
            cv2.imwrite(str(dest.with_suffix(".png")), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
        else:
            ids = pred.astype(np.uint8 if pred.max() < 256 else np.uint16)
            cv2.imwrite(str(dest.with_suffix(".png")), ids)
        done += 1
    print(f"pseudo-labelled {done} photos → {out}" + (f"; {len(failed)} failed:" if failed else ""))
    for f in failed:
        print(f"  {f}")
    return 0 if done or not photos else 1
