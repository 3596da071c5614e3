"""Filters of the `laion` source: each refusal names its filter; duplicates name what they duplicate."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sources.filters import FilterOptions, UnitFilters, dhash
from sources.laion_metadata import url_id
from demo.image_server import ImageServer, generated_photos
from tests.support.laion import FAST_DOWNLOAD, audit_rows, config, run_all_units, sentences, write_metadata
from uvd import codec


def _photo(w: int, h: int, seed: int, quality: int = 90) -> bytes:
    # Smooth colour fields: a re-encode keeps their structure, another seed changes it.
    small = np.random.default_rng(seed).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    return codec.encode(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), False, quality)


@pytest.fixture(scope="module")
def server():
    images = {
        "ok1.jpg": _photo(400, 300, 1), "ok2.jpg": _photo(300, 400, 2),
        "small.jpg": _photo(100, 80, 3), "wide.jpg": _photo(1000, 200, 4),
        "same.jpg": _photo(400, 300, 1),  # byte-identical to ok1
        "near.jpg": _photo(400, 300, 2, quality=70),  # ok2 re-encoded: other bytes, same picture
        "meta.jpg": _photo(400, 300, 5),
    }
    with ImageServer(images) as srv:
        yield srv


def test_each_filter_is_reported_by_name_and_duplicates_name_the_first(server, tmp_path):
    u = {name: server.url(f"/img/{name}.jpg") for name in ("ok1", "ok2", "small", "wide", "same", "near", "meta")}
    rows = [  # (url, punsafe, pwatermark, similarity, width, height)
        (u["ok1"], 0.1, 0.1, 0.35, None, None),
        (u["ok2"], None, None, None, 300.0, 400.0),
        (u["small"], 0.1, 0.1, 0.35, None, None),
        (u["wide"], 0.1, 0.1, 0.35, None, None),
        (u["same"], 0.1, 0.1, 0.35, None, None),
        (u["near"], 0.1, 0.1, 0.35, None, None),
        (u["meta"], 0.9, 0.1, 0.35, None, None),
        (u["meta"] + "?wm", 0.1, 0.8, 0.35, None, None),
        (u["meta"] + "?sim", 0.1, 0.1, 0.1, None, None),
        (u["meta"] + "?dims", 0.1, 0.1, 0.35, 90.0, 60.0),
        (u["ok1"], 0.1, 0.1, 0.35, None, None),  # the same URL again
    ]
    meta = write_metadata(tmp_path / "meta.parquet", {
        "url": [r[0] for r in rows], "punsafe": [r[1] for r in rows], "pwatermark": [r[2] for r in rows],
        "similarity": [r[3] for r in rows], "WIDTH": [r[4] for r in rows], "HEIGHT": [r[5] for r in rows]})
    filters = {"min_side": 128, "max_aspect_ratio": 3.0, "max_punsafe": 0.5, "max_pwatermark": 0.5,
               "min_similarity": 0.28, "near_dup_distance": 6}
    cfg = config(tmp_path / "out", "laion", {"metadata": str(meta), "download": FAST_DOWNLOAD, "filters": filters})
    stats = run_all_units(cfg)
    audit = audit_rows(cfg, len(stats))
    errors = [r["error"] for r in audit]
    assert len(audit) == len(rows)
    assert errors[0] is None and errors[1] is None
    assert errors[2].startswith("filtered: min_side (image 100x80")
    assert errors[3].startswith("filtered: max_aspect_ratio (image 1000x200")
    assert errors[4] == f"duplicate: of {url_id(u['ok1'])} (same content)"
    assert errors[5].startswith(f"duplicate: of {url_id(u['ok2'])} (near: dHash distance")
    assert errors[6].startswith("filtered: max_punsafe")
    assert errors[7].startswith("filtered: max_pwatermark")
    assert errors[8].startswith("filtered: min_similarity")
    assert errors[9].startswith("filtered: min_side (metadata 90x60")
    assert errors[10] == f"duplicate: of {url_id(u['ok1'])} (same url)"
    assert audit[10]["item_id"] == f"{url_id(u['ok1'])}@meta.parquet:10"  # unique, stable: file and row
    assert "/img/meta.jpg" not in server.hits  # metadata filters cost no traffic
    assert server.hits["/img/ok1.jpg"] == 1  # the repeated URL was not fetched again
    assert len(sentences(cfg, len(stats))) == 2


def test_filters_are_off_by_default_except_exact_duplicates():
    f = UnitFilters(FilterOptions())
    assert f.check_metadata({"punsafe": 0.99, "pwatermark": 0.99, "similarity": 0.0, "width": 5.0, "height": 500.0}) is None
    data = generated_photos(1, seed=3, sizes=(64, 64))[0]
    assert f.check_image("a", data) is None
    assert f.check_image("b", data) == "duplicate: of a (same content)"
    assert f.check_url("a", "http://x/1.jpg") is None and f.check_url("b", "http://x/1.jpg") == "duplicate: of a (same url)"


def test_dhash_separates_different_pictures_and_joins_reencodes():
    a, b = _photo(400, 300, 11), _photo(400, 300, 12)
    a_low = _photo(400, 300, 11, quality=60)
    assert bin(dhash(a) ^ dhash(a_low)).count("1") <= 4
    assert bin(dhash(a) ^ dhash(b)).count("1") > 12
