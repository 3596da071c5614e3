"""The tokenize job: committed sentence shards → token shards, one per sentence-shard unit, on Ray Data.

Mapping onto Ray Data (see docs/tokenizer.md): one dataset whose rows are the *pending units*
(one row = one sentence shard), mapped with `map_batches(batch_size=1)` onto an actor pool of
encoders (`compute=ActorPoolStrategy`, one GPU per actor when there are GPUs). Each actor loads
the VQGAN once, streams its unit's row groups, encodes images in large batches and commits the
token shard itself (data file, audit, then stats last). So the commit protocol, resumability
and "inputs = outputs per unit" stay per unit, exactly as for sentence shards, while Ray Data
supplies scheduling, retries, back-pressure and the actor pool.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from uvd import codec
from uvd.audit import AuditLog
from uvd.dedup import build_root, duplicates_of
from uvd.errors import BadInput
from uvd.layout import manifest as manifest_url
from uvd.layout import stats_file
from uvd.progress import progress as progress_bar
from uvd.records import Failed
from uvd.schema import TOKEN_SCHEMA
from uvd.runner import init_ray
from uvd.shards import ShardWriter, open_parquet
from uvd.storage import exists, glob, join, read_json, remove_stale_temps, write_json

IDENTITY = ["sentence_id", "source", "task", "layout", "num_images"]


@dataclass(frozen=True)
class TokenUnit:
    source: str
    unit: str
    sentences: str  # URL of the committed sentence shard
    sentences_sha256: str  # from its stats: a rebuilt sentence shard makes old tokens stale

    def as_row(self) -> dict[str, str]:
        return {"source": self.source, "unit": self.unit, "sentences": self.sentences,
                "sentences_sha256": self.sentences_sha256}


def tokens_root(out: str, tokenizer_id: str) -> str:
    return join(out, "tokens", tokenizer_id)


def token_shard(root: str, source: str, unit: str) -> str:
    return join(root, source, f"part-{unit}.parquet")


def token_audit(root: str, source: str, unit: str) -> str:
    return join(root, "audit", source, f"part-{unit}.parquet")


def _unit_of(path: str) -> tuple[str, str]:
    parts = path.rstrip("/").split("/")
    return parts[-2], parts[-1][len("part-"):-len(".parquet")]


def _resolve(out: str, path: str) -> str:
    """Manifest paths may be relative to the output (so an output can move) or absolute URLs."""
    return path if "://" in path or path.startswith("/") else join(out, path)


def find_sentence_units(sentences_url: str) -> list[TokenUnit]:
    """Committed sentence shards: those listed by <out>/manifest.json, else found by glob; stats required."""
    paths: list[str] = []
    if exists(manifest_url(sentences_url)):
        man = read_json(manifest_url(sentences_url))
        paths = [_resolve(sentences_url, s["path"]) for s in man.get("shards", [])
                 if s.get("kind", "sentences") == "sentences"]
    if not paths:
        paths = glob(sentences_url, "sentences/*/part-*.parquet")
    units = []
    for path in sorted(paths):
        st_url = stats_file(path)
        if not exists(st_url):  # not committed: the build has not finished this unit
            continue
        st = read_json(st_url)
        source, unit = _unit_of(path)
        units.append(TokenUnit(source, unit, path, st.get("shard", {}).get("sha256", "")))
    return units


def unit_done(root: str, u: TokenUnit) -> bool:
    url = stats_file(token_shard(root, u.source, u.unit))
    return exists(url) and read_json(url).get("sentences_sha256") == u.sentences_sha256


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
    """Tokenize one sentence shard and commit it (token shard, audit, stats last); returns the stats.

    `encoder` is anything with `.encode(uint8 [N,H,W,3]) -> uint16 [N,L]`. Images of several
    sentences are pooled into batches of `image_batch` so small sentences still fill the device.
    """
    t0 = time.perf_counter()
    shard_url, audit_url = token_shard(root, u.source, u.unit), token_audit(root, u.source, u.unit)
    for url in (shard_url, audit_url, stats_file(shard_url)):
        remove_stale_temps(url)
    resolution = int(describe["resolution"])
    meta = {**describe, "source": u.source, "unit": u.unit, "sentences": u.sentences,
            "sentences_sha256": u.sentences_sha256}
    audit = AuditLog()
    seconds: Counter[str] = Counter()
    images = 0
    writer = ShardWriter(shard_url, TOKEN_SCHEMA, "tokens", meta, row_group_bytes=8 << 20)
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

    dropped = duplicates_of(build_root(u.sentences))
    try:
        pf = open_parquet(u.sentences)
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
        info = writer.close()
    except BaseException:
        writer.abort()
        raise
    audit_info = audit.write(audit_url, meta)
    counts = audit.counts()
    stats = {
        "source": u.source, "unit": u.unit, "tokenizer_id": describe["tokenizer_id"],
        "sentences_url": u.sentences, "sentences_sha256": u.sentences_sha256,
        **counts, "sentences": info.rows, "images": images,
        "tokens": images * int(describe["tokens_per_image"]),
        "shard": {"path": shard_url, "rows": info.rows, "bytes": info.bytes, "sha256": info.sha256},
        "audit": {"path": audit_url, "rows": counts["inputs"], "bytes": audit_info.bytes, "sha256": audit_info.sha256},
        "seconds": {k: round(v, 4) for k, v in {**seconds, "total": time.perf_counter() - t0}.items()},
    }
    write_json(stats_file(shard_url), stats)  # last: from now on the unit counts as done
    return stats


class TokenizeActor:
    """One encoder per actor: loads the VQGAN once, then tokenizes whole units handed to it."""

    def __init__(self, tokenizer_dir: str, root: str, batch_size: int, image_batch: int, threads: int = 0) -> None:
        import torch

        from tokenize_job.encode import BatchEncoder
        from tokenize_job.vqgan import load_tokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(threads or int(os.environ.get("UVD_TORCH_THREADS", "0")) or _ray_cpus())
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
                error = f"{type(err).__name__}: {err}"
            results["source"].append(u.source)
            results["unit"].append(u.unit)
            results["stats"].append(_json(stats) if stats else "")
            results["error"].append(error)
        return results


def _ray_cpus() -> int:
    try:
        import ray

        return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except Exception:
        return 1


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def write_tokens_manifest(root: str, describe: dict[str, Any], sentences_url: str, units: list[TokenUnit],
                          errors: dict[str, str]) -> dict[str, Any]:
    """<out>/tokens/<id>/manifest.json from the stats files (what is committed is what counts)."""
    unit_rows, shards = [], []
    totals: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for u in units:
        url = stats_file(token_shard(root, u.source, u.unit))
        if not exists(url):
            unit_rows.append({"source": u.source, "unit": u.unit, "status": "failed",
                              "error": errors.get(f"{u.source}/{u.unit}", "not tokenized")})
            continue
        st = read_json(url)
        unit_rows.append({"source": u.source, "unit": u.unit, "status": "done", "inputs": st["inputs"],
                          "ok": st["ok"], "failed": st["failed"], "sentences": st["sentences"]})
        shards.append({"kind": "tokens", "source": u.source, "unit": u.unit, **st["shard"]})
        shards.append({"kind": "audit", "source": u.source, "unit": u.unit, **st["audit"]})
        for k in ("inputs", "ok", "failed", "sentences", "images", "tokens"):
            totals[k] += st[k]
        totals["bytes"] += st["shard"]["bytes"]
        failures.update(st["failures"])
    man = {
        "kind": "tokens", "schema_version": 1, "tokenizer": describe, "sentences_url": sentences_url,
        "units": unit_rows, "shards": shards,
        "totals": {**dict(totals), "units": len(units), "units_done": sum(r["status"] == "done" for r in unit_rows),
                   "failures": dict(sorted(failures.items())),
                   "bytes_per_token": round(totals["bytes"] / totals["tokens"], 4) if totals["tokens"] else None},
    }
    write_json(manifest_url(root), man)
    return man


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


logger = logging.getLogger(__name__)


def _log(msg: str) -> None:
    logger.info(msg)


def tokenize(sentences_url: str, tokenizer_dir: str, out: str | None = None, *, use_ray: bool = True,
             actors: int = 0, batch_size: int = 32, image_batch: int = 64, threads: int = 0,
             progress: Callable[[str], None] = _log) -> TokenizeResult:
    """Tokenize every committed sentence shard under `sentences_url` into <out>/tokens/<tokenizer-id>/."""
    from tokenize_job.vqgan import load_tokenizer

    out = out or sentences_url
    model = load_tokenizer(tokenizer_dir)  # on the driver only for its id and description
    describe = model.describe()
    root = tokens_root(out, model.tokenizer_id)
    units = find_sentence_units(sentences_url)
    pending = [u for u in units if not unit_done(root, u)]
    progress(f"tokenize: {len(units)} sentence shards, {len(units) - len(pending)} already tokenized, "
             f"{len(pending)} to do → {root}")
    errors: dict[str, str] = {}
    if pending and use_ray:
        errors = _run_ray(pending, tokenizer_dir, root, actors, batch_size, image_batch, threads, progress)
    elif pending:
        import torch

        from tokenize_job.encode import BatchEncoder

        if threads:
            torch.set_num_threads(threads)
        encoder = BatchEncoder(model, batch_size=batch_size)
        with progress_bar(len(pending), "tokenize", "shard") as bar:
            for i, u in enumerate(pending, 1):
                st = tokenize_unit(encoder, describe, u, root, image_batch)
                bar.update(1, items=st["images"], failed=st["failed"])
                logger.debug(_progress_line(i, len(pending), u.source, u.unit, st))
    man = write_tokens_manifest(root, describe, sentences_url, units, errors)
    t = man["totals"]
    progress(f"tokenize: {t['units_done']}/{t['units']} units, {t.get('sentences', 0)} sentences, "
             f"{t.get('images', 0)} images, {t.get('tokens', 0)} tokens, {t.get('failed', 0)} failed sentences")
    return TokenizeResult(root, man, len(pending), len(units) - len(pending), errors)


def _progress_line(i: int, n: int, source: str, unit: str, st: dict[str, Any]) -> str:
    rate = st["images"] / max(st["seconds"]["total"], 1e-9)
    return (f"  [{i}/{n}] {source}/part-{unit}: {st['sentences']} sentences, {st['images']} images, "
            f"{st['failed']} failed, {rate:.1f} images/s")


def _run_ray(pending: list[TokenUnit], tokenizer_dir: str, root: str, actors: int, batch_size: int,
             image_batch: int, threads: int, progress: Callable[[str], None]) -> dict[str, str]:
    import json

    import ray

    init_ray(0)  # the build's way: joins RAY_ADDRESS, else a local Ray of its own
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        size, per_actor = (actors or gpus), {"num_gpus": 1, "num_cpus": 1}
    else:
        # On CPU one actor using all cores beats several fighting over them (torch threads do the work).
        size = actors or 1
        per_actor = {"num_cpus": max(1, cpus // size)}
    size = min(size, len(pending))
    progress(f"tokenize: ray data, {size} encoder actor(s), {'1 GPU' if gpus else str(per_actor['num_cpus']) + ' CPU'} each")
    ds = ray.data.from_items([u.as_row() for u in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(TokenizeActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=size),
                        fn_constructor_kwargs={"tokenizer_dir": str(tokenizer_dir), "root": root,
                                               "batch_size": batch_size, "image_batch": image_batch,
                                               "threads": threads},
                        **per_actor)
    errors: dict[str, str] = {}
    with progress_bar(len(pending), "tokenize", "shard") as bar:
        for i, row in enumerate(ds.iter_rows(), 1):
            name = f"{row['source']}/{row['unit']}"
            if row["error"]:
                errors[name] = row["error"]
                bar.update(1, failed=1)
                logger.warning("  [%d/%d] %s: FAILED %s", i, len(pending), name, row["error"])
            else:
                st = json.loads(row["stats"])
                bar.update(1, items=st["images"], failed=st["failed"])
                logger.debug(_progress_line(i, len(pending), row["source"], row["unit"], st))
    return errors


def iter_token_rows(root: str) -> Iterable[dict[str, Any]]:
    """All rows of a token output, shard by shard (for inspection and tests)."""
    for path in glob(root, "*/part-*.parquet"):
        pf = open_parquet(path)
        for rg in range(pf.num_row_groups):
            yield from pf.read_row_group(rg).to_pylist()
