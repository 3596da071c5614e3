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

from sources.bad_file import bad_file_rows, is_bad_file, plan_files
from sources.filters import FilterOptions, UnitFilters
from sources.laion import UnitIds, settle
from sources.laion_metadata import canonical_row, derive_id, match_columns, number
from sources.listing import printable_id
from sources.remote import MAX_ITEM_BYTES, check_regular, is_remote, read_bytes
from uvd.url_redact import redact_text, redact_url
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import ConfigError, reason_of
from uvd.records import Failed, Item
from uvd.shards import open_parquet
from uvd.storage import fs_and_path, join

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
# img2dataset's per-sample JSON is a few hundred bytes; a bigger one is that sample's failure.
MAX_SAMPLE_JSON_BYTES = 1 << 20


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
    name = printable_id(info.name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or name.startswith("\\"):
        return f"unsafe_path: absolute path {name!r}"
    if ".." in name.replace("\\", "/").split("/"):
        return f"unsafe_path: '..' in path {name!r}"
    if not info.isfile():
        return f"unsafe_path: {name!r} is not a regular file (type {info.type!r})"
    cap = MAX_SAMPLE_JSON_BYTES if sample_key(info.name)[1] == "json" else MAX_ITEM_BYTES
    if info.size > cap:
        return f"too_large: member {name!r} is {info.size} bytes > cap {cap}"
    return None


def _check_tar_end(fs: Any, tar: str, end: int) -> None:
    """tarfile ends quietly where a truncated tar stops: after the last member there may only be
    zero blocks, and the last member's data must be in the file."""
    size = fs.size(tar)
    if end > size:
        raise tarfile.ReadError(f"truncated: the last member ends at byte {end}, the file has {size}")
    tail = fs.cat_file(tar, start=end, end=min(size, end + (1 << 20))) if size > end else b""
    if tail.strip(b"\x00"):
        raise tarfile.ReadError(f"truncated or corrupt: unreadable data after byte {end}")


def sample_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the base name."""
    d, base = posixpath.split(printable_id(name))
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
            try:
                names = set(self._parquet(fs, p).schema_arrow.names)
            except Exception:  # unreadable: reported by name when planned
                continue
            if names & set(IMAGE_EXTS):
                return "parquet"
        if fs.glob(join(root, "*", "*.json")) or any(fs.glob(join(root, "*", f"*.{e}")) for e in IMAGE_EXTS):
            return "files"
        raise ConfigError(f"img2dataset: no webdataset tars, image Parquet or files layout under {self.options.root}")

    def _parquet(self, fs: Any, path: str) -> pq.ParquetFile:
        # By path when local (pyarrow's own file: no Python file object under Arrow's threads).
        url = fs.unstrip_protocol(path) if is_remote(self.options.root) else path
        check_regular(url)  # a FIFO would block the plan
        return open_parquet(url)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        layout = self._layout()
        fs, root = fs_and_path(self.options.root)
        units: list[dict[str, Any]] = []
        if layout == "webdataset":
            def plan_tar(tar: str) -> list[dict[str, Any]]:
                return [{"layout": layout, "tar": posixpath.basename(tar), "offset": offset, "samples": items_per_unit}
                        for _, offset in self._tar_starts(fs, tar, items_per_unit)]

            def plan_failures(meta: str) -> list[dict[str, Any]]:
                pf = self._parquet(fs, meta)
                n = pf.metadata.num_rows if "status" in pf.schema_arrow.names else 0
                return [{"layout": "failures", "file": posixpath.basename(meta), "start": s,
                         "stop": min(n, s + items_per_unit)} for s in range(0, n, items_per_unit)]

            # Beside each tar img2dataset writes the shard's metadata, failed rows included:
            # they go to the audit, so every input row is accounted for.
            files = []
            for tar in sorted(fs.glob(join(root, "*.tar"))):
                meta = tar[: -len(".tar")] + ".parquet"
                files += [tar, meta] if fs.exists(meta) else [tar]
            # A tar or shard metadata file that cannot be read: one `bad_file` audit row, the others
            # built; none readable: ConfigError (sources/bad_file.py).
            units = plan_files("img2dataset", files, lambda f: plan_tar(f) if f.endswith(".tar") else plan_failures(f))
        elif layout == "parquet":
            def plan_parquet(p: str) -> list[dict[str, Any]]:
                n = self._parquet(fs, p).metadata.num_rows
                return [{"layout": layout, "file": posixpath.basename(p), "start": s, "stop": min(n, s + items_per_unit)}
                        for s in range(0, n, items_per_unit)]

            units = plan_files("img2dataset", sorted(fs.glob(join(root, "*.parquet"))), plan_parquet)
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
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            check_regular(tar)  # a FIFO would block the plan
        with fs.open(tar, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tf:
            last, n = None, 0
            for info in tf:
                key, _ = sample_key(info.name)
                if key != last:
                    if n % per_unit == 0:
                        starts.append((n, info.offset))
                    last, n = key, n + 1
            _check_tar_end(fs, tar, tf.offset)
        return starts

    # ---- reading ----
    def planned_items(self, payload: dict[str, Any]) -> int | None:
        """Known from the payload for a bad file, a Parquet range and a files-layout unit; a tar
        unit's last part and a failures range (its successes are the tar's) are counted when read."""
        if is_bad_file(payload):
            return 1
        if payload["layout"] == "parquet":
            return payload["stop"] - payload["start"]
        if payload["layout"] == "files":
            return len(payload["samples"])
        return None

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        if is_bad_file(payload):
            yield from bad_file_rows(payload)
            return
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
            item_id = key
            try:
                row = json_row(meta) if meta else canonical_row({}, {})
                item_id = ids.take(derive_id(row, self.options.id_from), key)
                yield self._item(filters, item_id, row, meta, image, problem)
            except Exception as err:  # one bad value fails its sample; the unit goes on
                yield Failed(item_id, reason_of(err))

    def _item(self, filters: UnitFilters, item_id: str, row: dict[str, Any], meta: dict[str, Any],
              image: bytes | None, problem: str | None) -> Item | Failed:
        if problem:
            return Failed(item_id, problem)
        url = row.get("url") or ""
        early = filters.check_metadata(row) or (filters.check_url(item_id, url) if url else None)
        if early:
            return Failed(item_id, early)
        if image is None:
            return Failed(item_id, "missing: no image in sample (img2dataset keeps failed rows without one)"
                          if not meta.get("error_message")
                          else f"img2dataset: {meta.get('status')}: {redact_text(str(meta['error_message']))}")
        return settle(filters, item_id, redact_url(url), image, self.ctx.dataset)  # written: no credentials

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
                    parts.setdefault("problem", problem)
                    continue
                if (ext in IMAGE_EXTS or ext == "json") and ext not in parts:
                    try:
                        parts[ext] = tf.extractfile(info).read()  # type: ignore[union-attr]
                    except Exception as err:  # a member cut short: that sample's failure
                        parts.setdefault("problem", f"io: member {printable_id(info.name)!r}: {reason_of(err)}")
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
            except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, or nested too deep
                problem = problem or f"metadata: {key}.json is not valid JSON ({type(err).__name__})"
        image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        return key, meta, image, problem

    def _parquet_samples(self, payload: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bytes | None, str | None]]:
        fs, root = fs_and_path(self.options.root)
        pf = self._parquet(fs, join(root, payload["file"]))
        image_col = next((c for c in IMAGE_EXTS if c in pf.schema_arrow.names), None)
        only_failures = payload["layout"] == "failures"
        first = 0
        start, stop = payload["start"], payload["stop"]
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:
                try:
                    records = pf.read_row_group(g, use_threads=False).slice(lo - first, hi - lo).to_pylist()
                except Exception as err:  # a corrupt row group: its rows fail, the others are read
                    for i in range(lo, hi):
                        yield str(i), {}, None, f"bad_file: {payload['file']}: row group {g}: {reason_of(err)}"[:300]
                    records = []
                for i, rec in enumerate(records):
                    image = rec.pop(image_col, None) if image_col else None
                    rec.pop("caption", None)
                    if only_failures and rec.get("status") == "success":
                        continue  # in the tar: read by the tar's units
                    if image is not None and len(image) > MAX_ITEM_BYTES:
                        yield str(rec.get("key") or lo + i), rec, None, f"too_large: {len(image)} bytes > cap {MAX_ITEM_BYTES}"
                        continue
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
                    url = join(d, name)
                    # read_bytes: a FIFO or device never blocks, a huge file is not read
                    parts[ext] = read_bytes(fs.unstrip_protocol(url) if is_remote(self.options.root) else url,
                                            MAX_SAMPLE_JSON_BYTES if ext == "json" else MAX_ITEM_BYTES)
            except Exception as err:
                parts = {"problem": reason_of(err)}
            yield self._sample(key, parts)
