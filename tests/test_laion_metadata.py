"""LAION metadata in Parquet, CSV, TSV and JSONL, with the column spellings found in the wild."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sources.laion import LaionOptions, LaionSource
from sources.laion_metadata import MetadataFile, derive_id, detect_format, url_id
from uvd.api import BuildContext
from uvd.errors import ConfigError

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"

ROWS = [
    {"url": f"http://example.org/{i}.jpg", "caption": f"line one\nline two, \"quoted\" {i}", "width": 640 + i,
     "height": 480.0, "punsafe": 0.1 * (i % 10), "pwatermark": 0.05, "similarity": 0.31}
    for i in range(23)
]


def _source(path: str, **opts) -> LaionSource:
    return LaionSource(LaionOptions(metadata=path, **opts), BuildContext(dataset="laion"))


def _write_all_formats(d: Path) -> dict[str, Path]:
    out = {}
    # Parquet with the upper-case LAION-400M spellings, several row groups.
    pq.write_table(pa.table({"URL": [r["url"] for r in ROWS], "TEXT": [r["caption"] for r in ROWS],
                             "WIDTH": [float(r["width"]) for r in ROWS], "HEIGHT": [r["height"] for r in ROWS],
                             "punsafe": [r["punsafe"] for r in ROWS], "hash": list(range(1000, 1023))}),
                   d / "part.parquet", row_group_size=5)
    out["parquet"] = d / "part.parquet"
    for name, delim in (("csv", ","), ("tsv", "\t")):
        path = d / f"part.{name}"
        with path.open("w", newline="") as f:
            w = csv.writer(f, delimiter=delim)
            w.writerow(["url", "caption", "width", "height", "pwatermark", "similarity"])
            for r in ROWS:  # quoted newlines in captions, heights written as floats, some empty cells
                w.writerow([r["url"], r["caption"], r["width"], r["height"], r["pwatermark"] if r["width"] % 2 else "",
                            r["similarity"]])
        out[name] = path
    with gzip.open(d / "part.jsonl.gz", "wt") as f:
        for r in ROWS:
            f.write(json.dumps({"image_url": r["url"], "text": r["caption"], "WIDTH": r["width"]}) + "\n\n")
    out["jsonl.gz"] = d / "part.jsonl.gz"
    with (d / "part.jsonl").open("w") as f:
        for r in ROWS:
            f.write(json.dumps({"URL": r["url"], "TEXT": r["caption"], "HEIGHT": r["height"]}) + "\n")
    out["jsonl"] = d / "part.jsonl"
    return out


@pytest.mark.parametrize("kind", ["parquet", "csv", "tsv", "jsonl", "jsonl.gz"])
def test_every_format_reads_the_same_urls_in_unit_ranges(tmp_path, kind):
    path = _write_all_formats(tmp_path)[kind]
    src = _source(str(path))
    units = src.plan(7)
    assert [(u["start"], u["stop"]) for u in units] == [(0, 7), (7, 14), (14, 21), (21, 23)]
    mf = MetadataFile(str(path), detect_format(str(path)))
    got = [(i, row) for u in units for i, row in mf.rows(u["start"], u["stop"], u.get("offset", 0))]
    assert [i for i, _ in got] == list(range(23))
    assert [row["url"] for _, row in got] == [r["url"] for r in ROWS]
    assert all("caption" not in row and "text" not in row for _, row in got)  # never read


def test_numbers_are_parsed_whatever_their_spelling(tmp_path):
    files = _write_all_formats(tmp_path)
    rows = dict(MetadataFile(str(files["parquet"]), "parquet").rows(3, 4))
    assert rows[3]["width"] == 643.0 and rows[3]["height"] == 480.0 and rows[3]["hash"] == "1003"
    assert rows[3]["punsafe"] == pytest.approx(0.3)
    csv_rows = dict(MetadataFile(str(files["csv"]), "csv").rows(0, 2))
    assert csv_rows[0]["pwatermark"] is None and csv_rows[1]["pwatermark"] == pytest.approx(0.05)
    assert csv_rows[1]["width"] == 641.0 and csv_rows[0]["similarity"] == pytest.approx(0.31)
    assert dict(MetadataFile(str(files["jsonl.gz"]), "jsonl").rows(2, 3))[2]["width"] == 642.0


def test_ids_prefer_the_hash_column_then_the_url():
    assert derive_id({"url": "http://a/b.jpg", "hash": "42"}, "auto") == "hash-42"
    assert derive_id({"url": "http://a/b.jpg", "hash": None}, "auto") == url_id("http://a/b.jpg")
    assert derive_id({"url": "http://a/b.jpg", "hash": "42"}, "url") == url_id("http://a/b.jpg")
    assert derive_id({"url": "http://a/b.jpg", "hash": None}, "hash") is None
    assert url_id("http://a/b.jpg") != url_id("http://a/c.jpg")


def test_real_sample_plans_from_the_footer(tmp_path):
    src = _source(str(SAMPLES / "laion" / "test_1000.parquet"))
    units = src.plan(300)
    assert [(u["start"], u["stop"]) for u in units] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    mf = MetadataFile(str(SAMPLES / "laion" / "test_1000.parquet"), "parquet")
    assert set(mf.columns()) == {"url"}  # URL only: TEXT is not one of the columns it reads
    assert sum(1 for _ in mf.rows(900, 1000)) == 100


def test_metadata_without_url_column_or_unknown_format_is_a_config_error(tmp_path):
    pq.write_table(pa.table({"caption": ["a"]}), tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match="no URL column"):
        _source(str(tmp_path / "x.parquet")).plan(10)
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="format"):
        _source(str(tmp_path / "x.bin")).plan(10)
    with pytest.raises(Exception, match="does not exist"):
        LaionOptions(metadata=str(tmp_path / "missing.parquet"))


def test_column_override_and_glob(tmp_path):
    pq.write_table(pa.table({"image_link": ["http://x/1.jpg", "http://x/2.jpg"], "key": ["k1", "k2"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"image_link": ["http://x/3.jpg"], "key": ["k3"]}), tmp_path / "b.parquet")
    src = _source(str(tmp_path / "*.parquet"), columns={"url": "image_link", "hash": "key"})
    units = src.plan(10)
    assert [Path(u["file"]).name for u in units] == ["a.parquet", "b.parquet"]
    mf = MetadataFile(units[0]["file"], "parquet", {"url": "image_link", "hash": "key"})
    assert [derive_id(r, "auto") for _, r in mf.rows(0, 2)] == ["hash-k1", "hash-k2"]
