"""What a source and a sentence builder are: small named objects the build engine drives.

A source plans work units (JSON payloads: file lists, row ranges) and reads one unit into
`Item`s (or `Failed` for items it cannot read). A builder turns items into sentences:
`process(item)` per item, `finish()` at the end of the unit for builders that group items.
An exception escaping `process` fails that one item (its message becomes the audit reason);
items that end in no sentence and no failure are audited as `unused`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Union

import numpy as np

from uvd import seeding
from uvd.config import ImageSpec, Strict
from uvd.image import to_sentence_image
from uvd.records import Failed, ImageLike, Item, VisualSentence


class NoOptions(Strict):
    pass


@dataclass(frozen=True)
class BuildContext:
    """What a source or builder may know of the build: the seed, its dataset name, the image spec."""

    dataset: str  # the dataset's name: the `source` column and directory of its shards
    seed: int = 0
    image: ImageSpec = field(default_factory=ImageSpec)
    max_images: int = 16

    def rng(self, item_id: str, *extra: Any) -> np.random.Generator:
        return seeding.rng_for(self.seed, self.dataset, item_id, *extra)

    def sentence_id(self, original_ids: list[str], recipe: dict[str, Any]) -> str:
        return seeding.sentence_id(self.dataset, original_ids, recipe, self.seed)

    def photo(self, image: ImageLike) -> np.ndarray:
        """Decode (defensively) and normalise one photo to size×size RGB."""
        return to_sentence_image(image, self.image)


class Source:
    name: ClassVar[str] = ""
    Options: ClassVar[type[Strict]] = NoOptions
    # True when its items record the sha256 of their downloaded bytes (provenance "sha256"): only
    # these datasets' shards are read at build end for the build-wide content dedup table.
    content_hashes: ClassVar[bool] = False

    def __init__(self, options: Any, ctx: BuildContext) -> None:
        self.options = options
        self.ctx = ctx

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        """Deterministic list of unit payloads (JSON-able), from the inputs' own names/ids."""
        raise NotImplementedError

    def read(self, payload: dict[str, Any]) -> Iterator[Union[Item, Failed]]:
        raise NotImplementedError

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        """How many audit rows `read(payload)` must end in, counted from the payload alone (it was
        fixed at plan time); None when the source cannot say. Recorded in the unit's stats as
        `planned_inputs`: `uvd validate` fails a unit whose audit has another number of rows, so an
        item that never got a row (or a row that is no item) is found."""
        return None

    def prepare(self, index: str, planned: list[Any], pending: list[Any]) -> None:
        """Optional: before pending units run, add build-wide facts to their payloads (under
        `uvd.unit.DERIVED`, outside the recipe), keeping what it needs in the folder `index`
        (LAION's URL dedup). Called by the driver only when some unit of the dataset is pending."""

    def close(self) -> None:
        """Release per-worker resources (renderers, decoder processes)."""

    # Dataset-wide grouping (uvd/regroup.py): the payload key holding one entry per item, an entry's
    # first field being its item id, the payload's other keys applying to all its items; None: this
    # source's units cannot be regrouped. `row_keys` name payload keys that are audit rows of their own
    # (entries failed at plan time): they stay in one unit, never copied next to regrouped items.
    item_key: ClassVar[str | None] = None
    row_keys: ClassVar[tuple[str, ...]] = ("bad_entries",)


@dataclass(frozen=True)
class Grouping:
    """A builder's request to group items across the whole dataset (uvd/regroup.py): every epoch a
    fresh seeded permutation of all items, cut into groups of `size`, the remainder left out."""

    size: int
    epochs: int = 1
    key: str = ""  # part of the permutation's seed (e.g. the task), so two datasets' shuffles differ
    # "tail": the last total % size items (plan order) are left out of every epoch, as LVM's scripts do;
    # "fresh": each epoch leaves out its own random remainder, so every item is used in most epochs
    remainder: str = "tail"


class Builder:
    name: ClassVar[str] = ""
    Options: ClassVar[type[Strict]] = NoOptions

    def __init__(self, options: Any, ctx: BuildContext) -> None:
        self.options = options
        self.ctx = ctx

    @classmethod
    def grouping(cls, options: Any, ctx: BuildContext) -> Grouping | None:
        """Dataset-wide groups wanted (decided from the options alone: no model is loaded at plan time)."""
        return None

    def start_unit(self, payload: dict[str, Any]) -> None:
        """Called with the unit's payload before its first item (regrouped units carry their groups)."""

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        raise NotImplementedError

    def finish(self) -> Iterable[Union[VisualSentence, Failed]]:
        return ()


def chunk(names: list[Any], size: int) -> list[list[Any]]:
    """Split an already-sorted list into units of at most `size`."""
    return [names[i:i + size] for i in range(0, len(names), size)]
