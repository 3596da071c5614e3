"""The tokenize job: committed sentence shards → token shards, one per sentence-shard unit, on Ray Data.

Mapping onto Ray Data (see docs/tokenizer.md): one dataset whose rows are the *pending units*
(one row = one sentence shard), mapped with `map_batches(batch_size=1)` onto an actor pool of
encoders (`compute=ActorPoolStrategy`, one GPU per actor when there are GPUs). Each actor loads
the VQGAN once, streams its unit's row groups and encodes images in large batches; the unit
engine (uvd.engine) commits the token shard (data file, audit, then stats last), finds what is
already done and writes the manifest. So the commit protocol, resumability and "inputs =
outputs per unit" are the build's own, while Ray Data supplies scheduling, retries,
back-pressure and the actor pool.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from contextlib import nullcontext
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from uvd import codec
from uvd.audit import AuditLog
from uvd.config import ActorPoolRun
from uvd.engine import Summary, commit_unit, find_committed, short_error, write_run_manifest
from uvd.dedup import build_root, duplicates_of
from uvd.errors import BadInput
from uvd.layout import UnitLayout, list_stats, tokens_root
from uvd.manifest import read_units, read_units_table, resolve
from uvd.progress import progress as progress_bar
from uvd.procs import assigned_cpus
from uvd.records import Failed
from uvd.runner import init_ray
from uvd.schema import TOKEN_SCHEMA
from uvd.shards import ShardWriter, open_parquet
from uvd.storage import fs_and_path, parallel_map, read_json

from tokenize_job.token_index import IndexingShardWriter, dedup_key, entry_from_footer, read_index, write_index

logger = logging.getLogger(__name__)

IDENTITY = ["sentence_id", "source", "task", "layout", "num_images"]


@dataclass(frozen=True)
class TokenUnit:
    source: str
    unit: str
    sentences: str  # URL of the committed sentence shard
    sentences_sha256: str  # from its stats: a rebuilt sentence shard makes old tokens stale

    @property
    def dataset(self) -> str:  # the engine's name for the folder a unit lives in
        return self.source

    @property
    def name(self) -> str:
        return f"{self.source}/{self.unit}"

    def recipe(self) -> dict[str, str]:
        """A token shard is done only for the exact sentence shard it was made from."""
        return {"sentences_sha256": self.sentences_sha256}

    def as_row(self) -> dict[str, str]:
        return {"source": self.source, "unit": self.unit, "sentences": self.sentences,
                "sentences_sha256": self.sentences_sha256}


def find_sentence_units(sentences_url: str) -> list[TokenUnit]:
    """Committed sentence shards of a build: from its units table (and one listing), else its stats files."""
    out = sentences_url.rstrip("/")
    layout = UnitLayout.sentences(out)
    rows = [r for r in read_units(out) if r["status"] == "done"]
    if rows:
        units = [TokenUnit(r["dataset"], r["unit"], resolve(out, r["shard_path"]), r["shard_sha256"]) for r in rows]
        listed = list_stats(layout, units)  # a unit without its stats file is not done
        return sorted((u for u in units if (u.source, u.unit) in listed), key=lambda u: (u.source, u.unit))
    listed = sorted(list_stats(layout, [TokenUnit(ds, "", "", "") for ds in _top_folders(layout.data)]))

    def read(key: tuple[str, str]) -> dict[str, Any] | None:
        try:
            return read_json(layout.stats(*key))
        except Exception:  # an unreadable marker: not committed
            return None

    return [TokenUnit(ds, unit, layout.shard(ds, unit), st.get("shard", {}).get("sha256", ""))
            for (ds, unit), st in zip(listed, parallel_map(read, listed)) if st is not None]


def _top_folders(url: str) -> list[str]:
    """The folders directly under `url` (one listing; the entries say which are folders)."""
    fs, path = fs_and_path(url)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")


def _decode_sentence(images: list[bytes], resolution: int) -> np.ndarray:
    arrs = []
    for i, data in enumerate(images):
        img = codec.decode(data)
        if img.shape[:2] != (resolution, resolution):
            raise BadInput("size", f"image {i} is {img.shape[1]}x{img.shape[0]}, tokenizer expects {resolution}")
        arrs.append(img)
    if not arrs:
        raise BadInput("empty", "sentence has no images")
    return np.stack(arrs)


def tokenize_unit(encoder: Any, describe: dict[str, Any], u: TokenUnit, root: str,
                  image_batch: int = 64) -> dict[str, Any]:
    """Tokenize one sentence shard and commit it through the unit engine; returns the stats.

    `encoder` is anything with `.encode(uint8 [N,H,W,3]) -> uint16 [N,L]`. Images of several
    sentences are pooled into batches of `image_batch` so small sentences still fill the device.
    """
    meta = {**describe, "source": u.source, "unit": u.unit, "sentences": u.sentences,
            "sentences_sha256": u.sentences_sha256}
    head = {"source": u.source, "unit": u.unit, "tokenizer_id": describe["tokenizer_id"],
            "sentences_url": u.sentences, **u.recipe()}

    def fill(writer: IndexingShardWriter, audit: AuditLog, seconds: Counter[str]) -> dict[str, Any]:
        images = _encode_shard(encoder, int(describe["resolution"]), u.sentences, image_batch, writer, audit,
                               seconds)
        # The index row (manifest/index.parquet) as the writer saw the shard: the same dict object is
        # filled in by writer.close(), which the engine calls before it writes the stats.
        return {"images": images, "tokens": images * int(describe["tokens_per_image"]), "index": writer.entry}

    dedup = _dedup_key(build_root(u.sentences))
    return commit_unit(UnitLayout.tokens(root), u.source, u.unit,
                       lambda url: IndexingShardWriter(url, TOKEN_SCHEMA, "tokens", meta, 8 << 20, u.source, u.unit,
                                                       dedup),
                       fill, meta, head)


@functools.lru_cache(maxsize=8)
def _dedup_key(build: str) -> str:
    """The dedup table's key (token_index.dedup_key) once per build, not per unit."""
    return dedup_key(duplicates_of(build)) if build else ""


