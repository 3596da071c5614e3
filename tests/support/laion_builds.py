"""LAION builds for the recipe and dedup tests (no tests here): metadata files over a loopback
image server, an in-process build (no Ray), and what an output holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demo.image_server import ImageServer, generated_photos
from tests.support.laion import FAST_DOWNLOAD, write_metadata
from uvd.config import BuildConfig
from uvd.runner import build
from uvd.engine import Summary

NAMES = ("a", "b", "c", "d", "e", "f", "same1", "same2")


def server_images() -> dict[str, bytes]:
    photos = generated_photos(7, seed=11, sizes=(64, 96))
    images = {f"{n}.jpg": p for n, p in zip(NAMES, photos)}
    images["same2.jpg"] = images["same1.jpg"]  # the same bytes at two URLs: a content duplicate
    return images


def metadata_files(tmp: Path, server: ImageServer) -> tuple[str, str]:
    """Two files with repeats inside each, across them (by URL and by hash) and of content."""
    u = {n: server.url(f"/img/{n}.jpg") for n in NAMES}
    a = write_metadata(tmp / "meta" / "a.parquet", {"url": [u["a"], u["b"], u["a"], u["same1"], u["c"], u["d"]]})
    b = write_metadata(tmp / "meta" / "b.parquet", {
        "url": [u["b"], u["e"], u["f"], u["same2"], u["c"] + "?again", u["e"]],
        "hash": ["h1", "h2", "h2", "h3", "h4", "h5"]})
    return str(a), str(b)


def laion_config(out: Path, metadata: list[str], items_per_unit: int = 2, seed: int = 0,
                 download: dict[str, Any] | None = None, image: dict[str, Any] | None = None) -> BuildConfig:
    return BuildConfig.model_validate({
        "out": str(out), "seed": seed, **({"image": image} if image else {}),
        "datasets": [{"name": "web", "source": "laion", "builder": "single", "items_per_unit": items_per_unit,
                      "source_args": {"metadata": metadata, "download": {**FAST_DOWNLOAD, **(download or {})}}}]})


def build_inline(cfg: BuildConfig) -> Summary:
    summary = build(cfg, use_ray=False, progress=_Quiet())
    assert summary.succeeded, summary.report()
    return summary


class _Quiet:
    def update(self, units: int = 0, items: int = 0, failed: int = 0) -> None:
        pass


def files_under(root: Path, sub: str) -> dict[str, bytes]:
    """Relative path → bytes of every file under root/sub (stats files left out: they hold timings)."""
    base = root / sub
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and not p.name.endswith(".stats.json")}
