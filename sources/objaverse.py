"""`objaverse`: 3D objects (GLB/glTF/OBJ/PLY/STL/OFF) from a plain folder or the Objaverse layout
(`<root>/glbs/000-XXX/<uid>.glb`), loaded with trimesh into `Item.mesh`. A source never renders.

Selection, in order: an optional uid list and/or category→uids file, then a deterministic
train/test split by a salted hash of the item id (so it does not depend on the listing order
and an object stays on its side when others are added), then optional size caps (the
smallest hashes win). The paper's split is test_fraction 0.16, train_size 42000, test_size 8000.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from typing import Any, Iterator, Literal

import trimesh
from pydantic import Field, model_validator
from trimesh.resolvers import FilePathResolver, Resolver

from sources.listing import is_dir, list_files, read_text
from sources.remote import check_regular, is_remote, local_copy, read_bytes, size_of
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput
from uvd.records import Failed, Item
from uvd.storage import fs_and_path, join

MESH_SUFFIXES = [".glb", ".gltf", ".obj", ".ply", ".stl", ".off"]


class ObjaverseOptions(Strict):
    root: str  # a folder of mesh files, or an Objaverse download (has a glbs/ sub-folder)
    layout: Literal["auto", "folder", "objaverse"] = "auto"  # auto: objaverse if <root>/glbs exists
    uids: list[str] | None = None  # keep only these item ids (uid, or relative path in a folder)
    uid_file: str | None = None  # the same as a file: one uid per line, or a JSON list
    categories_file: str | None = None  # JSON {category: [uid, ...]} (as Objaverse's LVIS annotations)
    categories: list[str] | None = None  # with categories_file: only these categories
    split: Literal["all", "train", "test"] = "all"
    test_fraction: float = Field(0.16, ge=0.0, le=1.0)  # 8000 / (42000 + 8000) as in the paper
    train_size: int | None = Field(None, ge=0)
    test_size: int | None = Field(None, ge=0)
    split_salt: str = "uvd-objaverse-split-v1"
    suffixes: list[str] = MESH_SUFFIXES
    max_file_mb: float = Field(256.0, gt=0)  # bigger files are refused before trimesh parses them
    missing_textures: Literal["fail", "ignore"] = "fail"  # ignore: render with the base colour

    @model_validator(mode="after")
    def _paths(self) -> "ObjaverseOptions":
        require_path(self.root, "objaverse.root")
        for what in ("uid_file", "categories_file"):
            if getattr(self, what):
                require_path(getattr(self, what), f"objaverse.{what}")
        if self.categories and not self.categories_file:
            raise ValueError("`categories` needs `categories_file`")
        return self


def _relative(root: str, url: str) -> str:
    """`url` relative to root (both local paths, or both URLs of one store), else `url` itself."""
    fs, base = fs_and_path(root)
    _, path = fs_and_path(url)
    base = base.rstrip("/")
    return path[len(base) + 1:] if path.startswith(base + "/") else url


def split_hash(item_id: str, salt: str) -> float:
    """A uniform number in [0, 1) from the item id alone: the split key."""
    digest = hashlib.sha256(f"{salt}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _read_uids(path: str) -> list[str]:
    text = read_text(path)
    if text.lstrip().startswith("["):
        return [str(u) for u in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class _RecordingResolver(FilePathResolver):
    """Resolves textures/buffers next to the file (trimesh keeps them under its folder, symlinks
    followed) and remembers the names it could not find (trimesh drops a missing texture with
    only a log line). Each is read through `read_bytes`: a FIFO, device or folder named as a
    buffer is refused without blocking, and a side file over the byte cap is not read."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        for candidate in (name.strip(), name.strip().lstrip("/"), os.path.split(name)[-1]):
            try:
                path = self.absolute(candidate)
            except ValueError:  # leaves the folder
                continue
            if os.path.lexists(path):
                try:
                    return read_bytes(str(path))
                except BadInput as err:
                    self.missing.append(f"{name} ({err.kind})")
                    raise FileNotFoundError(name) from None
        self.missing.append(name)
        raise FileNotFoundError(name)

    def namespaced(self, namespace: str) -> "_RecordingResolver":
        sub = _RecordingResolver(os.path.join(self.parent, namespace, "_"))
        sub.missing = self.missing
        return sub


class _RemoteResolver(Resolver):
    """Side files (textures, .bin buffers, .mtl) of a remote mesh, read beside it through fsspec,
    never from outside its folder; like _RecordingResolver it remembers what it could not find."""

    def __init__(self, url: str) -> None:
        self.base = posixpath.dirname(url)
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        proto, sep, base = self.base.rpartition("://")
        for candidate in (name.strip().lstrip("/"), posixpath.basename(name.strip())):
            full = posixpath.normpath(posixpath.join(base, candidate))
            if candidate and full.startswith(base.rstrip("/") + "/"):
                try:
                    return read_bytes(proto + sep + full)
                except BadInput:
                    continue
        self.missing.append(name)
        raise FileNotFoundError(name)

    def keys(self) -> list[str]:
        return []  # only asked for names the mesh file refers to

    def namespaced(self, namespace: str) -> "_RemoteResolver":
        sub = _RemoteResolver(posixpath.join(self.base, namespace, "_"))
        sub.missing = self.missing
        return sub

    def write(self, name: str, data: bytes) -> None:
        raise NotImplementedError("a source never writes beside its inputs")


