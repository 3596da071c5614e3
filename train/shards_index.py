"""Which token shards exist (committed ones of the plan only) and how their rows split into pieces per group.

A *piece* is at most `piece_rows` sentences of one row group belonging to one mixture group;
pieces are the unit the stream deals out to ranks and DataLoader workers (train/piece_table.py).

The index is built from the tokenize job's index table (tokenize_job/token_index.py: rows, row
groups, groups of rows per (source, task) for every shard), the units table and ONE listing of
each source folder (uvd.layout.list_stats: in parallel slices by unit name on an object store) to
confirm what exists, and at what size: no shard footer is opened. Shards without
a row in that table (written by an older version, or copied in) are described from their footers,
read in parallel on a bounded pool. The build's dedup table is read once per build; only shards
tokenized under another dedup table than today's pay a read of their `sentence_id` column.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tokenize_job.token_index import dedup_key, entry_from_footer, read_index, rows_by_group
from train.piece_table import Piece, PieceList, TokenIndex
from uvd import storage
from uvd.dedup import build_root, dropped_ids
from uvd.layout import UnitLayout, list_stats, relative, stats_file
from uvd.manifest import read_manifest, read_units_table
from uvd.shards import open_parquet
from uvd.storage import fs_and_path, parallel_map

__all__ = ["Piece", "PieceList", "TokenIndex", "build_index", "find_token_shards", "locate_token_shards"]

log = logging.getLogger(__name__)
FOOTER_THREADS = 16  # footers of shards without an index row, read at once (object-store latency)


def find_token_shards(roots: list[str]) -> list[str]:
    """Committed token shards (a `.stats.json` beside them) under each root, sorted (see locate_token_shards)."""
    return locate_token_shards(roots)[0]


def locate_token_shards(roots: list[str]) -> tuple[list[str], list[dict[str, Any] | None]]:
    """(committed token shards under each root, sorted; each one's index-table row or None).

    A root may be a tokenizer folder (<out>/tokens/<id>), a build output (<out>, holding exactly
    one tokenizer's tokens), one source folder, or a single .parquet file. A tokenizer folder's
    manifest (manifest/units.parquet) lists its shards, and only the units of the build's current
    plan count (a token shard whose sentence unit the build's units table no longer lists as done
    is left out); without a manifest, committed parts are found by glob. All roots must come from
    one tokenizer: codes of two tokenizers mean different things.
    """
    found: dict[str, dict[str, Any] | None] = {}
    tokenizers: dict[str, str] = {}
    for root in roots:
        if root.endswith(".parquet"):
            committed = {root: None} if storage.exists(stats_file(root)) else {}
        else:
            root = _tokenizer_folder(root)
            committed, tokenizer = _committed_in(root)
            if tokenizer:
                tokenizers[root] = tokenizer
        if not committed:
            raise FileNotFoundError(f"no committed token shards (part-*.parquet with .stats.json) under {root}")
        for url, entry in committed.items():
            found[url] = found.get(url) or entry
    if len(set(tokenizers.values())) > 1:
        raise ValueError(f"token folders come from different tokenizers: {tokenizers}")
    shards = sorted(found)
    return shards, [found[u] for u in shards]


def _committed_in(root: str) -> tuple[dict[str, dict[str, Any] | None], str | None]:
    """Shard URL → index row (None: none usable) of the committed shards under a folder, with
    its tokenizer id: the manifest's units and index tables and one listing, else a glob."""
    man = read_manifest(root)
    if not (man and man.get("kind") == "tokens"):
        listed = storage.list_files(root)  # one listing: what exists
        candidates = [rel for rel in listed if rel.endswith(".parquet") and _is_part(rel)]
        return {storage.join(root, rel): None for rel in sorted(candidates)
                if relative(root, stats_file(storage.join(root, rel))) in listed}, None
    units = read_units_table(root, ["dataset", "unit", "status"])
    done = [] if units is None else [
        (d, u) for d, u, st in zip(*(units.column(c).to_pylist() for c in ("dataset", "unit", "status"))) if st == "done"]
    plan = _build_plan(man.get("sentences_url"))
    if plan is not None:
        outside = [k for k in done if k not in plan]
        if outside:
            log.warning(f"train: {len(outside)} token shard(s) under {root} belong to units outside the build's "
                        f"current plan (e.g. {outside[0][0]}/{outside[0][1]}): not trained on")
            done = [k for k in done if k in plan]
    # One listing of each dataset folder (in parallel slices by unit name on an object store): what exists, at what size.
    listed = list_stats(UnitLayout.tokens(root), [SimpleNamespace(dataset=d, unit=u) for d, u in done])
    index = read_index(root)
    by_key = {(e["dataset"], e["unit"]): e for e in (index.to_pylist() if index is not None else [])}
    found: dict[str, dict[str, Any] | None] = {}
    missing = []
    for dataset, unit in done:
        rel = f"{dataset}/part-{unit}.parquet"
        marker, shard = listed.pop_unit((dataset, unit))
        if shard is None or marker is None:
            missing.append(rel)
            continue
        entry = by_key.get((dataset, unit))
        # A row vouches only for the file it describes: another size means the shard was rewritten.
        found[storage.join(root, rel)] = entry if entry is not None and entry["bytes"] == shard.size else None
    if missing:  # never read: a shard without its marker may be half-rewritten
        log.warning(f"train: {root}: {len(missing)} token shard(s) of its units table are missing or uncommitted "
                    f"(e.g. {missing[0]}), left out: run `uvd tokenize` again to redo them")
    return found, (man.get("tokenizer") or {}).get("tokenizer_id")


def _is_part(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) <= 2 and parts[-1].startswith("part-") and (len(parts) == 1 or parts[0] not in ("audit", "manifest"))


def _build_plan(sentences_url: str | None) -> set[tuple[str, str]] | None:
    """(dataset, unit) of the build's done units from its units table; None when it cannot be read."""
    if not sentences_url:
        return None
    try:
        table = read_units_table(sentences_url, ["dataset", "unit", "status"])
    except Exception:  # noqa: BLE001 - the build may have moved: its tokens folder still stands alone
        return None
    if table is None:
        return None
    return {(d, u) for d, u, st in zip(*(table.column(c).to_pylist() for c in ("dataset", "unit", "status")))
            if st == "done"}


def _tokenizer_folder(root: str) -> str:
    if not storage.exists(storage.join(root, "tokens")):
        return root
    fs, _ = fs_and_path(root)
    folders = [p for p in storage.glob(root, "tokens/*") if fs.isdir(p)]
    if len(folders) != 1:
        names = [posixpath.basename(p) for p in folders]
        raise ValueError(f"{root}/tokens holds {len(folders)} tokenizers' tokens {names}: name one folder in data.tokens")
    return folders[0]


def build_index(roots: list[str], by: str | None, piece_rows: int) -> TokenIndex:
    shards, entries = locate_token_shards(roots)
    unknown = [i for i, e in enumerate(entries) if e is None]
    if unknown:  # older outputs: their footers, in parallel
        log.info(f"train: {len(unknown)} of {len(shards)} token shards have no index row; reading their footers")
        for i, e in zip(unknown, parallel_map(lambda i: entry_from_footer(shards[i]), unknown, FOOTER_THREADS)):
            entries[i] = e
    kept = _dedup_reads(shards, entries)
    index = TokenIndex(shards)
    h = hashlib.sha256()
    for si, (url, e) in enumerate(zip(shards, entries)):
        prefix = f"[{json.dumps(url)}, "
        groups = rows_by_group(e, by)
        for rg, n in enumerate(e["row_groups"]):
            h.update(f"{prefix}{rg}, {n}]".encode())  # = json.dumps([url, rg, n]): fingerprints stay as they were
            keep = kept.get((si, rg))  # content duplicates in <build>/dedup are never streamed
            if keep is not None:
                h.update(json.dumps(keep.tolist()).encode())
            if by is None:
                index.add("all", si, rg, keep, n, piece_rows)
                continue
            for name, rows in groups.get(rg, []):
                rows = np.arange(n, dtype=np.int64) if rows is None else rows
                index.add(name, si, rg, rows if keep is None else np.intersect1d(rows, keep), n, piece_rows)
    index.fingerprint = h.hexdigest()[:16]
    return index.finish()


def _dedup_reads(shards: list[str], entries: list[dict[str, Any]]) -> dict[tuple[int, int], np.ndarray]:
    """(shard, row group) → rows not dropped, where a row group holds dropped ids. Each build's dedup
    table is read once; a shard tokenized under today's table holds none of its ids (the tokenize
    job skipped them) and is not read: only the others pay a `sentence_id` column read."""
    skips: dict[str, tuple[set[str], str]] = {}
    check = []
    for si, e in enumerate(entries):
        build = build_root(e.get("sentences") or "")
        if build not in skips:
            skip = dropped_ids(build) if build else set()
            skips[build] = (skip, dedup_key(skip))
        skip, key = skips[build]
        if skip and e.get("dedup") != key:
            check.append((si, skip))

    def read(item: tuple[int, set[str]]) -> list[tuple[int, np.ndarray]]:
        si, skip = item
        out = []
        with open_parquet(shards[si]) as pf:
            for rg in range(pf.num_row_groups):
                kept = _not_dropped(pf, rg, skip)
                if kept is not None:
                    out.append((rg, kept))
        return out

    found: dict[tuple[int, int], np.ndarray] = {}
    for (si, _), parts in zip(check, parallel_map(read, check, FOOTER_THREADS)):
        for rg, kept in parts:
            found[(si, rg)] = kept
    return found


def _not_dropped(pf: pq.ParquetFile, rg: int, skip: set[str]) -> np.ndarray | None:
    """Row numbers of row group `rg` whose sentence is not dropped; None when none is."""
    if not skip:
        return None
    ids = pf.read_row_group(rg, columns=["sentence_id"], use_threads=False).column("sentence_id").to_pylist()
    if not skip.intersection(ids):
        return None
    return np.array([i for i, sid in enumerate(ids) if sid not in skip], dtype=np.int64)
