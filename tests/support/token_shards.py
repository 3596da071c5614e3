"""Token shards for the training tests, written the way the tokenize job writes them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenize_job.token_index import IndexingShardWriter, write_index
from uvd.audit import AuditLog
from uvd.layout import UnitLayout, stats_file
from uvd.manifest import unit_row, write_manifest
from uvd.schema import TOKEN_SCHEMA
from uvd.storage import write_json

TOKENS_PER_IMAGE = 256


def pattern_tokens(rng: np.random.Generator, num_images: int, period: int = 64) -> np.ndarray:
    """Learnable codes: each image counts up modulo `period` from a random start."""
    starts = rng.integers(0, period, num_images)
    steps = np.arange(TOKENS_PER_IMAGE)
    return ((starts[:, None] + steps[None, :]) % period).reshape(-1).astype(np.uint16)


def write_token_shards(root: Path, source: str, units: int, sentences_per_unit: int, *, task: str = "image",
                       tasks: list[str] | None = None, images: tuple[int, int] = (1, 4), seed: int = 0,
                       row_group_rows: int = 0, sentences: str = "", dedup: str | None = None,
                       entries: list[dict] | None = None) -> list[dict]:
    """<root>/<source>/part-<unit>.parquet (+ .stats.json); returns the rows written, in order.

    `sentences` names the sentence build they claim to come from (its dedup table then applies);
    `entries` collects each shard's index row as the tokenize job's writer makes it, with `dedup`
    as the dedup key it claims to have been tokenized under."""
    rng = np.random.default_rng([seed, len(source)])
    written: list[dict] = []
    for u in range(units):
        url = str(root / source / f"part-{u:05d}.parquet")
        # A tiny row-group size gives several row groups per file, as large real shards have.
        nbytes = 1 if row_group_rows else 0
        meta = {"tokenizer": "test", "tokenizer_id": "test-tok",
                **({"sentences": f"{sentences}/sentences/{source}/part-{u:05d}.parquet"} if sentences else {})}
        writer = IndexingShardWriter(url, TOKEN_SCHEMA, "tokens", meta,
                                     row_group_rows if row_group_rows else 32 << 20, source, f"{u:05d}", dedup)
        for i in range(sentences_per_unit):
            n = int(rng.integers(images[0], images[1] + 1))
            row = {"sentence_id": f"{source}-{u}-{i}", "source": source,
                   "task": tasks[i % len(tasks)] if tasks else task, "layout": "sequence",
                   "num_images": n, "tokens": pattern_tokens(rng, n)}
            writer.add(row, nbytes)
            written.append(row)
        info = writer.close()
        audit = AuditLog()  # the job's audit shard: a unit without its audit is not committed
        for row in written[len(written) - sentences_per_unit:]:
            audit.seen(row["sentence_id"])
            audit.used([row["sentence_id"]])
        audit.write(str(root / "audit" / source / f"part-{u:05d}.parquet"), meta)
        write_json(stats_file(url), {"shard": {"path": url, "rows": info.rows, "bytes": info.bytes,
                                               "sha256": info.sha256}, "sentences": info.rows})
        if entries is not None:
            entries.append({**writer.entry, "dataset": source, "unit": f"{u:05d}",
                            "shard": {"path": f"{source}/part-{u:05d}.parquet", "rows": info.rows,
                                      "bytes": info.bytes, "sha256": info.sha256}})
    return written


@dataclass(frozen=True)
class _Unit:
    dataset: str
    unit: str

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.unit}"


def write_tokens_manifest(root: Path, entries: list[dict], sentences_url: str = "", index: bool = True) -> None:
    """What the tokenize job writes at the end of a run for these shards: manifest.json, the units
    table and (unless `index` is false) the index table."""
    units = sorted((_Unit(e["dataset"], e["unit"]) for e in entries), key=lambda u: (u.dataset, u.unit))
    by_name = {f"{e['dataset']}/{e['unit']}": e for e in entries}
    done = {u.name: unit_row(u.dataset, u.unit, {"sentences": by_name[u.name]["rows"], "shard": by_name[u.name]["shard"]},
                             {}) for u in units}
    write_manifest(UnitLayout.tokens(str(root)), {"kind": "tokens", "tokenizer": {"tokenizer_id": "test-tok"},
                                                  "sentences_url": sentences_url}, units, done)
    if index:
        write_index(str(root), [{k: v for k, v in e.items() if k != "shard"} for e in entries])


def video_token_build(root: Path) -> Path:
    """A build folder with one tokenizer's video tokens: 2 units × 30 sentences of 1–2 images."""
    write_token_shards(root / "tokens" / "test-tok", "video", units=2, sentences_per_unit=30, images=(1, 2),
                       row_group_rows=10)
    return root


def tiny_train_config(tokens: Path, out: Path | str, **train_kw: Any) -> dict[str, Any]:
    """The training tests' config (a dict for `train.config.Config`): the tiny model over `tokens`,
    6 steps of batch 2, a checkpoint every 2 steps keeping 2; `train_kw` overrides the `train:` keys."""
    return {"model": {"size": "tiny", "max_seq_len": 256},
            "data": {"tokens": [str(tokens)], "seq_len": 128, "piece_rows": 8},
            "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 3},
            "train": {"out": str(out), "seed": 0, "steps": 6, "batch_size": 2, "log_every": 1,
                      "ckpt_every": 2, "keep_checkpoints": 2, "threads": 1, **train_kw}}
