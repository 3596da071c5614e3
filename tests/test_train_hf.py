"""`uvd export-hf`: transformers loads the folder strictly with our logits; `uvd generate` runs from it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenize_job.vqgan import VQGAN, VQGANConfig
from train.config import Config
from train.generate import continue_sentence, load_model
from train.hf_format import load_hf, model_config_from_hf
from train.loop import train
from tests.support.token_shards import write_token_shards
from uvd import cli

os.environ["HF_HUB_OFFLINE"] = "1"  # never the network: everything is local
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf")
    write_token_shards(root / "tokens" / "t", "video", units=1, sentences_per_unit=8, images=(2, 2))
    cfg = Config.model_validate({"model": {"size": "tiny", "max_seq_len": 768, "rope_theta": 5e5},
                                 "data": {"tokens": [str(root)], "seq_len": 128},
                                 "optim": {"warmup_steps": 1, "lr": 3e-2},
                                 "train": {"out": str(root / "run"), "steps": 3, "batch_size": 2, "threads": 1}})
    train(cfg)
    assert cli.main(["export-hf", str(root / "run"), "--out", str(root / "hf")]) == 0
    return root / "run", root / "hf"


def test_transformers_loads_the_export_strictly_with_equal_logits(exported: tuple[Path, Path]) -> None:
    from transformers import LlamaForCausalLM

    run, hf_dir = exported
    assert json.loads((hf_dir / "generation_config.json").read_text())["eos_token_id"] == 8193
    theirs, info = LlamaForCausalLM.from_pretrained(hf_dir, local_files_only=True, output_loading_info=True,
                                                    dtype=torch.float32)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert theirs.config.rms_norm_eps == 1e-6 and theirs.config.vocab_size == 8292
    ours, _ = load_model(str(run))
    idx = torch.randint(0, 8192, (2, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = ours(idx)
        b = theirs(idx).logits.float()
    assert a.shape == b.shape == (2, 300, 8292)
    assert (a - b).abs().max().item() < 1e-4
    assert a.abs().max().item() > 0.1  # trained weights, not a trivial zero model
    # and back: the folder loads into our model with the same tensors
    again, mcfg = load_hf(hf_dir)
    assert mcfg.rope_theta == 5e5 and mcfg.norm_eps == 1e-6
    for k, v in ours.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_generation_with_the_kv_cache_matches_transformers_greedy(exported: tuple[Path, Path]) -> None:
    from transformers import LlamaForCausalLM

    _, hf_dir = exported
    ours, _ = load_model(str(hf_dir))
    prompt = np.random.default_rng(3).integers(0, 8192, (1, 256)).astype(np.uint16)
    made = continue_sentence(ours, prompt, new=1, codebook=8192, temperature=0, top_k=0)
    theirs = LlamaForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=torch.float32)
    # greedy over the codebook only, as ours samples: special ids suppressed
    bad = [[i] for i in range(8192, 8292)]
    out = theirs.generate(torch.as_tensor(prompt.astype(np.int64)), max_new_tokens=24, do_sample=False,
                          bad_words_ids=bad, use_cache=True)
    assert out[0, 256:].tolist() == made[0, :24].astype(int).tolist()


def test_uvd_generate_runs_from_the_hf_folder(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, hf_dir = exported
    tok = tmp_path / "tok"
    torch.manual_seed(0)
    VQGAN(VQGANConfig.tiny()).save_pretrained(tok, name="t")
    photos = sorted(SAMPLES.glob("images/*.jpg"))[:3]
    out = tmp_path / "gen"
    assert cli.main(["generate", "--model", str(hf_dir), "--tokenizer", str(tok), *map(str, photos),
                     "--mode", "analogy", "--new", "1", "--out", str(out)]) == 0
    assert (out / "generated-00.png").is_file()


def test_unsupported_hf_configs_are_refused_with_the_reason() -> None:
    base = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 8292}
    with pytest.raises(ValueError, match="grouped-query attention"):
        model_config_from_hf({**base, "num_key_value_heads": 2})
    with pytest.raises(ValueError, match="tied embeddings"):
        model_config_from_hf({**base, "tie_word_embeddings": True})
    with pytest.raises(ValueError, match="rope scaling"):
        model_config_from_hf({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    assert model_config_from_hf(base).resolved("dim") == 64


def test_checkpoint_to_file_command(exported: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = exported
    out = tmp_path / "one.pt"
    assert cli.main(["checkpoint-to-file", str(run), "--step", "3", "--out", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert state["train_state"]["step"] == 3 and "lm_head.weight" in state["model"]
    assert cli.main(["checkpoint-to-file", str(run), "--step", "2", "--out", str(out)]) == 1


def test_sharded_bin_folder_as_older_conversions_write_it(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """LVM's checkpoints went through EasyLM's HF conversion: .bin shards + pytorch_model.bin.index.json, fp16."""
    _, hf_dir = exported
    ours, _ = load_hf(hf_dir)
    state = {k: v.half() for k, v in ours.state_dict().items()}
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    folder = tmp_path / "sharded"
    folder.mkdir()
    for name, names in shards.items():
        torch.save({k: state[k] for k in names}, folder / name)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, names in shards.items() for k in names}}))
    cfg = json.loads((hf_dir / "config.json").read_text())
    for k in ("rope_parameters", "head_dim", "uvd"):
        cfg.pop(k)  # an older config: rope_theta only, no head_dim, our block absent
    (folder / "config.json").write_text(json.dumps({**cfg, "torch_dtype": "float16"}))
    model, mcfg = load_model(str(folder))
    assert mcfg.rope_theta == 5e5 and mcfg.codebook_size == 8192
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k].float()), k
