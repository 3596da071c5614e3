"""`laion`: LAION-style metadata (URL per row) → downloaded images as single-photo items.

A unit is a row range of one metadata file. Rows are filtered on their metadata first (no
traffic for a row that would be dropped), then downloaded concurrently and handed on in row
order, so the audit and the shards do not depend on which download finished first.
"""
from __future__ import annotations

import hashlib
import posixpath
from collections import deque
from concurrent.futures import Future
from typing import Any, Iterator, Literal, Union

import numpy as np
from pydantic import Field, field_validator

from sources.download import Downloader, DownloadOptions, Fetched
from sources.filters import FilterOptions, UnitFilters
from sources.laion_dedup import mark_duplicates
from sources.laion_metadata import MetadataFile, derive_id, metadata_file
from uvd.api import Source
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.records import Failed, Item
from uvd.storage import fs_and_path


class LaionOptions(Strict):
    metadata: Union[str, list[str]]  # files, globs or fsspec URLs (Parquet, CSV, TSV, JSONL; .gz etc. for text)
    format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict)  # canonical → file column, e.g. {url: image_link, hash: key}
    # Item ids: `hash` column of the metadata when it has one (auto), else sha256 of the URL.
    id_from: Literal["auto", "url", "hash"] = "auto"
    download: DownloadOptions = Field(default_factory=DownloadOptions)
    # Decode and normalise (ctx.photo, the one normalisation) in the download threads, where
    # OpenCV runs without the GIL, instead of one image at a time in the builder. Same pixels.
    decode_in_threads: bool = True
    filters: FilterOptions = Field(default_factory=FilterOptions)
    # With filters.dedup_url: URL and hash repeats across units and files are found while
    # planning (sources/laion_dedup.py), the first by (file, row) kept; off: within a unit only.
    build_dedup: bool = True

    @field_validator("metadata")
    @classmethod
    def _exists(cls, v: Union[str, list[str]]) -> Union[str, list[str]]:
        for p in [v] if isinstance(v, str) else v:
            if not any(c in p for c in "*?["):
                require_path(p, "laion.metadata")
        return v


def settle(filters: UnitFilters, item_id: str, url: str, data: bytes, dataset: str,
           image: np.ndarray | BadInput | None = None) -> Item | Failed:
    """Downloaded (or already stored) bytes → an Item, unless an image filter refuses them.
    `image`: the bytes already decoded and normalised (or why they could not be)."""
    try:
        reason = filters.check_image(item_id, data)
    except BadInput as err:
        return Failed(item_id, str(err))
    if reason:
        return Failed(item_id, reason)
    if isinstance(image, BadInput):
        return Failed(item_id, str(image))
    # The bytes' hash lets the build find the same image at two URLs across units (uvd/dedup.py).
    return Item(item_id=item_id, source=dataset, images=[data if image is None else image],
                provenance={"url": url, "sha256": hashlib.sha256(data).hexdigest()})


class UnitIds:
    """Item ids unique within a unit: a repeat (same hash or URL twice) gets the row's file position."""

    def __init__(self, stem: str) -> None:
        self.stem = stem
        self.seen: set[str] = set()

    def repeat(self, base: str | None, position: int | str) -> str:
        """The id of a row that repeats one kept elsewhere in the build."""
        item_id = f"{base or 'row'}@{self.stem}:{position}"
        self.seen.add(item_id)
        return item_id

    def take(self, base: str | None, position: int | str) -> str:
        if base and base not in self.seen:
            self.seen.add(base)
            return base
        return self.repeat(base, position)


def expand(paths: Union[str, list[str]]) -> list[str]:
    out: list[str] = []
    for p in [paths] if isinstance(paths, str) else paths:
        if any(c in p for c in "*?["):
            fs, pattern = fs_and_path(p)
            hits = sorted(fs.glob(pattern))
            if not hits:
                raise ConfigError(f"laion.metadata: no file matches {p}")
            out += hits if "://" not in p else [fs.unstrip_protocol(h) for h in hits]
        else:
            out.append(p)
    return sorted(dict.fromkeys(out))


def _refusal(row: dict[str, Any], base: str | None, url: str, item_id: str, filters: UnitFilters) -> str | None:
    """Why a row fails before any download, or None."""
    if not url:
        return "metadata: row has no URL"
    if base is None:
        return "metadata: row has no hash value (id_from: hash)"
    return filters.check_metadata(row) or filters.check_url(item_id, url)


class LaionSource(Source):
    name = "laion"
    content_hashes = True
    Options = LaionOptions

    def _file(self, path: str, fmt: str | None = None) -> MetadataFile:
        return metadata_file(self.options, path, fmt)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        units = []
        files = expand(self.options.metadata)
        for path in files:
            mf = self._file(path)
            mf.columns()  # a file without a URL column fails the plan, not every unit
            for rng in mf.plan(items_per_unit):
                units.append({"file": path, "format": mf.format, **rng})
        if self.options.build_dedup and self.options.filters.dedup_url:
            mark_duplicates(self.options, files, units)
        return units

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        mf = self._file(payload["file"], payload["format"])
        ids = UnitIds(posixpath.basename(payload["file"]))
        filters = UnitFilters(self.options.filters)
        window: deque[tuple[str, str, Union[str, Future]]] = deque()
        limit = 2 * self.options.download.concurrency  # bounds memory: at most this many bodies held
        then = self._decode if self.options.decode_in_threads else None
        repeats = payload.get("duplicates", {})
        with Downloader(self.options.download) as dl:
            for index, row in mf.rows(payload["start"], payload["stop"], payload.get("offset", 0)):
                base = derive_id(row, self.options.id_from)
                url = row["url"] or ""
                repeat = repeats.get(str(index))  # a repeat of a row kept elsewhere in the build
                item_id = ids.repeat(base, index) if repeat else ids.take(base, index)
                early = repeat or _refusal(row, base, url, item_id, filters)
                window.append((item_id, url, early if early else dl.submit(url, then)))
                while len(window) > limit:
                    yield self._settle(window.popleft(), filters)
            while window:
                yield self._settle(window.popleft(), filters)

    def _settle(self, entry: tuple[str, str, Union[str, Future]], filters: UnitFilters) -> Item | Failed:
        item_id, url, pending = entry
        if isinstance(pending, str):
            return Failed(item_id, pending)
        try:
            result = pending.result()
        except Exception as err:  # a bug or an unexpected library error too: audited, the unit goes on
            return Failed(item_id, reason_of(err))
        fetched, image = result if isinstance(result, tuple) else (result, None)
        return settle(filters, item_id, url, fetched.data, self.ctx.dataset, image)

    def _decode(self, fetched: Fetched) -> tuple[Fetched, np.ndarray | BadInput]:
        try:
            return fetched, self.ctx.photo(fetched.data)
        except BadInput as err:  # reported after the filters, as the builder would have
            return fetched, err
