"""Cluster guard rails (uvd.cluster_checks): with several Ray nodes, local outputs and inputs are
refused at plan time unless the user says they are a shared filesystem."""
from __future__ import annotations

import pytest

from uvd.cluster_checks import check_paths_for_cluster, local_inputs
from uvd.config import BuildConfig
from uvd.errors import ConfigError


def _cfg(tmp_path, **source_args) -> BuildConfig:
    return BuildConfig.model_validate({"datasets": [
        {"name": "photos", "source": "image_folder", "source_args": source_args},
        {"name": "frames", "source": "video", "source_args": {"root": "s3://bucket/video", "split": "train",
                                                              "strides": [10, 20]}}]})


def test_one_node_allows_local_paths(tmp_path):
    check_paths_for_cluster(_cfg(tmp_path, root=str(tmp_path / "in")), str(tmp_path / "out"), nodes=1,
                            shared_fs=False)


def test_several_nodes_refuse_a_local_output_and_local_inputs(tmp_path):
    cfg = _cfg(tmp_path, root=str(tmp_path / "in"), labels=False)
    with pytest.raises(ConfigError) as err:
        check_paths_for_cluster(cfg, str(tmp_path / "out"), nodes=3, shared_fs=False)
    msg = str(err.value)
    assert "3 nodes" in msg and "--shared-fs" in msg
    assert f"output {tmp_path / 'out'} is a local path" in msg
    assert f"dataset photos: input {tmp_path / 'in'} is a local path" in msg
    assert "s3://bucket/video" not in msg and "train" not in msg.replace("--shared-fs", "")  # not paths


def test_object_storage_passes_and_shared_fs_allows_local_paths(tmp_path):
    cfg = _cfg(tmp_path, root="s3://bucket/photos")
    check_paths_for_cluster(cfg, "s3://bucket/out", nodes=3, shared_fs=False)
    local = _cfg(tmp_path, root=str(tmp_path / "in"))
    check_paths_for_cluster(local, str(tmp_path / "out"), nodes=3, shared_fs=True)


def test_memory_urls_are_refused_on_a_cluster_even_with_shared_fs(tmp_path):
    cfg = _cfg(tmp_path, root="memory://photos")
    with pytest.raises(ConfigError, match="lives in one process"):
        check_paths_for_cluster(cfg, "s3://bucket/out", nodes=2, shared_fs=True)
    with pytest.raises(ConfigError, match="output memory://out lives in one process"):
        check_paths_for_cluster(_cfg(tmp_path, root="s3://b/p"), "memory://out", nodes=2, shared_fs=True)


def test_nested_path_lists_are_found(tmp_path):
    cfg = BuildConfig.model_validate({"datasets": [
        {"name": "coco", "source": "coco", "source_args": {"annotations": [str(tmp_path / "a.json"), "s3://b/c.json"],
                                                           "images_dir": "file:///data/coco"}}]})
    assert local_inputs(cfg) == [("coco", str(tmp_path / "a.json")), ("coco", "file:///data/coco")]


def test_run_keys_for_resources_validate():
    cfg = BuildConfig.model_validate({"run": {"cpus_per_unit": 2, "memory_per_unit_mb": 3000, "shared_fs": True,
                                              "tokenize": {"min_actors": 2, "max_actors": 4, "batch_size": 32}},
                                      "datasets": [{"source": "image_folder"}]})
    assert cfg.run.cpus_per_unit == 2 and cfg.run.tokenize.max_actors == 4
    with pytest.raises(Exception, match="cpus_per_unit"):
        BuildConfig.model_validate({"run": {"cpus_per_unit": 0}, "datasets": [{"source": "image_folder"}]})
