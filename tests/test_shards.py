import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import gradient
from uvd.records import VisualSentence
from uvd.schema import SENTENCE_SCHEMA
from uvd.shards import sentence_row, sentence_writer
from uvd.storage import atomic_open, write_json


def _sentences(n):
    for i in range(n):
        img = np.roll(gradient(256, 256), i * 7, axis=1)
        yield VisualSentence(f"s{i:03d}", "demo", "pose", "pairs", [img, img[::-1].copy()],
                             meta={"i": i}, lossless=[False, True])


def test_shard_opens_with_plain_pyarrow_and_pandas(tmp_path):
    url = str(tmp_path / "part-00000.parquet")
    w = sentence_writer(url, {"config_hash": "abc"}, row_group_bytes=1 << 16)
    for s in _sentences(12):
        w.add(*sentence_row(s, 90))
    info = w.close()
    assert info.rows == 12
    code = f"""
import sys, pyarrow.parquet as pq, pandas as pd
t = pq.read_table({url!r}); df = pd.read_parquet({url!r})
assert 'uvd' not in sys.modules
md = pq.ParquetFile({url!r}).schema_arrow.metadata
print(t.num_rows, len(df), df.task.iloc[0], df.num_images.dtype, md[b'uvd.schema_version'].decode(), pq.ParquetFile({url!r}).num_row_groups)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout.split()
    assert out[:5] == ["12", "12", "pose", "int16", "1"]
    assert int(out[5]) > 1  # row groups were cut by size
    table = pq.read_table(url)
    assert table.schema.remove_metadata().equals(SENTENCE_SCHEMA)
    row = table.slice(3, 1).to_pylist()[0]
    assert row["images"][0][:3] == b"\xff\xd8\xff" and row["images"][1][:4] == b"\x89PNG"
    assert json.loads(row["meta"]) == {"i": 3}


def test_same_rows_give_byte_identical_files(tmp_path):
    digests = []
    for name in ("a", "b"):
        w = sentence_writer(str(tmp_path / f"{name}.parquet"), {"config_hash": "x"})
        for s in _sentences(5):
            w.add(*sentence_row(s, 90))
        digests.append(w.close().sha256)
    assert digests[0] == digests[1]
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_a_failed_write_leaves_nothing_under_the_real_name(tmp_path):
    target = tmp_path / "out" / "part-00001.parquet"
    with pytest.raises(RuntimeError):
        with atomic_open(str(target)) as f:
            f.write(b"half a shard")
            raise RuntimeError("worker died")
    assert not target.exists()
    assert os.listdir(target.parent) == []
    w = sentence_writer(str(target))
    w.add(*sentence_row(next(_sentences(1)), 90))
    w.abort()
    assert not target.exists() and os.listdir(target.parent) == []


def test_fsspec_memory_filesystem(tmp_path):
    url = "memory://uvd-test/sentences/x/part-00000.parquet"
    w = sentence_writer(url)
    for s in _sentences(3):
        w.add(*sentence_row(s, 90))
    w.close()
    write_json("memory://uvd-test/x.json", {"a": 1})
    from uvd.shards import iter_rows
    from uvd.storage import read_json

    assert [r["sentence_id"] for r in iter_rows(url)] == ["s000", "s001", "s002"]
    assert read_json("memory://uvd-test/x.json") == {"a": 1}
