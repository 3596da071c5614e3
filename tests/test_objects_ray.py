"""The objects path through Ray: renders in worker processes equal the in-process ones byte for byte."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from uvd.config import BuildConfig, parse_model
from uvd.unit import make_source, run_unit

OBJECTS = Path(__file__).resolve().parent.parent / "sample_data" / "objects"


@pytest.mark.slow
def test_ray_build_matches_in_process(tmp_path: Path) -> None:
    from uvd.runner import build

    root = tmp_path / "in" / "glbs" / "000-000"
    root.mkdir(parents=True)
    for name in ("Duck.glb", "BoxTextured.glb"):
        shutil.copy(OBJECTS / name, root / name)
    (root / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00junk")
    cfg = parse_model(BuildConfig, {"out": str(tmp_path / "ray"), "datasets": [
        {"name": "objects", "source": "objaverse", "source_args": {"root": str(tmp_path / "in")},
         "builder": "multiview", "builder_args": {"views_per_sentence": 4}, "items_per_unit": 1}]}, "t")
    summary = build(cfg, workers=2)
    assert summary.ok
    ds = cfg.datasets[0]
    units = make_source(cfg, ds).plan(ds.items_per_unit)
    assert [u["objects"][0][0] for u in units] == ["BoxTextured", "Duck", "broken"]
    for i, payload in enumerate(units):
        unit = f"{i:05d}"
        local = run_unit(cfg, "objects", unit, payload, str(tmp_path / "local"))
        ray_shard = tmp_path / "ray" / "sentences" / "objects" / f"part-{unit}.parquet"
        local_shard = tmp_path / "local" / "sentences" / "objects" / f"part-{unit}.parquet"
        assert ray_shard.read_bytes() == local_shard.read_bytes()
        assert local["failed"] == (1 if i == 2 else 0)
