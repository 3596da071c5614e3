"""A real Ray cluster on loopback: `ray job submit` of the demo build and the tokenize job, to S3 (moto)."""
import sys

import pyarrow.parquet as pq
import pytest

from tests.support.cluster import moto_s3, ray_head, submit
from tokenize_job.vqgan import VQGAN, VQGANConfig
from uvd.cli.inspect_cmd import inspect_path
from uvd.storage import fs_and_path, glob, read_json
from uvd.validate import validate

pytestmark = pytest.mark.slow


def test_job_submit_builds_and_tokenizes_on_s3(tmp_path):
    tokenizer = VQGAN(VQGANConfig.tiny()).save_pretrained(tmp_path / "tokenizer", name="tiny")
    with moto_s3() as s3_env, ray_head(extra_env=s3_env) as client:
        out = "s3://uvd/cluster-demo"
        py = sys.executable
        logs = submit(client, f"{py} -m uvd demo --only image_inputs --skip-after --out {tmp_path}/demo "
                              f"&& {py} -m uvd build {tmp_path}/demo/demo-config.yaml --out {out} "
                              f"&& {py} -m uvd tokenize {out} --tokenizer {tokenizer} --threads 1")
        assert "validate: OK" in logs
        assert validate(out) == []
        summary = inspect_path(out)
        assert "by source: categories" in summary and "failures by reason: decode" in summary

        # Token shards on S3: one per sentence shard, as many rows, 256 codes per image, all < codebook.
        sentence_shards = glob(out, "sentences/*/part-*.parquet")
        token_shards = glob(out, "tokens/*/*/part-*.parquet")
        assert len(token_shards) == len(sentence_shards) > 0
        (manifest,) = glob(out, "tokens/*/manifest.json")
        assert read_json(manifest)["tokenizer"]["tokenizer_id"].startswith("tiny-")
        for shard in token_shards:
            fs, path = fs_and_path(shard)
            with fs.open(path, "rb") as f:
                table = pq.read_table(f)
            for row in table.to_pylist():
                assert len(row["tokens"]) == row["num_images"] * 256
                assert max(row["tokens"]) < VQGANConfig.tiny().num_embeddings
