"""Token shards at a glance (`uvd inspect`): a summary (codes per image, codebook usage) and a contact sheet
of decoded images beside the originals.

`url` may be one token shard, a tokenizer's folder (<out>/tokens/<id>) or <out>/tokens.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from uvd.layout import UnitLayout, list_stats
from uvd.manifest import read_manifest, read_units_table
from uvd.schema import read_metadata
from uvd.shards import open_parquet, shard_metadata
from uvd.storage import exists, glob

ORIGINAL_COLUMNS = ["sentence_id", "images"]


def token_shards(url: str) -> list[str]:
    """The token shards under `url`: for a tokenizer folder (or <out>/tokens holding them) the done
    units of its units table, confirmed by one listing per source folder (a unit whose commit
    marker is gone is left out); else, for outputs without a manifest, by glob."""
    if url.endswith(".parquet"):
        return [url]
    roots = [url] if _is_tokens_root(url) else [m[: -len("/manifest.json")] for m in glob(url, "*/manifest.json")
                                                  if _is_tokens_root(m[: -len("/manifest.json")])]
    if roots:
        found = [s for root in roots for s in _committed(root)]
    else:  # a source folder, or an output written before the manifest
        found = glob(url, "part-*.parquet") or glob(url, "*/part-*.parquet") or glob(url, "*/*/part-*.parquet")
    if not found:
        raise FileNotFoundError(f"inspect: no token shards under {url}")
    return found


def _is_tokens_root(url: str) -> bool:
    man = read_manifest(url)
    return bool(man) and man.get("kind") == "tokens"


def _committed(root: str) -> list[str]:
    layout = UnitLayout.tokens(root)
    table = read_units_table(root, ["dataset", "unit", "status"])
    units = [] if table is None else [
        _Unit(d, u) for d, u, st in zip(*(table.column(c).to_pylist() for c in ("dataset", "unit", "status")))
        if st == "done"]
    listed = list_stats(layout, units)
    return [layout.shard(u.dataset, u.unit) for u in units if (u.dataset, u.unit) in listed]


@dataclass(frozen=True)
class _Unit:
    dataset: str
    unit: str


def is_token_shard(url: str) -> bool:
    return url.endswith(".parquet") and exists(url) and shard_metadata(url).get("kind") == "tokens"


def _codebook_size(meta: dict[str, str]) -> int:
    return int(meta.get("codebook_size", "0") or 0)


def summarise(url: str) -> str:
    """Files, rows, images, tokens per image, range checks, codebook usage and code entropy."""
    shards = token_shards(url)
    counts: Counter[int] = Counter()
    rows = images = bad_len = 0
    tokenizers: set[str] = set()
    sizes: set[int] = set()
    per_image: set[int] = set()
    tasks: Counter[str] = Counter()
    for path in shards:
        pf = open_parquet(path)  # one open per shard: its metadata and then its rows
        meta = read_metadata(pf.schema_arrow)
        if meta.get("kind") != "tokens":
            raise ValueError(f"inspect: {path} is not a token shard (kind={meta.get('kind')!r})")
        tokenizers.add(meta.get("tokenizer_id", "?"))
        sizes.add(_codebook_size(meta))
        tpi = int(meta.get("tokens_per_image", "0") or 0)
        per_image.add(tpi)
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg, columns=["task", "num_images", "tokens"])
            flat = t.column("tokens").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            counts.update(dict(zip(*np.unique(flat, return_counts=True))))
            n_img = t.column("num_images").to_numpy()
            lens = pc.list_value_length(t.column("tokens")).to_numpy(zero_copy_only=False)
            bad_len += int((lens != n_img * tpi).sum())
            rows += len(t)
            images += int(n_img.sum())
            tasks.update(t.column("task").to_pylist())
    total = sum(counts.values())
    size = max(sizes) if sizes else 0
    probs = np.array(list(counts.values()), float) / max(total, 1)
    entropy = float(-(probs * np.log2(probs)).sum()) if total else 0.0
    over = sum(c for code, c in counts.items() if size and code >= size)
    top = ", ".join(f"code {int(c)} ×{n}" for c, n in counts.most_common(5))
    lines = [
        f"token shards: {len(shards)} under {url}",
        f"tokenizer:    {', '.join(sorted(tokenizers))} (codebook {', '.join(map(str, sorted(sizes)))}, "
        f"{', '.join(map(str, sorted(per_image)))} codes per image)",
        f"sentences:    {rows}   images: {images}   tokens: {total}",
        f"tasks:        {dict(sorted(tasks.items()))}",
        f"lengths:      {'OK' if bad_len == 0 else f'{bad_len} rows with len(tokens) != num_images × codes per image'}",
        f"range:        {'OK (all codes < codebook size)' if over == 0 else f'{over} codes ≥ codebook size'}",
        f"codebook:     {len(counts)} of {size} codes used ({100 * len(counts) / max(size, 1):.1f}%), "
        f"entropy {entropy:.2f} bits/code (max {np.log2(max(size, 2)):.2f})",
        f"most common:  {top}",
    ]
    return "\n".join(lines)


def _find_row(url: str, sentence: int | str, columns: list[str]) -> dict[str, Any]:
    pf = open_parquet(url)
    index = 0
    for rg in range(pf.num_row_groups):
        for row in pf.read_row_group(rg, columns=columns).to_pylist():
            if (isinstance(sentence, int) and index == sentence) or row["sentence_id"] == sentence:
                return row
            index += 1
    raise KeyError(f"inspect: sentence {sentence!r} not in {url}")


def contact_sheet(url: str, sentence: int | str, tokenizer_dir: str, out_png: str, max_images: int = 16) -> str:
    """Originals (top row) above their decoded tokens (bottom row) for one sentence of a token shard."""
    import cv2

    from tokenize_job.encode import decode_codes
    from tokenize_job.vqgan import load_tokenizer
    from uvd import codec

    shard = token_shards(url)[0]
    meta = shard_metadata(shard)
    model = load_tokenizer(tokenizer_dir)
    if meta.get("weights_sha256") and meta["weights_sha256"] != model.weights_sha256:
        raise ValueError(f"inspect: {shard} was made by {meta.get('tokenizer_id')}, not by {model.tokenizer_id}")
    row = _find_row(shard, sentence, ["sentence_id", "num_images", "tokens"])
    n = min(int(row["num_images"]), max_images)
    codes = np.asarray(row["tokens"], np.int64).reshape(int(row["num_images"]), -1)[:n]
    decoded = decode_codes(model, codes)
    originals = None
    src = meta.get("sentences", "")
    if src and exists(src):
        orig_row = _find_row(src, row["sentence_id"], ORIGINAL_COLUMNS)
        originals = np.stack([codec.decode(b) for b in orig_row["images"][:n]])
    tile = decoded.shape[1]
    strips = [np.concatenate(list(originals), 1)] if originals is not None and originals.shape[1] == tile else []
    strips.append(np.concatenate(list(decoded), 1))
    sheet = np.concatenate(strips, 0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("inspect: PNG encoding failed")
    from uvd.storage import write_bytes

    write_bytes(out_png, buf.tobytes())
    return json.dumps({"sentence_id": row["sentence_id"], "images": n, "with_originals": len(strips) == 2})
