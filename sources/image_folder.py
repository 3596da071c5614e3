"""A folder tree of images (sub-folders give class labels) or a plain list file of paths."""
from __future__ import annotations

from typing import Any, Iterator

from pydantic import model_validator

from sources.listing import list_inputs
from sources.remote import list_entry, read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import reason_of
from uvd.records import Failed, Item

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ImageFolderOptions(Strict):
    root: str | None = None  # folder; with labels, each immediate sub-folder is a class
    list_file: str | None = None  # text file: one path per line, optionally "path<TAB>label"
    labels: bool = True  # take the class label from the first sub-folder under root
    suffixes: list[str] = sorted(IMAGE_SUFFIXES)

    @model_validator(mode="after")
    def _one_input(self) -> "ImageFolderOptions":
        if bool(self.root) == bool(self.list_file):
            raise ValueError("give exactly one of `root` or `list_file`")
        require_path(self.root or self.list_file or "", "image_folder")
        return self


class ImageFolderSource(Source):
    """Units hold the files of one class only, so category sentences never straddle units."""

    name = "image_folder"
    Options = ImageFolderOptions
    item_key = "files"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def _entries(self) -> list[tuple[str, str, str]]:
        """(item_id, path, label), sorted by item id."""
        o = self.options
        return list_inputs(o.root, o.list_file, o.suffixes, o.labels)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        by_label: dict[str, list[tuple[str, str]]] = {}
        for item_id, path, label in self._entries():
            by_label.setdefault(label, []).append((item_id, path))
        units = []
        for label in sorted(by_label):
            for part in chunk(by_label[label], items_per_unit):
                units.append({"label": label, "files": part})
        return units

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["files"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        label = payload["label"] or None
        for item_id, path in payload["files"]:
            try:
                data = read_bytes(list_entry(self.options.list_file, item_id, path))
            except Exception as err:  # one unreadable file is its item's failure, never the unit's
                yield Failed(item_id, reason_of(err))
                continue
            yield Item(item_id=item_id, source=self.ctx.dataset, images=[data], label=label,
                       provenance={"path": item_id, **({"label": label} if label else {})})
