"""Token shards for the training tests, written the way the tokenize job writes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from uvd.layout import stats_file
from uvd.schema import TOKEN_SCHEMA
from uvd.shards import ShardWriter
from uvd.storage import write_json

TOKENS_PER_IMAGE = 256


def pattern_tokens(rng: np.random.Generator, num_images: int, period: int = 64) -> np.ndarray:
    """Learnable codes: each image counts up modulo `period` from a random start."""
    starts = rng.integers(0, period, num_images)
    steps = np.arange(TOKENS_PER_IMAGE)
    return ((starts[:, None] + steps[None, :]) % period).reshape(-1).astype(np.uint16)


def write_token_shards(root: Path, source: str, units: int, sentences_per_unit: int, *, task: str = "image",
                       tasks: list[str] | None = None, images: tuple[int, int] = (1, 4), seed: int = 0,
                       row_group_rows: int = 0) -> list[dict]:
    """<root>/<source>/part-<unit>.parquet (+ .stats.json); returns the rows written, in order."""
    rng = np.random.default_rng([seed, len(source)])
    written: list[dict] = []
    for u in range(units):
        url = str(root / source / f"part-{u:05d}.parquet")
        # A tiny row-group size gives several row groups per file, as large real shards have.
        nbytes = 1 if row_group_rows else 0
        writer = ShardWriter(url, TOKEN_SCHEMA, "tokens", {"tokenizer": "test"},
                             row_group_bytes=(row_group_rows if row_group_rows else 32 << 20))
        for i in range(sentences_per_unit):
            n = int(rng.integers(images[0], images[1] + 1))
            row = {"sentence_id": f"{source}-{u}-{i}", "source": source,
                   "task": tasks[i % len(tasks)] if tasks else task, "layout": "sequence",
                   "num_images": n, "tokens": pattern_tokens(rng, n)}
            writer.add(row, nbytes)
            written.append(row)
        info = writer.close()
        write_json(stats_file(url), {"shard": {"path": url, "rows": info.rows, "bytes": info.bytes,
                                               "sha256": info.sha256}, "sentences": info.rows})
    return written


def video_token_build(root: Path) -> Path:
    """A build folder with one tokenizer's video tokens: 2 units × 30 sentences of 1–2 images."""
    write_token_shards(root / "tokens" / "test-tok", "video", units=2, sentences_per_unit=30, images=(1, 2),
                       row_group_rows=10)
    return root
