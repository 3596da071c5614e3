"""`img2dataset`: read what img2dataset already downloaded, in any of its output layouts, as is.

- webdataset: `00000.tar` holding `000000000.jpg` (or .png/.webp) + `.json` + `.txt` per sample
- parquet:    `00000.parquet` with an image column (`jpg`/`png`/`webp`) beside url, key, status…
- files:      `00000/000000000.jpg` + `.json` + `.txt`

Items get the ids the `laion` source gives the same rows (the `hash` column when img2dataset
saved it, else the URL from the sample's .json), so downloading and reading back yield the
same sentences. Tar members are never extracted; one with an absolute path, a `..` part or
that is not a regular file is refused as an item of its own.
"""
from __future__ import annotations

import json
import posixpath
import tarfile
from typing import Any, Iterator, Literal

import pyarrow.parquet as pq
from pydantic import Field, model_validator

from sources.filters import FilterOptions, UnitFilters
from sources.laion import UnitIds, settle
from sources.laion_metadata import canonical_row, derive_id, match_columns, number
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import ConfigError
from uvd.records import Failed, Item
from uvd.storage import fs_and_path, join

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class Img2datasetOptions(Strict):
    root: str  # img2dataset's output_folder: local path or fsspec URL
    layout: Literal["auto", "webdataset", "parquet", "files"] = "auto"
    id_from: Literal["auto", "url", "hash"] = "auto"
    filters: FilterOptions = Field(default_factory=FilterOptions)

    @model_validator(mode="after")
    def _exists(self) -> "Img2datasetOptions":
        require_path(self.root, "img2dataset.root")
        return self


def json_row(meta: dict[str, Any]) -> dict[str, Any]:
    """img2dataset's per-sample JSON → a canonical metadata row. Its width/height are the stored
    (resized) size; the size filters want the original one."""
    names = [k for k in meta if k.lower() not in ("width", "height")]
    row = canonical_row(meta, match_columns(names))
    row["width"] = number(meta.get("original_width"))
    row["height"] = number(meta.get("original_height"))
    return row


def unsafe_member(info: tarfile.TarInfo) -> str | None:
    name = info.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or name.startswith("\\"):
        return f"absolute path {name!r}"
    if ".." in name.replace("\\", "/").split("/"):
        return f"'..' in path {name!r}"
    if not info.isfile():
        return f"{name!r} is not a regular file (type {info.type!r})"
    return None


