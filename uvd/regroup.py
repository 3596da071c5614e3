"""Dataset-wide grouping: units whose items are the groups of a seeded permutation of the whole dataset.

LVM's paired script (ytongbai/LVM, tokenize_examples/tokenize_paired_dataset_muse.py) draws
`np.random.permutation(total_images).reshape(-1, n_shots)` every epoch over the whole dataset.
Grouping inside a unit instead puts neighbours together (sources list items sorted: one class of an
ImageNet folder per unit). So the planner permutes the items of the dataset once per epoch (the
first epoch too), cuts the permutation into groups of `size`, leaves the remainder (total % size
items) out of that epoch, audited as `remainder` (`Grouping.remainder`: LVM's fixed last items, or a
fresh random set per epoch), and gives each unit the entries of its groups,
copied from the source's own unit payloads (`Source.item_key`): a unit is still one task and reads
only its own items. An item is read, and audited, once per epoch (by that epoch's unit).

The permutation is seeded by (build seed, dataset, grouping key, epoch) and runs over the items in
plan order (the sources' sorted order), so it is the same for any number of workers.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from uvd.api import Grouping, Source
from uvd.errors import ConfigError
from uvd.records import Failed, Item

REGROUP = "regroup"  # the payload key of a regrouped unit: its epoch, groups and left-out items


def regroup(source: Source, payloads: list[dict[str, Any]], grouping: Grouping, items_per_unit: int,
            rng: Callable[[int], np.random.Generator]) -> list[dict[str, Any]]:
    """The units of `payloads` (one source's plan) regrouped: per epoch, the groups of a fresh
    permutation of all their items, `items_per_unit // size` groups (at least one) per unit, epoch
    after epoch; then, once, the plan-time failures (`Source.row_keys`) in units of their own.
    `rng(epoch)` gives the epoch's seeded generator."""
    key = source.item_key
    if key is None:
        raise ConfigError(f"source {source.name!r} cannot regroup its units across the dataset "
                          "(it names no per-item payload key); set the builder's `grouping: unit`")
    parts: list[dict[str, Any]] = []  # per source unit: its keys that apply to all its items
    entries: list[tuple[int, Any]] = []  # (source unit, entry), in plan order
    rows_units: list[dict[str, Any]] = []
    for i, p in enumerate(payloads):
        parts.append({k: v for k, v in p.items() if k != key and k not in source.row_keys})
        entries.extend((i, e) for e in p.get(key, []))
        rows = {**{k: v for k, v in p.items() if k != key}, key: []}
        if any(k in p for k in source.row_keys) and (source.planned_items(rows) or 0) > 0:
            rows_units.append(rows)
    ids = [str(e[0]) for _, e in entries]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"dataset-wide grouping needs unique item ids; {dup!r} names two items "
                          "(set the builder's `grouping: unit`)")
    size, n = grouping.size, len(entries)
    full = n - n % size
    per_unit = max(1, items_per_unit // size)
    units: list[dict[str, Any]] = []
    for epoch in range(grouping.epochs if n else 0):
        if grouping.remainder == "tail":  # LVM: permutation(total - total % size) of the first items
            order = np.concatenate([rng(epoch).permutation(full), np.arange(full, n)])
            how = "the last items in the source's order, as LVM's scripts cut theirs"
        else:
            order = rng(epoch).permutation(n)
            how = "this epoch's random remainder"
        groups = order[:full].reshape(-1, size).tolist()
        why = f"remainder: left out of epoch {epoch} ({n} items in groups of {size}: {n - full} over; {how})"
        dropped = [[ids[j], why] for j in sorted(order[full:].tolist())]
        starts = list(range(0, len(groups), per_unit)) or [0]
        for s in starts:
            unit_groups = groups[s:s + per_unit]
            members = sorted(j for g in unit_groups for j in g)
            by_part: dict[int, list[Any]] = {}
            for j in members:
                by_part.setdefault(entries[j][0], []).append(entries[j][1])
            units.append({REGROUP: {"epoch": epoch, "epochs": grouping.epochs,
                                    "groups": [[ids[j] for j in g] for g in unit_groups],
                                    "dropped": dropped if s == starts[-1] else []},
                          "parts": [{**parts[i], key: es} for i, es in sorted(by_part.items())]})
    units += rows_units
    return units or payloads  # nothing to group: the source's own (empty) units


def read(source: Source, payload: dict[str, Any]) -> Iterator[Item | Failed]:
    """A unit's items: a regrouped unit's left-out items first (never read), then its parts."""
    spec = payload.get(REGROUP)
    if spec is None:
        yield from source.read(payload)
        return
    for item_id, why in spec["dropped"]:
        yield Failed(item_id, why)
    for part in payload["parts"]:
        yield from source.read(part)


def planned_items(source: Source, payload: dict[str, Any]) -> int | None:
    spec = payload.get(REGROUP)
    if spec is None:
        return source.planned_items(payload)
    counts = [source.planned_items(p) for p in payload["parts"]]
    return None if any(c is None for c in counts) else sum(counts) + len(spec["dropped"])  # type: ignore[arg-type]
