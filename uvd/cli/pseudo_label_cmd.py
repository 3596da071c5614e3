"""`uvd pseudo-label`: label a folder of photos (any fsspec URL) with a local expert model into
files the `depth` and `segmentation` sources read (depth .npy, normals PNG, class-id PNG, edge PNG),
mirroring its tree. Runs as a Ray Data actor pool (one model per actor, a GPU each when there are
GPUs); resumable: committed units are skipped (bookkeeping under OUT/_uvd/)."""
from __future__ import annotations

import argparse
import json
import sys

from renderers.labeler import KINDS
from uvd.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd pseudo-label", description=__doc__)
    p.add_argument("images", help="folder of photos (searched recursively; a local path or fsspec URL)")
    p.add_argument("out", help="folder for the labels, same relative names (a local path or fsspec URL)")
    p.add_argument("--model", required=True,
                   help="local model: a transformers folder (depth estimation, semantic/universal segmentation), "
                        "a ControlNet annotator .pth (ControlNetHED.pth, table5_pidinet.pth), a TorchScript file, "
                        "an exported program (.pt2) or a state dict with --arch")
    p.add_argument("--kind", required=True, choices=[k for k in KINDS if k != "keypoints"])
    p.add_argument("--arch", help="architecture for a state dict (registered name, hed, pidinet, or module:factory)")
    p.add_argument("--arch-args", default="{}", help="JSON keyword arguments of the architecture")
    p.add_argument("--mean", type=float, nargs=3, default=(0.0, 0.0, 0.0), help="ignored for transformers folders")
    p.add_argument("--std", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="ignored for transformers folders")
    p.add_argument("--inverse-output", action=argparse.BooleanOptionalAction, default=None,
                   help="the depth model predicts disparity: store 1/output (default: what a transformers "
                        "folder's model type says, else no)")
    p.add_argument("--input-size", type=int, default=0,
                   help="resize the short side to this for the model (0: as is; annotators: 512; "
                        "transformers folders use their preprocessor_config.json)")
    p.add_argument("--batch-size", type=int, default=16, help="photos per model call")
    p.add_argument("--unit-size", type=int, default=256, help="photos per unit (the unit of commit and retry)")
    p.add_argument("--actors", type=int, default=0, help="labeller actors (default: one per GPU, else one)")
    p.add_argument("--no-ray", action="store_true", help="label in this process instead of a Ray actor pool")
    args = p.parse_args(argv)

    from uvd.cli.pseudo_label_job import LabelSpec, model_fingerprint, run_pseudo_label

    try:
        arch_args = json.loads(args.arch_args)
        if not isinstance(arch_args, dict):
            raise ConfigError("--arch-args must be a JSON object")
        spec = LabelSpec(images=args.images, out=args.out, model=args.model, kind=args.kind, arch=args.arch,
                         arch_args=arch_args, mean=tuple(args.mean), std=tuple(args.std), input_size=args.input_size,
                         inverse_output=args.inverse_output, batch_size=max(1, args.batch_size))
        spec = LabelSpec(**{**spec.__dict__, "model_id": model_fingerprint(args.model)}) if _exists(args.model) else spec
        result = run_pseudo_label(spec, unit_size=args.unit_size, use_ray=not args.no_ray, actors=args.actors,
                                  log=print)
    except (ConfigError, json.JSONDecodeError) as err:
        print(f"uvd pseudo-label: {err}", file=sys.stderr)
        return 2
    s = result.summary
    print(f"pseudo-labelled {s.ok} photos → {args.out}; {s.failed} failed, "
          f"{s.skipped} units already done" + (f", {len(s.failed_units)} units FAILED" if s.failed_units else ""))
    if s.failures:
        print("failures by reason: " + ", ".join(f"{k} {v}" for k, v in s.failures.most_common()))
    for name, err in sorted(s.failed_units.items()):
        print(f"  UNIT FAILED {name}: {err}")
    totals = result.manifest["totals"]
    return 0 if result.ok and (totals.get("ok", 0) or not totals.get("inputs", 0)) else 1


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).exists()
