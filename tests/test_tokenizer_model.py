"""The VQGAN: LVM architecture (146.2M parameters, open-MUSE names), strict loading, fast vs reference paths."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenize_job.codebook_search import nearest_codes, nearest_codes_reference
from tokenize_job.encode import BatchEncoder, decode_codes, encode_images
from tokenize_job.vqgan import VQGAN, VQGANConfig, count_parameters, load_tokenizer
from uvd.image import to_sentence_image
from uvd.config import ImageSpec

torch.set_num_threads(1)  # see tokenizer_fixtures: faster on an oversubscribed machine
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def small_config() -> VQGANConfig:
    # exercises every module kind the LVM checkpoint has, and attention, at a small size
    return VQGANConfig(resolution=64, hidden_channels=32, channel_mult=[1, 2, 2], num_res_blocks=1,
                       attn_resolutions=[32], no_attn_mid_block=False, z_channels=32, quantized_embed_dim=16,
                       num_embeddings=128)


def real_images(n: int, size: int) -> np.ndarray:
    files = sorted((SAMPLES / "images").glob("*.jpg")) + sorted((SAMPLES / "coco").glob("*.jpg"))
    spec = ImageSpec(size=size)
    return np.stack([to_sentence_image(f.read_bytes(), spec) for f in files[:n]])


def test_lvm_config_has_146_2m_parameters_and_open_muse_names() -> None:
    with torch.device("meta"):
        model = VQGAN(VQGANConfig.lvm())
    assert abs(count_parameters(model) - 146.2e6) <= 0.1e6
    sd = model.state_dict()
    assert tuple(sd["quantize.embedding.weight"].shape) == (8192, 64)
    assert tuple(sd["quant_conv.weight"].shape) == (64, 64, 1, 1)
    assert tuple(sd["encoder.down.4.block.1.conv2.weight"].shape) == (768, 768, 3, 3)
    assert tuple(sd["encoder.down.0.downsample.conv.weight"].shape) == (128, 128, 3, 3)
    assert tuple(sd["decoder.up.4.block.2.conv2.weight"].shape) == (768, 768, 3, 3)
    assert "decoder.up.0.upsample.conv.weight" not in sd and "decoder.up.1.upsample.conv.weight" in sd
    assert "encoder.down.4.downsample.conv.weight" not in sd
    assert "encoder.down.1.block.0.nin_shortcut.weight" in sd
    assert "encoder.mid.block_2.norm2.weight" in sd and not any(".attn" in k for k in sd)
    assert VQGANConfig.lvm().tokens_per_image == 256


def write_open_muse_checkpoint(model: VQGAN, directory: Path) -> None:
    """What the LVM release looks like: diffusers-style config.json + a pickled pytorch_model.bin."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {**{k: v for k, v in model.config.to_dict().items()}, "_class_name": "VQGANModel", "_version": "0.0.1"}
    (directory / "config.json").write_text(json.dumps(cfg))
    torch.save(model.state_dict(), directory / "pytorch_model.bin")


def test_open_muse_layout_reloads_strictly_and_round_trips_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VQGAN(small_config()).eval()
    write_open_muse_checkpoint(model, tmp_path / "ckpt")
    loaded = load_tokenizer(tmp_path / "ckpt")
    images = real_images(3, 64)
    codes = encode_images(loaded, images)
    assert codes.dtype == np.uint16 and codes.shape == (3, model.config.tokens_per_image) == (3, 256)
    assert np.array_equal(codes, encode_images(model, images))
    decoded = decode_codes(loaded, codes)
    assert decoded.shape == images.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, decode_codes(model, codes))
    assert loaded.weights_sha256 and loaded.tokenizer_id.endswith(loaded.weights_sha256[:12])


def test_save_pretrained_writes_open_muse_files_that_reload(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = VQGAN(small_config())
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "model.safetensors").write_bytes(b"an older save")  # would be picked first: removed
    model.save_pretrained(tmp_path / "tok", name="small")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "pytorch_model.bin"]
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert "decoder_channel_mult" not in config and "decoder_res_blocks" not in config  # open-MUSE main has none
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.tokenizer_id == model.tokenizer_id and loaded.tokenizer_id.startswith("small-")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_wrong_key_or_shape_is_a_clear_error(tmp_path: Path) -> None:
    model = VQGAN(small_config())
    sd = model.state_dict()
    renamed = dict(sd)
    renamed["encoder.conv_inn.weight"] = renamed.pop("encoder.conv_in.weight")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(renamed, tmp_path / "a" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"missing keys \['encoder.conv_in.weight'\].*unexpected keys \['encoder.conv_inn.weight'\]"):
        load_tokenizer(tmp_path / "a")
    reshaped = dict(sd)
    reshaped["quantize.embedding.weight"] = torch.zeros(64, 16)
    torch.save(reshaped, tmp_path / "a" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"shape mismatch.*quantize.embedding.weight: checkpoint \(64, 16\) vs model \(128, 16\)"):
        load_tokenizer(tmp_path / "a")


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("pickled code ran",))


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    model = VQGAN(small_config())
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    buf = io.BytesIO()
    torch.save({"state_dict": _Payload()}, buf)
    (tmp_path / "pytorch_model.bin").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a loadable state dict.*UnpicklingError"):
        load_tokenizer(tmp_path)


