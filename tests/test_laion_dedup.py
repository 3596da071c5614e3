"""Build-wide dedup of LAION: URL/hash repeats across units and files before download, content
duplicates across units after it (the dedup table), the same whatever the number of workers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tests.support.laion import FAST_DOWNLOAD, write_metadata
from sources.laion_metadata import url_id
from demo.image_server import ImageServer, generated_photos
from tokenize_job.job import tokenize
from tokenize_job.vqgan import VQGAN, VQGANConfig
from train.shards_index import build_index
from uvd import dedup
from uvd.config import BuildConfig
from uvd.runner import build
from uvd.shards import read_table
from uvd.storage import glob
from uvd.validate import validate

pytestmark = pytest.mark.slow  # starts Ray twice
# Ray's start-up competes for the two cores: generous deadlines, so no download times out.
DOWNLOAD = {**FAST_DOWNLOAD, "read_timeout_s": 10.0, "total_timeout_s": 20.0, "connect_timeout_s": 5.0}


def _inputs(tmp: Path, server: ImageServer) -> list[str]:
    u = {n: server.url(f"/img/{n}.jpg") for n in ("a", "b", "c", "d", "e", "same1", "same2")}
    # File 1 (URL only): a repeat inside the file, across its units.
    m1 = write_metadata(tmp / "meta" / "m1.parquet", {"url": [u["a"], u["b"], u["a"], u["c"], u["same1"]]})
    # File 2 (with hashes): a URL of file 1 again, a hash repeat under another URL, the same bytes at another URL.
    m2 = write_metadata(tmp / "meta" / "m2.parquet", {
        "url": [u["b"], u["d"], u["e"], u["same2"], u["c"] + "?again"],
        "hash": ["h1", "h2", "h2", "h3", "h4"]})
    return [str(m1), str(m2)]


def _cfg(out: Path, metadata: list[str]) -> BuildConfig:
    return BuildConfig.model_validate({
        "out": str(out), "seed": 0,
        "datasets": [{"name": "web", "source": "laion", "builder": "single", "items_per_unit": 2,
                      "source_args": {"metadata": metadata, "download": DOWNLOAD}}]})


def _result(out: Path) -> tuple[dict[str, bytes], list[dict]]:
    shards = {p: Path(p).read_bytes() for p in glob(str(out), "sentences/web/*.parquet")}
    audit = [r for p in glob(str(out), "audit/web/*.parquet") for r in pq.read_table(p).to_pylist()]
    return {Path(p).name: b for p, b in shards.items()}, audit


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    import ray

    tmp = tmp_path_factory.mktemp("dedup")
    photos = generated_photos(6, seed=7, sizes=(200, 300))
    images = {f"{n}.jpg": p for n, p in zip(("a", "b", "c", "d", "e", "same1"), photos)}
    images["same2.jpg"] = images["same1.jpg"]  # byte-identical content at a second URL
    with ImageServer(images) as server:
        metadata = _inputs(tmp, server)
        results = {}
        for workers in (1, 2):
            out = tmp / f"out{workers}"
            summary = build(_cfg(out, metadata), workers=workers, use_ray=True)
            ray.shutdown()
            assert summary.succeeded
            results[workers] = out
        yield results, server


def test_repeats_across_units_and_files_are_audited_duplicate_of_the_kept_id(builds):
    results, server = builds
    shards, audit = _result(results[1])
    assert len(audit) == 10  # one audit row per metadata row
    a, b, c = (url_id(server.url(f"/img/{n}.jpg")) for n in "abc")
    dups = {r["item_id"]: r["error"] for r in audit if r["reason"] == "duplicate"}
    assert dups == {
        f"{a}@m1.parquet:2": f"duplicate: of {a} (same url)",  # m1 row 2 repeats row 0 (another unit)
        "hash-h1@m2.parquet:0": f"duplicate: of {b} (same url)",  # m2 row 0: m1's URL under a hash id
        "hash-h2@m2.parquet:2": "duplicate: of hash-h2 (same hash)",
    }
    kept = {r["item_id"] for r in audit if r["status"] == "ok"}
    assert len(kept) == 7, audit
    assert {a, b, c, "hash-h2", "hash-h3", "hash-h4"} <= kept
    assert all(e.split("of ", 1)[1].split(" (")[0] in kept for e in dups.values())
    # Repeats were never downloaded again: each URL was fetched once.
    assert server.hits["/img/a.jpg"] == 2 and server.hits["/img/b.jpg"] == 2  # once per build (two builds)
    sids = [s for p in glob(str(results[1]), "sentences/web/part-*.parquet")
            for s in read_table(p).column("sentence_id").to_pylist()]
    assert len(sids) == len(set(sids)) == 7
    assert validate(str(results[1])) == []


def test_one_and_two_workers_give_the_same_shards_audit_and_dedup_table(builds):
    results, _ = builds
    one, two = _result(results[1]), _result(results[2])
    assert one[0] == two[0]
    assert sorted(one[1], key=str) == sorted(two[1], key=str)
    assert (results[1] / dedup.CONTENT_TABLE).read_bytes() == (results[2] / dedup.CONTENT_TABLE).read_bytes()


def test_same_bytes_at_two_urls_end_in_the_dedup_table_and_not_in_the_stream(builds, tmp_path):
    results, _ = builds
    out = results[1]
    table = pq.read_table(out / dedup.CONTENT_TABLE).to_pylist()
    sid = {json.loads(r["meta"])["url"].rsplit("/", 1)[1]: r["sentence_id"]
           for p in glob(str(out), "sentences/web/part-*.parquet")
           for r in read_table(p, columns=["sentence_id", "meta"]).to_pylist()}
    # Both pairs have the same bytes at two URLs; the first by (shard, row) is kept.
    pairs = sorted([(sid["same1.jpg"], sid["same2.jpg"]), (sid["c.jpg"], sid["c.jpg?again"])])
    assert sorted((r["kept"], r["dropped"]) for r in table) == pairs
    assert dedup.dropped_ids(str(out)) == {d for _, d in pairs}
    kept, dropped = pairs[0] if pairs[0][0] == sid["same1.jpg"] else pairs[1]

    torch.manual_seed(0)
    VQGAN(VQGANConfig.tiny()).save_pretrained(tmp_path / "tok", name="tiny")
    # Tokens made before the table existed still hold the duplicate: the trainer's index skips it.
    shutil.move(out / dedup.CONTENT_TABLE, tmp_path / "table.parquet")
    dedup._table.cache_clear()
    early = tokenize(str(out), str(tmp_path / "tok"), out=str(tmp_path / "early"), use_ray=False, log=lambda _: None)
    shutil.move(tmp_path / "table.parquet", out / dedup.CONTENT_TABLE)
    dedup._table.cache_clear()
    index = build_index([early.root], None, piece_rows=4)
    streamed = set()
    for piece in index.groups["all"]:
        ids = read_table(index.shards[piece.shard]).column("sentence_id").to_pylist()
        streamed |= {ids[i] for i in piece.row_numbers()}
    assert kept in streamed and dropped not in streamed and len(streamed) == 5
    # The tokenize job itself skips it, audited as a duplicate of the kept sentence.
    late = tokenize(str(out), str(tmp_path / "tok"), out=str(tmp_path / "late"), use_ray=False, log=lambda _: None)
    audit = [r for p in glob(late.root, "audit/*/part-*.parquet") for r in read_table(p).to_pylist()]
    assert [r["error"] for r in audit if r["item_id"] == dropped] == [f"duplicate: of {kept} (same content)"]
