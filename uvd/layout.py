"""Where things live under an output URL (README, "What it writes")."""
from __future__ import annotations

from uvd.storage import join


def unit_name(index: int) -> str:
    return f"{index:05d}"


def sentence_shard(out: str, dataset: str, unit: str) -> str:
    return join(out, "sentences", dataset, f"part-{unit}.parquet")


def stats_file(shard_url: str) -> str:
    return shard_url[: -len(".parquet")] + ".stats.json"


def audit_shard(out: str, dataset: str, unit: str) -> str:
    return join(out, "audit", dataset, f"part-{unit}.parquet")


def manifest(out: str) -> str:
    return join(out, "manifest.json")


def relative(out: str, url: str) -> str:
    return url[len(out.rstrip("/")) + 1:] if url.startswith(out.rstrip("/") + "/") else url
