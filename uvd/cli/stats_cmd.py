"""`uvd stats OUT [--plot report.png]`: the mixture, sentence lengths, failures and shard sizes as pictures."""
from __future__ import annotations

import argparse

from uvd.shard_summary import format_summary, sentence_shards, summarise
from uvd.stats_report import plot, shard_sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd stats", description=__doc__)
    p.add_argument("out", help="an output folder or URL")
    p.add_argument("--plot", help="write the report as a PNG here")
    args = p.parse_args(argv)
    out = args.out.rstrip("/")
    shards = sentence_shards(out)
    if not shards:
        print(f"{out}: no sentence shards")
        return 1
    summary = summarise(shards)
    print(format_summary(summary))
    if args.plot:
        sizes = shard_sizes(out)
        plot(summary, sizes, args.plot, f"{out}: {summary['sentences']} sentences, {summary['images']} images")
        print(f"report → {args.plot}")
    return 0
