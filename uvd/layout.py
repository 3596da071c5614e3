"""Where things live under an output URL (README, "What it writes")."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from uvd.storage import Listed, join, list_files, parallel_map


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


def units_table(out: str) -> str:
    """The manifest's unit/shard table, beside the small manifest.json."""
    return join(out, "manifest", "units.parquet")


def tokens_root(out: str, tokenizer_id: str) -> str:
    return join(out, "tokens", tokenizer_id)


def relative(out: str, url: str) -> str:
    return url[len(out.rstrip("/")) + 1:] if url.startswith(out.rstrip("/") + "/") else url


@dataclass(frozen=True)
class UnitLayout:
    """One kind of unit output: `<data>/<dataset>/part-<unit>.parquet` (+ .stats.json) and its audit.

    `base` holds manifest.json and manifest/units.parquet; shard paths are recorded relative to it.
    """

    base: str
    data: str
    audit: str

    @classmethod
    def sentences(cls, out: str) -> "UnitLayout":
        out = out.rstrip("/")
        return cls(out, join(out, "sentences"), join(out, "audit"))

    @classmethod
    def tokens(cls, root: str) -> "UnitLayout":
        root = root.rstrip("/")
        return cls(root, root, join(root, "audit"))

    def shard(self, dataset: str, unit: str) -> str:
        return join(self.data, dataset, f"part-{unit}.parquet")

    def audit_shard(self, dataset: str, unit: str) -> str:
        return join(self.audit, dataset, f"part-{unit}.parquet")

    def stats(self, dataset: str, unit: str) -> str:
        return stats_file(self.shard(dataset, unit))


def _stats_name(unit: str) -> str:
    """A unit's stats file name in its dataset folder (as UnitLayout.stats names it)."""
    return f"part-{unit}.stats.json"


def _shard_name(unit: str) -> str:
    return f"part-{unit}.parquet"


def _unit_of(name: str) -> str | None:
    """The unit a file name in a dataset folder belongs to (its shard or its stats file)."""
    for suffix in (".stats.json", ".parquet"):
        if name.startswith("part-") and name.endswith(suffix):
            return name[len("part-"):-len(suffix)]
    return None


class StatsListing(Mapping):
    """(dataset, unit) → Listed of its stats file, held as the per-dataset listings themselves
    (file name → Listed, stats files and shards from the same listing): a listing of 10^5 units is
    not copied under new keys. `shard(key)` is the unit's data shard as listed."""

    def __init__(self, by_dataset: dict[str, dict[str, Listed]],
                 audits: dict[str, dict[str, Listed]] | None = None) -> None:
        self._by = by_dataset
        self._audits = audits  # audit shards by file name, when listed (list_stats(audits=True))

    def __getitem__(self, key: tuple[str, str]) -> Listed:
        ds, unit = key
        return self._by[ds][_stats_name(unit)]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for ds, listing in self._by.items():
            for name in listing:
                if name.endswith(".stats.json"):
                    yield ds, name[len("part-"):-len(".stats.json")]

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def shard(self, key: tuple[str, str]) -> Listed | None:
        listing = self._by.get(key[0])
        return None if listing is None else listing.get(_shard_name(key[1]))

    def pop(self, key: tuple[str, str], default: Any = None) -> Any:
        """The stats file's Listed (or `default`); the unit's shard entry is dropped as well."""
        listing = self._by.get(key[0])
        if listing is None:
            return default
        listing.pop(_shard_name(key[1]), None)
        return listing.pop(_stats_name(key[1]), default)

    def pop_unit(self, key: tuple[str, str]) -> tuple[Listed | None, Listed | None]:
        """(stats file, shard) of a unit as listed, both removed from the listing."""
        listing = self._by.get(key[0])
        if listing is None:
            return None, None
        return listing.pop(_stats_name(key[1]), None), listing.pop(_shard_name(key[1]), None)

    def pop_audit(self, key: tuple[str, str]) -> Listed | None:
        """The unit's audit shard as listed (removed from the listing); None when it is missing."""
        listing = (self._audits or {}).get(key[0])
        return None if listing is None else listing.pop(_shard_name(key[1]), None)

    def units_left(self) -> list[tuple[str, str]]:
        """(dataset, unit) of every unit with a shard or a stats file still in the listing, sorted:
        after the plan's units were popped, the units on disk outside the plan."""
        return sorted({(ds, u) for ds, listing in self._by.items() for u in map(_unit_of, listing) if u is not None})


def list_stats(layout: UnitLayout, units: Iterable[Any], audits: bool = False) -> StatsListing:
    """(dataset, unit) → size and version of its stats file, and of its shard (`.shard(key)`): one
    listing per dataset folder, both kinds of file in the same pass; with `audits`, one listing of
    each dataset's audit folder too (`.pop_audit(key)`), run beside it.

    `units` have `.dataset` and `.unit` (a unit "" lists a dataset whose units are unknown). A big
    folder on an object store is listed in parallel slices by unit-name prefix.
    """
    by_dataset: dict[str, list[str]] = {}
    for u in units:
        by_dataset.setdefault(u.dataset, []).append(u.unit)
    jobs = [(ds, kind) for ds in sorted(by_dataset) for kind in (("data", "audit") if audits else ("data",))]

    def one(job: tuple[str, str]) -> dict[str, Listed]:
        ds, kind = job
        folder, suffix = (layout.data, (".stats.json", ".parquet")) if kind == "data" else (layout.audit, ".parquet")
        listing = list_files(f"{folder}/{ds}", _prefixes(by_dataset[ds]), suffix=suffix)
        for name in [n for n in listing if "/" in n or _unit_of(n) is None]:
            del listing[name]
        return listing

    found: dict[str, dict[str, dict[str, Listed]]] = {"data": {}, "audit": {}}
    for (ds, kind), listing in zip(jobs, parallel_map(one, jobs, threads=8)):
        found[kind][ds] = listing
    return StatsListing(found["data"], found["audit"] if audits else None)


def _prefixes(units: list[str], per_slice: int = 1000) -> list[str]:
    """The shortest `part-<unit prefix>` set whose slices hold at most ~`per_slice` units (≈2 LIST pages)."""
    for k in range(0, max(map(len, units), default=0) + 1):
        groups: Counter[str] = Counter(u[:k] for u in units)
        if max(groups.values(), default=0) <= per_slice:
            return [f"part-{g}" for g in sorted(groups)]
    return ["part-"]
