"""A real Ray cluster on loopback: `ray job submit` of the demo build, written to S3 (moto)."""
import sys

import pytest

from cluster_fixtures import moto_s3, ray_head, submit
from uvd.inspect import inspect_path
from uvd.validate import validate

pytestmark = pytest.mark.slow


def test_job_submit_builds_to_s3_and_validates(tmp_path):
    with moto_s3() as s3_env, ray_head(extra_env=s3_env) as client:
        out = "s3://uvd/cluster-demo"
        logs = submit(client, f"{sys.executable} -m uvd demo --only image_inputs --skip-after --out {tmp_path}/demo "
                              f"&& {sys.executable} -m uvd build {tmp_path}/demo/demo-config.yaml --out {out}")
        assert "validate: OK" in logs
        assert validate(out) == []
        summary = inspect_path(out)
        assert "by source: categories" in summary and "failures by reason: decode" in summary
