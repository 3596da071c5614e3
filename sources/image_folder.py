"""A folder tree of images (sub-folders give class labels) or a plain list file of paths."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import model_validator

from uvd.api import Source, chunk
from uvd.config import Strict, require_path
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

    def _entries(self) -> list[tuple[str, str, str]]:
        """(item_id, path, label), sorted by item id."""
        o = self.options
        entries = []
        if o.list_file:
            base = Path(o.list_file).parent
            for line in Path(o.list_file).read_text().splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                path, _, label = line.partition("\t")
                p = Path(path.strip())
                p = p if p.is_absolute() else base / p
                entries.append((path.strip(), str(p), label.strip()))
        else:
            root = Path(o.root)  # type: ignore[arg-type]
            suffixes = {s.lower() for s in o.suffixes}
            for p in root.rglob("*"):
                if p.is_file() and p.suffix.lower() in suffixes:
                    rel = p.relative_to(root)
                    label = rel.parts[0] if o.labels and len(rel.parts) > 1 else ""
                    entries.append((rel.as_posix(), str(p), label))
        return sorted(entries)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        by_label: dict[str, list[tuple[str, str]]] = {}
        for item_id, path, label in self._entries():
            by_label.setdefault(label, []).append((item_id, path))
        units = []
        for label in sorted(by_label):
            for part in chunk(by_label[label], items_per_unit):
                units.append({"label": label, "files": part})
        return units

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        label = payload["label"] or None
        for item_id, path in payload["files"]:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                yield Failed(item_id, f"io: {err.strerror or err}")
                continue
            yield Item(item_id=item_id, source=self.ctx.dataset, images=[data], label=label,
                       provenance={"path": item_id, **({"label": label} if label else {})})
