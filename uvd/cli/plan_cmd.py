"""`uvd plan CONFIG`: the units, what they will make, and what it will cost, from measured unit costs.

Costs are measured, not guessed: one unit of each dataset (its smallest) is built into a
scratch folder and timed; or, with `--calibrate OUT`, the stats files of an earlier build are
used. Per item: seconds, sentences, images and bytes; scaled to every planned item.
GPU-hours use stated assumptions (printed): the VQGAN's 216 GFLOP per image and the trainer's
6·N FLOP per token, at a sustained fraction of a GPU's peak. Then, per dataset, where the recipe
differs from LVM's released scripts, and every LVM data script: planned, or NOT PLANNED and why
(uvd/cli/lvm_diff.py).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from uvd.cli.lvm_diff import lvm_report
from uvd.config import BuildConfig, load_config
from uvd.errors import ConfigError
from uvd.layout import sentence_shard, stats_file
from uvd.plan import PlannedUnit, plan_dataset
from uvd.progress import progress
from uvd.regroup import REGROUP
from uvd.storage import exists, read_json
from uvd.unit import run_unit

TOKENS_PER_IMAGE = 256
VQGAN_GFLOP_PER_IMAGE = 216.0
LVM_PARAMS = {"300M": 0.3e9, "1B": 1.0e9, "3B": 3.0e9, "7B": 7.0e9}


def items_in(payload: dict[str, Any]) -> int:
    """How many input items a unit payload holds: a row range, or the length of its list; a regrouped
    unit (dataset-wide pairs) its groups' items and left-out ones, once per epoch it is in."""
    spec = payload.get(REGROUP)
    if isinstance(spec, dict):
        return sum(len(g) for g in spec["groups"]) + len(spec["dropped"])
    if isinstance(payload.get("start"), int) and isinstance(payload.get("stop"), int):
        return max(0, payload["stop"] - payload["start"])
    for value in payload.values():
        if isinstance(value, list):
            return len(value)
    return 1


@dataclass
class Cost:
    items: int = 0
    seconds: float = 0.0
    sentences: int = 0
    images: int = 0
    bytes: int = 0

    def add(self, stats: dict[str, Any]) -> None:
        self.items += stats["inputs"]
        self.seconds += stats["seconds"]["total"]
        self.sentences += stats["sentences"]
        self.images += stats["images"]
        self.bytes += stats["shard"]["bytes"]

    def per_item(self, field: str) -> float:
        return getattr(self, field) / self.items if self.items else 0.0


def measure(cfg: BuildConfig, units: list[PlannedUnit], calibrate: str | None) -> dict[str, Cost]:
    costs: dict[str, Cost] = {}
    by_dataset: dict[str, list[PlannedUnit]] = {}
    for u in units:
        by_dataset.setdefault(u.dataset, []).append(u)
    with tempfile.TemporaryDirectory(prefix="uvd-plan-") as scratch, \
            progress(len(by_dataset), "plan: measuring", "dataset") as bar:
        for dataset, dus in by_dataset.items():
            cost = costs.setdefault(dataset, Cost())
            if calibrate:
                for u in dus:
                    url = stats_file(sentence_shard(calibrate, dataset, u.unit))
                    if exists(url):
                        cost.add(read_json(url))
            if not cost.items:  # nothing to calibrate from: build the smallest unit now and time it
                u = min(dus, key=lambda x: (items_in(x.payload), x.unit))
                cost.add(run_unit(cfg, dataset, u.unit, u.payload, scratch))
            bar.update(1, items=cost.items)
    return costs


def report(cfg: BuildConfig, units: list[PlannedUnit], costs: dict[str, Cost], gpu_tflops: float, mfu: float,
           missing: dict[str, str] | None = None) -> str:
    rows, totals = [], Cost()
    missing = missing or {}
    for ds in cfg.datasets:
        if ds.key in missing:
            continue
        dus = [u for u in units if u.dataset == ds.key]
        n = sum(items_in(u.payload) for u in dus)
        c = costs.get(ds.key, Cost())
        est = Cost(n, n * c.per_item("seconds"), round(n * c.per_item("sentences")), round(n * c.per_item("images")),
                   round(n * c.per_item("bytes")))
        rows.append((ds.key, ds.source, ds.builder, len(dus), est, c))
        for f in ("items", "seconds", "sentences", "images", "bytes"):
            setattr(totals, f, getattr(totals, f) + getattr(est, f))
    w = max([22, *(len(ds.key) + 1 for ds in cfg.datasets)])  # a long name never runs into the next column
    lines = [f"{'dataset':<{w}}{'source/builder':<28}{'units':>7}{'items':>11}{'sentences':>11}{'images':>11}"
             f"{'tokens':>15}{'MiB':>11}{'CPU-h':>11}   measured on"]
    for key, src, bld, nu, est, c in rows + [("TOTAL", "", "", len(units), totals, None)]:
        tokens = est.images * TOKENS_PER_IMAGE + est.sentences
        # every number right-aligned with at least one space before it: columns never run together
        lines.append(f"{key:<{w}}{(src + '/' + bld) if src else '':<28}{nu:>7} {est.items:>10} {est.sentences:>10} "
                     f"{est.images:>10} {tokens:>14,} {est.bytes / 2**20:>10.1f} {est.seconds / 3600:>10.3g}   "
                     + (f"{c.items} items, {c.per_item('seconds') * 1000:.1f} ms/item" if c else ""))
    for key, why in missing.items():
        lines.append(f"{key:<{w}}NOT PLANNED: {why.splitlines()[-1].strip()}")
    tokens = totals.images * TOKENS_PER_IMAGE + totals.sentences
    sustained = gpu_tflops * 1e12 * mfu
    tok_h = totals.images * VQGAN_GFLOP_PER_IMAGE * 1e9 / sustained / 3600
    lines += ["", f"tokenize: {totals.images:,} images × {VQGAN_GFLOP_PER_IMAGE:.0f} GFLOP = {tok_h:.3g} GPU-hours",
              "train one epoch (" + ", ".join(f"{k}: {6 * p * tokens / sustained / 3600:.3g}"
                                              for k, p in LVM_PARAMS.items()) + " GPU-hours)",
              "", "assumptions: CPU-hours = measured seconds per item × items (one core per unit); "
              f"GPU at {gpu_tflops:.0f} dense bf16 TFLOP/s sustaining {mfu:.0%} (MFU); training at 6·N FLOP/token; "
              f"{TOKENS_PER_IMAGE} tokens per image + 1 end-of-sentence per sentence; items counted from unit payloads."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--calibrate", help="an earlier build's output: use its per-unit stats instead of measuring")
    p.add_argument("--gpu-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s (H100 SXM: 989)")
    p.add_argument("--mfu", type=float, default=0.4, help="sustained fraction of peak")
    p.add_argument("--units", action="store_true", help="also list every unit")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"uvd plan: {err}", file=sys.stderr)
        return 2
    units: list[PlannedUnit] = []
    missing: dict[str, str] = {}
    for ds in cfg.datasets:  # a dataset whose data is not there yet is reported, not fatal
        try:
            units += plan_dataset(cfg, ds)
        except ConfigError as err:
            missing[ds.key] = str(err)
    if args.units:
        for u in units:
            print(f"{u.name}  {items_in(u.payload)} items")
    print(report(cfg, units, measure(cfg, units, args.calibrate), args.gpu_tflops, args.mfu, missing))
    print(lvm_report(cfg, {u.dataset for u in units}, missing))
    return 0