def _encode_shard(encoder: Any, resolution: int, sentences: str, image_batch: int, writer: ShardWriter,
                  audit: AuditLog, seconds: Counter[str]) -> int:
    """Every sentence of one shard into `writer` (sentences failing to decode go to the audit); images encoded."""
    images = 0
    pending: list[tuple[dict[str, Any], np.ndarray]] = []

    def flush() -> None:
        nonlocal images
        if not pending:
            return
        t = time.perf_counter()
        codes = encoder.encode(np.concatenate([imgs for _, imgs in pending]))
        seconds["encode"] += time.perf_counter() - t
        start = 0
        for row, imgs in pending:
            n = len(imgs)
            writer.add({**{k: row[k] for k in IDENTITY}, "tokens": codes[start:start + n].reshape(-1)}, 2 * codes[start:start + n].size)
            audit.used([row["sentence_id"]])
            start += n
            images += n
        pending.clear()

    dropped = duplicates_of(build_root(sentences))  # the build's content dedup table (cached per build)
    pf = open_parquet(sentences)
    for rg in range(pf.num_row_groups):
        t = time.perf_counter()
        rows = pf.read_row_group(rg, columns=IDENTITY + ["images"]).to_pylist()
        seconds["read"] += time.perf_counter() - t
        for row in rows:
            audit.seen(row["sentence_id"])
            if row["sentence_id"] in dropped:  # same content as a kept sentence: not tokenized again
                audit.fail(Failed(row["sentence_id"], f"duplicate: of {dropped[row['sentence_id']]} (same content)"))
                continue
            t = time.perf_counter()
            try:
                imgs = _decode_sentence(row["images"], resolution)
            except BadInput as err:  # one bad sentence fails alone; the unit goes on
                audit.fail(Failed(row["sentence_id"], str(err)))
                continue
            finally:
                seconds["decode"] += time.perf_counter() - t
            pending.append((row, imgs))
            if sum(len(i) for _, i in pending) >= image_batch:
                flush()
    flush()
    return images


