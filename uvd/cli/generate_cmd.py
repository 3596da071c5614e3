"""`uvd generate --model CKPT --tokenizer DIR IMAGES… [--new N]`: visual prompting, PNGs out."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd generate", description="Continue a visual sentence: sequential "
                                "prompting (frames → next frames) or analogy prompting (x1 y1 … xn yn xq → yq).")
    p.add_argument("images", nargs="+", help="prompt images, in sentence order")
    p.add_argument("--model", required=True, help="training run folder (its latest checkpoint), one checkpoint "
                   "folder, or a Hugging Face LlamaForCausalLM folder (uvd export-hf)")
    p.add_argument("--tokenizer", required=True, help="VQGAN folder (config.json + weights)")
    p.add_argument("--new", type=int, default=1, help="images to generate (default 1)")
    p.add_argument("--mode", choices=["sequential", "analogy"], default="sequential")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=100, help="sample among the k likeliest codes (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/generate", help="folder for the PNGs (default out/generate)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    args = p.parse_args(argv)

    from train.generate import generate

    device = args.device if args.device != "auto" else ("cuda" if _cuda() else "cpu")
    try:
        paths = generate(args.model, args.tokenizer, args.images, args.out, new=args.new, mode=args.mode,
                         temperature=args.temperature, top_k=args.top_k, seed=args.seed, device=device)
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd generate: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
