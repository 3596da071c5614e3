"""Reading img2dataset's outputs (webdataset tars, Parquet, files) as they are."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sources.laion_metadata import url_id
from demo.image_server import ImageServer, generated_photos
from tests.support.laion import FAST_DOWNLOAD, audit_rows, config, run_all_units, sentences, write_metadata

PHOTOS = generated_photos(7, seed=5, sizes=(260, 600))


def _sample_json(key: str, url: str, data: bytes, **extra) -> bytes:
    # What img2dataset writes beside each image (with --resize_mode no the size is the original).
    return json.dumps({"url": url, "caption": "a caption", "key": key, "status": "success", "error_message": None,
                       "width": 300, "height": 300, "original_width": 300, "original_height": 300,
                       "exif": "{}", "sha256": None, **extra}).encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tf.addfile(info, io.BytesIO(data))


def _webdataset(root: Path, urls: list[str], images: list[bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "00000.tar", "w") as tf:
        for i, (url, data) in enumerate(zip(urls, images)):
            key = f"{i:09d}"
            _add(tf, f"{key}.jpg", data)
            _add(tf, f"{key}.txt", b"a caption")
            _add(tf, f"{key}.json", _sample_json(key, url, data))
    (root / "00000_stats.json").write_text(json.dumps({"count": len(urls), "successes": len(urls)}))
    # img2dataset's per-shard metadata Parquet (no image column) sits beside the tar.
    pq.write_table(pa.table({"url": urls, "key": [f"{i:09d}" for i in range(len(urls))]}), root / "00000.parquet")


@pytest.fixture(scope="module")
def server():
    with ImageServer({f"{i}.jpg": p for i, p in enumerate(PHOTOS)}) as srv:
        yield srv


def test_webdataset_output_gives_the_same_sentences_as_downloading(server, tmp_path):
    urls = [server.url(f"/img/{i}.jpg") for i in range(len(PHOTOS))]
    meta = write_metadata(tmp_path / "meta.parquet", {"URL": urls, "TEXT": ["t"] * len(urls)})
    fetched = config(tmp_path / "a", "laion", {"metadata": str(meta), "download": FAST_DOWNLOAD}, items_per_unit=4)
    n_fetched = len(run_all_units(fetched))

    _webdataset(tmp_path / "wds", urls, PHOTOS)
    read = config(tmp_path / "b", "img2dataset", {"root": str(tmp_path / "wds")}, items_per_unit=3)
    stats = run_all_units(read)
    assert len(stats) == 3  # 7 samples in units of 3: the tar is read from each unit's offset

    def key(rows):
        return sorted((r["sentence_id"], r["images"], r["meta"]) for r in rows)

    downloaded, stored = sentences(fetched, n_fetched), sentences(read, len(stats))
    assert len(stored) == len(PHOTOS)
    assert key(downloaded) == key(stored)
    assert [r["item_id"] for r in audit_rows(read, 3)] == [url_id(u) for u in urls]


def test_unsafe_tar_members_are_refused_and_the_rest_read(tmp_path):
    root = tmp_path / "wds"
    root.mkdir()
    with tarfile.open(root / "00000.tar", "w") as tf:
        _add(tf, "000000000.jpg", PHOTOS[0])
        _add(tf, "000000000.json", _sample_json("000000000", "http://a/0.jpg", PHOTOS[0]))
        _add(tf, "../000000001.jpg", PHOTOS[1])
        _add(tf, "/abs/000000002.jpg", PHOTOS[2])
        link = tarfile.TarInfo("000000003.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        _add(tf, "000000004.jpg", b"not a jpeg")
        _add(tf, "000000004.json", _sample_json("000000004", "http://a/4.jpg", b""))
    cfg = config(tmp_path / "out", "img2dataset", {"root": str(root), "layout": "webdataset"})
    stats = run_all_units(cfg)
    audit = audit_rows(cfg, len(stats))
    assert len(audit) == 5
    assert audit[0]["status"] == "ok" and audit[0]["item_id"] == url_id("http://a/0.jpg")
    assert [r["reason"] for r in audit[1:]] == ["unsafe_path", "unsafe_path", "unsafe_path", "decode"]
    assert "'..'" in audit[1]["error"] and "absolute" in audit[2]["error"] and "regular file" in audit[3]["error"]
    assert not (tmp_path / "000000001.jpg").exists()  # nothing is extracted anywhere


def test_parquet_output_reports_its_failed_rows(tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    urls = [f"http://h/{i}.jpg" for i in range(4)]
    pq.write_table(pa.table({
        "url": urls, "caption": ["c"] * 4, "key": [f"{i:09d}" for i in range(4)],
        "status": ["success", "failed_to_download", "success", "success"],
        "error_message": [None, "HTTP Error 404: Not Found", None, None],
        "original_width": [300, None, 300, 300], "original_height": [300, None, 300, 300],
        "jpg": [PHOTOS[0], None, PHOTOS[2], PHOTOS[0]],
    }), root / "00000.parquet", row_group_size=2)
    cfg = config(tmp_path / "out", "img2dataset", {"root": str(root)}, items_per_unit=3)
    stats = run_all_units(cfg)
    audit = audit_rows(cfg, len(stats))
    assert [r["item_id"] for r in audit] == [url_id(u) for u in urls]
    assert [r["status"] for r in audit] == ["ok", "failed", "ok", "ok"]  # row 3 is in another unit: not a duplicate
    assert audit[1]["error"] == "img2dataset: failed_to_download: HTTP Error 404: Not Found"
    assert len(sentences(cfg, len(stats))) == 3


def test_files_output_with_size_filter(tmp_path):
    root = tmp_path / "files" / "00000"
    root.mkdir(parents=True)
    small = generated_photos(1, seed=9, sizes=(64, 64))[0]
    for i, data in enumerate([PHOTOS[0], small, PHOTOS[3]]):
        (root / f"{i:09d}.jpg").write_bytes(data)
        (root / f"{i:09d}.json").write_bytes(_sample_json(f"{i:09d}", f"http://f/{i}.jpg", data, hash=1000 + i))
        (root / f"{i:09d}.txt").write_text("caption")
    cfg = config(tmp_path / "out", "img2dataset", {"root": str(tmp_path / "files"), "filters": {"min_side": 128}})
    stats = run_all_units(cfg)
    audit = audit_rows(cfg, len(stats))
    assert [r["item_id"] for r in audit] == ["hash-1000", "hash-1001", "hash-1002"]  # the saved hash column wins
    assert audit[1]["error"].startswith("filtered: min_side (image 64x64")
    assert [r["status"] for r in audit] == ["ok", "failed", "ok"]


def test_webdataset_failed_rows_from_the_shard_metadata_reach_the_audit(tmp_path):
    root = tmp_path / "wds"
    urls = [f"http://w/{i}.jpg" for i in range(3)]
    _webdataset(root, [urls[0], urls[2]], [PHOTOS[0], PHOTOS[2]])
    pq.write_table(pa.table({  # img2dataset's own per-shard metadata: every input row, with its status
        "url": urls, "key": [f"{i:09d}" for i in range(3)],
        "status": ["success", "failed_to_download", "success"],
        "error_message": [None, "<urlopen error timed out>", None]}), root / "00000.parquet")
    cfg = config(tmp_path / "out", "img2dataset", {"root": str(root)})
    stats = run_all_units(cfg)
    audit = audit_rows(cfg, len(stats))
    assert sorted(r["item_id"] for r in audit) == sorted(url_id(u) for u in urls)
    failed = [r for r in audit if r["status"] == "failed"]
    assert [(r["item_id"], r["error"]) for r in failed] == [
        (url_id(urls[1]), "img2dataset: failed_to_download: <urlopen error timed out>")]
    assert len(sentences(cfg, len(stats))) == 2
