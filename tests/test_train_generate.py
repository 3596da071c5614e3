"""`uvd generate`: prompt images → tokenizer codes → model → codes → decoded PNGs of the right size."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tokenize_job.vqgan import VQGAN, VQGANConfig
from train.config import Config
from train.generate import continue_sentence, load_model
from train.loop import train
from tests.support.token_shards import write_token_shards
from uvd import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def run_and_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen")
    write_token_shards(root / "tokens" / "t", "video", units=1, sentences_per_unit=8, images=(2, 2))
    cfg = Config.model_validate({"model": {"size": "tiny", "max_seq_len": 768},
                                 "data": {"tokens": [str(root)], "seq_len": 128},
                                 "optim": {"warmup_steps": 1},
                                 "train": {"out": str(root / "run"), "steps": 2, "batch_size": 2, "threads": 1}})
    train(cfg)
    torch.manual_seed(0)
    tok_dir = root / "tokenizer"
    VQGAN(VQGANConfig.tiny()).save_pretrained(tok_dir, name="test-vqgan")  # untrained: decodes, not pretty
    return root / "run", tok_dir


def test_uvd_generate_writes_decodable_pngs(run_and_tokenizer: tuple[Path, Path], tmp_path: Path) -> None:
    run, tok = run_and_tokenizer
    photos = sorted(SAMPLES.glob("images/*.jpg"))[:2]
    out = tmp_path / "gen"
    rc = cli.main(["generate", "--model", str(run), "--tokenizer", str(tok), *map(str, photos),
                   "--new", "1", "--top-k", "50", "--out", str(out)])
    assert rc == 0
    img = cv2.imread(str(out / "generated-00.png"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (256, 256, 3) and img.dtype == np.uint8
    strip = cv2.imread(str(out / "prompt_and_generated.png"))
    assert strip.shape == (256, 3 * 256, 3)


def test_sampling_stays_in_the_codebook_and_context(run_and_tokenizer: tuple[Path, Path]) -> None:
    run, _ = run_and_tokenizer
    model, cfg = load_model(str(run))
    prompt = np.random.default_rng(0).integers(0, 512, (3, 256)).astype(np.uint16)  # 3 images > context of 2
    made = continue_sentence(model, prompt, new=2, codebook=512, temperature=1.0, top_k=0, seed=1)
    assert made.shape == (2, 256) and made.max() < 512  # no special id, no code the tokenizer lacks
    again = continue_sentence(model, prompt, new=2, codebook=512, temperature=1.0, top_k=0, seed=1)
    assert np.array_equal(made, again)
    greedy = continue_sentence(model, prompt, new=1, codebook=512, temperature=0, top_k=0)
    assert greedy.shape == (1, 256)


def test_analogy_prompt_needs_pairs_and_a_query(run_and_tokenizer: tuple[Path, Path], tmp_path: Path) -> None:
    run, tok = run_and_tokenizer
    photos = sorted(SAMPLES.glob("images/*.jpg"))[:2]
    rc = cli.main(["generate", "--model", str(run), "--tokenizer", str(tok), *map(str, photos),
                   "--mode", "analogy", "--out", str(tmp_path)])
    assert rc == 1
    assert not list(tmp_path.glob("*.png"))
