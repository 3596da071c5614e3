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

from sources.bad_file import bad_file_rows, is_bad_file, plan_files
from sources.download import Downloader, DownloadOptions, Fetched
from uvd.url_redact import redact_url
from sources.filters import FilterOptions, UnitFilters
from sources.laion_dedup import prepare_duplicates
from sources.laion_metadata import MetadataFile, derive_id, metadata_file
from uvd.api import Source
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.records import Failed, Item
from uvd.storage import fs_and_path
from uvd.unit import DERIVED


class LaionOptions(Strict):
    # Not in the recipe: each unit's payload names its own file, so appending files builds only
    # their units; decoding in threads gives the same pixels.
    payload_keys = frozenset({"metadata"})
    operational_keys = frozenset({"decode_in_threads"})
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
    # With filters.dedup_url: URL and hash repeats across units and files are found before the
    # units run, against an index kept in the output (sources/laion_dedup.py), the first in plan
    # order kept; off: within a unit only.
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
    # In the order given (a glob's matches sorted): a file appended to the list plans after the
    # others, so the units before it keep their names and recipes.
    return list(dict.fromkeys(out))


def _refusal(row: dict[str, Any], base: str | None, url: str, item_id: str, filters: UnitFilters) -> str | None:
    """Why a row fails before any download, or None."""
    if row.get("problem"):  # a record that could not be read as a row (sources/laion_metadata.py)
        return str(row["problem"])
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
        """Row ranges, never spanning files. Build-wide duplicates are not looked for here: that
        is `prepare`, for the units that are to be built."""
        def plan_one(path: str) -> list[dict[str, Any]]:
            mf = self._file(path)
            mf.columns()  # a file without a URL column is a bad file, not a failure of every unit
            return [{"file": path, "format": mf.format, **rng} for rng in mf.plan(items_per_unit)]

        # A file that cannot be read is reported and audited as `bad_file`; none readable: exit 2.
        return plan_files("laion", expand(self.options.metadata), plan_one)

    def prepare(self, index: str, planned: list[Any], pending: list[Any]) -> None:
        """Build-wide URL/hash repeats for the pending units (uvd.unit.prepare_units)."""
        if self.options.build_dedup and self.options.filters.dedup_url:
            prepare_duplicates(self.options, index, [u for u in planned if not is_bad_file(u.payload)],
                               [u for u in pending if not is_bad_file(u.payload)])

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        """One audit row per metadata row of the range (repeats and refusals included)."""
        return 1 if is_bad_file(payload) else payload["stop"] - payload["start"]

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        if is_bad_file(payload):
            yield from bad_file_rows(payload)
            return
        mf = self._file(payload["file"], payload["format"])
        ids = UnitIds(posixpath.basename(payload["file"]))
        filters = UnitFilters(self.options.filters)
        window: deque[tuple[str, str, Union[str, Future]]] = deque()
        limit = 2 * self.options.download.concurrency  # bounds memory: at most this many bodies held
        then = self._decode if self.options.decode_in_threads else None
        repeats = payload.get(DERIVED, {}).get("duplicates", {})
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
        return settle(filters, item_id, redact_url(url, self.options.download.redact_params), fetched.data,
                      self.ctx.dataset, image)  # the URL as written: no credentials, no signatures

    def _decode(self, fetched: Fetched) -> tuple[Fetched, np.ndarray | BadInput]:
        try:
            return fetched, self.ctx.photo(fetched.data)
        except BadInput as err:  # reported after the filters, as the builder would have
            return fetched, err