class ObjaverseSource(Source):
    name = "objaverse"
    Options = ObjaverseOptions

    def _files(self) -> dict[str, str]:
        """item id → path of every mesh file under root."""
        o = self.options
        layout = o.layout
        if layout == "auto":
            layout = "objaverse" if is_dir(join(o.root, "glbs")) else "folder"
        files: dict[str, str] = {}
        if layout == "objaverse":
            for rel, url in list_files(join(o.root, "glbs"), o.suffixes):
                if rel.count("/") == 1:  # glbs/<group>/<uid>.glb
                    files[posixpath.splitext(posixpath.basename(rel))[0]] = url
        else:
            for rel, url in list_files(o.root, o.suffixes):
                files[rel] = url
        return files

    def _selection(self, files: dict[str, str]) -> dict[str, str | None]:
        """item id → label ("" for none) of the wanted items, before the split."""
        o = self.options
        wanted: dict[str, str] | None = None
        if o.categories_file:
            cats = json.loads(read_text(o.categories_file))
            if not isinstance(cats, dict):
                raise ValueError(f"{o.categories_file}: expected a JSON object {{category: [uid, ...]}}")
            keep = set(o.categories) if o.categories else None
            wanted = {}
            for cat in sorted(cats):
                if keep is None or cat in keep:
                    for uid in cats[cat]:
                        wanted.setdefault(str(uid), cat)  # an object in two categories keeps the first
        listed = set(o.uids or []) | set(_read_uids(o.uid_file) if o.uid_file else [])
        if listed:
            wanted = {u: (wanted or {}).get(u, "") for u in listed if wanted is None or u in wanted}
        if wanted is None:
            return {item_id: "" for item_id in files}
        # A folder lists ids with their suffix; a uid list may name them without it.
        stems = {}
        for item_id in files:
            stems.setdefault(item_id.rsplit(".", 1)[0], item_id)
        out: dict[str, str | None] = {}
        for uid, label in wanted.items():
            out[uid if uid in files else stems.get(uid, uid)] = label
        return out

    def _split(self, ids: list[str]) -> list[str]:
        o = self.options
        if o.split == "all":
            return sorted(ids)
        keyed = sorted((split_hash(i, o.split_salt), i) for i in ids)
        test = [i for h, i in keyed if h < o.test_fraction]
        train = [i for h, i in keyed if h >= o.test_fraction]
        chosen, cap = (test, o.test_size) if o.split == "test" else (train, o.train_size)
        return sorted(chosen[:cap] if cap is not None else chosen)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        files = self._files()
        selection = self._selection(files)
        entries = [[i, files.get(i), selection[i] or ""] for i in self._split(list(selection))]
        return [{"objects": part, "split": self.options.split} for part in chunk(entries, items_per_unit)]

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["objects"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        limit = int(self.options.max_file_mb * (1 << 20))
        for item_id, path, label in payload["objects"]:
            if path is None:
                yield Failed(item_id, f"missing: no mesh file for uid {item_id!r} under root")
                continue
            try:
                check_regular(path)  # a FIFO or device named like a mesh would block the loader
                size = size_of(path)
            except BadInput as err:
                yield Failed(item_id, str(err))
                continue
            if size == 0:
                yield Failed(item_id, "empty: zero-byte file")
                continue
            if size > limit:
                yield Failed(item_id, f"too_large: {size} bytes > max_file_mb={self.options.max_file_mb:g}")
                continue
            remote = is_remote(path)
            resolver = _RemoteResolver(path) if remote else _RecordingResolver(path)
            try:
                with local_copy(path, limit) as local:  # remote: the mesh itself copied; side files via the resolver
                    mesh = trimesh.load_scene(local, resolver=resolver)
            except BadInput as err:
                yield Failed(item_id, str(err))
                continue
            except Exception as err:  # trimesh raises anything from IndexError to NotImplementedError on junk
                if resolver.missing:  # a buffer it needs is absent, outside the folder or not a regular file
                    yield Failed(item_id, "texture: referenced file(s) not found, outside the folder or not "
                                          f"regular files: {', '.join(sorted(set(resolver.missing)))}"[:500])
                else:
                    yield Failed(item_id, f"decode: {type(err).__name__}: {err}"[:500])
                continue
            if resolver.missing and self.options.missing_textures == "fail":
                yield Failed(item_id, f"texture: referenced file(s) not found: {', '.join(sorted(set(resolver.missing)))}")
                continue
            rel = _relative(self.options.root, path)
            provenance: dict[str, Any] = {"path": rel, "bytes": size}
            if payload.get("split", "all") != "all":
                provenance["split"] = payload["split"]
            if label:
                provenance["category"] = label
            if resolver.missing:
                provenance["missing_files"] = sorted(set(resolver.missing))
            yield Item(item_id=item_id, source=self.ctx.dataset, mesh=mesh, label=label or None,
                       provenance=provenance)
