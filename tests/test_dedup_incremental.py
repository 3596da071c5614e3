"""Incremental dedup: the URL/hash index and the content index persist under <out>/dedup/; an
appended file or a rebuilt unit is deduplicated against them with the one-shot answer, and a
rerun with nothing to build reads no metadata row and no shard."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from demo.image_server import ImageServer
from sources.laion_metadata import MetadataFile
from tests.support.laion_builds import build_inline, files_under, laion_config, metadata_files, server_images
from uvd import dedup

# The content index records each shard's stats-file version (mtime, inode): not comparable across outputs.
VERSIONS = "dedup/content/units.parquet"


def _dedup_files(out) -> dict[str, bytes]:
    return {k: v for k, v in files_under(out, "dedup").items() if k != VERSIONS}


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incremental")
    with ImageServer(server_images()) as server:
        a, b = metadata_files(tmp, server)
        out = tmp / "one_shot"
        build_inline(laion_config(out, [a, b]))
        yield tmp, server, a, b, out


def _same_build(one, other) -> None:
    assert files_under(other, "sentences") == files_under(one, "sentences")
    assert files_under(other, "audit") == files_under(one, "audit")
    assert _dedup_files(other) == _dedup_files(one)


def test_the_one_shot_build_found_repeats_across_files_and_content_duplicates(one_shot):
    _, _, _, _, out = one_shot
    audit = [r for p in sorted((out / "audit" / "web").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    reasons = sorted(r["error"].rsplit("(", 1)[1] for r in audit if r["reason"] == "duplicate")
    assert reasons == ["same hash)", "same url)", "same url)", "same url)"]  # a row 2, b rows 0 and 5; hash h2
    assert pq.read_table(out / dedup.CONTENT_TABLE).num_rows == 2  # same1/same2 and c/c?again
    assert (out / "dedup" / "sources" / "web" / "units.parquet").exists()


def test_appending_a_file_gives_the_one_shot_dedup_tables_and_shards(one_shot):
    tmp, _, a, b, one = one_shot
    out = tmp / "appended"
    build_inline(laion_config(out, [a]))
    assert build_inline(laion_config(out, [a, b])).built == 3
    _same_build(one, out)


def test_a_rerun_with_nothing_to_build_reads_no_metadata_row_and_no_shard(one_shot, monkeypatch):
    tmp, _, a, b, one = one_shot
    out = tmp / "rerun"
    build_inline(laion_config(out, [a, b]))  # not a copy of `one`: a copy's files are new to the listing
    read: list[str] = []
    real_rows, real_keys = MetadataFile.rows, dedup._content_keys
    monkeypatch.setattr(MetadataFile, "rows", lambda self, *a, **k: read.append(self.path) or real_rows(self, *a, **k))
    monkeypatch.setattr(dedup, "_content_keys", lambda item: read.append(item[1]) or real_keys(item))
    again = build_inline(laion_config(out, [a, b], download={"concurrency": 4}))
    assert (again.built, read) == (0, [])


def test_a_unit_rebuilt_in_the_middle_gives_the_one_shot_tables(one_shot, monkeypatch):
    tmp, _, a, b, one = one_shot
    out = tmp / "rebuilt"
    build_inline(laion_config(out, [a, b]))
    for kind in ("sentences", "audit"):
        for f in (out / kind / "web").glob("part-00001.*"):
            f.unlink()
    read: list[str] = []
    real_keys = dedup._content_keys
    monkeypatch.setattr(dedup, "_content_keys", lambda item: read.append(item[1]) or real_keys(item))
    assert build_inline(laion_config(out, [a, b])).built == 1
    assert [p.rsplit("/", 1)[1] for p in read] == ["part-00001.parquet"]  # only the rebuilt shard is read
    _same_build(one, out)


def test_a_changed_plan_reindexes_and_still_matches_a_fresh_build(one_shot):
    tmp, _, a, b, _ = one_shot
    out, fresh = tmp / "replanned", tmp / "fresh"
    build_inline(laion_config(out, [a, b]))
    build_inline(laion_config(out, [b, a], items_per_unit=3))  # every unit changed: decided again
    build_inline(laion_config(fresh, [b, a], items_per_unit=3))
    assert _dedup_files(out) == _dedup_files(fresh)