def sample_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the base name."""
    d, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(d, stem), ext.lower()


class Img2datasetSource(Source):
    name = "img2dataset"
    content_hashes = True
    Options = Img2datasetOptions

    # ---- layout ----
    def _layout(self) -> str:
        if self.options.layout != "auto":
            return self.options.layout
        fs, root = fs_and_path(self.options.root)
        if fs.glob(join(root, "*.tar")):
            return "webdataset"
        for p in sorted(fs.glob(join(root, "*.parquet"))):
            with fs.open(p, "rb") as f:
                if set(pq.ParquetFile(f).schema_arrow.names) & set(IMAGE_EXTS):
                    return "parquet"
        if fs.glob(join(root, "*", "*.json")) or any(fs.glob(join(root, "*", f"*.{e}")) for e in IMAGE_EXTS):
            return "files"
        raise ConfigError(f"img2dataset: no webdataset tars, image Parquet or files layout under {self.options.root}")

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        layout = self._layout()
        fs, root = fs_and_path(self.options.root)
        units: list[dict[str, Any]] = []
        if layout == "webdataset":
            for tar in sorted(fs.glob(join(root, "*.tar"))):
                for _, offset in self._tar_starts(fs, tar, items_per_unit):
                    units.append({"layout": layout, "tar": posixpath.basename(tar), "offset": offset,
                                  "samples": items_per_unit})
                # Beside each tar img2dataset writes the shard's metadata, failed rows included:
                # they go to the audit, so every input row is accounted for.
                meta = tar[: -len(".tar")] + ".parquet"
                if fs.exists(meta):
                    with fs.open(meta, "rb") as f:
                        pf = pq.ParquetFile(f)
                        n = pf.metadata.num_rows if "status" in pf.schema_arrow.names else 0
                    for s in range(0, n, items_per_unit):
                        units.append({"layout": "failures", "file": posixpath.basename(meta), "start": s,
                                      "stop": min(n, s + items_per_unit)})
        elif layout == "parquet":
            for p in sorted(fs.glob(join(root, "*.parquet"))):
                with fs.open(p, "rb") as f:
                    n = pq.ParquetFile(f).metadata.num_rows
                for s in range(0, n, items_per_unit):
                    units.append({"layout": layout, "file": posixpath.basename(p), "start": s,
                                  "stop": min(n, s + items_per_unit)})
        else:
            for d in sorted(p for p in fs.glob(join(root, "*")) if fs.isdir(p)):
                samples: dict[str, dict[str, str]] = {}
                for p in sorted(fs.ls(d, detail=False)):
                    key, ext = sample_key(posixpath.basename(p))
                    if ext in IMAGE_EXTS or ext == "json":
                        samples.setdefault(key, {})[ext] = posixpath.basename(p)
                for part in chunk(sorted(samples.items()), items_per_unit):
                    units.append({"layout": layout, "dir": posixpath.basename(d), "samples": part})
        return units

    @staticmethod
    def _tar_starts(fs: Any, tar: str, per_unit: int) -> list[tuple[int, int]]:
        """(sample index, byte offset of its first member) every per_unit samples: headers only."""
        starts: list[tuple[int, int]] = []
        with fs.open(tar, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tf:
            last, n = None, 0
            for info in tf:
                key, _ = sample_key(info.name)
                if key != last:
                    if n % per_unit == 0:
                        starts.append((n, info.offset))
                    last, n = key, n + 1
        return starts

    # ---- reading ----
    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        filters = UnitFilters(self.options.filters)
        layout = payload["layout"]
        if layout == "webdataset":
            samples = self._tar_samples(payload)
            stem = payload["tar"]
        elif layout in ("parquet", "failures"):
            samples = self._parquet_samples(payload)
            stem = payload["file"]
        else:
            samples = self._file_samples(payload)
            stem = payload["dir"]
        ids = UnitIds(stem)
        for key, meta, image, problem in samples:
            row = json_row(meta) if meta else canonical_row({}, {})
            base = derive_id(row, self.options.id_from)
            item_id = ids.take(base, key)
            if problem:
                yield Failed(item_id, problem)
                continue
            url = row.get("url") or ""
            early = filters.check_metadata(row) or (filters.check_url(item_id, url) if url else None)
            if early:
                yield Failed(item_id, early)
                continue
            if image is None:
                yield Failed(item_id, "missing: no image in sample (img2dataset keeps failed rows without one)"
                          if not meta.get("error_message") else f"img2dataset: {meta.get('status')}: {meta['error_message']}")
                continue
            yield settle(filters, item_id, url, image, self.ctx.dataset)

    def _tar_samples(self, payload: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bytes | None, str | None]]:
        fs, root = fs_and_path(self.options.root)
        with fs.open(join(root, payload["tar"]), "rb") as f:
            f.seek(payload["offset"])
            tf = tarfile.open(fileobj=f, mode="r:")  # reads on from the unit's first member
            current: str | None = None
            parts: dict[str, Any] = {}
            done = 0
            for info in tf:
                key, ext = sample_key(info.name)
                if key != current:
                    if current is not None:
                        yield self._sample(current, parts)
                        done += 1
                        if done >= payload["samples"]:
                            return
                    current, parts = key, {}
                problem = unsafe_member(info)
                if problem:
                    parts["problem"] = f"unsafe_path: {problem}"
                    continue
                if ext in IMAGE_EXTS or ext == "json":
                    parts.setdefault(ext, tf.extractfile(info).read())  # type: ignore[union-attr]
            if current is not None:
                yield self._sample(current, parts)

    @staticmethod
    def _sample(key: str, parts: dict[str, Any]) -> tuple[str, dict[str, Any], bytes | None, str | None]:
        problem = parts.get("problem")
        meta: dict[str, Any] = {}
        if "json" in parts:
            try:
                meta = json.loads(parts["json"])
                meta = meta if isinstance(meta, dict) else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                problem = problem or f"metadata: {key}.json is not valid JSON"
        image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        return key, meta, image, problem

    def _parquet_samples(self, payload: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bytes | None, str | None]]:
        fs, root = fs_and_path(self.options.root)
        with fs.open(join(root, payload["file"]), "rb") as f:
            pf = pq.ParquetFile(f)
            image_col = next((c for c in IMAGE_EXTS if c in pf.schema_arrow.names), None)
            only_failures = payload["layout"] == "failures"
            first = 0
            start, stop = payload["start"], payload["stop"]
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                lo, hi = max(start, first), min(stop, first + n)
                if lo < hi:
                    for i, rec in enumerate(pf.read_row_group(g).slice(lo - first, hi - lo).to_pylist()):
                        image = rec.pop(image_col, None) if image_col else None
                        rec.pop("caption", None)
                        if only_failures and rec.get("status") == "success":
                            continue  # in the tar: read by the tar's units
                        yield str(rec.get("key") or lo + i), rec, image, None
                first += n
                if first >= stop:
                    break

    def _file_samples(self, payload: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bytes | None, str | None]]:
        fs, root = fs_and_path(self.options.root)
        d = join(root, payload["dir"])
        for key, names in payload["samples"]:
            parts: dict[str, Any] = {}
            try:
                for ext, name in names.items():
                    parts[ext] = fs.cat_file(join(d, name))
            except OSError as err:
                parts["problem"] = f"io: {key}: {err.strerror or err}"
            yield self._sample(key, parts)
