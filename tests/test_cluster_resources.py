"""Resources as users set them: `run:` keys and flags → what each unit task and encoder actor asks Ray for."""
from __future__ import annotations

from tokenize_job.job import pool_shape
from uvd.cli.build_cmd import main as build_main
from uvd.config import ActorPoolRun, BuildConfig
from uvd.runner import unit_resources


def _cfg(**run) -> BuildConfig:
    return BuildConfig.model_validate({"run": run, "datasets": [{"source": "image_folder"}]})


def test_unit_tasks_ask_for_the_configured_cpus_and_memory():
    assert unit_resources(_cfg()) == {"num_cpus": 1}  # memory left to Ray unless set
    assert unit_resources(_cfg(cpus_per_unit=2, memory_per_unit_mb=1500)) == {"num_cpus": 2, "memory": 1500 << 20}


def test_encoder_pool_defaults_fill_the_cluster():
    # 8 CPU nodes × 16 CPUs + 2 GPU nodes × 8 GPUs: one actor per GPU, 1 CPU beside each.
    assert pool_shape(ActorPoolRun(), 0, gpus=16, cpus=160, units=1000) == (16, 16, {"num_gpus": 1, "num_cpus": 1})
    # No GPUs: one actor on all CPUs (torch threads), never more actors than units.
    assert pool_shape(ActorPoolRun(), 0, gpus=0, cpus=8, units=1000) == (1, 1, {"num_cpus": 8})
    assert pool_shape(ActorPoolRun(), 0, gpus=4, cpus=8, units=2) == (2, 2, {"num_gpus": 1, "num_cpus": 1})


def test_encoder_pool_follows_run_keys_and_the_fixed_size_flag():
    pool = ActorPoolRun(num_gpus=0.5, cpus_per_actor=4, min_actors=2, max_actors=6)
    assert pool_shape(pool, 0, gpus=2, cpus=32, units=100) == (2, 6, {"num_gpus": 0.5, "num_cpus": 4})
    assert pool_shape(pool, 3, gpus=2, cpus=32, units=100) == (3, 3, {"num_gpus": 0.5, "num_cpus": 4})
    assert pool_shape(ActorPoolRun(num_gpus=0), 0, gpus=2, cpus=8, units=100) == (1, 1, {"num_cpus": 8})


def test_a_bad_resource_flag_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("datasets: [{source: image_folder, source_args: {root: /nonexistent}}]\n")
    assert build_main([str(config), "--cpus-per-unit", "0", "--out", str(tmp_path / "out")]) == 2
    assert "cpus_per_unit: Input should be greater than 0" in capsys.readouterr().err


def test_tokenize_pool_comes_from_the_config_then_the_flags(tmp_path, monkeypatch, capsys):
    import tokenize_job.job as job
    from uvd.cli.tokenize_cmd import main as tokenize_main

    seen = {}

    class Done:
        root, errors, ok = "r", {}, True

    def fake(sentences, tokenizer, out, **kw):
        seen.update(kw)
        return Done()

    monkeypatch.setattr(job, "tokenize", fake)
    config = tmp_path / "c.yaml"
    config.write_text("run: {tokenize: {min_actors: 2, max_actors: 4, batch_size: 32, cpus_per_actor: 3}}\n"
                      "datasets: [{source: image_folder}]\n")
    assert tokenize_main(["s", "--tokenizer", "t", "--config", str(config), "--max-actors", "8"]) == 0
    assert seen["pool"] == ActorPoolRun(min_actors=2, max_actors=8, batch_size=32, cpus_per_actor=3)
    assert seen["batch_size"] == seen["image_batch"] == 32
    assert tokenize_main(["s", "--tokenizer", "t", "--min-actors", "-1"]) == 2
    assert "min_actors: Input should be greater than or equal to 0" in capsys.readouterr().err
