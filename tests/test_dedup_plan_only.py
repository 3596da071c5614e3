"""The content dedup table sees the units of the current plan only: a leftover unit of an older
plan never pairs with current sentences, and no sentence is paired with itself (issue 22)."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from demo.image_server import ImageServer, generated_photos
from tests.support.laion import write_metadata
from tests.support.laion_builds import build_inline, laion_config
from uvd import dedup
from uvd.shards import read_table
from uvd.storage import glob


@pytest.fixture(scope="module")
def server():
    photos = generated_photos(6, seed=5, sizes=(64, 96))
    with ImageServer({f"{i}.jpg": p for i, p in enumerate(photos)}) as s:
        yield s


def _sentence_ids(out, units) -> set[str]:
    return {s for u in units for s in read_table(str(out / "sentences" / "web" / f"part-{u}.parquet"),
                                                  columns=["sentence_id"]).column("sentence_id").to_pylist()}


def test_a_rebuild_with_bigger_units_drops_no_current_sentence(server, tmp_path):
    meta = write_metadata(tmp_path / "m.parquet", {"url": [server.url(f"/img/{i}.jpg") for i in range(6)]})
    out = tmp_path / "out"
    build_inline(laion_config(out, [str(meta)], items_per_unit=2))
    summary = build_inline(laion_config(out, [str(meta)], items_per_unit=4))
    assert summary.units == 2
    assert (out / "sentences" / "web" / "part-00002.parquet").exists()  # the old plan's leftover is still there
    current = _sentence_ids(out, ["00000", "00001"])
    assert len(current) == 6
    dedup._table.cache_clear()
    assert dedup.dropped_ids(str(out)) & current == set()
    table = pq.read_table(out / dedup.CONTENT_TABLE).to_pylist()
    assert table == []  # six different photos: nothing is a duplicate


def test_the_same_sentence_in_two_planned_units_is_not_paired_with_itself(server, tmp_path):
    meta = write_metadata(tmp_path / "m.parquet", {"url": [server.url(f"/img/{i}.jpg") for i in (0, 1, 2, 0)]})
    out = tmp_path / "out"
    cfg = laion_config(out, [str(meta)], items_per_unit=2)
    cfg = cfg.model_copy(update={"datasets": [cfg.datasets[0].model_copy(update={"source_args": {
        **cfg.datasets[0].source_args, "build_dedup": False}})]})
    build_inline(cfg)
    folder = out / "sentences" / "web"
    # Unit 1 made to hold unit 0's sentences again (a copy): same ids, same content.
    shutil.copy(folder / "part-00000.parquet", folder / "part-00001.parquet")
    shutil.rmtree(out / "dedup")  # decided again from the shards as they are now
    units = [SimpleNamespace(dataset="web", unit=u) for u in ("00000", "00001")]
    assert dedup.write_content_table(str(out), units) == 0
    assert pq.read_table(out / dedup.CONTENT_TABLE).num_rows == 0


def test_shards_outside_the_given_units_are_never_read(server, tmp_path, monkeypatch):
    meta = write_metadata(tmp_path / "m.parquet", {"url": [server.url(f"/img/{i}.jpg") for i in range(6)]})
    out = tmp_path / "out"
    build_inline(laion_config(out, [str(meta)], items_per_unit=2))
    (out / "dedup").rename(tmp_path / "old-dedup")
    read: list[str] = []
    real = dedup._content_keys
    monkeypatch.setattr(dedup, "_content_keys", lambda item: read.append(item[1]) or real(item))
    dedup.write_content_table(str(out), [SimpleNamespace(dataset="web", unit="00001")])
    assert [p.rsplit("/", 1)[1] for p in read] == ["part-00001.parquet"]
    assert len(glob(str(out), "sentences/web/part-*.parquet")) == 3
