"""The unit recipe hashes what changes a shard's bytes, not how the build runs: operational
settings (download concurrency, timeouts, retries, user agent, Ray's workers) rebuild nothing;
seed, image options and content options rebuild everything; appending a metadata file builds
only its own units."""
from __future__ import annotations

import pytest

from demo.image_server import ImageServer
from sources.download import DownloadOptions
from tests.support.laion_builds import build_inline, files_under, laion_config, metadata_files, server_images
from uvd import registry
from uvd.config import BuildConfig, Strict, recipe_dump
from uvd.unit import dataset_hash


def _hash(cfg: BuildConfig) -> str:
    return dataset_hash(cfg, cfg.datasets[0])


def test_operational_keys_are_left_out_of_the_recipe_and_content_keys_are_not(tmp_path):
    meta = tmp_path / "m.parquet"
    meta.write_bytes(b"")
    base = laion_config(tmp_path / "out", [str(meta)])
    same = [laion_config(tmp_path / "out", [str(meta)], download={"concurrency": 8, "retries": 0,
                                                                    "total_timeout_s": 99.0, "user_agent": "x"}),
            base.model_copy(update={"run": base.run.model_copy(update={"workers": 3, "max_retries": 0}),
                                    "out": str(tmp_path / "elsewhere"), "row_group_bytes": 1 << 20})]
    other = [laion_config(tmp_path / "out", [str(meta)], seed=1),
             laion_config(tmp_path / "out", [str(meta)], image={"size": 128}),
             laion_config(tmp_path / "out", [str(meta)], items_per_unit=3),
             laion_config(tmp_path / "out", [str(meta)], download={"max_bytes": 1 << 20})]
    assert [_hash(c) for c in same] == [_hash(base)] * len(same)
    assert len({_hash(c) for c in other} | {_hash(base)}) == len(other) + 1


def test_recipe_dump_strips_nested_operational_keys():
    dumped = recipe_dump(DownloadOptions(concurrency=3))
    assert "concurrency" not in dumped and "user_agent" not in dumped
    assert dumped["max_bytes"] == DownloadOptions().max_bytes and "opt_out" in dumped


def test_a_misspelt_operational_key_is_an_error_when_the_class_is_made():
    with pytest.raises(TypeError, match="concurency"):
        class Bad(Strict):
            operational_keys = frozenset({"concurency"})
            concurrency: int = 1


def test_every_registered_options_class_declares_only_its_own_fields():
    # Class creation checks it; importing every plug-in makes sure each class was created.
    for kind in ("source", "builder"):
        for name in registry.names(kind):
            options = registry.lookup(kind, name).Options
            assert options.operational_keys <= set(options.model_fields), (kind, name)


@pytest.fixture(scope="module")
def server():
    with ImageServer(server_images()) as s:
        yield s


def test_concurrency_change_builds_nothing_and_seed_or_image_size_rebuild_everything(server, tmp_path):
    a, b = metadata_files(tmp_path, server)
    out = tmp_path / "out"
    first = build_inline(laion_config(out, [a, b], download={"concurrency": 16}))
    assert first.built == first.units == 6
    shards = files_under(out, "sentences")
    again = build_inline(laion_config(out, [a, b], download={"concurrency": 8, "retries": 1}))
    assert (again.built, again.skipped) == (0, 6)
    assert files_under(out, "sentences") == shards
    assert build_inline(laion_config(out, [a, b], seed=1)).built == 6
    assert build_inline(laion_config(out, [a, b], seed=1, image={"size": 128})).built == 6


def test_appending_a_metadata_file_builds_only_its_units(server, tmp_path):
    a, b = metadata_files(tmp_path, server)
    out = tmp_path / "out"
    assert build_inline(laion_config(out, [a])).built == 3
    before = files_under(out, "sentences")
    appended = build_inline(laion_config(out, [a, b]))
    assert (appended.built, appended.skipped) == (3, 3)
    after = files_under(out, "sentences")
    assert {k: after[k] for k in before} == before  # the first file's shards were not rewritten
