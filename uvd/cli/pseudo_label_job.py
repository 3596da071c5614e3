"""The pseudo-label job: a folder of photos (any fsspec URL) → one label file per photo, on Ray Data.

Photos are listed once, sorted, and cut into units of `unit_size` photos. Pending units are the
rows of a Ray Data dataset mapped onto an actor pool of labellers (one model per actor, one GPU
per actor when the cluster has GPUs; `batch_size` photos per model call). A unit writes its
label files under OUT with the photos' relative names, then commits through the unit engine
(uvd.engine.commit_unit): an index shard listing the files written (item, file, bytes, sha256),
its audit (every photo `ok` or failed with its reason) and, last, its stats file. Bookkeeping
lives under OUT/_uvd/ (units/<kind>/part-<unit>.parquet + .stats.json, audit/<kind>/...,
manifest.json, manifest/units.parquet), so a rerun skips committed units (uvd.engine.find_committed)
and a unit killed half-way is redone whole. The recipe of a unit (what its files depend on) is its
photo names, the model's fingerprint and the labelling options.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from uvd.audit import AuditLog
from uvd.engine import Summary, commit_unit, find_committed, short_error, write_run_manifest
from uvd.errors import BadInput
from uvd.layout import UnitLayout
from uvd.procs import assigned_cpus
from uvd.records import Failed
from uvd.shards import ShardWriter
from uvd.storage import fs_and_path, join, list_files, write_bytes

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LABEL_SCHEMA = pa.schema([("item_id", pa.string()), ("label", pa.string()), ("bytes", pa.int64()),
                          ("sha256", pa.string())])
SUFFIX = {"depth": ".npy", "normals": ".png", "segmentation": ".png", "edges": ".png"}


@dataclass(frozen=True)
class LabelSpec:
    """What every actor needs to label a unit: the model, its options and where things are."""

    images: str
    out: str
    model: str
    kind: str
    arch: str | None = None
    arch_args: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size: int = 0
    inverse_output: bool | None = None  # None: as the model says (transformers folders), else no
    batch_size: int = 16
    model_id: str = ""  # fingerprint of the model's files (model_fingerprint)

    def layout(self) -> UnitLayout:
        base = join(self.out.rstrip("/"), "_uvd")
        return UnitLayout(base, join(base, "units"), join(base, "audit"))

    def recipe(self) -> dict[str, Any]:
        """What a label file depends on besides its photo; not batch size or concurrency."""
        return {"model_id": self.model_id, "kind": self.kind, "arch": self.arch, "arch_args": self.arch_args,
                "mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
                "inverse_output": self.inverse_output}

    def load(self, device: str = "cpu") -> Any:
        from renderers.labeler import Labeler

        return Labeler.load(self.model, self.kind, self.arch, self.arch_args, mean=self.mean, std=self.std,
                            input_size=self.input_size, batch_size=self.batch_size, device=device)


@dataclass(frozen=True)
class LabelUnit:
    kind: str
    unit: str
    images: tuple[str, ...]  # names relative to the photo folder

    @property
    def dataset(self) -> str:
        return self.kind

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.unit}"

    def names_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.images).encode()).hexdigest()


def model_fingerprint(path: str) -> str:
    """sha256 over the model's file names and sizes (and its small JSON files' bytes): a replaced
    checkpoint makes every unit stale without hashing gigabytes of weights."""
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for q in files:
        h.update(f"{q.relative_to(p) if p.is_dir() else q.name}\0{q.stat().st_size}\0".encode())
        if q.suffix == ".json" and q.stat().st_size < 1 << 20:
            h.update(q.read_bytes())
    return h.hexdigest()[:16]


def plan_units(images: str, kind: str, unit_size: int) -> list[LabelUnit]:
    """The photos under `images` (one listing, recursively), sorted, in units of `unit_size`."""
    names = sorted(n for n in list_files(images) if n.lower().endswith(PHOTO_SUFFIXES)
                   and not n.startswith("_uvd/"))
    return [LabelUnit(kind, f"{i // unit_size:05d}", tuple(names[i:i + unit_size]))
            for i in range(0, len(names), unit_size)]


def encode_label(kind: str, pred: np.ndarray, disparity: bool) -> bytes:
    """One prediction → the file the `depth` / `segmentation` sources read (depth .npy, PNGs otherwise)."""
    import cv2

    if kind == "depth":
        if disparity:
            with np.errstate(divide="ignore"):
                pred = np.where(pred > 0, 1.0 / pred, 0.0)  # no disparity: no depth (invalid)
        buf = io.BytesIO()
        np.save(buf, pred.astype(np.float32))
        return buf.getvalue()
    if kind == "normals":
        n = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
        img = cv2.cvtColor(np.clip(np.rint((n + 1) / 2 * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    elif kind == "edges":
        img = np.round(np.clip(np.nan_to_num(pred), 0.0, 1.0) * 255).astype(np.uint8)
    else:
        img = pred.astype(np.uint8 if pred.max() < 256 else np.uint16)
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"cannot encode a {kind} label as PNG")
    return data.tobytes()


def _read_photo(url: str) -> np.ndarray:
    from uvd.image import decode_image

    fs, path = fs_and_path(url)
    try:
        data = fs.cat_file(path)
    except OSError as err:
        raise BadInput("read", f"{type(err).__name__}: {err}") from None
    return decode_image(data)


def label_unit(labeler: Any, spec: LabelSpec, u: LabelUnit) -> dict[str, Any]:
    """Label one unit's photos, write their files, commit the unit; returns its stats."""
    disparity = labeler.disparity if spec.inverse_output is None else bool(spec.inverse_output)
    recipe = {**spec.recipe(), "images_sha256": u.names_sha256()}
    meta = {"kind": spec.kind, "unit": u.unit, "images": spec.images, "model": spec.model}
    head = {"kind": spec.kind, "unit": u.unit, **recipe}

    def fill(writer: ShardWriter, audit: AuditLog, seconds: Counter[str]) -> dict[str, Any]:
        labelled = 0
        for start in range(0, len(u.images), spec.batch_size):
            names, photos = [], []
            t = time.perf_counter()
            for rel in u.images[start:start + spec.batch_size]:
                audit.seen(rel)
                try:
                    photos.append(_read_photo(join(spec.images, rel)))
                    names.append(rel)
                except BadInput as err:
                    audit.fail(Failed(rel, str(err)))
            seconds["read"] += time.perf_counter() - t
            if not photos:
                continue
            t = time.perf_counter()
            preds = labeler.label(photos)
            seconds["model"] += time.perf_counter() - t
            t = time.perf_counter()
            for rel, pred in zip(names, preds):
                data = encode_label(spec.kind, pred, disparity)
                label = os.path.splitext(rel)[0] + SUFFIX[spec.kind]
                write_bytes(join(spec.out, label), data)
                writer.add({"item_id": rel, "label": label, "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
                audit.used([rel])
                labelled += 1
            seconds["write"] += time.perf_counter() - t
        return {"images": labelled}

    return commit_unit(spec.layout(), u.kind, u.unit, lambda url: ShardWriter(url, LABEL_SCHEMA, "pseudo_labels", meta),
                       fill, meta, head)


class LabelActor:
    """One model per actor: loads it once (on the actor's GPU when it has one), then labels whole units."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        self.spec = LabelSpec(**spec)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(assigned_cpus())
        self.labeler = self.spec.load(device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"unit": [], "stats": [], "error": []}
        for i in range(len(batch["unit"])):
            u = LabelUnit(self.spec.kind, str(batch["unit"][i]), tuple(json.loads(batch["images"][i])))
            stats, error = None, ""
            try:
                stats = label_unit(self.labeler, self.spec, u)
            except Exception as err:  # reported in the manifest; the unit is redone next run
                error = short_error(err)
            out["unit"].append(u.unit)
            out["stats"].append(json.dumps(stats, sort_keys=True) if stats else "")
            out["error"].append(error)
        return out


@dataclass
class LabelResult:
    manifest: dict[str, Any]
    summary: Summary

    @property
    def ok(self) -> bool:
        return self.summary.succeeded


def run_pseudo_label(spec: LabelSpec, unit_size: int = 256, use_ray: bool = True, actors: int = 0,
                     log: Callable[[str], None] = logger.info, progress: Any = None) -> LabelResult:
    """Label every photo under spec.images into spec.out; committed units are skipped."""
    from uvd.progress import progress as progress_bar

    spec.load()  # on the driver first: a wrong model fails here, once, with its ConfigError
    layout = spec.layout()
    units = plan_units(spec.images, spec.kind, max(1, unit_size))

    def recipe_of(u: LabelUnit) -> dict[str, Any]:
        return {**spec.recipe(), "images_sha256": u.names_sha256()}

    done = find_committed(layout, units, recipe_of)
    pending = [u for u in units if u.name not in done]
    summary = Summary(units=len(units), skipped=len(units) - len(pending), outside_plan=done.outside_plan)
    log(f"pseudo-label: {sum(len(u.images) for u in units)} photos in {len(units)} units, "
        f"{summary.skipped} already done, {len(pending)} to do → {spec.out}")
    t0 = time.perf_counter()
    with progress_bar(len(pending), "pseudo-label", "unit") if progress is None else nullcontext(progress) as bar:
        if pending and use_ray:
            _run_ray(pending, spec, actors, log, summary, bar)
        elif pending:
            labeler = spec.load()
            for u in pending:
                try:
                    summary.add(u.name, label_unit(labeler, spec, u), bar)
                except Exception as err:  # noqa: BLE001 - reported; redone next run
                    summary.fail(u.name, short_error(err), bar)
    summary.seconds = time.perf_counter() - t0
    header = {"kind": "pseudo_labels", "label_kind": spec.kind, "images": spec.images, "model": spec.model,
              "recipe": spec.recipe()}
    manifest = write_run_manifest(layout, header, units, done, summary, recipe_of)
    return LabelResult(manifest, summary)


def _run_ray(pending: list[LabelUnit], spec: LabelSpec, actors: int, log: Callable[[str], None],
             summary: Summary, progress: Any) -> None:
    import ray

    from uvd.runner import init_ray

    init_ray(0)
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if gpus:
        size, per_actor = (actors or gpus), {"num_gpus": 1, "num_cpus": 1}
    else:  # on CPU one actor using every core beats several fighting over them
        size = actors or 1
        per_actor = {"num_cpus": max(1, cpus // size)}
    size = min(size, len(pending))
    log(f"pseudo-label: ray data, {size} labeller actor(s), {'1 GPU' if gpus else str(per_actor['num_cpus']) + ' CPU'} each")
    rows = [{"unit": u.unit, "images": json.dumps(list(u.images))} for u in pending]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(LabelActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=size),
                        fn_constructor_kwargs={"spec": asdict(spec)}, **per_actor)
    for row in ds.iter_rows():
        name = f"{spec.kind}/{row['unit']}"
        if row["error"]:
            summary.fail(name, row["error"], progress)
            logger.warning("%s: FAILED %s", name, row["error"])
        else:
            summary.add(name, json.loads(row["stats"]), progress)