def test_bad_configs_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown VQGAN config keys"):
        VQGANConfig.from_dict({"hidden_chanels": 128})
    with pytest.raises(ValueError, match="multiples of 32"):
        VQGAN(VQGANConfig(hidden_channels=48, channel_mult=[1, 2]))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_tokenizer(tmp_path)
    model = VQGAN(small_config())
    with pytest.raises(ValueError, match=r"codes: values must lie in \[0, 128\)"):
        decode_codes(model, np.full((1, 256), 128))


def test_chunked_code_search_equals_full_search() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3000, 16, generator=gen)
    codebook = torch.randn(500, 16, generator=gen)
    assert torch.equal(nearest_codes(z, codebook, chunk=257), nearest_codes_reference(z, codebook))
    # the search stays fp32 even when the latents arrive in bf16
    zb = z.bfloat16()
    assert torch.equal(nearest_codes(zb, codebook, chunk=1000), nearest_codes_reference(zb.float(), codebook))


def test_fast_path_agrees_with_fp32_reference() -> None:
    torch.manual_seed(0)
    model = VQGAN(VQGANConfig.tiny()).eval()
    images = real_images(6, 256)
    ref = BatchEncoder(model, batch_size=1, reference=True).encode(images)
    fast = BatchEncoder(model, batch_size=6, channels_last=True).encode(images)
    assert fast.shape == ref.shape == (6, 256)
    assert (fast == ref).mean() >= 0.99
    assert int(fast.max()) < model.config.num_embeddings


def test_gpu_path_options_run_on_cpu_and_leave_the_model_fp32(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from torch._dynamo import register_backend

    torch.manual_seed(0)
    model = VQGAN(small_config()).eval()
    images = real_images(11, 64)
    ref = BatchEncoder(model, batch_size=1, reference=True).encode(images)
    cpu = BatchEncoder(model, batch_size=8)  # the CPU path is unchanged: fp32, channels-last, eager
    assert (cpu.precision, cpu.channels_last, cpu.compiled) == ("fp32", True, False)
    # bf16 weights: a bf16 copy of the encoder runs; the model (decoder, codebook) stays fp32
    bf16 = BatchEncoder(model, batch_size=8, precision="bf16", channels_last=False)
    assert next(bf16.net.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert (bf16.encode(images) == ref).mean() >= 0.9
    # compiled (dynamo tracing; the "eager" backend builds no kernels): ragged batches (8 + 3, the 3
    # padded to a bucket of 8) give exactly the eager codes
    compiled = BatchEncoder(model, batch_size=8, channels_last=False, compile="eager")
    assert compiled.compiled and np.array_equal(compiled.encode(images), ref)

    @register_backend
    def uvd_failing_backend(gm, example_inputs):  # noqa: ANN001, ANN202, ARG001
        raise RuntimeError("no compiler here")

    failing = BatchEncoder(model, batch_size=8, channels_last=False, compile="uvd_failing_backend")
    torch._dynamo.reset()
    with caplog.at_level(logging.WARNING, logger="tokenize_job.encode"):
        assert np.array_equal(failing.encode(images), ref)  # fell back to eager, same codes
    assert not failing.compiled and "torch.compile failed" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        BatchEncoder(model, precision="fp16")


def test_compile_mode_goes_to_inductor_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA graphs (reduce-overhead) are an inductor mode: another backend would refuse the keyword.
    seen: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda net, **kw: seen.append(kw) or net)
    model = VQGAN(small_config()).eval()
    BatchEncoder(model, compile=True, compile_mode="reduce-overhead")
    BatchEncoder(model, compile="eager", compile_mode="reduce-overhead")
    BatchEncoder(model, compile=True)
    assert seen == [{"backend": "inductor", "dynamic": False, "mode": "reduce-overhead"},
                    {"backend": "eager", "dynamic": False}, {"backend": "inductor", "dynamic": False}]


def test_a_saved_tokenizer_loads_in_open_muse_and_decodes_alike(tmp_path: Path) -> None:
    """open-MUSE's VQGANModel (main branch, vendored in tests/support) reads what save_pretrained wrote."""
    from support.open_muse_vqgan import VQGANModel

    torch.manual_seed(3)
    ours = VQGAN(small_config()).eval()
    ours.save_pretrained(tmp_path / "tok", name="small")
    theirs = VQGANModel.from_pretrained(str(tmp_path / "tok"))
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        _, our_codes, _ = ours(pixels)
        their_codes = theirs.get_code(pixels)
        assert torch.equal(our_codes.reshape(2, -1), their_codes.reshape(2, -1))
        assert torch.allclose(ours.decode_code(our_codes), theirs.decode_code(their_codes), atol=1e-5)
