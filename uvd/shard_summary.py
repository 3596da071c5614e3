"""What is in sentence shards: counts by source/task/layout, failures by reason; one sentence's contact sheet."""
from __future__ import annotations

from collections import Counter
from typing import Any

from uvd import codec
from uvd.contact_sheet import grid, save_png
from uvd.manifest import read_units, resolve, shards
from uvd.schema import read_metadata
from uvd.shards import iter_rows, open_parquet, read_table
from uvd.storage import fs_and_path, glob


def sentence_shards(path: str) -> list[str]:
    """The committed-or-not sentence shards under an output, a dataset folder, or one file."""
    if path.endswith(".parquet"):
        return [path]
    rows = read_units(path.rstrip("/"))  # a finished output: its committed shards, without a glob
    if rows:
        return sorted(resolve(path.rstrip("/"), s["path"]) for s in shards(rows) if s["kind"] == "sentences")
    for pattern in ("sentences/*/part-*.parquet", "part-*.parquet"):
        found = glob(path, pattern)
        if found:
            return found
    return []


def _audit_for(shard: str) -> str:
    return shard.replace("/sentences/", "/audit/", 1)


def summarise(shards: list[str]) -> dict[str, Any]:
    counts: dict[str, Counter] = {"source": Counter(), "task": Counter(), "layout": Counter(), "num_images": Counter()}
    rows = images = nbytes = 0
    failures: Counter[str] = Counter()
    audited = ok = 0
    for shard in shards:
        fs, p = fs_and_path(shard)
        nbytes += fs.size(p)
        table = read_table(shard, columns=["source", "task", "layout", "num_images"])
        rows += table.num_rows
        for col in counts:
            counts[col].update(str(v) for v in table.column(col).to_pylist())
        images += sum(table.column("num_images").to_pylist())
        audit = _audit_for(shard)
        if audit != shard and fs.exists(fs_and_path(audit)[1]):
            at = read_table(audit, columns=["status", "reason"]).to_pylist()
            audited += len(at)
            ok += sum(r["status"] == "ok" for r in at)
            failures.update(r["reason"] for r in at if r["status"] != "ok")
    return {"shards": len(shards), "sentences": rows, "images": images, "bytes": nbytes,
            "by_source": dict(counts["source"]), "by_task": dict(counts["task"]),
            "by_layout": dict(counts["layout"]),
            "images_per_sentence": {int(k): v for k, v in sorted(counts["num_images"].items(), key=lambda kv: int(kv[0]))},
            "inputs": audited, "ok": ok, "failed": audited - ok, "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))}


def format_summary(s: dict[str, Any]) -> str:
    def counter(d: dict[Any, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"

    lines = [
        f"shards: {s['shards']}   sentences: {s['sentences']}   images: {s['images']}   "
        f"bytes: {s['bytes']:,} ({s['bytes'] / max(s['images'], 1) / 1024:.1f} KiB/image)",
        f"by source: {counter(s['by_source'])}",
        f"by task:   {counter(s['by_task'])}",
        f"by layout: {counter(s['by_layout'])}",
        f"images per sentence: {counter(s['images_per_sentence'])}",
    ]
    if s["inputs"]:
        lines.append(f"inputs: {s['inputs']}   ok: {s['ok']}   failed: {s['failed']}")
        lines.append(f"failures by reason: {counter(s['failures'])}")
    return "\n".join(lines)


def is_token_shard(url: str) -> bool:
    return read_metadata(open_parquet(url).schema_arrow).get("kind") == "tokens"


def find_sentence(path: str, which: str) -> dict[str, Any]:
    """A sentence by id, or by its index over the shards in order."""
    index = int(which) if which.isdigit() else None
    seen = 0
    for shard in sentence_shards(path):
        for row in iter_rows(shard):
            if (index is not None and seen == index) or row["sentence_id"] == which:
                return row
            seen += 1
    raise KeyError(f"no sentence {which!r} under {path}")


def contact_sheet(path: str, which: str | int, out_png: str, columns: int = 8) -> dict[str, Any]:
    row = find_sentence(path, str(which))
    images = [codec.decode(b) for b in row["images"]]
    title = f"{row['sentence_id']}  {row['source']} / {row['task']} / {row['layout']}  ({len(images)} images)"
    save_png(out_png, grid(images, columns=columns, title=title))
    return row
