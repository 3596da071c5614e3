"""Demo step (uvd demo, DEMO_AFTER): train a tiny tokenizer, tokenize the build, compare with an untrained one."""
from __future__ import annotations

import json
import os
from pathlib import Path

DEMO_STEPS = int(os.environ.get("UVD_DEMO_TOKENIZER_STEPS", "200"))
# One torch thread unless told otherwise: the demo machine is usually shared, and two OpenMP
# threads that lose their cores spin against each other (measured: 5-15x slower than one).
DEMO_THREADS = int(os.environ.get("UVD_TORCH_THREADS", "1"))


def tokenizer_step(out: str, workdir: Path) -> None:
    """<workdir>/tokenizer (config.json + model.safetensors) and <out>/tokens/<id>/ for the trainer after us."""
    from tokenize_job.inspect_tokens import contact_sheet, summarise
    from tokenize_job.job import tokenize
    from tokenize_job.train_tokenizer import TrainConfig, train_from_shards

    tok_dir = Path(workdir) / "tokenizer"
    print("\n== tokenizer: train a tiny VQGAN on the demo's sentence images ==")
    report_file = tok_dir / "training.json"
    if report_file.is_file() and (tok_dir / "model.safetensors").is_file():
        report = json.loads(report_file.read_text())  # a rerun reuses it: same tokens, nothing to redo
        print(f"reusing {tok_dir}")
    else:
        report = train_from_shards(out, tok_dir, TrainConfig(steps=DEMO_STEPS, threads=DEMO_THREADS), name="demo-vqgan")
    print(f"validation reconstruction MSE: trained {report['val_mse']:.5f} vs untrained {report['fresh_val_mse']:.5f} "
          f"(PSNR {report['val_psnr']:.1f} dB, {report['val_codes_used']} codes used on {report['val_images']} images)")
    print("\n== tokenize: sentence shards → token shards (Ray Data actor pool) ==")
    result = tokenize(out, str(tok_dir), threads=DEMO_THREADS)
    print(summarise(result.root))
    sheet = Path(workdir).parent / "tokens_contact_sheet.png"
    # A sentence of real photos when the build has one: noise-free scenes show what the tokens keep.
    photos = Path(result.root) / "coco_tuple"
    contact_sheet(str(photos) if photos.is_dir() else result.root, 0, str(tok_dir), str(sheet))
    print(f"tokens:        {result.root}\ntokenizer:     {tok_dir}\ntoken sheet:   {sheet}")
    if not result.ok:
        raise RuntimeError(f"tokenize: units failed: {result.errors}")
