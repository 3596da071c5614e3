"""`uvd tokenizer train SENTENCES_URL --out DIR`: train a VQGAN on sentence-shard images, save it LVM-style."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenize_job.train_tokenizer import TrainConfig
from tokenize_job.vqgan import VQGANConfig


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="uvd tokenizer train", description=__doc__)
    p.add_argument("sentences", help="build output holding sentences/ (any fsspec URL)")
    p.add_argument("--out", required=True, help="directory for config.json + pytorch_model.bin (open-MUSE's layout) + training.json")
    p.add_argument("--config", help="VQGAN config: 'tiny' (default), 'lvm', or a config.json path")
    p.add_argument("--name", default="uvd-vqgan", help="short name; the tokenizer id is <name>-<sha prefix>")
    for key in ("steps", "batch_size", "crop", "lr", "seed", "max_images", "val_fraction",
                "adversarial_weight", "adversarial_start", "ae_warmup", "full_finetune", "threads"):
        p.add_argument("--" + key.replace("_", "-"), type=type(getattr(d, key)), default=getattr(d, key))
    args = p.parse_args(argv)

    if args.config in (None, "tiny"):
        vq = VQGANConfig.tiny()
    elif args.config == "lvm":
        vq = VQGANConfig.lvm()
    else:
        vq = VQGANConfig.from_dict(json.loads(Path(args.config).read_text()))
    cfg = TrainConfig(**{k: getattr(args, k) for k in ("steps", "batch_size", "crop", "lr", "seed", "max_images",
                                                       "val_fraction", "adversarial_weight", "adversarial_start",
                                                       "ae_warmup", "full_finetune", "threads")}, vqgan=vq)
    from tokenize_job.train_tokenizer import train_from_shards

    try:
        train_from_shards(args.sentences, args.out, cfg, name=args.name)
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd tokenizer train: {err}", file=sys.stderr)
        return 2
    return 0
