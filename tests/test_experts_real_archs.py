"""The expert checkpoints users have, built tiny from their real classes and saved in their real
on-disk layouts: transformers folders (DPT, Depth Anything, SegFormer, Mask2Former) and the
ControlNet annotators' published .pth files (HED, PiDiNet). Each goes through `uvd pseudo-label`
and through configs/uvdv1.yaml's pseudo-label entries into shards; incomplete ones are refused
with the missing part named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from renderers.annotator_nets import ControlNetHED_Apache2, PiDiNet
from renderers.label_render import render_label
from renderers.labeler import Labeler
from uvd import codec
from uvd.api import BuildContext
from uvd.errors import ConfigError
from uvd.image import decode_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
IMAGENET = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

transformers = pytest.importorskip("transformers")


def _save(model, root: Path, processor: dict) -> Path:
    model.save_pretrained(str(root))
    (root / "preprocessor_config.json").write_text(json.dumps(processor))
    return root


@pytest.fixture(scope="module")
def experts(tmp_path_factory) -> dict[str, Path]:
    """name → checkpoint path, each in the layout its publisher uses."""
    root = tmp_path_factory.mktemp("experts")
    torch.manual_seed(0)
    t = transformers
    out: dict[str, Path] = {}
    dpt = t.DPTForDepthEstimation(t.DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8,
        backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1))
    # Intel/dpt-large's processor: 384×384 squash (here 32), mean/std 0.5, bicubic
    out["dpt"] = _save(dpt, root / "dpt", {"image_processor_type": "DPTImageProcessor", "do_resize": True,
                                           "size": {"height": 32, "width": 32}, "keep_aspect_ratio": False,
                                           "ensure_multiple_of": 1, "resample": 3, "do_rescale": True,
                                           "rescale_factor": 1 / 255, "do_normalize": True,
                                           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    da = t.DepthAnythingForDepthEstimation(t.DepthAnythingConfig(
        backbone_config=t.Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                                       image_size=28, patch_size=14, reshape_hidden_states=False,
                                       out_features=["stage1", "stage2", "stage3", "stage4"]),
        reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16, head_hidden_size=8,
        patch_size=14))
    # LiheYoung/depth-anything-small-hf's processor: 518 (here 42) keeping aspect, multiples of 14
    out["depth_anything"] = _save(da, root / "depth_anything", {
        "image_processor_type": "DPTImageProcessor", "do_resize": True, "size": {"height": 42, "width": 42},
        "keep_aspect_ratio": True, "ensure_multiple_of": 14, "resample": 3, "do_normalize": True,
        "image_mean": list(IMAGENET[0]), "image_std": list(IMAGENET[1])})
    sf = t.SegformerForSemanticSegmentation(t.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
        num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=5))
    out["segformer"] = _save(sf, root / "segformer", {"image_processor_type": "SegformerImageProcessor",
                                                      "size": {"height": 48, "width": 48}, "resample": 2,
                                                      "image_mean": list(IMAGENET[0]), "image_std": list(IMAGENET[1])})
    m2f = t.Mask2FormerForUniversalSegmentation(t.Mask2FormerConfig(
        backbone_config=t.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                                     window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"]),
        num_labels=4, hidden_dim=32, num_queries=5, encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=32,
        dim_feedforward=32, mask_feature_size=32, feature_size=32, num_attention_heads=2, common_stride=4,
        use_pretrained_backbone=False, backbone=None))
    # facebook/mask2former-*'s processor: shortest edge 384 (here 48), padded to multiples of 32
    out["mask2former"] = _save(m2f, root / "mask2former", {
        "image_processor_type": "Mask2FormerImageProcessor", "size": {"shortest_edge": 48, "longest_edge": 96},
        "size_divisor": 32, "resample": 2, "image_mean": list(IMAGENET[0]), "image_std": list(IMAGENET[1])})
    # ControlNet annotators, full size, in their published files
    out["hed"] = root / "ControlNetHED.pth"
    torch.save(ControlNetHED_Apache2().state_dict(), out["hed"])
    out["pidinet"] = root / "table5_pidinet.pth"
    torch.save({"epoch": 14, "state_dict": {f"module.{k}": v for k, v in PiDiNet().state_dict().items()}}, out["pidinet"])
    return out


def _photos(tmp_path: Path, n: int = 3) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, f in enumerate(sorted((SAMPLES / "images").glob("*.jpg"))[:n]):
        (root / ("sub" if i % 2 else "") / f.name).write_bytes(f.read_bytes())
    return root


KINDS = {"dpt": "depth", "depth_anything": "depth", "segformer": "segmentation", "mask2former": "segmentation",
         "hed": "edges", "pidinet": "edges"}


@pytest.mark.parametrize("name", list(KINDS))
def test_cli_labels_photos_with_each_real_architecture(tmp_path, experts, name):
    from uvd.cli.pseudo_label_cmd import main

    photos, out, kind = _photos(tmp_path), tmp_path / "labels", KINDS[name]
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    args = [str(photos), str(out), "--model", str(experts[name]), "--kind", kind, "--no-ray", "--unit-size", "2",
            "--batch-size", "2"] + (["--input-size", "64"] if kind == "edges" else [])
    assert main(args) == 0
    labeler = Labeler.load(str(experts[name]), kind, input_size=64 if kind == "edges" else 0)
    for photo in sorted(photos.rglob("*.jpg")):
        rel = photo.relative_to(photos)
        if rel.name == "broken.jpg":
            assert not any(out.rglob("broken.*"))
            continue
        img = decode_image(photo.read_bytes())
        want = labeler.label([img])[0]
        if kind == "depth":
            got = np.load(out / rel.with_suffix(".npy"))
            assert got.shape == img.shape[:2] and np.isfinite(got).all()
            # DPT and relative Depth Anything predict disparity: the file holds depth = 1/disparity
            assert labeler.disparity and np.allclose(got, 1 / np.where(want > 0, want, np.inf), rtol=1e-4)
        else:
            got = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(out / rel.with_suffix(".png")))
            assert got.shape == img.shape[:2]
            if kind == "segmentation":
                assert got.max() < (5 if name == "segformer" else 4) and (got == want).all()
            else:
                assert np.abs(got.astype(int) - np.round(want * 255)).max() <= 1
    audit = pq.read_table(out / "_uvd" / "audit" / kind).to_pylist()
    assert {r["item_id"]: r["status"] for r in audit}["broken.jpg"] == "failed"
    assert sum(r["status"] == "ok" for r in audit) == 3
    man = json.loads((out / "_uvd" / "manifest.json").read_text())
    assert man["totals"]["units_done"] == man["totals"]["units"] == 2 and man["totals"]["ok"] == 3


def test_annotator_outputs_follow_controlnet_aux(experts):
    """The edge map is what controlnet_aux's detectors compute from the same network's outputs."""
    x = torch.rand(1, 3, 64, 64)
    hed = Labeler.load(str(experts["hed"]), "edges")
    net = hed.module.net
    sides = [F.interpolate(p, (64, 64), mode="bilinear", align_corners=False) for p in net(x * 255)]
    want = 1 / (1 + torch.exp(-torch.cat(sides, 1).mean(1, keepdim=True)))
    assert torch.allclose(hed.module(x), want, atol=1e-5)
    pidi = Labeler.load(str(experts["pidinet"]), "edges")
    assert torch.allclose(pidi.module(x), pidi.module.net(x[:, [2, 1, 0]])[-1])  # BGR, last (fused) output
    assert hed.model_size(300, 500) == (512, 832)  # controlnet_aux resize_image: short side 512, multiples of 64


def test_mask2former_semantic_scores_match_its_post_processing(experts):
    """softmax(classes)[..., :-1] × sigmoid(masks), summed over queries, then argmax (post_process_semantic_segmentation)."""
    lab = Labeler.load(str(experts["mask2former"]), "segmentation")
    x = torch.rand(1, 3, 64, 64)
    out = lab.module.model(pixel_values=x)
    masks = F.interpolate(out.masks_queries_logits, size=(64, 64), mode="bilinear", align_corners=False).sigmoid()
    want = torch.einsum("qc,qhw->chw", out.class_queries_logits[0].softmax(-1)[:, :-1], masks[0])
    assert torch.allclose(lab.module(x)[0], want, atol=1e-5)
    assert lab.model_size(100, 150) == (64, 96)  # shortest edge 48 → 48×72, padded up to multiples of 32


def test_incomplete_checkpoints_are_refused_naming_what_is_missing(tmp_path, experts, capsys):
    from uvd.cli.pseudo_label_cmd import main

    photos = _photos(tmp_path, 1)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(experts["dpt"], no_weights)
    (no_weights / "model.safetensors").unlink()
    assert main([str(photos), str(tmp_path / "o1"), "--model", str(no_weights), "--kind", "depth", "--no-ray"]) == 2
    assert "missing model.safetensors or pytorch_model.bin" in capsys.readouterr().err
    no_proc = tmp_path / "no_proc"
    shutil.copytree(experts["segformer"], no_proc)
    (no_proc / "preprocessor_config.json").unlink()
    with pytest.raises(ConfigError, match="missing preprocessor_config.json"):
        Labeler.load(str(no_proc), "segmentation")
    # weights saved from a smaller model: the tensors the model lacks are named
    partial = tmp_path / "partial"
    shutil.copytree(experts["segformer"], partial)
    from safetensors.torch import load_file, save_file
    sd = load_file(str(partial / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("decode_head.")}, str(partial / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"lack \d+ of the model's tensors, e.g. decode_head\."):
        Labeler.load(str(partial), "segmentation")
    one = tmp_path / "oneformer"
    one.mkdir()
    (one / "config.json").write_text(json.dumps({"model_type": "oneformer"}))
    (one / "preprocessor_config.json").write_text("{}")
    (one / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="OneFormer needs a text tokenizer"):
        Labeler.load(str(one), "segmentation")
    # an annotator file with a tensor missing, and one in the wrong kind
    sd = torch.load(experts["hed"], weights_only=True)
    del sd["block5.projection.weight"], sd["block5.projection.bias"]
    torch.save(sd, tmp_path / "hed_cut.pth")
    assert main([str(photos), str(tmp_path / "o2"), "--model", str(tmp_path / "hed_cut.pth"), "--kind", "edges",
                 "--no-ray"]) == 2
    assert "missing keys: block5.projection.bias, block5.projection.weight" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="edge annotator; use kind edges"):
        Labeler.load(str(experts["pidinet"]), "depth")


def test_rerun_skips_committed_units_and_redoes_an_uncommitted_one(tmp_path, experts, capsys):
    from uvd.cli.pseudo_label_cmd import main

    photos, out = _photos(tmp_path, 3), tmp_path / "labels"
    args = [str(photos), str(out), "--model", str(experts["segformer"]), "--kind", "segmentation", "--no-ray",
            "--unit-size", "1"]
    assert main(args) == 0
    stats = sorted((out / "_uvd" / "units" / "segmentation").glob("*.stats.json"))
    assert len(stats) == 3
    capsys.readouterr()
    assert main(args) == 0
    assert "3 already done, 0 to do" in capsys.readouterr().out
    stats[1].unlink()  # a unit killed before its commit marker
    label = next(out.rglob("*.png"))
    assert main(args) == 0
    assert "2 already done, 1 to do" in capsys.readouterr().out
    assert label.exists() and stats[1].exists()


def _uvdv1_entries(monkeypatch, tmp_path: Path, experts: dict[str, Path], names: list[str]) -> dict[str, dict]:
    from uvd.config import load_config

    monkeypatch.setenv("UVD_IMAGENET", str(_photos(tmp_path, 2)))
    monkeypatch.setenv("UVD_DEPTH_MODEL", str(experts["depth_anything"]))
    monkeypatch.setenv("UVD_SEGMENTATION_MODEL", str(experts["mask2former"]))
    monkeypatch.setenv("UVD_EDGES_MODEL", str(experts["pidinet"]))
    cfg = load_config(ROOT / "configs" / "uvdv1.yaml")
    return {n: cfg.dataset(n).model_dump(exclude_unset=True) for n in names}


def test_uvdv1_pseudo_label_entries_build_shards_with_the_real_architectures(tmp_path, experts, monkeypatch):
    from conftest import build_dataset

    names = ["imagenet_pl_depth", "imagenet_pl_segmentation", "imagenet_pl_edges"]
    entries = _uvdv1_entries(monkeypatch, tmp_path, experts, names)
    ctx = BuildContext(dataset="x")
    for name, kind, model in zip(names, ("depth", "segmentation", "edges"), ("depth_anything", "mask2former", "pidinet")):
        rows, audit, _ = build_dataset(tmp_path / name, entries[name])
        assert len(audit) == 2 and all(a["status"] == "ok" for a in audit.values()), audit
        assert len(rows) == 1 and rows[0]["num_images"] == 4 and rows[0]["task"] == "pseudo_label"
        labeler = Labeler.load(str(experts[model]), kind)
        for item_id, k in zip(json.loads(rows[0]["meta"])["item_ids"], (0, 2)):
            photo = ctx.photo((Path(entries[name]["source_args"]["root"]) / item_id).read_bytes())
            want = render_label(kind, labeler(photo), disparity=labeler.disparity)  # LVM's rendering
            got = codec.decode(rows[0]["images"][k + 1])
            assert rows[0]["images"][k + 1][:4] == b"\x89PNG" and np.abs(got.astype(int) - want).max() <= 1, name
            if kind == "depth":
                assert got.min() == 0 and got.max() == 255  # Prismer's min-max of disparity


@pytest.mark.slow
def test_cli_runs_as_a_ray_data_actor_pool(tmp_path, experts):
    from uvd.cli.pseudo_label_cmd import main

    photos, out = _photos(tmp_path, 3), tmp_path / "labels"
    assert main([str(photos), str(out), "--model", str(experts["dpt"]), "--kind", "depth", "--unit-size", "2",
                 "--actors", "1"]) == 0
    assert len(list(out.rglob("*.npy"))) == 3
    man = json.loads((out / "_uvd" / "manifest.json").read_text())
    assert man["totals"]["units_done"] == 2 and man["totals"]["ok"] == 3


def test_photos_and_labels_on_an_fsspec_url(tmp_path, experts):
    import fsspec

    from uvd.cli.pseudo_label_cmd import main

    fs = fsspec.filesystem("memory")
    for f in sorted((SAMPLES / "images").glob("*.jpg"))[:2]:
        fs.pipe(f"/h9photos/a/{f.name}", f.read_bytes())
    assert main(["memory://h9photos", "memory://h9labels", "--model", str(experts["segformer"]), "--kind",
                 "segmentation", "--no-ray"]) == 0
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find("/h9labels/a"))
    assert names == [f.with_suffix(".png").name for f in sorted((SAMPLES / "images").glob("*.jpg"))[:2]]
    assert fs.exists("/h9labels/_uvd/manifest.json")
    fs.rm("/h9photos", recursive=True)
    fs.rm("/h9labels", recursive=True)
