"""Two folders matched by relative name: input and target of a low-level task (de-rain,
de-noise, low-light, style, stereo left/right). Also the name-matching the dense-annotation
sources (segmentation, depth) share.

Files pair up when their paths relative to the two roots agree without the suffix
(`rain/0001.png` ↔ `clean/0001.jpg` is one item, id `0001`). A file without a partner is
still an item: it ends in the audit as `unpaired`, so nothing is silently lost.
"""
from __future__ import annotations

import posixpath
from typing import Any, Iterator

from pydantic import Field, model_validator

from sources.listing import list_files
from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import reason_of
from uvd.records import Failed, Item

IMAGE_SUFFIXES = [".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"]


def index_folder(root: str, suffixes: list[str]) -> dict[str, list[str]]:
    """Relative path without suffix → the files with that stem (more than one is ambiguous)."""
    found: dict[str, list[str]] = {}
    for rel, url in list_files(root, suffixes):
        found.setdefault(posixpath.splitext(rel)[0], []).append(url)
    return {k: sorted(v) for k, v in found.items()}


def match_folders(a: dict[str, list[str]], b: dict[str, list[str]], a_name: str, b_name: str
                  ) -> list[tuple[str, str | None, str | None, str | None]]:
    """Sorted (item_id, a_path, b_path, problem); problem is an audit reason or None."""
    rows = []
    for key in sorted(set(a) | set(b)):
        pa, pb = a.get(key, []), b.get(key, [])
        problem = None
        if len(pa) > 1 or len(pb) > 1:
            problem = f"ambiguous: several files named {key!r}: {', '.join(posixpath.basename(p) for p in pa + pb)}"
        elif not pa:
            problem = f"unpaired: {b_name} {key!r} has no {a_name} file"
        elif not pb:
            problem = f"unpaired: {a_name} {key!r} has no {b_name} file"
        rows.append((key, pa[0] if pa else None, pb[0] if pb else None, problem))
    return rows


class PairedOptions(Strict):
    inputs: str  # folder of task inputs (rainy, noisy, dark, content, stereo left)
    targets: str  # folder of targets (clean, stylised, stereo right)
    task: str = "paired"  # recorded in provenance: derain, denoise, lowlight, style, stereo, ...
    suffixes: list[str] = Field(default_factory=lambda: list(IMAGE_SUFFIXES))

    @model_validator(mode="after")
    def _paths_exist(self) -> "PairedOptions":
        require_path(self.inputs, "paired.inputs")
        require_path(self.targets, "paired.targets")
        return self


class PairedSource(Source):
    """Items carry both images, `images = [input, target]`, still encoded."""

    name = "paired"
    Options = PairedOptions
    item_key = "items"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        o = self.options
        rows = match_folders(index_folder(o.inputs, o.suffixes), index_folder(o.targets, o.suffixes), "input", "target")
        return [{"items": [list(r) for r in part]} for part in chunk(rows, items_per_unit)]

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["items"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for item_id, x, y, problem in payload["items"]:
            if problem:
                yield Failed(item_id, problem)
                continue
            try:
                images = [read_bytes(x), read_bytes(y)]
            except Exception as err:  # one bad file fails its item, never the unit
                yield Failed(item_id, reason_of(err))
                continue
            yield Item(item_id=item_id, source=self.ctx.dataset, images=images,
                       annotations={"paired_task": self.options.task},
                       provenance={"input": posixpath.basename(x), "target": posixpath.basename(y), "paired_task": self.options.task})
