"""Demo step (uvd demo, DEMO_AFTER, after the tokenizer step): a few training steps on the demo's
token shards, then one visual-prompting generation with the demo tokenizer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEMO_STEPS = int(os.environ.get("UVD_DEMO_TRAIN_STEPS", "30"))
# One torch thread unless told otherwise: on a shared machine two OpenMP threads that lose
# their cores spin against each other.
DEMO_THREADS = int(os.environ.get("UVD_TORCH_THREADS", "1"))


def prompt_images(out: str, folder: Path, count: int = 2) -> list[Path]:
    """The first `count` images of the first sentence that has that many, as PNG files."""
    from uvd import codec, storage
    from uvd.shards import iter_rows

    for shard in storage.glob(out, "sentences/*/part-*.parquet"):
        for row in iter_rows(shard, columns=["num_images", "images"]):
            if row["num_images"] >= count:
                folder.mkdir(parents=True, exist_ok=True)
                paths = []
                for i, data in enumerate(row["images"][:count]):
                    p = folder / f"prompt-{i}.png"
                    p.write_bytes(codec.encode(codec.decode(data), lossless=True))
                    paths.append(p)
                return paths
    raise FileNotFoundError(f"no sentence with {count} images under {out}/sentences")


def train_step(out: str, workdir: Path) -> None:
    import torch

    from train.config import Config
    from train.generate import generate
    from train.loop import train
    from uvd import storage

    print("\n== train: a tiny LLaMA-style model on the demo's token shards ==")
    if not storage.glob(out, "tokens/*/*/part-*.parquet"):
        raise FileNotFoundError(f"train: no token shards under {out}/tokens (the tokenizer step makes them)")
    torch.set_num_threads(DEMO_THREADS)
    run = Path(workdir).parent / "train"
    cfg = Config.model_validate({
        "model": {"size": "tiny", "max_seq_len": 768},  # room for 2 prompt images + 1 new
        "data": {"tokens": [out], "seq_len": 256, "piece_rows": 16},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5},
        "train": {"out": str(run), "seed": 0, "steps": DEMO_STEPS, "batch_size": 4, "log_every": 10,
                  "ckpt_every": DEMO_STEPS, "threads": DEMO_THREADS},
    })
    records = train(cfg)
    if records:
        print(f"loss {records[0]['loss']:.3f} → {records[-1]['loss']:.3f} in {len(records)} steps, "
              f"{np.median([r['tokens_per_s'] for r in records]):,.0f} tokens/s on CPU")
    else:
        print(f"reusing {run} (already trained {DEMO_STEPS} steps)")

    print("\n== generate: sequential prompting, 2 frames → the next one ==")
    gen = Path(workdir).parent / "generate"
    prompt = prompt_images(out, gen)
    paths = generate(str(run), str(Path(workdir) / "tokenizer"), [str(p) for p in prompt], str(gen), new=1,
                     temperature=0.7, top_k=20, seed=0)
    print(f"checkpoints:   {run}/checkpoints\ngenerated:     {paths[0]}\nprompt strip:  {gen}/prompt_and_generated.png")