class TokenizeActor:
    """One encoder per actor: loads the VQGAN once, then tokenizes whole units handed to it."""

    def __init__(self, tokenizer_dir: str, root: str, batch_size: int, image_batch: int, threads: int = 0) -> None:
        import torch

        from tokenize_job.encode import BatchEncoder
        from tokenize_job.vqgan import load_tokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(threads or int(os.environ.get("UVD_TORCH_THREADS", "0")) or assigned_cpus())
        self.model = load_tokenizer(tokenizer_dir, device=device)
        self.encoder = BatchEncoder(self.model, batch_size=batch_size)
        self.root, self.image_batch = root, image_batch

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        results: dict[str, list[Any]] = {"source": [], "unit": [], "stats": [], "error": []}
        for i in range(len(batch["unit"])):
            u = TokenUnit(str(batch["source"][i]), str(batch["unit"][i]), str(batch["sentences"][i]),
                          str(batch["sentences_sha256"][i]))
            stats, error = None, ""
            try:
                stats = tokenize_unit(self.encoder, self.model.describe(), u, self.root, self.image_batch)
            except Exception as err:  # a failing unit is reported in the manifest and redone next run
                error = short_error(err)
            results["source"].append(u.source)
            results["unit"].append(u.unit)
            results["stats"].append(json.dumps(stats, sort_keys=True) if stats else "")
            results["error"].append(error)
        return results


@dataclass
class TokenizeResult:
    root: str
    manifest: dict[str, Any]
    ran: int
    skipped: int
    errors: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.errors and self.manifest["totals"]["units_done"] == self.manifest["totals"]["units"]


def tokenize(sentences_url: str, tokenizer_dir: str, out: str | None = None, *, use_ray: bool = True,
             actors: int = 0, batch_size: int = 64, image_batch: int = 64, threads: int = 0,
             log: Callable[[str], None] = logger.info, progress: Any = None,
             pool: ActorPoolRun | None = None) -> TokenizeResult:
    """Tokenize every committed sentence shard under `sentences_url` into <out>/tokens/<tokenizer-id>/.

    `pool` (config `run.tokenize`) sizes the encoder actor pool on Ray; `actors`, when set, fixes its size.

    `progress` (anything with `update(units=, items=, failed=)`) hears of every finished unit.
    """
    from tokenize_job.vqgan import load_tokenizer

    out = out or sentences_url
    model = load_tokenizer(tokenizer_dir)  # on the driver only for its id and description
    describe = model.describe()
    root = tokens_root(out, model.tokenizer_id)
    layout = UnitLayout.tokens(root)
    units = find_sentence_units(sentences_url)
    done = find_committed(layout, units, TokenUnit.recipe)
    pending = [u for u in units if u.name not in done]
    summary = Summary(units=len(units), skipped=len(units) - len(pending))
    built: dict[str, dict[str, Any]] = {}  # unit name → its index row, for the units built now
    log(f"tokenize: {len(units)} sentence shards, {summary.skipped} already tokenized, "
        f"{len(pending)} to do → {root}")
    with progress_bar(len(pending), "tokenize", "shard") if progress is None else nullcontext(progress) as bar:
        if pending and use_ray:
            _run_ray(pending, tokenizer_dir, root, actors, batch_size, image_batch, threads, log, summary, bar, built,
                     pool or ActorPoolRun())
        elif pending:
            import torch

            from tokenize_job.encode import BatchEncoder

            if threads:
                torch.set_num_threads(threads)
            encoder = BatchEncoder(model, batch_size=batch_size)
            for i, u in enumerate(pending, 1):
                st = tokenize_unit(encoder, describe, u, root, image_batch)
                summary.add(u.name, st, bar)
                built[u.name] = st["index"]
                logger.debug(_progress_line(i, len(pending), u.name, st))
    header = {"kind": "tokens", "tokenizer": describe, "sentences_url": sentences_url}
    man = write_run_manifest(layout, header, units, done, summary, TokenUnit.recipe)
    _update_index(root, built)
    t = man["totals"]
    log(f"tokenize: {t['units_done']}/{t['units']} units, {t.get('sentences', 0)} sentences, "
        f"{t.get('images', 0)} images, {t.get('tokens', 0)} tokens, {t.get('failed', 0)} failed sentences")
    return TokenizeResult(root, man, len(pending), summary.skipped, summary.failed_units)


def _update_index(root: str, built: dict[str, dict[str, Any]]) -> None:
    """manifest/index.parquet: one row per done unit of the units table just written. Rows of units
    built now come from their writers; the previous table's rows are kept while they describe the
    same file (same size); units without one (tokenized by an older version) are described from
    their footers, in parallel, this once. Left as it is when nothing changed (a rerun with nothing
    to do costs one read of each table)."""
    units = read_units_table(root, ["dataset", "unit", "status", "shard_bytes"])
    if units is None:
        return
    done = {(d, u): b for d, u, st, b in zip(*(units.column(c).to_pylist()
                                             for c in ("dataset", "unit", "status", "shard_bytes"))) if st == "done"}
    old = read_index(root)
    old_rows = {(e["dataset"], e["unit"]): e for e in (old.to_pylist() if old is not None else [])}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for key, nbytes in done.items():
        e = built.get(f"{key[0]}/{key[1]}") or old_rows.get(key)
        if e is not None and e.get("bytes") == nbytes:
            entries[key] = e
    if not built and len(entries) == len(done) == len(old_rows):
        return
    layout = UnitLayout.tokens(root)
    missing = [k for k in done if k not in entries]

    def describe(key: tuple[str, str]) -> dict[str, Any] | None:
        try:
            return entry_from_footer(layout.shard(*key), *key)
        except Exception as err:  # noqa: BLE001 - a reader falls back to the footer again; the run stands
            logger.warning("tokenize: no index row for %s/%s: %s", key[0], key[1], short_error(err))
            return None

    for key, e in zip(missing, parallel_map(describe, missing)):
        if e is not None:
            entries[key] = e
    write_index(root, list(entries.values()))


def _progress_line(i: int, n: int, name: str, st: dict[str, Any]) -> str:
    rate = st["images"] / max(st["seconds"]["total"], 1e-9)
    return (f"  [{i}/{n}] {name}: {st['sentences']} sentences, {st['images']} images, "
            f"{st['failed']} failed, {rate:.1f} images/s")


def pool_shape(pool: ActorPoolRun, actors: int, gpus: float, cpus: float,
               units: int) -> tuple[int, int, dict[str, float]]:
    """(min actors, max actors, Ray resources per actor) of the encoder pool on a cluster with
    `gpus`/`cpus` in all: by default one actor per GPU, each with 1 CPU beside it; without GPUs one
    actor on all CPUs (torch threads do the work; several actors would fight over the cores)."""
    if gpus and pool.num_gpus:
        lo = actors or pool.min_actors or max(1, int(gpus / pool.num_gpus))
        per_actor = {"num_gpus": pool.num_gpus, "num_cpus": pool.cpus_per_actor or 1}
    else:
        lo = actors or pool.min_actors or 1
        per_actor = {"num_cpus": pool.cpus_per_actor or max(1, int(cpus) // lo)}
    hi = lo if actors else max(pool.max_actors, lo)
    return max(1, min(lo, units)), max(1, min(hi, units)), per_actor


def _run_ray(pending: list[TokenUnit], tokenizer_dir: str, root: str, actors: int, batch_size: int,
             image_batch: int, threads: int, log: Callable[[str], None], summary: Summary, progress: Any,
             built: dict[str, dict[str, Any]], pool: ActorPoolRun) -> None:
    import ray

    init_ray(0)  # the build's way: joins RAY_ADDRESS, else a local Ray of its own
    resources = ray.cluster_resources()
    lo, hi, per_actor = pool_shape(pool, actors, resources.get("GPU", 0), resources.get("CPU", 1), len(pending))
    each = ", ".join(f"{v:g} {k.removeprefix('num_').upper()}" for k, v in per_actor.items())
    log(f"tokenize: ray data, {lo if lo == hi else f'{lo}-{hi}'} encoder actor(s), {each} each")
    ds = ray.data.from_items([u.as_row() for u in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(TokenizeActor, batch_size=1, compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
                        fn_constructor_kwargs={"tokenizer_dir": str(tokenizer_dir), "root": root,
                                               "batch_size": batch_size, "image_batch": image_batch,
                                               "threads": threads},
                        **per_actor)
    for i, row in enumerate(ds.iter_rows(), 1):
        name = f"{row['source']}/{row['unit']}"
        if row["error"]:
            summary.fail(name, row["error"], progress)
            logger.warning("[%d/%d] %s: FAILED %s", i, len(pending), name, row["error"])
        else:
            st = json.loads(row["stats"])
            summary.add(name, st, progress)
            built[name] = st["index"]
            logger.debug(_progress_line(i, len(pending), name, st))
